package harness_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/systemtest/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

func count(t *testing.T, c *client.Client, user string) any {
	t.Helper()
	f, err := c.GetFeatures(context.Background(), client.LookupRequest{Service: "fraud_detection",
		JoinKeys:       map[string]any{"user_id": user, "merchant": "m", "country": "FR"},
		RequestContext: map[string]any{"amt": 1, "lat": 0, "long": 0}})
	if err != nil {
		t.Fatalf("lookup %s: %v", user, err)
	}
	v, _ := f.Get("user_transaction_counts.amt_count_1h")
	return v
}

// TestNodeLifecycle starts two nodes and takes one through every state the
// harness offers: each node keeps its own data; a paused node answers
// nothing until resumed; an acknowledged ingest survives kill -9 and a
// graceful stop, each followed by a restart on the same port and data dir.
func TestNodeLifecycle(t *testing.T) {
	nodes := harness.StartN(t, 2, harness.Options{})
	a, b := nodes[0], nodes[1]
	if a.Addr == b.Addr || a.DataDir == b.DataDir {
		t.Fatalf("nodes share %s / %s", a.Addr, a.DataDir)
	}
	ctx := context.Background()
	rec := client.Record{"user_id": "u1", "merchant": "m", "category": "c", "amt": 1, "country": "FR",
		"lat": 0, "long": 0, "is_fraud": 0, "timestamp": time.Now().UnixMilli() - 1000}
	if res, err := a.Client.Ingest(ctx, "transactions", []client.Record{rec}); err != nil || res.Accepted != 1 {
		t.Fatalf("ingest: %+v %v", res, err)
	}
	if got := count(t, a.Client, "u1"); got != 1.0 {
		t.Fatalf("node0 count %v, want 1", got)
	}
	if got := count(t, b.Client, "u1"); got != 0.0 {
		t.Fatalf("node1 count %v, want 0: nodes share state", got)
	}

	b.Pause()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := b.Client.Healthz(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("healthz of a paused node: %v", err)
	}
	b.Resume()
	if err := b.Client.Healthz(ctx); err != nil {
		t.Fatalf("healthz after resume: %v", err)
	}

	a.Kill()
	if a.Running() {
		t.Fatal("running after kill")
	}
	a.Restart()
	if got := count(t, a.Client, "u1"); got != 1.0 {
		t.Fatalf("after kill -9 and restart: count %v, want 1", got)
	}
	if err := a.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if !strings.Contains(a.Output(), "shutting down") {
		t.Fatalf("no graceful shutdown in the output:\n%s", a.Output())
	}
	a.Restart()
	if got := count(t, a.Client, "u1"); got != 1.0 {
		t.Fatalf("after stop and restart: count %v, want 1", got)
	}
}

// TestLaunchRefused: a node that refuses to start is seen to exit, with
// its reason in its output.
func TestLaunchRefused(t *testing.T) {
	n := harness.Launch(t, harness.Options{Config: "durability:\n  fsync: sometimes\n"})
	select {
	case <-n.Exited():
	case <-time.After(30 * time.Second):
		t.Fatal("a node with a bad config did not exit")
	}
	if n.ExitErr() == nil || !strings.Contains(n.Output(), "sometimes") {
		t.Fatalf("exit %v, output:\n%s", n.ExitErr(), n.Output())
	}
}
