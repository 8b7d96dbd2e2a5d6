package localcluster

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/systemtest/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

func event(user string) []byte {
	return fmt.Appendf(nil, `{"user_id":%q,"merchant":"m1","category":"food","amt":5,"country":"FR","lat":1,"long":2,"timestamp":%d}`,
		user, time.Now().UnixMilli())
}

func count(t *testing.T, c *client.Client, user, level string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := c.GetFeatures(ctx, client.LookupRequest{Service: "fraud_detection", ReadLevel: level,
		JoinKeys:       map[string]any{"user_id": user, "merchant": "m1", "country": "FR"},
		RequestContext: map[string]any{"amt": 1, "lat": 0, "long": 0}})
	if err != nil {
		t.Fatalf("lookup %s: %v", user, err)
	}
	v, _ := f.Get("user_transaction_counts.amt_count_1h")
	n, _ := v.(float64)
	return int(n)
}

// TestCluster starts 3 processes as a cluster, writes through one node and
// reads through another, kills a group's leader, writes through a
// survivor, restarts the killed node and checks that its replica caught up;
// then it stops every process.
func TestCluster(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	c, err := Start(ctx, Options{Binary: harness.Binary(t), Dir: dir, Nodes: 3, Groups: 2, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if err := c.WaitLeaders(ctx, 2, time.Minute); err != nil {
		t.Fatal(err)
	}
	clients := make([]*client.Client, 3)
	for i, a := range c.Addrs() {
		if clients[i], err = client.New(a, client.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if _, err := clients[0].IngestBulk(ictx, "transactions", event("u1"), client.WriteOptions{RequestID: "first"}); err != nil {
		t.Fatal(err)
	}
	cancel()
	if n := count(t, clients[1], "u1", ""); n != 1 {
		t.Fatalf("node 1 counts %d events of u1, want 1", n)
	}

	li := c.LeaderOf(0)
	if li < 0 {
		t.Fatal("group 0 has no leader")
	}
	c.Kill(li)
	if c.Nodes[li].Running() {
		t.Fatalf("%s still running after Kill", c.Nodes[li].ID)
	}
	survivor := clients[(li+1)%3]
	for attempt := 0; ; attempt++ {
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := survivor.IngestBulk(ictx, "transactions", event("u1"), client.WriteOptions{RequestID: "second"})
		cancel()
		if err == nil {
			break
		}
		if attempt == 100 {
			t.Fatalf("no write acknowledged after the leader's kill: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := c.Restart(ctx, li); err != nil {
		t.Fatal(err)
	}
	// Every group's replica on the restarted node catches up with its
	// leader (u1 lives in one of the two groups).
	for g := range 2 {
		var want *GroupStatus
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
			if lead := c.LeaderOf(g); lead >= 0 && want == nil {
				want = c.Replica(lead, g)
			}
			if r := c.Replica(li, g); r != nil && want != nil && r.Applied >= want.Applied {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's replica of group %d did not catch up with %+v", c.Nodes[li].ID, g, want)
			}
		}
	}
	restarted, _ := client.New(c.Nodes[li].Addr, client.Options{})
	if n := count(t, restarted, "u1", "local"); n != 2 {
		t.Fatalf("the restarted node's local replica counts %d events of u1, want 2", n)
	}
	c.Stop()
	for _, nd := range c.Nodes {
		if nd.Running() {
			t.Errorf("%s still running after Stop", nd.ID)
		}
		if _, err := os.Stat(nd.LogPath); err != nil {
			t.Errorf("%s: no log: %v", nd.ID, err)
		}
	}
}

// TestSingle starts one plain node (no cluster flags): it serves, and it
// has no cluster status.
func TestSingle(t *testing.T) {
	c, err := Start(context.Background(), Options{Binary: harness.Binary(t), Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if len(c.Nodes) != 1 || c.Nodes[0].ClusterAddr != "" {
		t.Fatalf("nodes %+v, want one single node", c.Nodes)
	}
	if _, err := c.Status(0); err == nil {
		t.Error("a single node answered the cluster status")
	}
	cl, _ := client.New(c.Nodes[0].Addr, client.Options{})
	if _, err := cl.IngestBulk(context.Background(), "transactions", event("u9"), client.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := count(t, cl, "u9", ""); n != 1 {
		t.Fatalf("counted %d, want 1", n)
	}
}

// TestStartRefusesMissingBinary: a clear error, no process.
func TestStartRefusesMissingBinary(t *testing.T) {
	if _, err := Start(context.Background(), Options{Dir: t.TempDir(), Nodes: 3}); err == nil {
		t.Fatal("Start without a binary succeeded")
	}
	if _, err := Start(context.Background(), Options{Binary: "/nonexistent/tally", Dir: t.TempDir(), Nodes: 1}); err == nil {
		t.Fatal("Start of a missing binary succeeded")
	}
}
