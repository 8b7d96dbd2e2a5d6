package cluster

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/ring"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/wal"
)

// TestCheckpointEntries: a checkpoint entry records the store's checksums
// at exactly its position (the record before it applied, the one after it
// not), only the last keptCheckpoints results stay, and a group's archive
// replay skips checkpoints instead of failing on them.
func TestCheckpointEntries(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	fsm, err := newGroupFSM(func() (*store.Store, error) { return store.New(repo, store.Options{}) })
	if err != nil {
		t.Fatal(err)
	}
	st := fsm.Store()
	sp := st.Sources()[0]
	record := func(key string) []byte {
		var b store.Batch
		b.Reset(sp.Index, len(sp.Src.Columns))
		b.Grow(1_700_000_000_000)
		for _, c := range sp.KeyColumns() {
			b.SetStr(0, c, []byte(key))
		}
		return st.AppendEventsRecord(nil, &b, 1_700_000_000_000, false)
	}
	entries := []*raft.Log{
		{Index: 1, Type: raft.LogCommand, Data: appendRequest(nil, "r1", record("a"))},
		{Index: 2, Type: raft.LogCommand, Data: []byte{checkpointTag}},
		{Index: 3, Type: raft.LogCommand, Data: appendRequest(nil, "r2", record("b"))},
	}
	for _, l := range entries[:2] {
		if a := fsm.Apply(l).(applied); a.err != nil {
			t.Fatalf("apply %d: %v", l.Index, a.err)
		}
	}
	_, want, _ := fsm.Store().Checksums()
	fsm.Apply(entries[2])
	cp := fsm.cps.get(2)
	if cp == nil || cp.Record != 1 || cp.Sums != want || cp.Err != "" {
		t.Fatalf("checkpoint at 2: %+v, want record 1 and the checksums before entry 3", cp)
	}
	if cp.Layout == "" || cp.Layout != st.Layout() {
		t.Fatalf("checkpoint layout %q, want the store's, %q (the default repo groups its card-holder views)", cp.Layout, st.Layout())
	}
	if _, now, _ := fsm.Store().Checksums(); now == want {
		t.Fatal("entry 3 changed no checksum: the test shows nothing")
	}
	for i := uint64(10); i < 10+keptCheckpoints+3; i++ {
		fsm.Apply(&raft.Log{Index: i, Type: raft.LogCommand, Data: []byte{checkpointTag}})
	}
	if fsm.cps.get(2) != nil || fsm.cps.get(10+keptCheckpoints+2) == nil || len(fsm.cps.byIx) != keptCheckpoints {
		t.Fatalf("kept checkpoints: %d, want the newest %d", len(fsm.cps.byIx), keptCheckpoints)
	}

	rs, err := wal.OpenRaftStore(t.TempDir(), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	if err := rs.StoreLogs(entries); err != nil {
		t.Fatal(err)
	}
	var got []uint64
	err = groupArchive{log: rs.Log(), upTo: 3}.Replay(1, func(index uint64, rec []byte) error {
		got = append(got, index)
		return nil
	})
	if err != nil || fmt.Sprint(got) != "[1 3]" {
		t.Fatalf("archive replay: records %v, %v; want [1 3]", got, err)
	}
}

// TestDiffPartitions: with three replicas the one differing from the
// majority is named; with two, both are; replicas that did not answer are
// left out of the vote.
func TestDiffPartitions(t *testing.T) {
	var a, b [ring.Partitions]uint64
	b[7] = 1
	reps := []ReplicaCheck{{Node: "n0", sums: &a}, {Node: "n1", sums: &b}, {Node: "n2", sums: &a}, {Node: "n3", Error: "down"}}
	d := diffPartitions(reps)
	if len(d) != 1 || d[0].Partition != 7 || !d[0].Majority || fmt.Sprint(d[0].Odd) != "[n1]" {
		t.Fatalf("3 replicas: %+v", d)
	}
	d = diffPartitions(reps[:2])
	if len(d) != 1 || d[0].Majority || fmt.Sprint(d[0].Odd) != "[n0 n1]" {
		t.Fatalf("2 replicas: %+v", d)
	}
	if d = diffPartitions([]ReplicaCheck{{Node: "n0", sums: &a}, {Node: "n2", sums: &a}}); len(d) != 0 {
		t.Fatalf("equal replicas differ: %+v", d)
	}
}

// TestCompareReplicasByLayout: replicas are compared with those of their
// own layout only (a replica restored from a snapshot written before
// groups holds views alone where the restore could not merge them into
// their group (store/regroup: a tiled aggregation, a column kept over a
// shorter horizon), one built since groups them, and their checksums
// differ though they applied the same records): a layout alone
// is no difference, a difference within a layout still is, and a layout
// with a single replica has nothing to compare.
func TestCompareReplicasByLayout(t *testing.T) {
	var a, b, c [ring.Partitions]uint64
	for p := range b {
		b[p] = uint64(p) + 1 // another layout: every partition's sum differs
	}
	c[7] = 1
	const grouped = "user_transaction_counts+user_transaction_amounts+user_distinct_merchants"
	d, layouts := compareReplicas([]ReplicaCheck{{Node: "n0", sums: &a}, {Node: "n1", sums: &a}, {Node: "n2", sums: &b, Layout: grouped}})
	if len(d) != 0 || !layouts {
		t.Fatalf("two layouts, each agreeing: differ %+v, layouts differ %v; want none, true", d, layouts)
	}
	d, layouts = compareReplicas([]ReplicaCheck{{Node: "n0", sums: &a}, {Node: "n1", sums: &c}, {Node: "n2", sums: &a},
		{Node: "n3", sums: &b, Layout: grouped}, {Node: "n4", Error: "down", Layout: "x"}})
	if len(d) != 1 || d[0].Partition != 7 || !d[0].Majority || fmt.Sprint(d[0].Odd) != "[n1]" || !layouts {
		t.Fatalf("a difference within a layout: differ %+v, layouts differ %v; want n1 odd in partition 7", d, layouts)
	}
	d, layouts = compareReplicas([]ReplicaCheck{{Node: "n0", sums: &b, Layout: grouped}, {Node: "n1", sums: &c, Layout: grouped}})
	if len(d) != ring.Partitions || layouts {
		t.Fatalf("one layout: %d partitions differ, layouts differ %v; want all %d, false", len(d), layouts, ring.Partitions)
	}
	if !slices.IsSortedFunc(d, func(x, y PartitionDiff) int { return x.Partition - y.Partition }) {
		t.Fatal("differences out of partition order")
	}
}

// TestSetPreferred: the metadata command reorders a group's replicas and
// bumps the map's version; the same order changes nothing; a list that is
// not the group's replica set is refused and changes nothing.
func TestSetPreferred(t *testing.T) {
	m, err := NewMap("c", members(3), 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	f := newMetaFSM()
	f.set(m)
	apply := func(g int, reps ...string) any {
		b, _ := json.Marshal(preferredCommand{Op: "set-preferred", Group: g, Replicas: reps})
		return f.Apply(&raft.Log{Index: 9, Type: raft.LogCommand, Data: b})
	}
	if err := apply(1, "n2", "n1", "n0"); err != nil {
		t.Fatal(err)
	}
	got, _ := f.current()
	if got.Version != 2 || fmt.Sprint(got.Groups[1].Replicas) != "[n2 n1 n0]" || fmt.Sprint(got.Groups[0].Replicas) != "[n0 n1 n2]" {
		t.Fatalf("after set-preferred: version %d, groups %v", got.Version, got.Groups)
	}
	if err := apply(1, "n2", "n1", "n0"); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]string{{"n2", "n1"}, {"n2", "n1", "n9"}, {"n2", "n2", "n1"}} {
		if err := apply(1, bad...); err == nil {
			t.Fatalf("set-preferred %v accepted", bad)
		}
	}
	if err := apply(5, "n0"); err == nil {
		t.Fatal("set-preferred of a group that does not exist accepted")
	}
	if now, _ := f.current(); now.Version != 2 || fmt.Sprint(now.Groups[1].Replicas) != "[n2 n1 n0]" {
		t.Fatalf("refused commands changed the map: version %d, %v", now.Version, now.Groups[1].Replicas)
	}
}

// FuzzMetaCommand: no metadata entry makes the metadata FSM panic, and
// whatever it applies, every group keeps its set of replicas (set-preferred
// only reorders them) and the map stays valid.
func FuzzMetaCommand(f *testing.F) {
	f.Add([]byte(`{"op":"set-preferred","group":1,"replicas":["n2","n1","n0"]}`))
	f.Add([]byte(`{"op":"set-preferred","group":-1,"replicas":[]}`))
	f.Add([]byte(`{"op":"init","map":{}}`))
	f.Add([]byte(`{"op":"set-preferred","group":0,"replicas":["n0","n0","n1"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, _ := NewMap("c", members(3), 2, 3)
		fsm := newMetaFSM()
		fsm.set(m)
		fsm.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: b})
		got, _ := fsm.current()
		if _, err := DecodeMap(got.Encode()); err != nil {
			t.Fatalf("the map no longer decodes: %v", err)
		}
		for g := range m.Groups {
			want := slices.Sorted(slices.Values(m.Groups[g].Replicas))
			if have := slices.Sorted(slices.Values(got.Groups[g].Replicas)); !slices.Equal(have, want) {
				t.Fatalf("group %d's replicas became %v", g, got.Groups[g].Replicas)
			}
		}
	})
}
