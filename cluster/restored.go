package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tally-ml/tally/wal"
	"github.com/tally-ml/tally/wal/walfs"
)

// A data dir restored from an older backup (or an old copy put back)
// while the cluster went on kept everything the other start checks look
// at: the node's identity, a term in every replica, no second process.
// It looked like a node that was down. But its replicas lack entries
// they acknowledged, which counted in commit quorums: with an entry
// committed on n0 and n1 only, n1 restored to before it and n0 down, n1
// votes for n2, whose log lacks the entry, and the acknowledged write is
// lost. Raft cannot tell: a voter must never go back on its log.
//
// So the peers remember how far each replica got:
//
//   - every replica directory holds an incarnation (incarnationFile: a
//     random id, fsync'd, written when the directory is created), so a
//     replica moved away (its directory deleted) and placed back later
//     starts afresh; a restored copy carries the incarnation of the
//     replica it copied;
//   - every ProgressEvery, a node reports to the other members of its
//     map, for each replica it holds (meta and its data groups), the
//     index of the last entry it applied (POST /v1/progress). An applied
//     entry is committed (Raft never truncates it) and is durable here: it
//     was in this replica's log, fsync'd before it was acknowledged (under
//     wal.SyncAlways; under another policy the log is synced before the
//     report), or in a snapshot, which is fsync'd before its log is
//     compacted. So the replica never goes below it again, through a
//     restart, a crash (kill -9 mid-write) or `tally cluster recover`
//     (which only adds to the log). A node that stops (Close) reports once
//     more after its replicas stopped applying (finalProgress), so their
//     last applied entries are known to the peers that answer;
//   - each peer keeps the highest index reported per (node, group,
//     incarnation) in its data dir (progressFile, rewritten atomically),
//     and answers it in the hello (GET /v1/hello?id=);
//   - at start, before any replica opens, a node whose data dir is not new
//     asks its peers (its --cluster-peers and the members of the map its
//     data dir holds, in the start's round: askAtStart) and refuses to
//     start when a replica's kept index (its log's last entry, or its
//     newest snapshot's) is below what a peer remembers for that replica
//     and incarnation, naming the group, both indexes, the peer, and the
//     way back. Peers that do not answer do not block the start (a whole
//     cluster may be restarting).
//
// Limits: a backup taken after the last report that reached a peer passes
// (after a planned stop, none can be; after a crash, the window is
// ProgressEvery plus a report's delivery); so does one
// restored while none of the peers that heard the reports answers, and one
// of a replica directory without an incarnation (written before this check
// existed). A peer whose own data dir was restored remembers less, which
// only weakens the check. Peers keep the records of incarnations that are
// gone (a few dozen bytes each).

// defaultProgressEvery is Config.ProgressEvery's default; a variable so
// that the package's tests report often.
var defaultProgressEvery = 5 * time.Second

// incarnationFile holds a replica directory's incarnation.
const incarnationFile = "INCARNATION"

// progressFile is where a node keeps what its peers reported of their
// replicas, in its data dir's cluster directory.
const progressFile = "PEER_PROGRESS"

// progressMark is how far one replica got: its group ("meta", "g<N>"),
// its incarnation, and the index of the last entry it applied.
type progressMark struct {
	Group       string `json:"group"`
	Incarnation string `json:"incarnation"`
	Index       uint64 `json:"index"`
}

// progressReport is POST /v1/progress's body: node's replicas.
type progressReport struct {
	Node  string         `json:"node"`
	Marks []progressMark `json:"marks"`
}

// ensureIncarnation returns the incarnation of the replica directory dir,
// writing a new one (durably: temp, fsync, rename, directory fsync) when
// it has none: a new directory, or one from before incarnations.
func ensureIncarnation(dir string) (string, error) {
	inc, err := readIncarnation(dir)
	if err != nil || inc != "" {
		return inc, err
	}
	inc = newID()
	if err := walfs.WriteFile(walfs.OS, filepath.Join(dir, incarnationFile), []byte(inc+"\n")); err != nil {
		return "", fmt.Errorf("record the replica's incarnation: %w", err)
	}
	return inc, nil
}

// renewIncarnation gives the replica directory dir a new incarnation
// (durably), so that what its peers remember of the old one no longer
// applies: for a replica whose log was cut on purpose (RepairReplica with
// acceptDataLoss).
func renewIncarnation(dir string) error {
	if err := walfs.WriteFile(walfs.OS, filepath.Join(dir, incarnationFile), []byte(newID()+"\n")); err != nil {
		return fmt.Errorf("record the replica's new incarnation: %w", err)
	}
	return nil
}

// readIncarnation is the incarnation of the replica directory dir, "" when
// it has none.
func readIncarnation(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, incarnationFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the replica's incarnation: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// removeReplicaDir deletes a replica directory (a replica moved away),
// its incarnation first: a removal cut short leaves no incarnation behind,
// so what is left of it opened again (placed back) starts afresh.
func removeReplicaDir(dir string) error {
	if err := os.Remove(filepath.Join(dir, incarnationFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := walfs.OS.SyncDir(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.RemoveAll(dir)
}

type progressKey struct{ node, group, incarnation string }

// progressBook is what this node's peers reported of their replicas: the
// highest index per replica, kept in progressFile.
type progressBook struct {
	path string
	mu   sync.Mutex // serialises changes and writes
	max  map[progressKey]uint64
}

// progressRecord is one line of progressFile.
type progressRecord struct {
	Node string `json:"node"`
	progressMark
}

// loadProgressBook reads dataDir's progressFile. One that cannot be read
// is logged and started over: it only makes the check of the peers'
// starts weaker, never refuses one.
func loadProgressBook(dataDir string, logger *slog.Logger) *progressBook {
	b := &progressBook{path: filepath.Join(dataDir, "cluster", progressFile), max: map[progressKey]uint64{}}
	data, err := os.ReadFile(b.path)
	if errors.Is(err, fs.ErrNotExist) {
		return b
	}
	var recs []progressRecord
	if err == nil {
		err = json.Unmarshal(data, &recs)
	}
	if err != nil {
		logger.Warn("cluster: the peers' reported progress cannot be read; starting it over", "file", b.path, "err", err)
		return b
	}
	for _, r := range recs {
		k := progressKey{r.Node, r.Group, r.Incarnation}
		b.max[k] = max(b.max[k], r.Index)
	}
	return b
}

// note keeps the marks node reported, writing the book when one rose.
func (b *progressBook) note(node string, marks []progressMark) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	rose := false
	for _, mk := range marks {
		k := progressKey{node, mk.Group, mk.Incarnation}
		if mk.Incarnation != "" && mk.Index > b.max[k] {
			b.max[k], rose = mk.Index, true
		}
	}
	if !rose {
		return nil
	}
	recs := make([]progressRecord, 0, len(b.max))
	for k, ix := range b.max {
		recs = append(recs, progressRecord{Node: k.node, progressMark: progressMark{Group: k.group, Incarnation: k.incarnation, Index: ix}})
	}
	slices.SortFunc(recs, func(x, y progressRecord) int {
		return cmp.Or(cmp.Compare(x.Node, y.Node), cmp.Compare(x.Group, y.Group), cmp.Compare(x.Incarnation, y.Incarnation))
	})
	data, _ := json.Marshal(recs)
	return walfs.WriteFile(walfs.OS, b.path, append(data, '\n'))
}

// of is what node reported of its replicas.
func (b *progressBook) of(node string) []progressMark {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []progressMark
	for k, ix := range b.max {
		if k.node == node {
			out = append(out, progressMark{Group: k.group, Incarnation: k.incarnation, Index: ix})
		}
	}
	return out
}

// serveProgress keeps a peer's report (POST /v1/progress).
func (c *Cluster) serveProgress(w http.ResponseWriter, r *http.Request) {
	var rep progressReport
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(body, &rep)
	}
	if err != nil || rep.Node == "" {
		http.Error(w, fmt.Sprintf("cluster: a progress report: %v", cmp.Or(err, errors.New("no node"))), http.StatusBadRequest)
		return
	}
	if err := c.book.note(rep.Node, rep.Marks); err != nil {
		c.logger.Warn("cluster: keeping a peer's reported progress", "from", rep.Node, "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// reportProgress sends this node's replicas' progress to the other members
// every ProgressEvery, until the node closes.
func (c *Cluster) reportProgress() {
	defer c.wg.Done()
	tick := time.NewTicker(c.cfg.ProgressEvery)
	defer tick.Stop()
	for {
		select {
		case <-c.closing:
			return
		case <-tick.C:
		}
		c.sendProgress()
	}
}

// sendProgress sends one report to every other member of the map; a member
// that does not answer hears the next one.
func (c *Cluster) sendProgress() {
	c.sendReport(c.progress(), min(c.cfg.ProgressEvery, 2*time.Second))
}

// finalProgress reports, as the node stops, the progress of replicas reps,
// which no longer apply (their Raft is shut down; their logs are still
// open): the last entries they applied, so that a backup taken since the
// last periodic report and restored after a planned stop is caught like
// an older one. Bounded by a second: a peer that does not answer keeps
// what it heard before.
func (c *Cluster) finalProgress(reps []*replica) {
	c.sendReport(c.reportOf(reps), time.Second)
}

// sendReport sends rep to every other member of the map, waiting up to
// timeout for their answers. A node without a map (a start refused before
// it accepted one, closing what it opened) sends nothing.
func (c *Cluster) sendReport(rep progressReport, timeout time.Duration) {
	m := c.Map()
	if len(rep.Marks) == 0 || m == nil {
		return
	}
	body, _ := json.Marshal(rep)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, mb := range m.Members {
		if mb.ID == c.cfg.NodeID {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.post(ctx, mb.ClusterAddr, "/v1/progress", body, nil); err != nil {
				c.logger.Debug("cluster: reporting progress", "to", mb.ID, "err", err)
			}
		}()
	}
	wg.Wait()
}

// progress is this node's report: a mark per replica it holds. It takes
// no lock of the node's (reconcile runs meanwhile, and Close): each
// replica's Sync holds only that replica's logMu, so that the replica
// does not close under it, and a replica closed meanwhile is left out, as
// one closed before the report.
func (c *Cluster) progress() progressReport {
	select {
	case <-c.closing:
		return progressReport{Node: c.cfg.NodeID}
	default:
	}
	return c.reportOf(c.replicas())
}

// reportOf is this node's report of replicas reps: a mark for each that
// has one (progressOf).
func (c *Cluster) reportOf(reps []*replica) progressReport {
	rep := progressReport{Node: c.cfg.NodeID}
	for _, r := range reps {
		if mk, ok := c.progressOf(r); ok {
			rep.Marks = append(rep.Marks, mk)
		}
	}
	return rep
}

// progressOf is replica r's mark: the last entry it applied, which is
// durable here (see above); false when there is none to report, or r is
// closed.
func (c *Cluster) progressOf(r *replica) (progressMark, bool) {
	r.logMu.RLock()
	defer r.logMu.RUnlock()
	if r.closed {
		return progressMark{}, false
	}
	ix := r.raft.AppliedIndex()
	if ix == 0 || r.incarnation == "" {
		return progressMark{}, false
	}
	if c.cfg.Sync != wal.SyncAlways {
		if beforeProgressSync != nil {
			beforeProgressSync()
		}
		// Entries up to ix were appended before this Sync: durable after it.
		if err := r.logs.Log().Sync(); err != nil {
			return progressMark{}, false
		}
	}
	return progressMark{Group: r.name, Incarnation: r.incarnation, Index: ix}, true
}

// beforeProgressSync, when a test sets it (before any node opens), is
// called by progressOf before it syncs a replica's log: a test parks the
// report there.
var beforeProgressSync func()

// checkNotRestored refuses the start of a data dir one of whose replicas
// holds less than a peer remembers it reported (see above). It runs before
// any replica opens and changes nothing.
func (c *Cluster) checkNotRestored() error {
	type held struct{ name, dir, inc string }
	var reps []held
	ents, err := os.ReadDir(filepath.Join(c.cfg.DataDir, "cluster"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cluster: data dir: %w", err)
	}
	for _, e := range ents {
		dir := groupDir(c.cfg.DataDir, e.Name())
		if !e.IsDir() {
			continue
		}
		if inc, _ := readIncarnation(dir); inc != "" {
			reps = append(reps, held{e.Name(), dir, inc})
		}
	}
	if len(reps) == 0 {
		return nil
	}
	said := c.startAnswers(c.knownPeers())
	var behind []string
	for _, r := range reps {
		var most uint64
		var who string
		for _, p := range said {
			if p.err != nil || p.hi.Node == c.cfg.NodeID {
				continue
			}
			for _, mk := range p.hi.Progress {
				if mk.Group == r.name && mk.Incarnation == r.inc && mk.Index > most {
					most, who = mk.Index, p.hi.Node
				}
			}
		}
		if most == 0 {
			continue
		}
		kept, err := keptIndex(r.dir)
		if err != nil {
			continue // openReplica reads it again, and refuses it as unreadable
		}
		if kept < most {
			behind = append(behind, fmt.Sprintf("group %s: this node's replica in %s holds entries up to index %d, but node %s remembers it applied up to index %d (replica incarnation %s)",
				r.name, r.dir, kept, who, most, r.inc))
		}
	}
	if len(behind) == 0 {
		return nil
	}
	// A copy started beside the running node is better told as such.
	if err := c.checkSingleProcess(); err != nil {
		return err
	}
	return fmt.Errorf("cluster: %s. The data dir was restored from an older backup (or an old copy was put back) while the cluster went on: "+
		"its replicas lack entries they acknowledged, which counted in commit quorums, and started they could help elect a replica that lacks acknowledged writes. "+
		"The node does not start and nothing in its data dir is changed. If the data dir this node ran with last still exists, put it back; otherwise %s",
		strings.Join(behind, "; "), replaceSteps(c.cfg.NodeID))
}

// knownPeers are the nodes a restarting node can ask before its metadata
// replica opens: its --cluster-peers and the members of the map its data
// dir holds (storedMap), itself left out.
func (c *Cluster) knownPeers() []Member {
	addrs := map[string]string{} // cluster address -> node id
	for _, p := range c.cfg.Peers {
		addrs[p.ClusterAddr] = p.ID
	}
	if m := storedMap(c.cfg.DataDir); m != nil {
		for _, mb := range m.Members {
			addrs[mb.ClusterAddr] = mb.ID
		}
	}
	var peers []Member
	for addr, id := range addrs {
		if id != c.cfg.NodeID && addr != c.cfg.Advertise && addr != c.cfg.ClusterAddr {
			peers = append(peers, Member{ID: id, ClusterAddr: addr})
		}
	}
	return peers
}

// keptIndex is the last index the stopped replica in dir holds: its log's
// last complete entry, or its newest snapshot's (any it kept) when
// higher. It reads without changing anything.
func keptIndex(dir string) (uint64, error) {
	ri, err := wal.InspectRaftStore(dir)
	if err != nil {
		return 0, err
	}
	kept := ri.Log.Last
	snaps := filepath.Join(dir, "snapshots")
	ents, _ := os.ReadDir(snaps)
	for _, e := range ents {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		var meta struct{ Index uint64 }
		if b, err := os.ReadFile(filepath.Join(snaps, e.Name(), "meta.json")); err == nil && json.Unmarshal(b, &meta) == nil {
			kept = max(kept, meta.Index)
		}
	}
	return kept, nil
}
