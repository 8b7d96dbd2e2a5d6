package main

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/tally-ml/tally/delta"
	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/history"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/tabular"
	"github.com/tally-ml/tally/wal"
)

// loadRepo loads the repo in dir, or the embedded default one, and returns
// it with its directory (model files resolve there).
func loadRepo(dir string) (*features.Repo, fs.FS, error) {
	fsys := features.DefaultFS()
	if dir != "" {
		fsys = os.DirFS(dir)
	}
	repo, err := features.Load(fsys)
	if err != nil {
		return nil, nil, fmt.Errorf("feature repo: %w", err)
	}
	return repo, fsys, nil
}

// newBar is a progress bar on w (total -1: unknown) counting unit.
func newBar(w io.Writer, total int, desc, unit string) *progressbar.ProgressBar {
	return progressbar.NewOptions(total, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString(unit),
		progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish())
}

func exportCmd() *cobra.Command {
	var service, spine, out, dataDir, repoDir, tsKey, format string
	var partial, quiet bool
	cmd := &cobra.Command{
		Use:   "export --service NAME --spine SPINE.(csv|parquet|ndjson) --out OUT.(parquet|csv|ndjson) | --format delta --out DIR",
		Args:  noArgs,
		Short: "Write point-in-time-correct training data: a spine joined with a service's features as of each row",
		Long: `export replays the node's event archive (its write-ahead log, read-only: the
node may keep running) through the same aggregation code that serves online, and
writes each spine row with the service's features exactly as a lookup at the start
of that row's millisecond returned them. The spine needs the service's join keys,
a timestamp column, and its request-context columns; other columns (a label) pass
through. Rows come out in time order. With --format delta, the rows are appended
to the Delta Lake table in --out (created if missing) as one commit.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			repo, _, err := loadRepo(repoDir)
			if err != nil {
				return err
			}
			if err := store.CheckDataDir(dataDir); err != nil {
				return err
			}
			warnRepoChanges(cmd.ErrOrStderr(), dataDir, repoDir, repo)
			archive, err := wal.OpenArchive(nil, filepath.Join(dataDir, "wal"))
			if err != nil {
				return fmt.Errorf("event archive: %w", err)
			}
			var bar *progressbar.ProgressBar
			j, err := history.New(history.Options{Repo: repo, Service: service, Archive: archive, AllowPartial: partial,
				Progress: func(p history.Progress) {
					if bar != nil {
						bar.Set(p.Rows)
					}
				}})
			if err != nil {
				return err
			}
			if err := j.CheckArchive(); err != nil {
				return err
			}
			r, err := tabular.Open(spine)
			if err != nil {
				return fmt.Errorf("spine: %w", err)
			}
			if format == "delta" {
				// Before the spine is read; delta.Create checks the
				// features' names too.
				if err := delta.CheckNames(r.Columns()); err != nil {
					r.Close()
					return fmt.Errorf("spine %s: %w", spine, err)
				}
			}
			s, err := j.ReadSpine(r, tsKey, 0)
			r.Close()
			if err != nil {
				return fmt.Errorf("spine %s: %w", spine, err)
			}
			w, err := createOutput(out, format, j.Columns(s))
			if err != nil {
				return err
			}
			if !quiet {
				bar = newBar(cmd.ErrOrStderr(), s.Len(), "export "+service, "rows")
			}
			ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer cancel()
			st, err := j.Run(ctx, s, w)
			if err := finishOutput(w, out, err); err != nil {
				return err
			}
			if d, ok := w.(*delta.Writer); ok {
				fmt.Fprintf(cmd.OutOrStdout(), "committed version %d of the Delta table %s\n", d.Version(), out)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %d rows x %d features to %s: %d archive records replayed in %s (%.0f rows/s)\n",
				st.Rows, len(j.Columns(s))-len(s.Columns()), out, st.Records, st.Elapsed.Round(time.Millisecond),
				float64(st.Rows)/st.Elapsed.Seconds())
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&service, "service", "", "feature service (required)")
	fl.StringVar(&spine, "spine", "", "spine file: .csv, .parquet or .ndjson (required)")
	fl.StringVar(&out, "out", "", "output file: .parquet, .csv or .ndjson; with --format delta, the table's directory (required)")
	fl.StringVar(&format, "format", "", "delta: append to the Delta table at --out as one commit (created if missing); default: the --out extension's format")
	fl.StringVar(&dataDir, "data-dir", "./tally-data", "the node's data directory (its wal/ is the archive)")
	fl.StringVar(&repoDir, "repo", "", "feature repo directory the node serves (default: the embedded fraud repo)")
	fl.StringVar(&tsKey, "timestamp-key", "timestamp", "the spine's timestamp column")
	fl.BoolVar(&partial, "allow-partial", false, "join even when retention removed the archive's oldest records")
	fl.BoolVar(&quiet, "quiet", false, "no progress bar")
	requireFlags(cmd, "service", "spine", "out")
	return cmd
}

// warnRepoChanges warns on w when repo differs from the repo the node
// served from dataDir (its schema fingerprint), listing each difference:
// the export then holds features the node never served. That is what a
// deliberate backfill of new features wants, and what a mistaken --repo
// (or one left out) does silently, so export goes on. A data dir without a
// fingerprint (no node started there since fingerprints) says nothing.
func warnRepoChanges(w io.Writer, dataDir, repoDir string, repo *features.Repo) {
	path := filepath.Join(dataDir, store.SchemaFile)
	served, err := os.ReadFile(path)
	if err != nil {
		return
	}
	what := "--repo " + repoDir
	if repoDir == "" {
		what = "the embedded fraud repo (--repo left out)"
	}
	changes, err := store.SchemaChanges(served, store.SchemaOf(repo))
	if err != nil {
		fmt.Fprintf(w, "warning: %s: %v: cannot tell whether %s is the repo the node served\n", path, err, what)
		return
	}
	if len(changes) == 0 {
		return
	}
	fmt.Fprintf(w, "warning: %s differs from the repo the node served (%s): the export holds features the node never served as exported; "+
		"unless that is a deliberate backfill, pass --repo the node's repo:\n", what, path)
	for _, c := range changes {
		fmt.Fprintf(w, "  - %s\n", c)
	}
}

// finishOutput closes export's output after a run that returned runErr.
// A failed run leaves nothing behind: a file export's temporary file is
// removed (a file already at out is as it was), and a Delta append is
// discarded before Close, which would commit the rows written so far.
func finishOutput(w tabular.Writer, out string, runErr error) error {
	if runErr != nil {
		if d, ok := w.(interface{ Discard() error }); ok {
			d.Discard() // the table, or the file at out, stays as it was
		} else {
			w.Close()
		}
		return runErr
	}
	// A Close that fails commits nothing and removes its temporary file
	// (Delta: its data file).
	return w.Close()
}

// createOutput creates export's output: a file in the format of its
// extension, or an append to the Delta table in the directory out.
func createOutput(out, format string, cols []tabular.Column) (tabular.Writer, error) {
	switch format {
	case "":
		return createFile(out, cols)
	case "delta":
		return delta.Create(out, cols)
	}
	return nil, fmt.Errorf("--format %q: use delta, or leave it out to write the format of --out's extension (.parquet, .csv, .ndjson)", format)
}

// fileOutput writes a training set to a temporary file beside its path and
// renames it there on Close, once it is whole and synced: until then, and
// after a failure or a kill, the path holds what it held before (nothing,
// or a previous training set), never part of this one.
type fileOutput struct {
	tabular.Writer
	f    *os.File
	path string
	done bool
}

func createFile(path string, cols []tabular.Column) (*fileOutput, error) {
	f, err := tabular.FormatOf(path)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(path); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s exists and is not a file: name a file for --out (or say --format delta for a table directory)", path)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, err
	}
	w, err := tabular.NewWriter(f, tmp, cols)
	if err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return &fileOutput{Writer: w, f: tmp, path: path}, nil
}

// Close finishes the file and renames it to its path.
func (o *fileOutput) Close() error {
	if o.done {
		return tabular.ErrClosed
	}
	o.done = true
	err := o.Writer.Close()
	if err == nil {
		err = o.f.Chmod(0o644) // CreateTemp's 0600 is not what os.Create gave
	}
	if err == nil {
		err = o.f.Sync()
	}
	if cerr := o.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(o.f.Name(), o.path)
	}
	if err != nil {
		os.Remove(o.f.Name())
		return fmt.Errorf("write %s: %w", o.path, err)
	}
	if d, err := os.Open(filepath.Dir(o.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Discard abandons the file: the temporary file is removed, the path is
// untouched. It does nothing after Close.
func (o *fileOutput) Discard() error {
	if o.done {
		return nil
	}
	o.done = true
	o.Writer.Close()
	o.f.Close()
	return os.Remove(o.f.Name())
}
