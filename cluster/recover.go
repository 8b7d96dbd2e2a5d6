package cluster

import (
	"cmp"
	"context"
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
	"time"

	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/wal"
	"github.com/tally-ml/tally/wal/walfs"
)

// Recovering from a quorum lost for good (`tally cluster recover`,
// DESIGN.md "Recovering from a lost quorum"). Offline, on each surviving
// node's data dir: every group the node holds (the metadata group and its
// data groups) gets a Raft configuration of its surviving replicas
// (raft.RecoverCluster: everything in the replica's log counts as
// committed, taken into a snapshot), and the data dir records the intent
// (recoverFile). The map itself changes at the next start, as a "recover"
// command through the metadata group (finishRecovery): when several
// survivors recover, their logs may differ past what they share, and only
// a change ordered by Raft leaves them the same map.

// ErrRecoverArgs wraps a recovery refused for its arguments (a kept node
// that is no member, this node not kept, every member kept): nothing was
// changed.
var ErrRecoverArgs = errors.New("recover")

// RecoverOptions say which stopped node's data dir to recover, and to
// which nodes.
type RecoverOptions struct {
	DataDir string
	// Keep are the surviving members (this node among them); every other
	// member is lost for good.
	Keep []string
	// AcceptLoss recreates, empty, the groups no kept node holds a replica
	// of (their events are lost); without it they refuse the recovery.
	AcceptLoss bool
	// Repo is the node's feature repo: a data group's snapshot is rebuilt
	// by applying its log to a store of the repo's views.
	Repo   *features.Repo
	LogOut io.Writer // Raft's own log; nil: discarded
}

// RecoveryPlan is what Recover does (or, planned, would do) to a node's
// data dir.
type RecoveryPlan struct {
	Node       string   `json:"node"`
	Cluster    string   `json:"cluster"`
	MapVersion uint64   `json:"mapVersion"` // of the map the recovery starts from
	Keep       []string `json:"keep"`
	Drop       []string `json:"drop"` // the members lost for good
	// Groups are the metadata group ("meta"), then every data group.
	Groups []GroupRecovery `json:"groups"`
	// Lost are the groups no kept node holds: recreated empty (AcceptLoss).
	Lost []int `json:"lost,omitempty"`
	Map  *Map  `json:"map"` // the map after the recovery
}

// GroupRecovery is what a recovery does to one group.
type GroupRecovery struct {
	Name string `json:"name"` // "meta", "g0", "g1", ...
	// Replicas and NewReplicas are a data group's replicas in the map
	// before and after.
	Replicas    []string `json:"replicas,omitempty"`
	NewReplicas []string `json:"newReplicas,omitempty"`
	// Here: this node holds a replica of the group, whose Raft voters go
	// from Voters to NewVoters; every entry of its log up to LastIndex
	// counts as committed.
	Here      bool     `json:"here"`
	Voters    []string `json:"voters,omitempty"`
	NewVoters []string `json:"newVoters,omitempty"`
	LastIndex uint64   `json:"lastIndex,omitempty"`
}

// PlanRecovery reads a stopped node's data dir and says what Recover would
// do, changing nothing. The caller holds the data dir's lock
// (store.LockDataDir): a running node must not be recovered.
func PlanRecovery(o RecoverOptions) (*RecoveryPlan, error) {
	p, _, err := planRecovery(o)
	return p, err
}

// Recover rewrites the Raft configuration of every group the stopped node
// of o.DataDir holds to the kept nodes, and records the map change its
// next start makes. It is safe to run again (on the same arguments) after
// a failure. The caller holds the data dir's lock.
func Recover(o RecoverOptions) (*RecoveryPlan, error) {
	p, m, err := planRecovery(o)
	if err != nil {
		return nil, err
	}
	logOut := cmp.Or[io.Writer](o.LogOut, io.Discard)
	for _, gr := range p.Groups {
		if !gr.Here {
			continue
		}
		var fsm raft.FSM = newMetaFSM()
		if gr.Name != "meta" {
			g, _ := strconv.Atoi(strings.TrimPrefix(gr.Name, "g"))
			owns := m.Owns(g)
			if fsm, err = newGroupFSM(func() (*store.Store, error) { return store.New(o.Repo, store.Options{Owns: owns}) }); err != nil {
				return nil, err
			}
		}
		if err := recoverGroup(o.DataDir, gr.Name, p.Node, fsm, serversOf(p.Map, gr.NewVoters, gr.Name == "meta"), logOut); err != nil {
			return nil, err
		}
	}
	b, _ := json.Marshal(recoveryIntent{Version: p.MapVersion, Keep: p.Keep, AcceptLoss: o.AcceptLoss})
	if err := walfs.WriteFile(walfs.OS, recoverPath(o.DataDir), append(b, '\n')); err != nil {
		return nil, fmt.Errorf("recover: record the map change for the next start: %w", err)
	}
	return p, nil
}

// planRecovery is PlanRecovery; it also returns the map before.
func planRecovery(o RecoverOptions) (*RecoveryPlan, *Map, error) {
	id, err := readIdentity(o.DataDir)
	if err != nil {
		return nil, nil, err
	}
	metaSM := newMetaFSM()
	metaConf, metaLast, err := readGroup(groupDir(o.DataDir, "meta"), metaSM)
	if err != nil {
		return nil, nil, fmt.Errorf("recover: read the metadata group: %w", err)
	}
	m, _ := metaSM.current()
	if m == nil {
		return nil, nil, fmt.Errorf("recover: %s holds no cluster map (the node never joined a cluster): nothing to recover", o.DataDir)
	}
	if o.Repo != nil {
		if err := sameSchema(m, o.Repo); err != nil {
			return nil, nil, fmt.Errorf("recover: pass the repo the node runs (--repo): %w", err)
		}
	}
	keep := slices.Clone(o.Keep)
	slices.Sort(keep)
	keep = slices.Compact(keep)
	if !slices.Contains(keep, id.Node) {
		return nil, nil, fmt.Errorf("%w: this data dir is node %s's, which is not kept (--keep %s): run the recovery on each kept node's data dir, and keep that node",
			ErrRecoverArgs, id.Node, strings.Join(keep, ","))
	}
	next, err := recovered(m, keep, o.AcceptLoss)
	if err != nil {
		return nil, nil, err
	}
	if next == nil {
		return nil, nil, fmt.Errorf("%w: --keep names every member (%s): a cluster that lost no node needs no recovery; start its nodes", ErrRecoverArgs, strings.Join(keep, ","))
	}
	p := &RecoveryPlan{Node: id.Node, Cluster: m.ID, MapVersion: m.Version, Keep: keep, Lost: lostGroups(m, keep), Map: next}
	for _, mb := range m.Members {
		if !slices.Contains(keep, mb.ID) {
			p.Drop = append(p.Drop, mb.ID)
		}
	}
	p.Groups = append(p.Groups, GroupRecovery{Name: "meta", Here: true, Voters: voterIDs(metaConf), NewVoters: keep, LastIndex: metaLast})
	for g, gi := range m.Groups {
		gr := GroupRecovery{Name: "g" + strconv.Itoa(g), Replicas: gi.Replicas, NewReplicas: next.Groups[g].Replicas}
		if slices.Contains(gi.Replicas, id.Node) {
			conf, last, err := readGroup(groupDir(o.DataDir, gr.Name), nil)
			if err != nil {
				return nil, nil, fmt.Errorf("recover: read group %d: %w", g, err)
			}
			gr.Here, gr.Voters, gr.NewVoters, gr.LastIndex = true, voterIDs(conf), gr.NewReplicas, last
			if err := checkVoters(g, id.Node, gr.Voters, gi.Replicas, keep); err != nil {
				return nil, nil, err
			}
		}
		p.Groups = append(p.Groups, gr)
	}
	return p, m, nil
}

// checkVoters refuses to recover group g when this node's replica of it is
// not a voter, or when its kept voters are not its kept replicas in the
// map: a replica move was stopped half-way, and a configuration built from
// the map could count a replica that never received the log.
func checkVoters(g int, self string, voters, replicas, keep []string) error {
	kept := func(ids []string) []string {
		return slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return !slices.Contains(keep, id) })
	}
	if !slices.Contains(voters, self) {
		return fmt.Errorf("recover: this node (%s) holds a replica of group %d but is not a voter of it (voters: %s): a replica move to it was stopped half-way, and its log may lack acknowledged writes; nothing was changed",
			self, g, strings.Join(voters, ", "))
	}
	if !sameSet(kept(voters), kept(replicas)) {
		return fmt.Errorf("recover: group %d's Raft voters here (%s) and its replicas in the map (%s) disagree about the kept nodes: a replica move was stopped half-way; nothing was changed",
			g, strings.Join(voters, ", "), strings.Join(replicas, ", "))
	}
	return nil
}

// recovered is map m once every member not in keep is lost for good: they
// are no longer members (and are listed as removed: started again over
// their old data they refuse to start), each group keeps its kept replicas
// and, with acceptLoss, a group with none is placed on the kept nodes
// empty (its replicas bootstrap it). Without acceptLoss such groups refuse
// the change. nil when nothing changes (every member kept).
func recovered(m *Map, keep []string, acceptLoss bool) (*Map, error) {
	if len(keep) == 0 {
		return nil, fmt.Errorf("%w: no node to keep", ErrRecoverArgs)
	}
	for _, id := range keep {
		if m.Member(id) == nil {
			var ids []string
			for _, mb := range m.Members {
				ids = append(ids, mb.ID)
			}
			return nil, fmt.Errorf("%w: --keep %s is not a member of the cluster (its members: %s); nothing was changed", ErrRecoverArgs, id, strings.Join(ids, ", "))
		}
	}
	lost := lostGroups(m, keep)
	if len(lost) > 0 && !acceptLoss {
		return nil, fmt.Errorf("recover: groups %v have no replica on a kept node (%s): their events are on the lost nodes only. Bring back a node holding them and keep it, or pass --accept-data-loss to recreate these groups EMPTY on the kept nodes: DATA LOSS, every event of their keys is gone; nothing was changed",
			lost, strings.Join(keep, ", "))
	}
	kept := func(id string) bool { return slices.Contains(keep, id) }
	if !slices.ContainsFunc(m.Members, func(mb Member) bool { return !kept(mb.ID) }) {
		return nil, nil
	}
	next := m.clone()
	for _, mb := range m.Members {
		if !kept(mb.ID) && !slices.Contains(next.Removed, mb.ID) {
			next.Removed = append(next.Removed, mb.ID)
		}
	}
	next.Members = slices.DeleteFunc(next.Members, func(mb Member) bool { return !kept(mb.ID) })
	sorted := slices.Sorted(slices.Values(keep))
	for i := range next.Groups {
		g := &next.Groups[i]
		reps := slices.DeleteFunc(slices.Clone(g.Replicas), func(id string) bool { return !kept(id) })
		switch {
		case len(reps) == len(g.Replicas):
			continue
		case len(reps) > 0:
			g.Replicas, g.Changed = reps, true
		default:
			// Placed as NewMap places a group; never changed, so its new
			// replicas bootstrap it together.
			g.Replicas, g.Changed = nil, false
			for r := range min(m.Replicas, len(sorted)) {
				g.Replicas = append(g.Replicas, sorted[(g.ID+r)%len(sorted)])
			}
		}
	}
	return next, nil
}

// lostGroups are the groups of m no node of keep holds a replica of.
func lostGroups(m *Map, keep []string) []int {
	var lost []int
	for _, g := range m.Groups {
		if !slices.ContainsFunc(g.Replicas, func(id string) bool { return slices.Contains(keep, id) }) {
			lost = append(lost, g.ID)
		}
	}
	return lost
}

// serversOf is the Raft configuration of ids (members of m): every one a
// voter, except, for the metadata group, past the first five (as a new
// cluster's metadata group has them).
func serversOf(m *Map, ids []string, meta bool) raft.Configuration {
	var conf raft.Configuration
	for i, id := range ids {
		s := raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(m.Member(id).ClusterAddr), Suffrage: raft.Voter}
		if meta && i >= 5 {
			s.Suffrage = raft.Nonvoter
		}
		conf.Servers = append(conf.Servers, s)
	}
	return conf
}

func voterIDs(conf raft.Configuration) []string {
	var ids []string
	for _, s := range conf.Servers {
		if s.Suffrage == raft.Voter {
			ids = append(ids, string(s.ID))
		}
	}
	return ids
}

// recoverGroup forces conf on this node's (self's) replica of group name
// with raft.RecoverCluster: the replica's snapshot and every entry of its
// log become a new snapshot whose configuration is conf.
func recoverGroup(dataDir, name, self string, fsm raft.FSM, conf raft.Configuration, logOut io.Writer) error {
	logs, snaps, err := openStores(name, groupDir(dataDir, name), wal.SyncAlways, logOut)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	_, trans := raft.NewInmemTransport("")
	err = raft.RecoverCluster(raftConfig(name, self, defaultTiming(), logOut), fsm, archiveKeeper{logs}, logs, snaps, trans, conf)
	if cerr := logs.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("recover: group %s: %w", name, err)
	}
	return nil
}

// archiveKeeper is a replica's log as raft.RecoverCluster sees it. Once
// the recovery's snapshot holds every entry, RecoverCluster deletes the
// whole log, and the RaftStore would start it over (as after installing a
// leader's snapshot), deleting the group's event archive (historical
// features). The log agrees with the snapshot here, so every entry but
// the last is hidden as a compaction hides them, keeping the segments
// (KeepCompacted); the last, at the snapshot's index, stays for Raft (it
// reads configuration entries only past the snapshot's index).
type archiveKeeper struct{ *wal.RaftStore }

func (a archiveKeeper) DeleteRange(lo, hi uint64) error {
	if hi <= lo {
		return nil
	}
	return a.RaftStore.DeleteRange(lo, hi-1)
}

// readGroup reads a stopped replica's Raft state in dir without changing
// anything: its latest configuration (committed or not, as Raft would
// use it) and last index; with fsm, it restores the newest snapshot into
// fsm and applies the log's commands after it, as RecoverCluster does.
func readGroup(dir string, fsm raft.FSM) (raft.Configuration, uint64, error) {
	var conf raft.Configuration
	var last uint64
	snap, err := newestSnapshot(filepath.Join(dir, "snapshots"))
	if err != nil {
		return conf, 0, err
	}
	if snap != nil {
		conf, last = snap.Configuration, snap.Index
		if fsm != nil {
			f, err := os.Open(filepath.Join(dir, "snapshots", snap.ID, "state.bin"))
			if err != nil {
				return conf, 0, err
			}
			if err := fsm.Restore(f); err != nil {
				return conf, 0, fmt.Errorf("snapshot %s: %w", snap.ID, err)
			}
		}
	}
	a, err := wal.OpenArchive(nil, filepath.Join(dir, "log"))
	if err != nil {
		if snap == nil {
			return conf, 0, fmt.Errorf("%s holds no Raft state: %w", dir, err)
		}
		return conf, last, nil
	}
	err = a.Replay(last+1, func(index uint64, b []byte) error {
		typ, data, err := wal.DecodeRaftEntry(b, index)
		if err != nil {
			return err
		}
		switch typ {
		case raft.LogConfiguration:
			conf = raft.DecodeConfiguration(data)
		case raft.LogCommand:
			if fsm != nil {
				fsm.Apply(&raft.Log{Index: index, Type: typ, Data: data})
			}
		}
		last = index
		return nil
	})
	return conf, last, err
}

// newestSnapshot is the snapshot in dir (a raft.FileSnapshotStore's) Raft
// restores first, or nil; it reads its metadata only.
func newestSnapshot(dir string) (*raft.SnapshotMeta, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var newest *raft.SnapshotMeta
	for _, e := range ents {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "meta.json"))
		if err != nil {
			continue // as Raft: an unreadable snapshot is skipped
		}
		var s raft.SnapshotMeta
		if json.Unmarshal(b, &s) != nil {
			continue
		}
		if newest == nil || cmp.Or(cmp.Compare(s.Term, newest.Term), cmp.Compare(s.Index, newest.Index), strings.Compare(s.ID, newest.ID)) > 0 {
			newest = &s
		}
	}
	return newest, nil
}

// readIdentity is the node and cluster ids of a cluster node's data dir.
func readIdentity(dataDir string) (identity, error) {
	var id identity
	b, err := os.ReadFile(identityPath(dataDir))
	if err != nil {
		return id, fmt.Errorf("recover: %s holds no cluster node's identity (%w): point --data-dir at a cluster node's data dir", dataDir, err)
	}
	if err := json.Unmarshal(b, &id); err != nil || id.Node == "" {
		return id, fmt.Errorf("recover: %s is not a node identity (%q)", identityPath(dataDir), b)
	}
	return id, nil
}

// recoverFile is where a recovered data dir records the map change its
// next start makes (finishRecovery); once made, the record moves to
// recoveredFile, which says which keep set the node was recovered with
// (its hello answers either: checkRecoveryPeers) until a next recovery.
const (
	recoverFile   = "RECOVER"
	recoveredFile = "RECOVERED"
)

func recoverPath(dataDir string) string   { return filepath.Join(dataDir, "cluster", recoverFile) }
func recoveredPath(dataDir string) string { return filepath.Join(dataDir, "cluster", recoveredFile) }

// recoveryIntent is recoverFile's content: the "recover" command, and the
// map version it was planned on (it applies to that version only).
type recoveryIntent struct {
	Version    uint64   `json:"version"`
	Keep       []string `json:"keep"` // sorted
	AcceptLoss bool     `json:"acceptLoss,omitempty"`
	// Finished: the map change was made (read from recoveredFile).
	Finished bool `json:"finished,omitempty"`
}

// readRecoveryIntent is the data dir's pending recovery, or nil.
func readRecoveryIntent(dataDir string) (*recoveryIntent, error) {
	return readRecoveryFile(recoverPath(dataDir))
}

// readFinishedRecovery is the data dir's last finished recovery, or nil.
// An unreadable record is nil: it only answers the peers' hellos.
func readFinishedRecovery(dataDir string) *recoveryIntent {
	in, err := readRecoveryFile(recoveredPath(dataDir))
	if err != nil {
		return nil
	}
	if in != nil {
		in.Finished = true
	}
	return in
}

func readRecoveryFile(path string) (*recoveryIntent, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	var in recoveryIntent
	if err := json.Unmarshal(b, &in); err != nil || len(in.Keep) == 0 {
		return nil, fmt.Errorf("cluster: %s is not a recovery (%q): restore it, or run tally cluster recover again", path, b)
	}
	slices.Sort(in.Keep)
	return &in, nil
}

// finishRecovery makes the map change of a recovery (in) once the node
// runs: it proposes the "recover" command, on the map version it was
// planned on, until the map moved past that version (this proposal or
// another survivor's applied: a second one is refused as planned on an
// older map), then moves the recovery's file to recoveredFile.
func (c *Cluster) finishRecovery(in *recoveryIntent) {
	defer c.wg.Done()
	backoff := 200 * time.Millisecond
	for {
		m, changed := c.metaSM.current()
		if m.Version != in.Version {
			if err := os.Rename(recoverPath(c.cfg.DataDir), recoveredPath(c.cfg.DataDir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				c.logger.Warn("cluster: recording the finished recovery", "err", err)
			}
			done := *in
			done.Finished = true
			c.recovery.Store(&done)
			c.logger.Info("cluster: recovery finished", "kept", in.Keep, "map_version", m.Version)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := c.proposeMeta(ctx, metaCommand{Op: "recover", Version: in.Version, Keep: in.Keep, AcceptLoss: in.AcceptLoss})
		cancel()
		if err != nil {
			c.logger.Warn("cluster: the recovery's map change", "err", err)
		}
		select {
		case <-c.closing:
			return
		case <-changed:
		case <-time.After(backoff):
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

// checkRecoveryPeers refuses the start of a recovered node (in: its
// pending recovery) while another member of the map the recovery was
// planned on answers and disagrees with it, before the metadata replica
// opens (nothing written):
//
//   - a member the recovery drops answers under its id: it is not lost.
//     Started, the recovered node would form a cluster of its own (its
//     groups' voters are the kept nodes) beside the running one, and its
//     recovery, proposed to the running nodes' metadata group, would
//     remove them;
//   - any member answers with a recovery (pending or finished) of another
//     keep set: the survivors were recovered with different --keep, and
//     two of those sets may each hold a quorum of their own (n0 alone, and
//     n1 with n2): two leaders of one group, each acknowledging writes the
//     other never sees;
//   - a kept node answers without a recovery: it was not recovered and
//     still counts the dropped members as voters.
//
// The members are asked in rounds until each answered or peerCheckTimeout
// passed, so that survivors started together see each other (the start's
// round, askAtStart, asks so with a recovery pending). A member
// that stays silent is taken as the recovery says (lost, or a kept node
// down for now): a kept node that starts later makes this check itself
// and is refused if it disagrees, and a node whose keep set needs a
// silent kept node for a quorum elects nothing before that node starts.
func (c *Cluster) checkRecoveryPeers(in *recoveryIntent) error {
	m := storedMap(c.cfg.DataDir)
	if m == nil {
		return nil
	}
	var others []Member
	for _, mb := range m.Members {
		if mb.ID != c.cfg.NodeID {
			others = append(others, mb)
		}
	}
	var differ, notRecovered, answer []string
	for _, p := range c.startAnswers(others) {
		if p.err != nil || p.hi.Node != p.id {
			continue
		}
		kept := slices.Contains(in.Keep, p.id)
		switch r := p.hi.Recovery; {
		case r != nil && !slices.Equal(r.Keep, in.Keep):
			state := "pending"
			if r.Finished {
				state = "finished"
			}
			differ = append(differ, fmt.Sprintf("%s was recovered with --keep %s (%s)", p.id, strings.Join(r.Keep, ","), state))
		case r == nil && kept:
			notRecovered = append(notRecovered, p.id)
		case !kept:
			answer = append(answer, fmt.Sprintf("%s at %s (cluster map version %d)", p.id, p.addr, p.hi.MapVersion))
		}
	}
	mine := strings.Join(in.Keep, ",")
	switch {
	case len(differ) > 0:
		slices.Sort(differ)
		return fmt.Errorf("cluster: the survivors were recovered with different --keep sets: this node (%s) with --keep %s, but %s. "+
			"Started so, two sets of nodes could each count a quorum of their own: two leaders of a group, each acknowledging writes the other never sees. "+
			"Nothing was written. Choose the surviving nodes, run `tally cluster recover --data-dir <its data dir> --keep <those ids>` with that same --keep on each of them, "+
			"with every node stopped, then start them (a node left out is replaced: a new --node-id, --cluster-join, add-node)",
			c.cfg.NodeID, mine, strings.Join(differ, "; "))
	case len(notRecovered) > 0:
		slices.Sort(notRecovered)
		return fmt.Errorf("cluster: this data dir was recovered (tally cluster recover --keep %s), but kept nodes answer without a recovery: %s. "+
			"Not recovered, they still count the dropped members as voters of their groups, and their logs are not taken as committed as this node's is. "+
			"Nothing was written. Stop them and run `tally cluster recover --data-dir <its data dir> --keep %s` on each, then start them and this node",
			mine, strings.Join(notRecovered, ", "), mine)
	case len(answer) > 0:
		slices.Sort(answer)
		return fmt.Errorf("cluster: this data dir was recovered (tally cluster recover --keep %s) as if every other member were lost, but members it drops answer: %s. A node that answers is not lost: "+
			"started now, this node would form a cluster of its own beside the running one (its groups' voters are the kept nodes only), and its recovery would remove the running nodes from their own map. "+
			"If those nodes are to be dropped, stop them for good, then start this node again. Otherwise leave the running cluster as it is; this node's groups were rewritten: %s",
			mine, strings.Join(answer, "; "), replaceSteps(c.cfg.NodeID))
	}
	return nil
}
