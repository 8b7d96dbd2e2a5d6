package cluster

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
)

// apply plays a plan on m as the cluster does: each move replaces the
// replica in place, then the leader orders.
func apply(t *testing.T, m *Map, p Plan) *Map {
	t.Helper()
	next := m.clone()
	for _, mv := range p.Moves {
		g := &next.Groups[mv.Group]
		i := slices.Index(g.Replicas, mv.From)
		if i < 0 || slices.Contains(g.Replicas, mv.To) {
			t.Fatalf("move %+v does not fit group %v", mv, g.Replicas)
		}
		g.Replicas[i] = mv.To
	}
	for _, g := range p.Leaders {
		if !sameSet(next.Groups[g.ID].Replicas, g.Replicas) {
			t.Fatalf("leader order %v is not a reorder of %v", g.Replicas, next.Groups[g.ID].Replicas)
		}
		next.Groups[g.ID].Replicas = g.Replicas
	}
	return next
}

func spread(m *Map) (minR, maxR, minP, maxP int) {
	minR, minP = 1<<30, 1<<30
	for _, mb := range m.Members {
		r, p := m.load(mb.ID)
		minR, maxR, minP, maxP = min(minR, r), max(maxR, r), min(minP, p), max(maxP, p)
	}
	return
}

// TestPlanRebalance: after a node joins, the plan evens replicas and
// preferred leaders to within one, moves no replica twice, and a second
// plan is empty; draining a node moves exactly its replicas; a drain
// that would leave fewer nodes than replicas is refused.
func TestPlanRebalance(t *testing.T) {
	for _, tc := range []struct{ nodes, groups, replicas int }{{3, 8, 3}, {4, 8, 3}, {5, 8, 3}, {3, 16, 1}, {6, 8, 2}} {
		m, err := NewMap("c", members(tc.nodes), tc.groups, tc.replicas)
		if err != nil {
			t.Fatal(err)
		}
		m.Members = append(m.Members, Member{ID: "zz", ClusterAddr: "127.0.0.1:9"})
		p, err := planRebalance(m, nil)
		if err != nil {
			t.Fatal(err)
		}
		after := apply(t, m, p)
		minR, maxR, minP, maxP := spread(after)
		if maxR-minR > 1 || maxP-minP > 1 {
			t.Errorf("%+v: after the plan replicas %d..%d, preferred %d..%d per node; want within 1", tc, minR, maxR, minP, maxP)
		}
		if p2, _ := planRebalance(after, nil); len(p2.Moves)+len(p2.Leaders) != 0 {
			t.Errorf("%+v: a second plan is not empty: %+v", tc, p2)
		}
		if tc.nodes+1 > tc.replicas {
			d, err := planRebalance(after, map[string]bool{"n0": true})
			if err != nil {
				t.Fatalf("%+v: drain n0: %v", tc, err)
			}
			drained := apply(t, after, Plan{Moves: d.Moves})
			if r, _ := drained.load("n0"); r != 0 {
				t.Errorf("%+v: n0 holds %d replicas after its drain", tc, r)
			}
		}
	}
	m, _ := NewMap("c", members(3), 8, 3)
	if _, err := planRebalance(m, map[string]bool{"n0": true}); err == nil {
		t.Error("draining one of 3 nodes with 3 replicas per group was planned; want it refused")
	}
}

// TestChangeMap: map changes refuse what would break the map, and only a
// change of a group's replica set (not its order) marks it changed.
func TestChangeMap(t *testing.T) {
	m, _ := NewMap("c", members(3), 4, 2)
	if _, err := changeMap(m, metaCommand{Op: "remove-member", ID: "n0"}); err == nil {
		t.Error("removing a member holding replicas was accepted")
	}
	if _, err := changeMap(m, metaCommand{Op: "set-replicas", Group: 0, Replicas: []string{"n0", "nX"}}); err == nil {
		t.Error("a replica on an unknown node was accepted")
	}
	if _, err := changeMap(m, metaCommand{Op: "set-replicas", Group: 0, Replicas: []string{"n0", "n0"}}); err == nil {
		t.Error("a node named twice was accepted")
	}
	if _, err := changeMap(m, metaCommand{Op: "set-replicas", Group: 9, Replicas: []string{"n0"}}); err == nil {
		t.Error("a group out of range was accepted")
	}
	if _, err := changeMap(m, metaCommand{Op: "add-member", Member: &Member{ID: "n1", ClusterAddr: "other:1"}}); err == nil {
		t.Error("adding a member id at another address was accepted")
	}
	r := slices.Clone(m.Groups[0].Replicas)
	slices.Reverse(r)
	next, err := changeMap(m, metaCommand{Op: "set-replicas", Group: 0, Replicas: r})
	if err != nil || next.Groups[0].Changed {
		t.Errorf("reorder: %v, changed %v; want accepted, not changed", err, next != nil && next.Groups[0].Changed)
	}
	next, err = changeMap(m, metaCommand{Op: "set-replicas", Group: 0, Replicas: []string{"n2", "n1"}})
	if err != nil || !next.Groups[0].Changed {
		t.Errorf("new replica set: %v; want accepted and marked changed", err)
	}
	// A removed node is listed as removed until it is added again.
	small, _ := NewMap("c", members(3), 1, 1)
	small.Groups[0].Replicas = []string{"n1"}
	gone, err := changeMap(small, metaCommand{Op: "remove-member", ID: "n0"})
	if err != nil || gone.Member("n0") != nil || !slices.Equal(gone.Removed, []string{"n0"}) || len(small.Removed) != 0 {
		t.Errorf("remove-member n0: %v, removed %v (before: %v)", err, gone.Removed, small.Removed)
	}
	back, err := changeMap(gone, metaCommand{Op: "add-member", Member: &Member{ID: "n0", ClusterAddr: "new:1"}})
	if err != nil || back.Member("n0") == nil || len(back.Removed) != 0 {
		t.Errorf("add-member n0 again: %v, removed %v", err, back.Removed)
	}
	// The metadata FSM refuses a change planned on an older map.
	f := newMetaFSM()
	f.set(m)
	if err := applyCmd(f, metaCommand{Op: "set-replicas", Version: m.Version + 5, Group: 0, Replicas: []string{"n2", "n1"}}); err != errMapMoved {
		t.Errorf("a change planned on another version: %v, want errMapMoved", err)
	}
}

func applyCmd(f *metaFSM, cmd metaCommand) error {
	b, _ := json.Marshal(cmd)
	err, _ := f.Apply(&raft.Log{Type: raft.LogCommand, Data: b, Index: 1}).(error)
	return err
}
