package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func raftLog(i, term uint64) *raft.Log {
	return &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("cmd-%d-%d", i, term)),
		Extensions: []byte{byte(i)}, AppendedAt: time.Unix(1700000000, int64(i))}
}

func storeRange(t *testing.T, s *RaftStore, from, to, term uint64) {
	t.Helper()
	for b := from; b <= to; b += 10 { // batches: one Append stays in one segment
		var logs []*raft.Log
		for i := b; i <= min(to, b+9); i++ {
			logs = append(logs, raftLog(i, term))
		}
		if err := s.StoreLogs(logs); err != nil {
			t.Fatalf("store [%d, %d]: %v", b, min(to, b+9), err)
		}
	}
}

func checkBounds(t *testing.T, s *RaftStore, first, last uint64) {
	t.Helper()
	f, _ := s.FirstIndex()
	l, _ := s.LastIndex()
	if f != first || l != last {
		t.Fatalf("bounds [%d, %d], want [%d, %d]", f, l, first, last)
	}
}

func TestRaftStoreSemantics(t *testing.T) {
	mfs := newMemFS()
	opts := Options{FS: mfs, SegmentSize: 2048, Compress: true}
	s, err := OpenRaftStore("/raft", opts)
	if err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 0, 0)
	var got raft.Log
	if err := s.GetLog(1, &got); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("get from an empty store: %v", err)
	}
	storeRange(t, s, 1, 200, 1)
	checkBounds(t, s, 1, 200)
	if err := s.GetLog(77, &got); err != nil {
		t.Fatal(err)
	}
	want := raftLog(77, 1)
	if got.Index != 77 || got.Term != 1 || !bytes.Equal(got.Data, want.Data) || !bytes.Equal(got.Extensions, want.Extensions) || !got.AppendedAt.Equal(want.AppendedAt) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	// A suffix after a conflict, then the new leader's entries.
	if err := s.DeleteRange(150, 200); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 1, 149)
	storeRange(t, s, 150, 220, 2)
	// Entries stored over existing ones replace them and what follows.
	storeRange(t, s, 210, 215, 3)
	checkBounds(t, s, 1, 215)
	s.GetLog(212, &got)
	if got.Term != 3 {
		t.Fatalf("entry 212 has term %d after being replaced", got.Term)
	}
	// A prefix after a snapshot: hidden at once, segments deleted.
	if err := s.DeleteRange(1, 100); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 101, 215)
	if err := s.GetLog(100, &got); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("get of a deleted entry: %v", err)
	}
	if s.Log().FirstIndex() == 1 {
		t.Fatal("no segment deleted")
	}
	if err := s.DeleteRange(120, 130); err == nil {
		t.Fatal("deleted a range in the middle")
	}
	// Stable store.
	if err := s.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("node2")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get([]byte("missing")); err == nil || err.Error() != "not found" {
		t.Fatalf("get of a missing key: %v", err)
	}
	if v, err := s.GetUint64([]byte("missing")); v != 0 || err != nil {
		t.Fatalf("missing uint64: %d, %v", v, err)
	}
	s.Close()

	s, err = OpenRaftStore("/raft", opts)
	if err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 101, 215)
	if v, _ := s.GetUint64([]byte("CurrentTerm")); v != 3 {
		t.Fatalf("term %d after reopen", v)
	}
	if v, _ := s.Get([]byte("LastVoteCand")); string(v) != "node2" {
		t.Fatalf("vote %q after reopen", v)
	}
	// The whole log (a snapshot installed), then entries after a gap.
	if err := s.DeleteRange(101, 215); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 0, 0)
	storeRange(t, s, 500, 510, 4)
	checkBounds(t, s, 500, 510)
	storeRange(t, s, 600, 610, 5) // a gap: start over
	checkBounds(t, s, 600, 610)
	s.Close()
	s, _ = OpenRaftStore("/raft", opts)
	checkBounds(t, s, 600, 610)
	s.GetLog(605, &got)
	if got.Term != 5 || got.Index != 605 {
		t.Fatalf("got %+v", got)
	}
	s.Close()
}

// counterFSM folds every command into a count and an FNV hash: two
// replicas agree exactly when both match.
type counterFSM struct {
	mu   sync.Mutex
	n, h uint64
}

func (f *counterFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	h := fnv.New64a()
	binary.Write(h, binary.LittleEndian, f.h)
	h.Write(l.Data)
	f.n, f.h = f.n+1, h.Sum64()
	return f.n
}

func (f *counterFSM) state() (uint64, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n, f.h
}

func (f *counterFSM) Snapshot() (raft.FSMSnapshot, error) {
	n, h := f.state()
	return counterSnap{n, h}, nil
}

func (f *counterFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var b [16]byte
	if _, err := io.ReadFull(rc, b[:]); err != nil {
		return err
	}
	f.mu.Lock()
	f.n, f.h = binary.LittleEndian.Uint64(b[:]), binary.LittleEndian.Uint64(b[8:])
	f.mu.Unlock()
	return nil
}

type counterSnap struct{ n, h uint64 }

func (s counterSnap) Persist(sink raft.SnapshotSink) error {
	b := binary.LittleEndian.AppendUint64(nil, s.n)
	b = binary.LittleEndian.AppendUint64(b, s.h)
	if _, err := sink.Write(b); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (counterSnap) Release() {}

type raftNode struct {
	id    raft.ServerID
	dir   string
	store *RaftStore
	trans *raft.InmemTransport
	fsm   *counterFSM
	r     *raft.Raft
}

type raftCluster struct {
	t     *testing.T
	nodes []*raftNode
}

func (c *raftCluster) start(n *raftNode) {
	t := c.t
	var err error
	if n.store, err = OpenRaftStore(n.dir, Options{SegmentSize: 32 << 10, Compress: true}); err != nil {
		t.Fatal(err)
	}
	snaps, err := raft.NewFileSnapshotStore(n.dir, 2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	_, n.trans = raft.NewInmemTransportWithTimeout(raft.ServerAddress(n.id), time.Second)
	n.fsm = &counterFSM{}
	conf := raft.DefaultConfig()
	conf.LocalID = n.id
	conf.HeartbeatTimeout = 500 * time.Millisecond
	conf.ElectionTimeout = 500 * time.Millisecond
	conf.LeaderLeaseTimeout = 500 * time.Millisecond
	conf.CommitTimeout = 5 * time.Millisecond
	conf.SnapshotThreshold = 300
	conf.SnapshotInterval = 100 * time.Millisecond
	conf.TrailingLogs = 100
	conf.LogOutput = io.Discard
	if n.r, err = raft.NewRaft(conf, n.fsm, n.store, n.store, snaps, n.trans); err != nil {
		t.Fatal(err)
	}
	c.connect(n)
}

func (c *raftCluster) connect(n *raftNode) {
	for _, o := range c.nodes {
		if o != n && o.r != nil {
			n.trans.Connect(raft.ServerAddress(o.id), o.trans)
			o.trans.Connect(raft.ServerAddress(n.id), n.trans)
		}
	}
}

func (c *raftCluster) isolate(n *raftNode) {
	n.trans.DisconnectAll()
	for _, o := range c.nodes {
		if o != n && o.r != nil {
			o.trans.Disconnect(raft.ServerAddress(n.id))
		}
	}
}

func (c *raftCluster) stop(n *raftNode) {
	c.isolate(n)
	if err := n.r.Shutdown().Error(); err != nil {
		c.t.Fatal(err)
	}
	n.store.Close()
	n.r = nil
}

func (c *raftCluster) leader(except *raftNode) *raftNode {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range c.nodes {
			if n != except && n.r != nil && n.r.State() == raft.Leader {
				return n
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatal("no leader elected")
	return nil
}

func (c *raftCluster) apply(l *raftNode, from, to int) {
	futures := make([]raft.ApplyFuture, 0, to-from+1)
	for i := from; i <= to; i++ {
		futures = append(futures, l.r.Apply([]byte(fmt.Sprintf("event-%d", i)), 5*time.Second))
	}
	for i, f := range futures {
		if err := f.Error(); err != nil {
			c.t.Fatalf("apply %d: %v", from+i, err)
		}
	}
}

// converged waits until every running node has applied want commands with
// the same hash.
func (c *raftCluster) converged(want uint64) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		var states []string
		ok := true
		var h0 uint64
		for i, n := range c.nodes {
			if n.r == nil {
				continue
			}
			cnt, h := n.fsm.state()
			states = append(states, fmt.Sprintf("%s:%d/%x", n.id, cnt, h))
			if i == 0 || h0 == 0 {
				h0 = h
			}
			if cnt != want || h != h0 {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("replicas did not converge on %d commands: %v", want, states)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRaftClusterOverRaftStore runs a real three-node hashicorp/raft cluster
// whose log and stable stores are RaftStores on disk: elect, apply, lose a
// partitioned leader's uncommitted entries to the new leader's (a suffix
// DeleteRange), kill the leader, re-elect, compact after snapshots (prefix
// DeleteRange), and restart a node from its store: every replica ends with
// the same state.
func TestRaftClusterOverRaftStore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a raft cluster")
	}
	c := &raftCluster{t: t}
	for i := 0; i < 3; i++ {
		c.nodes = append(c.nodes, &raftNode{id: raft.ServerID(fmt.Sprintf("n%d", i)), dir: t.TempDir()})
	}
	for _, n := range c.nodes {
		c.start(n)
	}
	var servers []raft.Server
	for _, n := range c.nodes {
		servers = append(servers, raft.Server{ID: n.id, Address: raft.ServerAddress(n.id)})
	}
	if err := c.nodes[0].r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatal(err)
	}
	l1 := c.leader(nil)
	c.apply(l1, 1, 1000)
	c.converged(1000)

	// Partition the leader; what it appends alone is never committed.
	c.isolate(l1)
	for i := 0; i < 20; i++ {
		l1.r.Apply([]byte("lost"), 50*time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	staleLast, _ := l1.store.LastIndex()
	var stale raft.Log
	if err := l1.store.GetLog(staleLast, &stale); err != nil {
		t.Fatal(err)
	}
	l2 := c.leader(l1)
	c.apply(l2, 1001, 1200)
	c.connect(l1)
	c.converged(1200)
	var now raft.Log
	// Either the entry was overwritten by the new leader's, or (on a slow
	// machine) the old leader caught up by installing a snapshot, which
	// drops its whole log: both replace the uncommitted entry.
	err := l1.store.GetLog(staleLast, &now)
	if err != nil && !errors.Is(err, raft.ErrLogNotFound) || err == nil && now.Term == stale.Term {
		t.Fatalf("entry %d of the old leader: term %d before, %d after rejoining (%v): its uncommitted entries were not replaced", staleLast, stale.Term, now.Term, err)
	}

	// Kill the leader, re-elect, apply more.
	l2 = c.leader(nil)
	c.stop(l2)
	l3 := c.leader(l2)
	c.apply(l3, 1201, 1700)
	c.converged(1700)
	if first, _ := l3.store.FirstIndex(); first <= 1 {
		t.Fatalf("leader's log starts at %d: never compacted after snapshots", first)
	}

	// Restart the killed node from its store on disk.
	c.start(l2)
	c.converged(1700)
	c.apply(c.leader(nil), 1701, 1750)
	c.converged(1750)

	// Every replica's log holds the same entries where they overlap.
	var lo, hi uint64 = 0, ^uint64(0)
	for _, n := range c.nodes {
		f, _ := n.store.FirstIndex()
		l, _ := n.store.LastIndex()
		lo, hi = max(lo, f), min(hi, l)
	}
	for i := lo; i <= hi; i++ {
		var a, b raft.Log
		for j, n := range c.nodes {
			if err := n.store.GetLog(i, &b); err != nil {
				t.Fatalf("%s entry %d: %v", n.id, i, err)
			}
			if j > 0 && (a.Term != b.Term || !bytes.Equal(a.Data, b.Data)) {
				t.Fatalf("entry %d differs between replicas", i)
			}
			a = b
		}
	}
	for _, n := range c.nodes {
		c.stop(n)
	}
}

// TestKeepCompactedKeepsTheArchive: with KeepCompacted, a compacted prefix
// is gone for Raft (FirstIndex, GetLog) but its records stay in Log() for
// a replay, also after a reopen; without it the segments go.
func TestKeepCompactedKeepsTheArchive(t *testing.T) {
	for _, keep := range []bool{true, false} {
		dir := t.TempDir()
		s, err := OpenRaftStore(dir, Options{SegmentSize: 4 << 10})
		if err != nil {
			t.Fatal(err)
		}
		s.KeepCompacted = keep
		storeRange(t, s, 1, 200, 1)
		if err := s.DeleteRange(1, 150); err != nil {
			t.Fatal(err)
		}
		checkBounds(t, s, 151, 200)
		var l raft.Log
		if err := s.GetLog(100, &l); err == nil {
			t.Fatalf("keep=%v: a compacted entry is still visible to raft", keep)
		}
		s.Close()
		s, err = OpenRaftStore(dir, Options{SegmentSize: 4 << 10})
		if err != nil {
			t.Fatal(err)
		}
		checkBounds(t, s, 151, 200)
		var replayed []uint64
		if err := s.Log().Replay(s.Log().FirstIndex(), func(i uint64, _ []byte) error { replayed = append(replayed, i); return nil }); err != nil {
			t.Fatal(err)
		}
		if keep && (len(replayed) != 200 || replayed[0] != 1) {
			t.Fatalf("kept archive replays %d records from %v", len(replayed), replayed[:1])
		}
		if !keep && replayed[0] == 1 {
			t.Fatalf("without KeepCompacted the compacted segments stayed")
		}
		s.Close()
	}
}
