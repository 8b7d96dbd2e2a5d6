package node

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/store"
)

// replicatedCommitter commits as a replicated log does: it ignores the
// caller's local apply and applies each committed record by decoding it,
// through the state machine's Apply.
type replicatedCommitter struct {
	mu   sync.Mutex
	sm   store.StateMachine
	last uint64
}

func (c *replicatedCommitter) Commit(_ context.Context, recs [][]byte, _ func()) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rec := range recs {
		c.last++
		if err := c.sm.Apply(c.last, bytes.Clone(rec)); err != nil {
			return err
		}
	}
	return nil
}

func (c *replicatedCommitter) Err() error { return nil }

// TestCommitByDecodingEqualsLocalApply: a node whose Committer applies the
// committed records by decoding them (as every replica of a Raft group
// will) serves, byte for byte, what a node applying the caller's decoded
// batches in process serves, for ingest, bulk, backfill imports and table
// uploads, including events refused as too late.
func TestCommitByDecodingEqualsLocalApply(t *testing.T) {
	local, clk := newTestNode(t, DefaultConfig())
	repo, _ := features.Default()
	replicated, err := New(repo, DefaultConfig(), Options{Clock: clk.now, RepoFS: features.DefaultFS(),
		Committer: func(sm store.StateMachine) store.Committer { return &replicatedCommitter{sm: sm} }})
	if err != nil {
		t.Fatal(err)
	}
	replicated.SetReady(true)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 200; i++ {
		var do func(n *Node) error
		switch k := rng.IntN(10); {
		case k == 0:
			body := []byte(fmt.Sprintf("user_id,home_lat,home_long\nu%d,%d,%d\n", rng.IntN(50), rng.IntN(90), rng.IntN(90)))
			do = func(n *Node) error {
				if _, aerr := n.UploadTable("user_profile", CSV, body, false); aerr != nil {
					return aerr
				}
				return nil
			}
		case k == 1:
			line := fmt.Sprintf(`{"user_id":"u%d","merchant":"m%d","category":"grocery_pos","country":"FR","amt":%d,"lat":1,"long":2,"is_fraud":0,"timestamp":%d}`+"\n",
				rng.IntN(50), rng.IntN(20), rng.IntN(100), t0-int64(rng.IntN(3*86_400_000)))
			do = func(n *Node) error { _, err := n.ImportNDJSON("transactions", []byte(line), false); return err }
		default:
			var recs []string
			for j := 0; j < 1+rng.IntN(20); j++ {
				ts := t0 - rng.Int64N(4*60_000)
				if rng.IntN(30) == 0 {
					ts = t0 - 2*86_400_000 // too late for the user views
				}
				recs = append(recs, txn(fmt.Sprintf("u%d", rng.IntN(50)), fmt.Sprintf("m%d", rng.IntN(20)), []string{"FR", "US"}[rng.IntN(2)], float64(rng.IntN(10000))/100, ts))
			}
			body := ingestBody(recs...)
			do = func(n *Node) error { _, err := n.IngestJSON(body); return err }
		}
		if err := do(local); err != nil {
			t.Fatalf("step %d, local: %v", i, err)
		}
		if err := do(replicated); err != nil {
			t.Fatalf("step %d, replicated: %v", i, err)
		}
		clk.advance(1000)
	}
	if a, b := local.AppliedIndex(), replicated.AppliedIndex(); a != b || a == 0 {
		t.Fatalf("applied index %d (local) vs %d (replicated)", a, b)
	}
	// Each node counts every event it applied once, however it applied it.
	counters := func(n *Node) string {
		var buf bytes.Buffer
		n.Metrics().WritePrometheus(&buf)
		var out []string
		for _, l := range strings.Split(buf.String(), "\n") {
			if strings.HasPrefix(l, "tally_ingest_events_total") || strings.HasPrefix(l, "tally_ingest_too_late") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "; ")
	}
	if a, b := counters(local), counters(replicated); a != b || a == "" {
		t.Errorf("metrics differ: local %q, replicated %q", a, b)
	}
	for u := 0; u < 50; u++ {
		body := lookupBody(fmt.Sprintf("u%d", u), fmt.Sprintf("m%d", u%20), []string{"FR", "US"}[u%2], 10, 1, 2)
		want, aerr := local.GetFeatures(nil, body)
		if aerr != nil {
			t.Fatal(aerr)
		}
		got, aerr := replicated.GetFeatures(nil, body)
		if aerr != nil {
			t.Fatal(aerr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("u%d differs:\n got %s\nwant %s", u, got, want)
		}
	}
}
