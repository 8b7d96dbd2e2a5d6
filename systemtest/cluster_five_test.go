package systemtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
)

// TestClusterFiveNodes: 5 processes, 8 groups of 3 replicas, so no node
// holds every group: writers ingest through every node while the leader
// of a random group is killed and restarted 3 times; a profile table and
// an import go through nodes that lack some of the groups they touch.
// Afterwards every acknowledged event is counted exactly once through
// every node at the default read level (the reads a node cannot answer
// itself go to the groups' leaders) and at local (a node's own replicas,
// else the group's), the replicas' checksums agree, the table rows and the
// imported events are read back through every node, and historical
// features on a node missing a group answer 501 naming the nodes that can.
func TestClusterFiveNodes(t *testing.T) {
	kills := 3
	if testing.Short() {
		kills = 1
	}
	const groups = 8
	c := startCluster(t, 5, groups, 3)
	l := startLoad(t, c, "five-", 4, 0, 1, 2, 3, 4)
	ctx := context.Background()

	// A table upload and an import, each through a different node.
	var csv strings.Builder
	csv.WriteString("user_id,home_lat,home_long\n")
	for u := range loadUsers {
		fmt.Fprintf(&csv, "five-u%d,%d,%d\n", u, u, -u)
	}
	if _, err := c.nodes[3].Client.UploadTable(ctx, "user_profile", client.CSV, []byte(csv.String()), client.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	var imp []string
	old := time.Now().Add(-30 * time.Minute).UnixMilli()
	for i := range 50 {
		imp = append(imp, fmt.Sprintf(`{"user_id":"five-imported","merchant":"five-im","category":"c","amt":2,"country":"DE","lat":1,"long":2,"timestamp":%d}`, old+int64(i)*1000))
	}
	if _, err := c.nodes[4].Client.Import(ctx, "transactions", []byte(strings.Join(imp, "\n")), client.WriteOptions{RequestID: "five-import"}); err != nil {
		t.Fatal(err)
	}

	rng := rand.New(rand.NewPCG(5, 5))
	for k := 0; k < kills; k++ {
		l.waitAcked(20, 60*time.Second)
		g := rng.IntN(groups)
		li := -1
		for wait := time.Now(); li < 0; li = c.leaderOf(g) {
			if time.Since(wait) > 30*time.Second {
				t.Fatalf("group %d has no leader", g)
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.nodes[li].Kill()
		time.Sleep(time.Duration(rng.IntN(1000)) * time.Millisecond)
		c.nodes[li].Restart()
	}
	l.waitAcked(20, 60*time.Second)
	l.halt()
	c.waitConverged(2 * time.Minute)
	l.check() // local

	// The default level through every node, the table and the import.
	for i, nd := range c.nodes {
		for u := range loadUsers {
			user := fmt.Sprintf("five-u%d", u)
			f, err := nd.Client.GetFeatures(ctx, client.LookupRequest{Service: "fraud_detection",
				JoinKeys:       map[string]any{"user_id": user, "merchant": "five-m0", "country": "FR"},
				RequestContext: map[string]any{"amt": 1, "lat": 0, "long": 0}})
			if err != nil {
				t.Fatalf("node %d: lookup %s: %v", i, user, err)
			}
			if got, _ := f.Get("user_transaction_counts.amt_count_1h"); toInt(got) != l.acked[user] {
				t.Errorf("node %d: %s counted %v events at the default level, %d acknowledged", i, user, got, l.acked[user])
			}
			if lat, _ := f.Get("user_profile.home_lat"); toInt(lat) != u {
				t.Errorf("node %d: %s's profile home_lat %v, uploaded %d", i, user, lat, u)
			}
		}
		f, err := nd.Client.GetFeatures(ctx, client.LookupRequest{Service: "fraud_detection",
			JoinKeys:       map[string]any{"user_id": "five-imported", "merchant": "five-im", "country": "DE"},
			RequestContext: map[string]any{"amt": 1, "lat": 0, "long": 0}})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := f.Get("user_transaction_counts.amt_count_1h"); toInt(got) != 50 {
			t.Errorf("node %d: the imported user counted %v events, 50 imported", i, got)
		}
	}

	// Historical features need a node holding every group: with 5 nodes
	// and 3 replicas, none does.
	_, err := c.nodes[0].Client.HistoricalFeatures(ctx, client.HistoricalRequest{Service: "fraud_detection",
		Spine: []byte(`{"user_id":"five-u1","merchant":"five-m1","country":"FR","amt":1,"lat":1,"long":2,"timestamp":1}` + "\n")})
	if client.StatusOf(err) != 501 || !strings.Contains(err.Error(), "holds no replica of group") {
		t.Fatalf("historical features on a node lacking a group: %v, want 501 naming the group", err)
	}
}
