package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

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
		p, err := planRebalance(m, nil, allUp)
		if err != nil {
			t.Fatal(err)
		}
		after := apply(t, m, p)
		minR, maxR, minP, maxP := spread(after)
		if maxR-minR > 1 || maxP-minP > 1 {
			t.Errorf("%+v: after the plan replicas %d..%d, preferred %d..%d per node; want within 1", tc, minR, maxR, minP, maxP)
		}
		if p2, _ := planRebalance(after, nil, allUp); len(p2.Moves)+len(p2.Leaders) != 0 {
			t.Errorf("%+v: a second plan is not empty: %+v", tc, p2)
		}
		if tc.nodes+1 > tc.replicas {
			d, err := planRebalance(after, map[string]bool{"n0": true}, allUp)
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
	if _, err := planRebalance(m, map[string]bool{"n0": true}, allUp); err == nil {
		t.Error("draining one of 3 nodes with 3 replicas per group was planned; want it refused")
	}
}

func allUp(string) bool { return true }

// TestPlanRebalanceSkipsNodesDown: a member down gets no replica, neither
// to even out the load (it keeps its own) nor from a drain, and is listed
// as down in the plan; a drain whose replica has no member up to go to is
// refused, naming the groups and the nodes down.
func TestPlanRebalanceSkipsNodesDown(t *testing.T) {
	m, _ := NewMap("c", members(3), 8, 2)
	m.Members = append(m.Members, Member{ID: "zz", ClusterAddr: "127.0.0.1:9"}) // new, holding nothing
	notZZ := func(id string) bool { return id != "zz" }
	p, err := planRebalance(m, nil, notZZ)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Moves) != 0 || !slices.Equal(p.Down, []string{"zz"}) {
		t.Errorf("zz (empty) down: moves %+v, down %v; want no move, zz down", p.Moves, p.Down)
	}
	notN0 := func(id string) bool { return id != "n0" }
	p, err = planRebalance(m, nil, notN0) // zz up: the others' replicas go there, n0 keeps its own
	if err != nil {
		t.Fatal(err)
	}
	after := apply(t, m, p)
	for _, mv := range p.Moves {
		if mv.To == "n0" || mv.From == "n0" {
			t.Errorf("n0 down: the plan moves %+v", mv)
		}
	}
	if r, r0 := after.load("n0"); r != 5 {
		t.Errorf("n0 down holds %d replicas after the plan (%d preferred), want its 5", r, r0)
	}
	for _, id := range []string{"n1", "n2", "zz"} {
		if r, _ := after.load(id); r < 3 || r > 4 {
			t.Errorf("%s holds %d replicas after the plan, want 3 or 4 (11 over n1, n2, zz)", id, r)
		}
	}
	d, err := planRebalance(m, map[string]bool{"n1": true}, notZZ)
	if err != nil {
		t.Fatal(err)
	}
	for _, mv := range d.Moves {
		if mv.To == "zz" {
			t.Errorf("zz down: the drain of n1 moves %+v onto it", mv)
		}
	}
	// R=3 on 4 nodes: draining n0 leaves each of its groups one node
	// holding none of theirs; with it down, those groups are stuck.
	m3, _ := NewMap("c", members(4), 4, 3)
	_, err = planRebalance(m3, map[string]bool{"n0": true}, func(id string) bool { return id != "n3" })
	var nt *errNoTarget
	if !errors.As(err, &nt) || !strings.Contains(err.Error(), "group(s) 0 (n0, n1, n2)") || !strings.Contains(err.Error(), "nodes down: n3") {
		t.Errorf("draining n0 with n3 down, group 0 on n0, n1, n2: %v; want a refusal naming group 0 and n3", err)
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

// metaLeaderMap is the map of the metadata group's leader, where changes
// run (another node's copy may lag).
func metaLeaderMap(t *testing.T, cs []*Cluster) *Map {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, c := range cs {
			if c.meta.raft.State() == raft.Leader {
				m, _ := c.metaSM.current()
				return m
			}
		}
	}
	t.Fatal("the metadata group has no leader")
	return nil
}

// groupVotersNow is the voters of group g's Raft configuration on its
// leader, sorted.
func groupVotersNow(t *testing.T, cs []*Cluster, g int) []string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, c := range cs {
			dg := c.group(g)
			if dg == nil || dg.rep.raft.State() != raft.Leader {
				continue
			}
			var ids []string
			for _, s := range dg.rep.raft.GetConfiguration().Configuration().Servers {
				if s.Suffrage == raft.Voter {
					ids = append(ids, string(s.ID))
				}
			}
			slices.Sort(ids)
			return ids
		}
	}
	t.Fatalf("group %d has no leader", g)
	return nil
}

// listStopped commits step 1 of a move of group g to id: the map lists
// id after the group's replicas, and nothing else is done.
// leaveAdditionCutShort shrinks group 0 of cs (on n0, n1, n2) to n0, as a
// recovery leaves it, then lists n1 as an addition stopped before it became
// a voter: the map lists n0 and n1, the group's only voter is n0.
func leaveAdditionCutShort(t *testing.T, ctx context.Context, cs []*Cluster) {
	t.Helper()
	for _, id := range []string{"n1", "n2"} {
		if _, err := cs[0].changeVoters(ctx, 0, voterChange{Op: "remove", ID: id, Handoff: "n0"}); err != nil {
			t.Fatalf("remove %s from group 0: %v", id, err)
		}
	}
	err := cs[0].casMeta(ctx, func(m *Map) *metaCommand {
		return &metaCommand{Op: "set-replicas", Group: 0, Replicas: []string{"n0"}}
	})
	if err != nil {
		t.Fatal(err)
	}
	listStopped(t, ctx, cs[0], 0, "n1")
}

func listStopped(t *testing.T, ctx context.Context, c *Cluster, g int, id string) []string {
	t.Helper()
	var reps []string
	err := c.casMeta(ctx, func(m *Map) *metaCommand {
		reps = append(slices.Clone(m.Groups[g].Replicas), id)
		return &metaCommand{Op: "set-replicas", Group: g, Replicas: reps}
	})
	if err != nil {
		t.Fatal(err)
	}
	return reps
}

// TestMoveBesideAMoveLeftAfterItsStep1IsRefused: a move of group 0 to n2
// stopped after its step 1 (the map lists n0, n1 and n2 with R=2; n2 was
// never added to the group's Raft configuration). A different move, n0 to
// n3, went through: it left the map listing n3, n1 and n2, and n2, counted
// as one of the group's replicas, held an empty replica that no leader
// ever sends the log to. It is refused, naming n2 and the command that
// takes it out, and so are remove-node and rebalance; that command undoes
// the stopped move, after which the move to n3 goes through.
func TestMoveBesideAMoveLeftAfterItsStep1IsRefused(t *testing.T) {
	cs, _ := openTestCluster(t, nil, 4, 1, 2) // group 0 on n0, n1
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	listed := listStopped(t, ctx, cs[0], 0, "n2")
	voters := groupVotersNow(t, cs, 0)
	refused := func(what string, err error) {
		t.Helper()
		m := metaLeaderMap(t, cs)
		if err == nil {
			t.Fatalf("%s beside a move to n2 left after its step 1 was accepted: the map lists %v (R=%d), the group's voters are %v",
				what, m.Groups[0].Replicas, m.Replicas, groupVotersNow(t, cs, 0))
		}
		if msg := err.Error(); !strings.Contains(msg, "n2 is listed") || !strings.Contains(msg, "tally cluster move-replica --group 0 --from n2 --to n1") {
			t.Errorf("%s: refused with %q; want it to name n2 and the command that takes it out", what, msg)
		}
		if got := m.Groups[0].Replicas; !slices.Equal(got, listed) {
			t.Fatalf("%s: refused, but the map lists %v, not %v", what, got, listed)
		}
		if got := groupVotersNow(t, cs, 0); !slices.Equal(got, voters) {
			t.Fatalf("%s: refused, but the group's voters are %v, not %v", what, got, voters)
		}
	}
	_, err := cs[0].MoveReplica(ctx, Move{Group: 0, From: "n0", To: "n3"})
	refused("move-replica n0 -> n3", err)
	_, err = cs[1].RemoveNode(ctx, "n1")
	refused("remove-node n1", err)
	_, err = cs[2].RemoveNode(ctx, "n2")
	refused("remove-node n2", err)
	_, err = cs[3].Rebalance(ctx, false)
	refused("rebalance", err)
	if metaLeaderMap(t, cs).Member("n1") == nil {
		t.Fatal("n1 left the map")
	}

	// The command the refusals name undoes the stopped move.
	if _, err := cs[0].MoveReplica(ctx, Move{Group: 0, From: "n2", To: "n1"}); err != nil {
		t.Fatalf("taking n2 out: %v", err)
	}
	if got := metaLeaderMap(t, cs).Groups[0].Replicas; !slices.Equal(got, []string{"n0", "n1"}) {
		t.Fatalf("after taking n2 out the map lists %v, want [n0 n1]", got)
	}
	for cs[2].group(0) != nil {
		if ctx.Err() != nil {
			t.Fatal("n2 kept its replica of group 0")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := cs[0].MoveReplica(ctx, Move{Group: 0, From: "n0", To: "n3"}); err != nil {
		t.Fatalf("move-replica n0 -> n3 once n2 is out: %v", err)
	}
	if got, v := metaLeaderMap(t, cs).Groups[0].Replicas, groupVotersNow(t, cs, 0); !slices.Equal(got, []string{"n3", "n1"}) || !slices.Equal(v, []string{"n1", "n3"}) {
		t.Fatalf("after the move to n3 the map lists %v and the group's voters are %v, want [n3 n1] and [n1 n3]", got, v)
	}
}

// TestMoveOfAVoterBesideALeftoverIsRefused: beside a replica the map lists
// and the group's Raft configuration does not (a move stopped half-way),
// a move between two replicas that both hold the group took its From out
// of the group and added nobody: the group was left one voter short while
// the map still counted R replicas (with R=2, every acknowledged write on
// one disk). Refused, whether the leftover is the new replica of a move
// stopped after its step 1 or the old one of a move stopped after its
// step 4; the command the refusal names finishes that move.
func TestMoveOfAVoterBesideALeftoverIsRefused(t *testing.T) {
	cs, _ := openTestCluster(t, nil, 4, 1, 2) // group 0 on n0, n1
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	listStopped(t, ctx, cs[0], 0, "n2") // a move n0 -> n2 after its step 1
	_, err := cs[0].MoveReplica(ctx, Move{Group: 0, From: "n1", To: "n0"})
	if err == nil {
		t.Fatalf("move-replica n1 -> n0 beside n2 left after its step 1 was accepted: the map lists %v, the group's voters are %v",
			metaLeaderMap(t, cs).Groups[0].Replicas, groupVotersNow(t, cs, 0))
	}
	// Steps 2 to 4 of the move n0 -> n2: n2 becomes a voter, n0 leaves.
	n2 := metaLeaderMap(t, cs).Member("n2")
	ri, err := cs[0].changeVoters(ctx, 0, voterChange{Op: "add-nonvoter", ID: "n2", Addr: n2.ClusterAddr})
	if err != nil {
		t.Fatal(err)
	}
	if err := cs[0].waitCaughtUp(ctx, 0, "n2", ri.Commit); err != nil {
		t.Fatal(err)
	}
	if _, err := cs[0].changeVoters(ctx, 0, voterChange{Op: "add-voter", ID: "n2", Addr: n2.ClusterAddr}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs[0].changeVoters(ctx, 0, voterChange{Op: "remove", ID: "n0", Handoff: "n2"}); err != nil {
		t.Fatal(err)
	}
	_, err = cs[0].MoveReplica(ctx, Move{Group: 0, From: "n1", To: "n2"})
	if err == nil {
		t.Fatalf("move-replica n1 -> n2 beside n0 left after step 4 of its move was accepted: the map lists %v, the group's voters are %v",
			metaLeaderMap(t, cs).Groups[0].Replicas, groupVotersNow(t, cs, 0))
	}
	if msg := err.Error(); !strings.Contains(msg, "n0 is listed") || !strings.Contains(msg, "tally cluster move-replica --group 0 --from n0 --to n1") {
		t.Errorf("refused with %q; want it to name n0 and the command that takes it out", msg)
	}
	if _, err := cs[0].MoveReplica(ctx, Move{Group: 0, From: "n0", To: "n1"}); err != nil {
		t.Fatalf("taking n0 out: %v", err)
	}
	if got, v := metaLeaderMap(t, cs).Groups[0].Replicas, groupVotersNow(t, cs, 0); !slices.Equal(got, []string{"n1", "n2"}) || !slices.Equal(v, []string{"n1", "n2"}) {
		t.Fatalf("after taking n0 out the map lists %v and the group's voters are %v, want [n1 n2] twice", got, v)
	}
}

// TestHalfMovedNamesTheLeftover: the refusal beside a move left half-way
// names the replica left over and a command whose move takes it out of
// the list keeping the others' order (the first is the preferred leader);
// with every listed replica a voter, the one a move listed last; without
// the group's voters, what the map says; in a group listing no more than
// R (an addition stopped half-way), rebalance, which finishes it.
func TestHalfMovedNamesTheLeftover(t *testing.T) {
	m, _ := NewMap("c", members(5), 1, 3)
	for _, tc := range []struct {
		listed, voters []string
		verr           error
		want           string
	}{
		{[]string{"n0", "n1", "n2", "n3"}, []string{"n0", "n1", "n2"}, nil, "n3 is listed as one of its replicas (n0, n1, n2, n3) but is not a voter of the group (its voters: n0, n1, n2)"},
		{[]string{"n0", "n1", "n2", "n3"}, []string{"n0", "n1", "n2"}, nil, "--from n3 --to n2 (or --to another voter)"},
		{[]string{"n0", "n1", "n2", "n3"}, []string{"n0", "n1", "n2"}, nil, "--from <one of n0, n1, n2> --to n3 makes n3"},
		{[]string{"n3", "n0", "n1", "n2"}, []string{"n0", "n1", "n2"}, nil, "--from n3 --to n0 (or"},
		{[]string{"n0", "n1", "n2", "n3"}, []string{"n0", "n1", "n2", "n3"}, nil, "all of them voters: a move stopped after its new replica became a voter (listed last: n3"},
		{[]string{"n0", "n1", "n2", "n3"}, []string{"n0", "n1", "n2", "n3"}, nil, "or undo it: tally cluster move-replica --group 0 --from n3 --to n2"},
		{[]string{"n0", "n1", "n2"}, []string{"n0", "n1", "n2", "n4"}, nil, "n4 is a voter of the group but not listed"},
		{[]string{"n0", "n3"}, []string{"n0"}, nil, "n3 is listed as one of its replicas (n0, n3) but is not a voter of the group (its voters: n0): a replica added to it"},
		{[]string{"n0", "n3"}, []string{"n0"}, nil, "Run tally cluster rebalance before another change of the group"},
		{[]string{"n0", "n1", "n2", "n3"}, nil, errors.New("no leader"), "group 0 lists 4 replicas (n0, n1, n2, n3), more than the cluster's 3: a move of it stopped half-way, and its leader did not say which replica is left over (no leader)"},
	} {
		m.Groups[0].Replicas = tc.listed
		err := halfMoved(m, 0, tc.voters, tc.verr)
		var ae *errApply
		if !errors.As(err, &ae) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("listed %v, voters %v: %v; want a refusal containing %q", tc.listed, tc.voters, err, tc.want)
		}
	}
	// Moving the leftover to its nearest voter, as step 5 does, keeps the
	// others' order.
	for _, reps := range [][]string{{"n0", "n1", "n2", "n3"}, {"n3", "n0", "n1", "n2"}, {"n0", "n3", "n1", "n2"}} {
		to := nearestVoter(reps, "n3", []string{"n0", "n1", "n2"})
		i, j := slices.Index(reps, "n3"), slices.Index(reps, to)
		after := slices.Clone(reps)
		after[i] = to
		after = slices.Delete(after, j, j+1)
		if want := slices.DeleteFunc(slices.Clone(reps), func(id string) bool { return id == "n3" }); !slices.Equal(after, want) {
			t.Errorf("%v: moving n3 to %s lists %v, want %v", reps, to, after, want)
		}
	}
}

// TestVoterOpRefusedIsFinal: a group's leader that refuses a voter op
// (400: an op it does not know, as a leader on an older build answers the
// "get" a move begins with) is not asked again until the change's
// deadline: the change ends at once with the leader's answer.
func TestVoterOpRefusedIsFinal(t *testing.T) {
	cs, _ := openTestCluster(t, nil, 2, 1, 2)
	ctx, cancel := context.WithTimeout(context.Background(), configWait)
	defer cancel()
	for _, c := range cs { // the leader asks itself; the other asks it over the cluster port
		_, err := c.changeVoters(ctx, 0, voterChange{Op: "an-op-of-a-newer-build"})
		if ctx.Err() != nil {
			t.Fatalf("%s: the refused op was retried until the deadline: %v", c.cfg.NodeID, err)
		}
		if err == nil || !strings.Contains(err.Error(), "unknown op") {
			t.Fatalf("%s: %v; want the leader's refusal", c.cfg.NodeID, err)
		}
	}
}

// TestPlanAdditions: groups under R (after a recovery kept one replica of
// each) get replicas on the members up that hold none of theirs, the least
// loaded first, and end with R distinct replicas; a member down gets none;
// with too few members up the groups left under R are returned, and the
// refusal names them, the nodes up and down, and how many nodes to add.
func TestPlanAdditions(t *testing.T) {
	m, _ := NewMap("c", members(5), 8, 3)
	for i := range m.Groups {
		m.Groups[i].Replicas = []string{"n0"}
	}
	all := func(string) bool { return true }
	adds, next, short := planAdditions(m, all)
	if len(short) != 0 || len(adds) != 16 {
		t.Fatalf("8 groups of 1 replica, R=3, 5 nodes up: %d additions, short %v; want 16, none", len(adds), short)
	}
	for _, g := range next.Groups {
		if len(g.Replicas) != 3 || g.Replicas[0] != "n0" || !sameSet(g.Replicas, slices.Compact(slices.Sorted(slices.Values(g.Replicas)))) {
			t.Errorf("group %d after the additions: %v; want n0 first and 3 distinct replicas", g.ID, g.Replicas)
		}
	}
	for _, id := range []string{"n1", "n2", "n3", "n4"} {
		if r, _ := next.load(id); r != 4 {
			t.Errorf("%s holds %d added replicas, want 4 (16 over 4 nodes)", id, r)
		}
	}
	p, err := planRebalance(next, nil, all)
	if err != nil {
		t.Fatal(err)
	}
	if minR, maxR, _, _ := spread(apply(t, next, p)); maxR-minR > 1 {
		t.Errorf("after the additions and the rebalance replicas spread %d..%d", minR, maxR)
	}

	downN4 := func(id string) bool { return id != "n4" }
	adds, _, short = planAdditions(m, downN4)
	if len(short) != 0 || slices.ContainsFunc(adds, func(a Move) bool { return a.To == "n4" }) {
		t.Errorf("n4 down: additions %v, short %v; want none on n4, none short", adds, short)
	}

	small, _ := NewMap("c", members(3), 3, 3)
	for i := range small.Groups {
		small.Groups[i].Replicas = []string{"n0"}
	}
	up := map[string]bool{"n0": true, "n1": true}
	_, next, short = planAdditions(small, func(id string) bool { return up[id] })
	if !slices.Equal(short, []int{0, 1, 2}) {
		t.Fatalf("R=3, 2 nodes up: short %v, want every group", short)
	}
	err = underReplicated(next, short, up)
	for _, want := range []string{"groups 0 (n0, n1), 1 (n0, n1), 2 (n0, n1) would stay under the cluster's 3 replicas", "too few nodes answer (n0, n1)", "start 1 more node(s)", "n2 do not answer", "nothing was changed"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal %v does not say %q", err, want)
		}
	}
}

// TestRebalanceBringsGroupsBackToR: a group left with one replica of R=3
// (as a recovery leaves it), beside an addition stopped after its map
// change (n1 listed, not a voter). rebalance's plan finishes that
// addition and adds a replica on n3, not on n2, which is down; run, the
// map lists three replicas and the group's voters are those three; a
// second plan adds nothing.
func TestRebalanceBringsGroupsBackToR(t *testing.T) {
	cs, _ := openTestCluster(t, nil, 4, 1, 3) // group 0 on n0, n1, n2
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	leaveAdditionCutShort(t, ctx, cs)
	cs[2].Close() // n2 is down (it holds no replica any more)

	out, err := cs[3].Rebalance(ctx, true)
	if err != nil {
		t.Fatalf("rebalance --dry-run: %v", err)
	}
	if want := []Move{{Group: 0, To: "n1"}, {Group: 0, To: "n3"}}; !slices.Equal(out.Plan.Adds, want) {
		t.Fatalf("the plan adds %+v, want %+v (finish n1, add n3; n2 is down)", out.Plan.Adds, want)
	}
	if v := groupVotersNow(t, cs, 0); !slices.Equal(v, []string{"n0"}) {
		t.Fatalf("the dry run changed the group's voters: %v", v)
	}
	if _, err := cs[1].Rebalance(ctx, false); err != nil {
		t.Fatalf("rebalance: %v", err)
	}
	live := []*Cluster{cs[0], cs[1], cs[3]}
	if got, v := metaLeaderMap(t, live).Groups[0].Replicas, groupVotersNow(t, live, 0); !sameSet(got, []string{"n0", "n1", "n3"}) || !slices.Equal(v, []string{"n0", "n1", "n3"}) {
		t.Fatalf("after the rebalance the map lists %v and the group's voters are %v, want n0, n1, n3 twice", got, v)
	}
	if out, err := cs[0].Rebalance(ctx, true); err != nil || len(out.Plan.Adds) != 0 {
		t.Fatalf("a second plan: %+v, %v; want no addition", out.Plan, err)
	}
}

// TestRebalanceAndMovesSkipANodeDown: rebalance evened out the load onto
// the least loaded node whether it answered or not: with n3 down and
// holding nothing, it moved a replica there, the move waited at its
// catch-up until the change timed out and the group was left half-moved;
// move-replica --to n3 did the same. rebalance evens out over the nodes
// that answer (here nothing to do), and move-replica to a node down is
// refused at once; neither changes the map.
func TestRebalanceAndMovesSkipANodeDown(t *testing.T) {
	cs, _ := openTestCluster(t, nil, 4, 4, 1) // group g on n(g)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	moved, err := cs[0].MoveReplica(ctx, Move{Group: 3, From: "n3", To: "n0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cs[3].Close(); err != nil { // n3: down, holding nothing
		t.Fatal(err)
	}
	live := cs[:3]
	// The move's map: a leader elected after n3 closed (if n3 led the
	// metadata group) may not have applied it yet when first asked.
	before := metaLeaderMap(t, live)
	for deadline := time.Now().Add(10 * time.Second); before.Version < moved.Map.Version; before = metaLeaderMap(t, live) {
		if time.Now().After(deadline) {
			t.Fatalf("the metadata leader's map is at version %d 10s after the move made %d", before.Version, moved.Map.Version)
		}
		time.Sleep(20 * time.Millisecond)
	}
	unchanged := func(what string) {
		t.Helper()
		if after := metaLeaderMap(t, live); after.Version != before.Version {
			t.Fatalf("%s changed the map: version %d -> %d, groups %v", what, before.Version, after.Version, after.Groups)
		}
	}

	cctx, ccancel := context.WithTimeout(ctx, 15*time.Second)
	out, err := cs[1].Rebalance(cctx, false)
	ccancel()
	if err != nil {
		t.Fatalf("rebalance with n3 down (n0, n1, n2 hold 2, 1, 1 replicas): %v", err)
	}
	if len(out.Plan.Moves) != 0 || !slices.Equal(out.Plan.Down, []string{"n3"}) {
		t.Fatalf("rebalance with n3 down moved %+v (down: %v); want nothing moved (n3 does not answer, the others are even) and n3 named down", out.Plan.Moves, out.Plan.Down)
	}
	unchanged("rebalance with n3 down")

	cctx, ccancel = context.WithTimeout(ctx, 15*time.Second)
	start := time.Now()
	_, err = cs[1].MoveReplica(cctx, Move{Group: 1, From: "n1", To: "n3"})
	ccancel()
	if err == nil || !strings.Contains(err.Error(), "n3 does not answer") || time.Since(start) > 5*time.Second {
		t.Fatalf("move-replica --to n3 (down): %v after %v; want a refusal at once saying n3 does not answer", err, time.Since(start))
	}
	t.Logf("move-replica --to n3 (down): %v", err)
	unchanged("move-replica --to n3")
}

// TestLeftoverDownIsTakenOut: an addition of n1 to group 0 stopped after
// its map change (the map lists n0 and n1, R=3; n1 is no voter), and n1
// stays down. rebalance is refused (it would wait for n1 to catch up), and
// move-replica --from n1 --to n0 was refused too, as n0 "already holds" a
// replica: nothing took n1 out. That move now drops n1 from the map (it
// never counted in a quorum, so it holds no acknowledged write the voters
// lack), and rebalance then brings the group back to R on the nodes up.
func TestLeftoverDownIsTakenOut(t *testing.T) {
	cs, _ := openTestCluster(t, nil, 4, 1, 3) // group 0 on n0, n1, n2
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	leaveAdditionCutShort(t, ctx, cs)
	if err := cs[1].Close(); err != nil { // n1 stays down
		t.Fatal(err)
	}
	live := []*Cluster{cs[0], cs[2], cs[3]}
	if _, err := cs[2].Rebalance(ctx, true); err == nil || !strings.Contains(err.Error(), "n1 does not answer") {
		t.Fatalf("rebalance with the leftover n1 down: %v; want a refusal naming n1", err)
	} else if !strings.Contains(err.Error(), "--from n1 --to n0") {
		t.Errorf("rebalance's refusal %q does not name the move that takes n1 out", err)
	}
	if _, err := cs[0].MoveReplica(ctx, Move{Group: 0, From: "n1", To: "n0"}); err != nil {
		t.Fatalf("move-replica --from n1 (listed, no voter, down) --to n0 (the voter): %v", err)
	}
	if got, v := metaLeaderMap(t, live).Groups[0].Replicas, groupVotersNow(t, live, 0); !slices.Equal(got, []string{"n0"}) || !slices.Equal(v, []string{"n0"}) {
		t.Fatalf("after taking n1 out the map lists %v and the group's voters are %v, want [n0] twice", got, v)
	}
	if _, err := cs[2].Rebalance(ctx, false); err != nil {
		t.Fatalf("rebalance once n1 is out: %v", err)
	}
	if got, v := metaLeaderMap(t, live).Groups[0].Replicas, groupVotersNow(t, live, 0); !sameSet(got, []string{"n0", "n2", "n3"}) || !slices.Equal(v, []string{"n0", "n2", "n3"}) {
		t.Fatalf("after the rebalance the map lists %v and the group's voters are %v, want n0, n2, n3 twice", got, v)
	}
}
