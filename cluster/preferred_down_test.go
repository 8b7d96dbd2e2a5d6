package cluster

import "testing"

// TestPlanRebalanceNamesNoPreferredLeaderDown: rebalance's preferred
// leaders go to members that answer only. Every group lists n0, n1, n2
// with n0 first (n0 preferred by all six) and n2 down: the plan spreads
// the preferences over n0 and n1, three each, and names n2 first in no
// group (it named n2 for two groups: a leadership handed to a node that
// does not answer fails, and the group's hand-back would aim at it).
func TestPlanRebalanceNamesNoPreferredLeaderDown(t *testing.T) {
	m, err := NewMap("c", members(3), 6, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.Groups {
		m.Groups[i].Replicas = []string{"n0", "n1", "n2"}
	}
	notN2 := func(id string) bool { return id != "n2" }
	p, err := planRebalance(m, nil, notN2)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Moves) != 0 {
		t.Fatalf("moves %+v: every node holds every group, none to move", p.Moves)
	}
	for _, g := range p.Leaders {
		if g.Replicas[0] == "n2" {
			t.Errorf("group %d: the plan names n2, which is down, as its preferred leader (%v)", g.ID, g.Replicas)
		}
	}
	after := apply(t, m, p)
	_, p0 := after.load("n0")
	_, p1 := after.load("n1")
	if p0 != 3 || p1 != 3 {
		t.Errorf("preferred leaders after the plan: n0 %d, n1 %d; want 3 each (n2 down)", p0, p1)
	}
	if p2, _ := planRebalance(after, nil, notN2); len(p2.Leaders) != 0 {
		t.Errorf("a second plan with n2 still down reorders %+v; want nothing", p2.Leaders)
	}
}
