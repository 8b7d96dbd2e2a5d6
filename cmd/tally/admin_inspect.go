package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/tally-ml/tally/cluster"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/wal"
)

// inspectReport is what `tally admin inspect` finds in a data dir.
type inspectReport struct {
	DataDir string `json:"dataDir"`
	// Single is a single node's log and snapshots (data-dir/wal,
	// data-dir/snapshots).
	Single *singleLayout `json:"single,omitempty"`
	// Groups are a cluster node's Raft groups (data-dir/cluster/<name>):
	// meta, g0, g1, ...
	Groups []groupLayout `json:"groups,omitempty"`
}

type singleLayout struct {
	WAL       wal.DirInfo    `json:"wal"`
	Snapshots []snapshotFile `json:"snapshots"`
	// Error is the log's corruption, as the node's start would report it,
	// with what to do.
	Error string `json:"error,omitempty"`
}

type groupLayout struct {
	Name      string          `json:"name"`
	Log       wal.RaftDirInfo `json:"log"`
	Snapshots []snapshotFile  `json:"snapshots"`
	Bytes     int64           `json:"bytes"` // the group directory's size
	Error     string          `json:"error,omitempty"`
}

type snapshotFile struct {
	ID    string `json:"id"`
	Index uint64 `json:"index"`
	Term  uint64 `json:"term,omitempty"`
	Bytes int64  `json:"bytes"`
}

func inspectCmd(asJSON *bool) *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "inspect",
		Short: "Describe a node's data directory: logs, their index ranges, snapshots, sizes (read-only)",
		Long: `inspect describes a node's data directory without changing it: a single node's
write-ahead log (segments, first and last index) and snapshots, or a cluster
node's metadata and data groups (each group's log range, the first entry Raft
still reads, its term, its snapshots and size). It takes no lock and writes
nothing, so it also runs beside a running node (the answer is then a moment's).

A single node's newest log segment is read as the node's start reads it: a
record damaged after it was acknowledged (a bad record with later writes after
it) is reported with its segment, byte offset and what to do.

Exit 0: described. Exit 1: no tally data there, it could not be read, or a log
is corrupt.
Exit 2: bad flags.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := inspectDataDir(dataDir)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if *asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				printInspect(out, rep)
			}
			if rep.Single != nil && rep.Single.Error != "" {
				return fmt.Errorf("the log in %s is corrupt (see above)", filepath.Join(dataDir, "wal"))
			}
			for _, g := range rep.Groups {
				if g.Error != "" {
					return fmt.Errorf("group %s could not be read (see above)", g.Name)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "./tally-data", "the node's data directory")
	return cmd
}

func inspectDataDir(dataDir string) (*inspectReport, error) {
	if st, err := os.Stat(dataDir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("--data-dir %s is not a directory: point it at the node's data directory", dataDir)
	}
	if err := store.CheckDataDir(dataDir); err != nil {
		return nil, err
	}
	rep := &inspectReport{DataDir: dataDir}
	if _, err := os.Stat(filepath.Join(dataDir, "wal")); err == nil {
		w, err := wal.Inspect(filepath.Join(dataDir, "wal"))
		var ce *wal.CorruptionError
		if err != nil && !errors.As(err, &ce) {
			return nil, err
		}
		rep.Single = &singleLayout{WAL: w, Snapshots: singleSnapshots(filepath.Join(dataDir, "snapshots"))}
		if ce != nil {
			rep.Single.Error = fmt.Sprintf("%v; the records from index %d on were acknowledged and are not counted above. "+
				"Under durability.fsync: always (the default) tally refuses to start on this log "+
				"(under interval or never it cuts the log there, keeping a copy of the segment in wal/corrupt-<time>/).\n%s",
				ce, ce.Index, store.RepairAdvice(dataDir))
		}
	}
	ents, err := os.ReadDir(filepath.Join(dataDir, "cluster"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(dataDir, "cluster", e.Name())
		g := groupLayout{Name: e.Name(), Snapshots: raftSnapshots(filepath.Join(dir, "snapshots")), Bytes: dirSize(dir)}
		if g.Log, err = wal.InspectRaftStore(dir); err != nil {
			g.Error = cluster.UnreadableReplica(dataDir, e.Name(), err).Error()
		}
		rep.Groups = append(rep.Groups, g)
	}
	// meta first, then g0, g1, ... by number.
	slices.SortFunc(rep.Groups, func(a, b groupLayout) int { return groupOrder(a.Name) - groupOrder(b.Name) })
	if rep.Single == nil && rep.Groups == nil {
		return nil, fmt.Errorf("%s holds no tally data (no wal/ or cluster/ directory): is --data-dir the node's data directory?", dataDir)
	}
	return rep, nil
}

func groupOrder(name string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(name, "g"))
	if name == "meta" || err != nil {
		return -1
	}
	return n
}

// singleSnapshots lists a single node's snapshots (<index>.snap), newest first.
func singleSnapshots(dir string) []snapshotFile {
	ents, _ := os.ReadDir(dir)
	var out []snapshotFile
	for _, e := range ents {
		base, ok := strings.CutSuffix(e.Name(), ".snap")
		ix, err := strconv.ParseUint(base, 10, 64)
		if !ok || err != nil {
			continue
		}
		sf := snapshotFile{ID: e.Name(), Index: ix}
		if fi, err := e.Info(); err == nil {
			sf.Bytes = fi.Size()
		}
		out = append(out, sf)
	}
	slices.SortFunc(out, func(a, b snapshotFile) int { return int(b.Index) - int(a.Index) })
	return out
}

// raftSnapshots lists a group's Raft snapshots (hashicorp/raft's
// FileSnapshotStore: <id>/meta.json beside state.bin), newest first;
// unfinished ones (.tmp) are left out.
func raftSnapshots(dir string) []snapshotFile {
	ents, _ := os.ReadDir(dir)
	var out []snapshotFile
	for _, e := range ents {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "meta.json"))
		if err != nil {
			continue
		}
		var m struct {
			ID          string
			Index, Term uint64
			Size        int64
		}
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		out = append(out, snapshotFile{ID: m.ID, Index: m.Index, Term: m.Term, Bytes: m.Size})
	}
	slices.SortFunc(out, func(a, b snapshotFile) int { return int(b.Index) - int(a.Index) })
	return out
}

func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func printInspect(out io.Writer, rep *inspectReport) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if s := rep.Single; s != nil {
		fmt.Fprintf(w, "single node: wal %s: %d segments, records %s, %s\n", filepath.Join(rep.DataDir, "wal"), len(s.WAL.Segments), logRange(s.WAL), bytesOf(s.WAL.Bytes))
		for _, sn := range s.Snapshots {
			fmt.Fprintf(w, "  snapshot %s: index %d, %s\n", sn.ID, sn.Index, bytesOf(sn.Bytes))
		}
		if len(s.Snapshots) == 0 {
			fmt.Fprintln(w, "  no snapshots")
		}
		if s.Error != "" {
			fmt.Fprintf(w, "  CORRUPT: %s\n", strings.ReplaceAll(s.Error, "\n", "\n  "))
		}
	}
	if len(rep.Groups) > 0 {
		fmt.Fprintf(w, "cluster node: %s\n", filepath.Join(rep.DataDir, "cluster"))
		fmt.Fprintln(w, "GROUP\tLOG\tRAFT FROM\tTERM\tSEGMENTS\tSNAPSHOTS (index)\tSIZE")
		for _, g := range rep.Groups {
			if g.Error != "" {
				fmt.Fprintf(w, "%s\t-\t-\t-\t-\t-\t%s\tunreadable: %s\n", g.Name, bytesOf(g.Bytes), g.Error)
				continue
			}
			var snaps []string
			for _, sn := range g.Snapshots {
				snaps = append(snaps, strconv.FormatUint(sn.Index, 10))
			}
			from := "-"
			if g.Log.RaftFirst > 0 {
				from = strconv.FormatUint(g.Log.RaftFirst, 10)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", g.Name, logRange(g.Log.Log), from, g.Log.Term, len(g.Log.Log.Segments), cmp.Or(strings.Join(snaps, ","), "-"), bytesOf(g.Bytes))
		}
	}
	w.Flush()
}

func logRange(d wal.DirInfo) string {
	if d.Last < d.First {
		return "none"
	}
	return fmt.Sprintf("%d..%d", d.First, d.Last)
}

func bytesOf(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
