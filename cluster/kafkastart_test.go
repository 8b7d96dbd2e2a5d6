package cluster

import (
	"bytes"
	"encoding/json"
	"io"
	"maps"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
)

// TestStreamStartRecordedOnce: the metadata FSM keeps a topic's first
// start as it was first recorded (a later listing answers the first), one
// per topic key (a recreated topic's key has its own), and its snapshot
// keeps them; a snapshot of a version that kept none loads with none, and
// a node of that version reads the map out of a new snapshot.
func TestStreamStartRecordedOnce(t *testing.T) {
	m, err := NewMap("c", members(3), 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	f := newMetaFSM()
	apply := func(f *metaFSM, topic string, ends map[int32]int64) any {
		b, _ := json.Marshal(metaCommand{Op: "stream-start", Start: &streamStart{Source: "tx", Topic: topic, Ends: ends}})
		return f.Apply(&raft.Log{Index: 7, Type: raft.LogCommand, Data: b})
	}
	if err, _ := apply(f, "t", map[int32]int64{0: 20}).(error); err == nil {
		t.Error("a first start recorded before the cluster has a map")
	}
	f.set(m)
	recorded := func(f *metaFSM, topic string, ends map[int32]int64) map[int32]int64 {
		t.Helper()
		s, ok := apply(f, topic, ends).(*streamStart)
		if !ok {
			t.Fatalf("stream-start of %s answered %v", topic, apply(f, topic, ends))
		}
		if s == nil {
			return nil
		}
		return s.Ends
	}
	if got := recorded(f, "t", nil); got != nil {
		t.Fatalf("a topic never started reads %v, want no record", got)
	}
	first := map[int32]int64{0: 20, 1: 35}
	for _, ends := range []map[int32]int64{first, {0: 40, 1: 41, 2: 0}, nil} {
		if got := recorded(f, "t", ends); !maps.Equal(got, first) {
			t.Errorf("stream-start %v: the record reads %v, want the first %v", ends, got, first)
		}
	}
	if got := recorded(f, "t@0a0b", nil); got != nil {
		t.Errorf("the recreated topic's key reads %v, want its own record (none yet)", got)
	}
	if cur, _ := f.current(); cur.Version != m.Version {
		t.Errorf("the map's version moved from %d to %d", m.Version, cur.Version)
	}

	snap, _ := f.Snapshot()
	g := newMetaFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(snap.(metaSnapshot)))); err != nil {
		t.Fatal(err)
	}
	if got := recorded(g, "t", map[int32]int64{0: 99}); !maps.Equal(got, first) {
		t.Errorf("after a snapshot: the record reads %v, want %v", got, first)
	}
	if old, err := DecodeMap(snap.(metaSnapshot)); err != nil || old.Version != m.Version || len(old.Groups) != 2 {
		t.Errorf("the map as a node of an older version reads it from the snapshot: %v, %v", old, err)
	}

	// A snapshot of a version that kept no record: the map, none recorded.
	h := newMetaFSM()
	if err := h.Restore(io.NopCloser(bytes.NewReader(m.Encode()))); err != nil {
		t.Fatal(err)
	}
	if cur, _ := h.current(); cur == nil || cur.Version != m.Version {
		t.Fatalf("an older snapshot's map: %v", cur)
	}
	if got := recorded(h, "t", nil); got != nil {
		t.Errorf("an older snapshot reads a record %v", got)
	}
}

// TestStreamStartSurvivesLeaderChangeAndRestart: a first start recorded
// through one node is read through the others after the metadata leader
// stops (a new leader answers), and the stopped node, restarted over its
// data dir, holds it again from its metadata snapshot.
func TestStreamStartSurvivesLeaderChangeAndRestart(t *testing.T) {
	cs, _ := openTestCluster(t, nil, 3, 1, 3)
	want := map[int32]int64{0: 20, 1: 35}
	if got, ok, err := cs[0].StreamStart("transactions", "t", want); err != nil || !ok || !maps.Equal(got, want) {
		t.Fatalf("record %v: %v %v %v", want, got, ok, err)
	}
	for i, c := range cs {
		if err := c.meta.raft.Snapshot().Error(); err != nil {
			t.Fatalf("node %d: metadata snapshot: %v", i, err)
		}
	}
	leader := slices.IndexFunc(cs, func(c *Cluster) bool { return c.meta.raft.State() == raft.Leader })
	if leader < 0 {
		t.Fatal("the metadata group has no leader")
	}
	cfg, repo := cs[leader].cfg, cs[leader].repo
	if err := cs[leader].Close(); err != nil {
		t.Fatal(err)
	}
	for i, c := range cs {
		if i == leader {
			continue
		}
		if got, ok, err := c.StreamStart("transactions", "t", map[int32]int64{0: 99}); err != nil || !ok || !maps.Equal(got, want) {
			t.Errorf("node %d, the metadata leader stopped: the record reads %v (%v, %v), want %v", i, got, ok, err, want)
		}
	}
	back, err := Open(cfg, repo)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { back.Close() })
	back.metaSM.mu.Lock()
	got := back.metaSM.starts[streamStartKey{"transactions", "t"}]
	back.metaSM.mu.Unlock()
	if !maps.Equal(got, want) {
		t.Errorf("the stopped leader, restarted over its data dir: holds %v, want %v", got, want)
	}
}
