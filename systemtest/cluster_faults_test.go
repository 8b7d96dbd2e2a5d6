package systemtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
)

// Network faults between the nodes of a 3-node cluster, injected by a
// faultproxy in front of every node's cluster port, while writers ingest
// (each request with an id, retried with it until acknowledged). After
// each fault is healed: every acknowledged event is counted exactly once
// on every replica (local reads on every node), and the replicas of every
// group have equal checksums.

// TestClusterBlackholedNode: the leader of a group is blackholed from
// both other nodes (its streams stall, they do not close) while writers
// ingest through every node; the other two keep acknowledging writes;
// heal.
func TestClusterBlackholedNode(t *testing.T) {
	const groups = 3
	c, net := startProxiedCluster(t, 3, groups, 3)
	l := startLoad(t, c, "bh-", 3, 0, 1, 2)
	l.waitAcked(20, 30*time.Second)
	victim := c.leaderAnywhere(groups)
	if victim < 0 {
		t.Fatal("no group has a leader")
	}
	net.Isolate(victim)
	// Hold it past the election timeout and the victim's lease: the
	// others elect leaders for the victim's groups among themselves and
	// keep acknowledging writes (a writer's attempt through the victim
	// fails and is retried elsewhere).
	from := l.reqs.Load()
	time.Sleep(8 * time.Second)
	l.waitAcked(10, 30*time.Second)
	t.Logf("node %d blackholed: %d requests acknowledged meanwhile", victim, l.reqs.Load()-from)
	for _, i := range others(3, victim) {
		s, err := c.status(i, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range s.Groups {
			if g.Leader == fmt.Sprintf("n%d", victim) {
				t.Errorf("node %d still sees the blackholed node %d leading group %d after 8 s", i, victim, g.Group)
			}
		}
	}
	net.Heal()
	l.waitAcked(10, 30*time.Second)
	l.halt()
	c.waitConverged(time.Minute)
	l.check()
}

// TestClusterMinorityPartition: one node is cut off from the other two.
// A write through it is refused with 503 UNAVAILABLE once the write
// timeout passes, while a local read there still answers what it holds;
// the majority keeps acknowledging writes. After the heal, the refused
// write retried with its id is counted once.
func TestClusterMinorityPartition(t *testing.T) {
	const groups = 3
	c, net := startProxiedCluster(t, 3, groups, 3)
	ctx := context.Background()
	// A marker key every replica holds before the partition.
	marker := strings.Join([]string{
		clusterEvent("marker", "mk", "FR", 5), clusterEvent("marker", "mk", "FR", 6), clusterEvent("marker", "mk", "DE", 7)}, "\n")
	if _, err := c.nodes[0].Client.IngestBulk(ctx, "transactions", []byte(marker), client.WriteOptions{RequestID: "marker"}); err != nil {
		t.Fatal(err)
	}
	c.waitConverged(time.Minute)
	l := startLoad(t, c, "mp-", 3, 0, 1)
	l.waitAcked(20, 30*time.Second)

	const minority = 2
	net.Partition([]int{0, 1}, []int{minority})
	l.waitAcked(20, 45*time.Second) // the majority takes writes (new leaders where n2 led)

	// A write through the minority node: 503 UNAVAILABLE, not acknowledged.
	solo := c.nodes[minority].NewClient(client.Options{Retries: -1})
	body := []byte(strings.Join([]string{clusterEvent("lonely", "mk", "FR", 1), clusterEvent("lonely", "mk", "US", 2)}, "\n"))
	t0 := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err := solo.IngestBulk(wctx, "transactions", body, client.WriteOptions{RequestID: "lonely-1"})
	cancel()
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 503 || ce.Code != "UNAVAILABLE" {
		t.Fatalf("write through the minority node: want 503 UNAVAILABLE, got %v", err)
	}
	if !strings.Contains(ce.Message, "Idempotency-Key") {
		t.Errorf("the 503 does not say to retry with the same Idempotency-Key: %q", ce.Message)
	}
	t.Logf("minority write refused after %s: %s", time.Since(t0).Round(time.Millisecond), ce.Message)

	// A local read on the minority node answers from its replica.
	f, err := solo.GetFeatures(ctx, client.LookupRequest{Service: "fraud_detection", ReadLevel: "local",
		JoinKeys:       map[string]any{"user_id": "marker", "merchant": "mk", "country": "FR"},
		RequestContext: map[string]any{"amt": 1, "lat": 0, "long": 0}})
	if err != nil {
		t.Fatalf("local read on the minority node: %v", err)
	}
	if got, _ := f.Get("user_transaction_counts.amt_count_1h"); toInt(got) != 3 {
		t.Errorf("local read on the minority node: marker counted %v events, want 3", got)
	}
	l.waitAcked(10, 30*time.Second) // still taking writes on the majority side

	net.Heal()
	// The refused write, retried with its id (any node), now completes once.
	for attempt := 0; ; attempt++ {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := c.nodes[(minority+attempt)%3].Client.IngestBulk(wctx, "transactions", body, client.WriteOptions{RequestID: "lonely-1"})
		cancel()
		if err == nil {
			break
		}
		if attempt > 20 {
			t.Fatalf("the retried write is not acknowledged after the heal: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	l.setNodes(0, 1, 2)
	l.waitAcked(10, 30*time.Second)
	l.halt()
	c.waitConverged(time.Minute)
	l.check()
	for i, nd := range c.nodes {
		f, err := nd.Client.GetFeatures(ctx, client.LookupRequest{Service: "fraud_detection", ReadLevel: "local",
			JoinKeys:       map[string]any{"user_id": "lonely", "merchant": "mk", "country": "FR"},
			RequestContext: map[string]any{"amt": 1, "lat": 0, "long": 0}})
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := f.Get("user_transaction_counts.amt_count_1h"); toInt(got) != 2 {
			t.Errorf("node %d: the write refused in the minority and retried after the heal counted %v events, want 2", i, got)
		}
	}
}

// TestClusterSlowLossyNetwork: every link delays each chunk by 25-75 ms
// and resets 2% of its connections at a chunk, for a while; heal.
func TestClusterSlowLossyNetwork(t *testing.T) {
	start := time.Now()
	c, net := startProxiedCluster(t, 3, 3, 3)
	t.Logf("started in %s", time.Since(start).Round(time.Millisecond))
	l := startLoad(t, c, "sl-", 4, 0, 1, 2)
	l.waitAcked(20, 30*time.Second)
	t.Logf("20 acknowledged at %s", time.Since(start).Round(time.Millisecond))
	for _, p := range net.Proxies {
		p.Delay("", 25*time.Millisecond, 50*time.Millisecond)
		p.DropRate("", 0.02)
	}
	from := l.reqs.Load()
	time.Sleep(8 * time.Second)
	t.Logf("%d requests acknowledged in 8 s of delays and drops", l.reqs.Load()-from)
	net.Heal()
	t0 := time.Now()
	l.waitAcked(20, 30*time.Second)
	l.halt()
	t.Logf("after the heal: 20 requests acknowledged and the writers stopped in %s", time.Since(t0).Round(time.Millisecond))
	c.waitConverged(time.Minute)
	t.Logf("converged %s after the heal", time.Since(t0).Round(time.Millisecond))
	l.check()
}

// TestClusterSnapshotCatchUp: a follower is blackholed while the others
// take enough writes that their leaders snapshot and compact their logs
// past it (small snapshot threshold and trailing logs), so after the heal
// it can only catch up by InstallSnapshot; its status counts the restored
// snapshots.
func TestClusterSnapshotCatchUp(t *testing.T) {
	const groups = 2
	c, net := startProxiedCluster(t, 3, groups, 3,
		"--cluster-snapshot-threshold", "40", "--cluster-trailing-logs", "10", "--cluster-snapshot-interval", "100ms")
	l := startLoad(t, c, "sc-", 4, 0, 1, 2)
	l.waitAcked(20, 30*time.Second)
	const victim = 2
	l.setNodes(0, 1)
	net.Isolate(victim)
	behind := c.groupIndexes(victim)
	// Commit far past the victim's log end: many snapshots later, the
	// leaders' logs start after it.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ahead := c.groupIndexes(0)
		done := true
		for g, at := range behind {
			if ahead[g] < at+300 {
				done = false
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the majority did not commit 300 entries past the isolated follower in 60 s: %v vs %v", ahead, behind)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a last snapshot round
	restored, err := c.snapshotRestores(victim)
	if err != nil {
		t.Fatal(err)
	}
	net.Heal()
	l.setNodes(0, 1, 2)
	deadline = time.Now().Add(45 * time.Second)
	for {
		now, err := c.snapshotRestores(victim)
		if err != nil {
			t.Fatal(err)
		}
		caught := 0
		for g, k := range now {
			if k > restored[g] {
				caught++
			}
		}
		if caught == groups {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the healed follower did not restore a snapshot of every group from its leader in 45 s: %v (before the heal: %v)", now, restored)
		}
		time.Sleep(200 * time.Millisecond)
	}
	l.waitAcked(10, 30*time.Second)
	l.halt()
	c.waitConverged(time.Minute)
	l.check()
}
