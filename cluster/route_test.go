package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
)

// TestLocalReadOnAReplicaNotCaughtUp: a replica placed on a node by a move
// (step 1: the map lists it; the group's leader has not added it yet, or
// it is still copying the group) holds nothing. A local read on that node
// was answered from it: every feature empty, and "staleMs":0, as if the
// replica were fresh (its -1, "never heard from a leader", lost to the
// max with 0). A replica that applied nothing is not read; the leader is.
func TestLocalReadOnAReplicaNotCaughtUp(t *testing.T) {
	cs, fronts := openTestCluster(t, nil, 2, 1, 1) // group 0 on n0 only
	now := time.Now().UnixMilli()
	body := fmt.Sprintf(`{"user_id":"u1","merchant":"m1","category":"c","amt":5,"country":"FR","lat":1,"long":2,"timestamp":%d}`, now-1000)
	if _, err := fronts[0].IngestNDJSONAs("w1", "transactions", []byte(body), false); err != nil {
		t.Fatal(err)
	}
	// Step 1 of a move of group 0 to n1: the map lists n1.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := cs[0].casMeta(ctx, func(m *Map) *metaCommand {
		return &metaCommand{Op: "set-replicas", Group: 0, Replicas: []string{"n0", "n1"}}
	})
	if err != nil {
		t.Fatal(err)
	}
	for cs[1].group(0) == nil {
		if ctx.Err() != nil {
			t.Fatal("n1 never opened its replica of group 0")
		}
		time.Sleep(20 * time.Millisecond)
	}
	lookup := []byte(`{"params":{"feature_service_name":"fraud_detection","read_level":"local","join_key_map":{"user_id":"u1","merchant":"m1","country":"FR"},"request_context_map":{"amt":1,"lat":1,"long":2}}}`)
	for i, nd := range fronts {
		out, aerr := nd.GetFeatures(nil, lookup)
		if aerr != nil {
			t.Fatalf("n%d: %v", i, aerr)
		}
		s := string(out)
		if !strings.Contains(s, `"user_transaction_counts.amt_count_1h"`) {
			t.Fatalf("n%d: answer without the feature's name: %s", i, s)
		}
		f, err := client.DecodeFeatures(out)
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := f.Get("user_transaction_counts.amt_count_1h"); v != 1.0 {
			t.Errorf("n%d: local read: count %v, want 1: %s", i, v, s)
		}
	}
}

// TestMoveToANodeHoldingTheGroupIsRefused: move-replica --from A --to B
// where B already holds a replica of the group (and no move to B was left
// half-way) took A out and left the group one replica short, answering
// "replica moved". It is refused, and the group keeps its replicas.
func TestMoveToANodeHoldingTheGroupIsRefused(t *testing.T) {
	cs, _ := openTestCluster(t, nil, 3, 1, 2)
	before := cs[0].Map().Groups[0].Replicas
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err := cs[0].MoveReplica(ctx, Move{Group: 0, From: before[0], To: before[1]})
	if err == nil {
		t.Errorf("moving group 0 from %s to %s, which already holds it, was accepted", before[0], before[1])
	}
	// The metadata leader's map: cs[0] may not lead it, and its own copy
	// may lag.
	out, _ := cs[0].Rebalance(ctx, true)
	if after := out.Map.Groups[0].Replicas; !slices.Equal(after, before) {
		t.Fatalf("group 0's replicas went from %v to %v", before, after)
	}
	// A move to n2 stopped after its step 1 (the map lists n2 too) still
	// goes on when run again.
	err = cs[0].casMeta(ctx, func(m *Map) *metaCommand {
		return &metaCommand{Op: "set-replicas", Group: 0, Replicas: append(slices.Clone(before), "n2")}
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err = cs[0].MoveReplica(ctx, Move{Group: 0, From: before[0], To: "n2"})
	if err != nil {
		t.Fatalf("resuming the move to n2: %v", err)
	}
	if after := out.Map.Groups[0].Replicas; !slices.Equal(after, []string{"n2", before[1]}) {
		t.Fatalf("after the resumed move group 0's replicas are %v, want [n2 %s]", after, before[1])
	}
}
