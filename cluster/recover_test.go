package cluster

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

// TestRecoveredMap: the map after a recovery keeps the kept members only
// (the others listed as removed), each group its kept replicas (marked
// changed: they do not bootstrap again); a group no kept node holds
// refuses the recovery, naming it and the data loss, unless accepted: it
// is then placed on kept nodes, unchanged, so that they bootstrap it. An
// id that is no member is refused as an argument; keeping every member
// changes nothing; applied through the metadata FSM, a recovery planned
// on an older map is refused.
func TestRecoveredMap(t *testing.T) {
	m, err := NewMap("c", members(5), 5, 2) // group g on n<g>, n<g+1>
	if err != nil {
		t.Fatal(err)
	}
	keep := []string{"n0", "n2"}
	_, err = recovered(m, keep, false)
	// g3 (n3, n4) is the only group with no kept replica.
	if err == nil || !strings.Contains(err.Error(), "groups [3]") || !strings.Contains(err.Error(), "DATA LOSS") || errors.Is(err, ErrRecoverArgs) {
		t.Fatalf("a recovery losing group 3: %v", err)
	}
	next, err := recovered(m, keep, true)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, mb := range next.Members {
		ids = append(ids, mb.ID)
	}
	if !slices.Equal(ids, keep) || !slices.Equal(next.Removed, []string{"n1", "n3", "n4"}) {
		t.Errorf("members %v, removed %v", ids, next.Removed)
	}
	want := map[int][]string{0: {"n0"}, 1: {"n2"}, 2: {"n2"}, 3: {"n2", "n0"}, 4: {"n0"}}
	for _, g := range next.Groups {
		if !slices.Equal(g.Replicas, want[g.ID]) {
			t.Errorf("group %d: replicas %v, want %v", g.ID, g.Replicas, want[g.ID])
		}
		if g.Changed != (g.ID != 3) {
			t.Errorf("group %d: changed %v", g.ID, g.Changed)
		}
	}
	if _, err := DecodeMap(next.Encode()); err != nil {
		t.Errorf("the recovered map does not decode: %v", err)
	}
	if lost := lostGroups(m, keep); !slices.Equal(lost, []int{3}) {
		t.Errorf("lost groups %v", lost)
	}
	if _, err := recovered(m, []string{"n0", "n9"}, true); !errors.Is(err, ErrRecoverArgs) || !strings.Contains(err.Error(), "n9") {
		t.Errorf("keeping a node that is no member: %v", err)
	}
	if next, err := recovered(m, []string{"n0", "n1", "n2", "n3", "n4"}, false); next != nil || err != nil {
		t.Errorf("keeping every member: %v, %v", next, err)
	}

	// Through the metadata FSM: applied on the version it was planned on
	// only (a second survivor's proposal finds the map moved on).
	f := newMetaFSM()
	f.set(m)
	cmd := func(version uint64) *raft.Log {
		b, _ := json.Marshal(metaCommand{Op: "recover", Version: version, Keep: keep, AcceptLoss: true})
		return &raft.Log{Type: raft.LogCommand, Data: b}
	}
	if res := f.Apply(cmd(m.Version)); res != nil {
		t.Fatalf("recover: %v", res)
	}
	got, _ := f.current()
	if got.Version != m.Version+1 || len(got.Members) != 2 {
		t.Fatalf("after recover: version %d, members %v", got.Version, got.Members)
	}
	if res := f.Apply(cmd(m.Version)); !errors.Is(res.(error), errMapMoved) {
		t.Errorf("a second recover on the old version: %v", res)
	}
}

// TestCheckVoters: a replica that is not a voter of its group, or whose
// kept voters are not the group's kept replicas in the map (a move stopped
// half-way), refuses the recovery.
func TestCheckVoters(t *testing.T) {
	keep := []string{"n0", "n1"}
	for _, tc := range []struct {
		voters, replicas []string
		refused          bool
	}{
		{[]string{"n0", "n1", "n2"}, []string{"n0", "n1", "n2"}, false},
		{[]string{"n0", "n2", "n3"}, []string{"n2", "n0", "n3"}, false},
		{[]string{"n1", "n2", "n3"}, []string{"n0", "n1", "n2", "n3"}, true}, // n0 listed, not a voter yet
		{[]string{"n0", "n2", "n3"}, []string{"n0", "n1", "n2", "n3"}, true}, // n1 listed, not a voter
		{[]string{"n0", "n1", "n3"}, []string{"n0", "n3", "n2"}, true},       // n1 a voter, no longer listed
	} {
		err := checkVoters(4, "n0", tc.voters, tc.replicas, keep)
		if (err != nil) != tc.refused {
			t.Errorf("voters %v, replicas %v: %v, want refused %v", tc.voters, tc.replicas, err, tc.refused)
		}
	}
}
