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
