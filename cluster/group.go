package cluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/wal"
)

// replica is this node's replica of one Raft group: the metadata group or
// a data group.
type replica struct {
	name string // "meta" or "g<N>"
	// incarnation is random per replica directory (restored.go): the
	// replica's progress is reported under it.
	incarnation string
	raft        *raft.Raft
	logs        *wal.RaftStore
	trans       *raft.NetworkTransport
	// logMu keeps close from closing the log while the progress report
	// syncs it (progressOf, read-locked): a Sync of a closed log fails
	// and breaks it. closed is set under it, once close begins.
	logMu  sync.RWMutex
	closed bool
}

// raftTiming is the Raft timing of every group (see DESIGN.md).
type raftTiming struct {
	Heartbeat, Election, Lease, Commit time.Duration
	SnapshotThreshold, TrailingLogs    uint64
	SnapshotInterval                   time.Duration
}

func defaultTiming() raftTiming {
	return raftTiming{Heartbeat: time.Second, Election: time.Second, Lease: 500 * time.Millisecond, Commit: 20 * time.Millisecond,
		// Raft compacts its view of the log after a snapshot (a follower
		// that falls further behind is sent the snapshot), but the segments
		// stay on disk as the group's event archive (KeepCompacted).
		SnapshotThreshold: 8192, TrailingLogs: 4096, SnapshotInterval: 30 * time.Second}
}

// openReplica opens (or creates) the replica called name in dir, over
// trans, with fsm; on first start with an empty log it bootstraps with
// voters (the same configuration on every replica: raft accepts it), or,
// with none, waits for a leader to add it.
func openReplica(name, dir, self string, voters []raft.Server, fsm raft.FSM, trans *raft.NetworkTransport, tm raftTiming, sync wal.SyncPolicy, logOut io.Writer) (*replica, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logs, snaps, err := openStores(name, dir, sync, logOut)
	if err != nil {
		return nil, errUnreadable(name, dir, self, err)
	}
	if err := readable(logs, snaps); err != nil {
		logs.Close()
		return nil, errUnreadable(name, dir, self, err)
	}
	// After the checks, so that a replica refused as unreadable is left
	// as it was (TestOpenReplicaNamesACorruptSealedSegment); before Raft
	// writes or acknowledges anything in it.
	inc, err := ensureIncarnation(dir)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("group %s: %w", name, err)
	}
	r, err := raft.NewRaft(raftConfig(name, self, tm, logOut), fsm, logs, logs, snaps, trans)
	if err != nil {
		// What NewRaft reads: the term and vote, the log, the newest
		// snapshot that restores (none restoring is its error).
		logs.Close()
		return nil, errUnreadable(name, dir, self, err)
	}
	has, err := raft.HasExistingState(logs, logs, snaps)
	if err != nil {
		r.Shutdown()
		logs.Close()
		return nil, err
	}
	if !has && len(voters) > 0 {
		f := r.BootstrapCluster(raft.Configuration{Servers: voters})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			r.Shutdown()
			logs.Close()
			return nil, fmt.Errorf("group %s: bootstrap: %w", name, err)
		}
	}
	return &replica{name: name, incarnation: inc, raft: r, logs: logs, trans: trans}, nil
}

// openStores opens group name's Raft log (which keeps its compacted
// segments: the group's event archive) and snapshot store in dir.
func openStores(name, dir string, sync wal.SyncPolicy, logOut io.Writer) (*wal.RaftStore, *raft.FileSnapshotStore, error) {
	logs, err := wal.OpenRaftStore(dir, wal.Options{Sync: sync, SegmentSize: 16 << 20, Compress: true})
	if err != nil {
		return nil, nil, fmt.Errorf("group %s: raft log: %w", name, err)
	}
	logs.KeepCompacted = true
	snaps, err := raft.NewFileSnapshotStore(dir, 2, logOut)
	if err != nil {
		logs.Close()
		return nil, nil, fmt.Errorf("group %s: snapshots: %w", name, err)
	}
	return logs, snaps, nil
}

// raftConfig is the Raft configuration of this node's (self's) replica of
// group name.
func raftConfig(name, self string, tm raftTiming, logOut io.Writer) *raft.Config {
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(self)
	conf.HeartbeatTimeout, conf.ElectionTimeout, conf.LeaderLeaseTimeout, conf.CommitTimeout = tm.Heartbeat, tm.Election, tm.Lease, tm.Commit
	conf.SnapshotThreshold, conf.TrailingLogs, conf.SnapshotInterval = tm.SnapshotThreshold, tm.TrailingLogs, tm.SnapshotInterval
	conf.MaxAppendEntries = 256
	conf.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft-" + name, Level: hclog.Warn, Output: logOut})
	return conf
}

// readable reads every log entry raft.NewRaft reads at start (those after
// the newest snapshot): NewRaft panics on one it cannot read, so a corrupt
// entry is found here first, and refused with errUnreadable. Costs a second
// read of those entries at start (at most SnapshotThreshold+TrailingLogs
// of them, when the last snapshot is recent).
func readable(logs *wal.RaftStore, snaps raft.SnapshotStore) error {
	last, err := logs.LastIndex()
	if err != nil {
		return err
	}
	var from uint64
	if ss, err := snaps.List(); err == nil && len(ss) > 0 {
		from = ss[0].Index
	}
	var l raft.Log
	for i := from + 1; i <= last; i++ {
		if err := logs.GetLog(i, &l); err != nil {
			return fmt.Errorf("log entry %d: %w", i, err)
		}
	}
	return nil
}

// errUnreadable refuses to start node self's replica of group name whose
// Raft state in dir cannot be read, saying what is wrong (err) and how to replace the node. Its
// log, term and vote are what this node promised the group's other
// replicas: repaired in place (entries cut, an older stable file put
// back) it could vote again in a term or forget entries it counted in a
// quorum, and lose acknowledged writes. So nothing in it is changed, and
// the way back is the one of a node that lost its data dir: a new id.
// For a corrupt log entry it also names the offline repair (RepairReplica:
// entries the replica's snapshot holds are moved aside, nothing cut).
func errUnreadable(name, dir, self string, err error) error {
	var ce *wal.CorruptionError
	sep := "; "
	switch {
	case errors.As(err, &ce):
		err = fmt.Errorf("the log segment %s is corrupt at offset %d (entry %d): %s",
			filepath.Join(dir, "log", ce.Segment), ce.Offset, ce.Index, ce.Reason)
		sep = fmt.Sprintf(". With the node stopped, `tally admin wal repair --data-dir %s --group %s` moves aside corrupt entries the replica's newest snapshot holds, "+
			"keeping every entry after it, and changes nothing when it would have to cut entries after the snapshot (but for a group's only replica, with --accept-data-loss). Otherwise, ",
			filepath.Dir(filepath.Dir(dir)), name)
	case errors.Is(err, wal.ErrCorruptStable):
		err = fmt.Errorf("%s: %w", filepath.Join(dir, "stable"), wal.ErrCorruptStable)
	}
	return fmt.Errorf("cluster: group %s: this node's replica in %s cannot be read: %v. "+
		"The node does not start and its files are left as they are%s%s",
		name, dir, err, sep, replaceAdvice(self))
}

// replaceAdvice is errUnreadable's way back for node self.
func replaceAdvice(self string) string {
	return "do not repair or edit them in place (a replica that forgets its vote or entries it acknowledged can lose acknowledged writes). " + replaceSteps(self)
}

// replaceSteps is how node self is replaced under a new id.
func replaceSteps(self string) string {
	return "Replace the node: stop it, move its data dir aside (keep it: it is the only copy of any group with one replica), start it over an empty data dir under a new --node-id with a cluster address not in use and --cluster-join, " +
		"run `tally cluster add-node --id <new id> --cluster-addr <address>`, then `tally cluster remove-node " + self + "` (with two or more replicas per group, the others hold every acknowledged write)"
}

// UnreadableReplica is, for a reader of a stopped node's data dir (tally
// admin inspect), what the node's start would answer about its replica of
// group, whose files could not be read (err): for a corrupt log record or
// stable file, errUnreadable's refusal, naming the node id recorded in
// dataDir; any other error as it is.
func UnreadableReplica(dataDir, group string, err error) error {
	var ce *wal.CorruptionError
	if !errors.As(err, &ce) && !errors.Is(err, wal.ErrCorruptStable) {
		return err
	}
	self := "<this node's id>"
	if id, ierr := readIdentity(dataDir); ierr == nil {
		self = id.Node
	}
	return errUnreadable(group, groupDir(dataDir, group), self, err)
}

// close stops the replica's Raft and closes its log, after a progress
// report's Sync of it under way.
func (r *replica) close() error {
	r.logMu.Lock()
	r.closed = true
	r.logMu.Unlock()
	err := r.raft.Shutdown().Error()
	r.trans.Close()
	return errors.Join(err, r.logs.Close())
}

// groupDir is where group name keeps its log and snapshots.
func groupDir(dataDir, name string) string { return filepath.Join(dataDir, "cluster", name) }
