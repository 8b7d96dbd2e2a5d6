package cluster

import (
	"errors"
	"testing"
)

// TestAssembleOverview: a group's leader is the replica reporting itself
// leader in the highest term (a deposed leader that has not noticed loses),
// lag is measured from that leader's commit index, a member that did not
// answer is down with its error, and a group whose replicas are all down
// or followers has no leader.
func TestAssembleOverview(t *testing.T) {
	m, err := NewMap("c", members(3), 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	// n1 still believes it leads group 0 in term 3; n0 leads it in term 4.
	sts := []*Status{
		{Node: "n0", HTTPAddr: "127.0.0.1:1", Groups: []GroupStatus{
			{Group: 0, State: "Leader", Term: 4, CommitIndex: 100, Applied: 99},
			{Group: 1, State: "Follower", Term: 7, CommitIndex: 90, Applied: 80},
		}},
		{Node: "n1", Groups: []GroupStatus{
			{Group: 0, State: "Leader", Term: 3, CommitIndex: 50, Applied: 50},
			{Group: 1, State: "Follower", Term: 7, CommitIndex: 90, Applied: 85},
		}},
		nil,
	}
	errs := []error{nil, nil, errors.New("timeout")}
	var o Overview
	assemble(&o, m, sts, errs)
	if len(o.Nodes) != 3 || !o.Nodes[0].Up || !o.Nodes[1].Up || o.Nodes[2].Up || o.Nodes[2].Error != "timeout" {
		t.Fatalf("nodes: %+v", o.Nodes)
	}
	if o.Nodes[0].HTTPAddr != "127.0.0.1:1" || o.Nodes[0].Leads != 1 || o.Nodes[0].Replicas != 2 {
		t.Fatalf("n0: %+v", o.Nodes[0])
	}
	g0 := o.Groups[0]
	if g0.Leader != "n0" || g0.Term != 4 {
		t.Fatalf("group 0: leader %q term %d, want n0 in term 4", g0.Leader, g0.Term)
	}
	lag := map[string]uint64{}
	for _, r := range g0.Replicas {
		lag[r.Node] = r.Lag
		if r.Node == "n2" && (r.Up || r.State != "") {
			t.Fatalf("n2's replica: %+v", r)
		}
	}
	if lag["n0"] != 1 || lag["n1"] != 50 {
		t.Fatalf("group 0 lags %v: want n0 1, n1 50 (from the leader's commit index 100)", lag)
	}
	g1 := o.Groups[1]
	if g1.Leader != "" {
		t.Fatalf("group 1: leader %q, want none", g1.Leader)
	}
	for _, r := range g1.Replicas {
		if r.Node == "n0" && r.Lag != 10 || r.Node == "n1" && r.Lag != 5 {
			t.Fatalf("group 1 without a leader: replica %+v (lag from its own commit index)", r)
		}
	}
}
