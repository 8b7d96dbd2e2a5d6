package cluster

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMoveResumedWithItsTargetDownNamesTheUndo: a move of group 0 from
// n0 to n3 stopped after its step 4 (n3 a voter, n0 out of the group's
// Raft configuration, the map listing both), and n3 went down. The move
// run again was refused as if new: "n3 does not answer ... Nothing was
// changed: start n3 again, or choose a node that answers", though the
// map lists four replicas and a move to any other node is refused beside
// it. The refusal now says the move stopped half-way and names the move
// that undoes it, which goes through with n3 down.
func TestMoveResumedWithItsTargetDownNamesTheUndo(t *testing.T) {
	cs, _ := openTestCluster(t, nil, 4, 1, 3) // group 0 on n0, n1, n2
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	listStopped(t, ctx, cs[0], 0, "n3")
	n3 := *metaLeaderMap(t, cs).Member("n3")
	if err := cs[0].catchUpVoter(ctx, 0, n3); err != nil {
		t.Fatal(err)
	}
	if _, err := cs[0].changeVoters(ctx, 0, voterChange{Op: "remove", ID: "n0", Handoff: "n3"}); err != nil {
		t.Fatal(err)
	}
	if err := cs[3].Close(); err != nil {
		t.Fatal(err)
	}
	live := cs[:3]
	_, err := cs[1].MoveReplica(ctx, Move{Group: 0, From: "n0", To: "n3"})
	if err == nil {
		t.Fatal("the move to n3, down, run again was accepted")
	}
	msg := err.Error()
	if strings.Contains(msg, "Nothing was changed") || !strings.Contains(msg, "stopped half-way") ||
		!strings.Contains(msg, "tally cluster move-replica --group 0 --from n3 --to n0") {
		t.Fatalf("the move to n3, down, run again: refused with %q; want it to say the move stopped half-way and name the move that undoes it", msg)
	}
	if _, err := cs[2].MoveReplica(ctx, Move{Group: 0, From: "n3", To: "n0"}); err != nil {
		t.Fatalf("the undo the refusal names: %v", err)
	}
	if got, v := metaLeaderMap(t, live).Groups[0].Replicas, groupVotersNow(t, live, 0); !sameSet(got, []string{"n0", "n1", "n2"}) || !slices.Equal(v, []string{"n0", "n1", "n2"}) {
		t.Fatalf("after the undo the map lists %v and the group's voters are %v, want n0, n1, n2 twice", got, v)
	}
}

// TestMovesOldReplicaNamesTheMoveInItsReadiness: a move of group 0 from
// n1 to n3 took n1's replica out of the group's Raft configuration (its
// step 4) while n1 was down, and stopped before the map dropped n1. n1,
// restarted, hears from no leader of the group until the move is run
// again, and its readiness said only "no leader known for group(s) [0]
// of the 1 this node holds: waiting for an election". It now names the
// cause and the move that finishes it; that move makes n1 ready.
func TestMovesOldReplicaNamesTheMoveInItsReadiness(t *testing.T) {
	w := newWipedCluster(t, 4, 1, 3)
	w.start(0, 1, 2, 3)
	if rs := w.cs[0].Map().Groups[0].Replicas; !slices.Contains(rs, "n1") || slices.Contains(rs, "n3") {
		t.Fatalf("g0's replicas are %v; the test moves n1's to n3", rs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	listStopped(t, ctx, w.cs[0], 0, "n3")
	if err := w.cs[0].catchUpVoter(ctx, 0, *w.cs[0].Map().Member("n3")); err != nil {
		t.Fatal(err)
	}
	w.stop(1)
	if _, err := w.cs[0].changeVoters(ctx, 0, voterChange{Op: "remove", ID: "n1"}); err != nil {
		t.Fatal(err)
	}
	w.start(1)
	want := "`tally cluster move-replica --group 0 --from n1 --to n3`"
	var last error
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		last = w.cs[1].Err()
		if last != nil && strings.Contains(last.Error(), want) && strings.Contains(last.Error(), "not in the group's Raft configuration") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1's readiness after 20s: %v; want it to say its replica is not in the group's Raft configuration and name %s", last, want)
		}
	}
	t.Logf("n1's readiness: %v", last)
	if _, err := w.cs[2].MoveReplica(ctx, Move{Group: 0, From: "n1", To: "n3"}); err != nil {
		t.Fatalf("the move the readiness names: %v", err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if last = w.cs[1].Err(); last == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n1 not ready 20s after the move finished: %v", last)
		}
	}
}

// TestLeftOutOfGroupNamesTheMove: the readiness reason of a replica a
// stopped move left out of its group's Raft configuration names the move
// that finishes it: from this node to the voter the move listed last;
// listed last itself (a move to it, or its undo, stopped half-way), the
// move that takes it out and the one that makes it a voter.
func TestLeftOutOfGroupNamesTheMove(t *testing.T) {
	m := &Map{Replicas: 3, Groups: []GroupInfo{{ID: 0, Replicas: []string{"n0", "n1", "n2", "n3"}}}}
	for _, tc := range []struct {
		self   string
		voters []string
		want   []string
	}{
		{"n1", []string{"n0", "n2", "n3"}, []string{"`tally cluster move-replica --group 0 --from n1 --to n3`", "its voters: n0, n2, n3"}},
		{"n3", []string{"n0", "n1", "n2"}, []string{"`tally cluster move-replica --group 0 --from n3 --to n2`", "`tally cluster move-replica --group 0 --from <one of n0, n1, n2> --to n3`"}},
	} {
		got := leftOutOfGroup(m, 0, tc.self, tc.voters)
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s left out of voters %v: %q; want it to contain %q", tc.self, tc.voters, got, w)
			}
		}
	}
}
