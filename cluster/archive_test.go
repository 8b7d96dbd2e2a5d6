package cluster

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestArchivesRefuseAReplicaNotYetAVoter: a replica the map lists before
// the group's Raft configuration holds it (a move between its steps 1 and
// 3) holds none or part of the group's log. A historical-features join on
// its node read that as the group's whole archive and left the group's
// records out without a word; Archives now refuses there, and still
// answers on the group's voters.
func TestArchivesRefuseAReplicaNotYetAVoter(t *testing.T) {
	cs, _ := openTestCluster(t, nil, 3, 1, 2) // group 0 on n0, n1
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	listStopped(t, ctx, cs[0], 0, "n2") // a move to n2 stopped after its step 1
	for cs[2].group(0) == nil {
		if ctx.Err() != nil {
			t.Fatal("n2 did not open the replica the map lists")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if gs, err := cs[2].Archives(); err == nil {
		t.Fatalf("n2, listed and not a voter, answered %d archives", len(gs))
	} else if !strings.Contains(err.Error(), "not a voter") {
		t.Fatalf("n2's refusal %q does not say why", err)
	}
	for _, i := range []int{0, 1} {
		if gs, err := cs[i].Archives(); err != nil || len(gs) != 1 {
			t.Fatalf("n%d, a voter: %d archives, %v", i, len(gs), err)
		}
	}
}
