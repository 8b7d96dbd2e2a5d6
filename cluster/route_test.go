package cluster

import (
	"context"
	"fmt"
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
