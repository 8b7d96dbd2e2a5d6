package systemtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/systemtest/harness"
)

// TestKill9LosesNothingAcknowledged ingests continuously over HTTP into the
// real binary, kills it with SIGKILL at random moments, restarts it on the
// same data directory, and checks that every acknowledged event is counted
// exactly once and no request is half-applied; then, as a client would,
// retries every request that was in flight under its request id
// (Idempotency-Key), and checks each is now counted exactly once, whether
// or not the killed process had logged it.
//
// Each ingest request carries k events (1 to 5) of a user id no other
// request uses, so after recovery that user's amt_count_1h must be k if the
// request was acknowledged, and 0 or k (never anything else) if it was in
// flight when the process died; after its retry, k.
func TestKill9LosesNothingAcknowledged(t *testing.T) {
	cycles := 20
	if testing.Short() {
		cycles = 5
	}
	dir := t.TempDir()
	// Snapshots every 150 ms, so kills land before, during and after them
	// and recovery goes through snapshot + log as well as log alone.
	opts := harness.Options{DataDir: dir, Config: "durability:\n  snapshot_every: 150ms\n  segment_size: 1048576\n"}
	var p *harness.Node
	rng := rand.New(rand.NewPCG(42, 7))
	type batch struct {
		user  string
		cycle int
		k     int
		body  []byte
		acked bool
	}
	var all []batch
	totalRetried, totalHeld := 0, 0
	for cycle := 0; cycle < cycles; cycle++ {
		if p == nil {
			p = harness.Start(t, opts)
		} else {
			p.Restart()
		}
		// The writers' client never retries: a request either reached this
		// process or failed.
		writer := p.NewClient(client.Options{Retries: -1})
		// Everything acknowledged before must be there, exactly.
		// After each restart: every batch of the last cycle and a sample of
		// older ones (the final check below reads them all).
		checkBatches := func(when string) {
			for i, b := range all {
				if b.cycle < cycle-1 && i%10 != 0 {
					continue
				}
				got := userCount(t, p, b.user)
				if b.acked && got != b.k {
					t.Fatalf("cycle %d %s: acknowledged user %s has count %d, want %d", cycle, when, b.user, got, b.k)
				}
				if !b.acked && got != 0 && got != b.k {
					t.Fatalf("cycle %d %s: unacknowledged user %s half applied: count %d of %d", cycle, when, b.user, got, b.k)
				}
			}
		}
		checkBatches("after restart")
		retried, held := 0, 0
		for i := range all {
			b := &all[i]
			if b.acked {
				continue
			}
			if userCount(t, p, b.user) == b.k {
				held++ // the killed process had logged it: the retry must change nothing
			}
			if _, err := writer.IngestBulk(context.Background(), "transactions", b.body, client.WriteOptions{RequestID: b.user}); err != nil {
				t.Fatalf("cycle %d: retry of %s: %v", cycle, b.user, err)
			}
			b.acked = true
			retried++
			if got := userCount(t, p, b.user); got != b.k {
				t.Fatalf("cycle %d: retried user %s has count %d, want %d: not applied exactly once", cycle, b.user, got, b.k)
			}
		}
		totalRetried, totalHeld = totalRetried+retried, totalHeld+held
		// Ingest from 4 concurrent clients until the kill.
		var mu sync.Mutex
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for c := 0; c < 4; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					b := batch{user: fmt.Sprintf("crash-%d-%d-%d", cycle, c, i), cycle: cycle, k: 1 + (i*7+c)%5}
					now := time.Now().UnixMilli()
					for j := 0; j < b.k; j++ {
						b.body = fmt.Appendf(b.body, `{"user_id":%q,"merchant":"m","category":"c","country":"FR","amt":1,"lat":0,"long":0,"is_fraud":0,"timestamp":%d}`+"\n", b.user, now-int64(j))
					}
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					_, err := writer.IngestBulk(ctx, "transactions", b.body, client.WriteOptions{RequestID: b.user})
					cancel()
					var refused *client.Error
					b.acked = err == nil
					mu.Lock()
					all = append(all, b)
					mu.Unlock()
					if err != nil && !errors.As(err, &refused) {
						return // the process is gone
					}
				}
			}(c)
		}
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		p.Kill()
		close(stop)
		wg.Wait()
	}
	// A last restart: everything acknowledged in every cycle, exactly once.
	p.Restart()
	if !strings.Contains(p.Output(), ".snap") {
		ents, _ := os.ReadDir(filepath.Join(dir, "snapshots"))
		t.Fatalf("recovery used no snapshot (%d files):\n%s", len(ents), p.Output())
	}
	acked := 0
	for _, b := range all {
		got := userCount(t, p, b.user)
		if b.acked {
			acked++
			if got != b.k {
				t.Fatalf("final: acknowledged user %s has count %d, want %d", b.user, got, b.k)
			}
		} else if got != 0 && got != b.k {
			t.Fatalf("final: unacknowledged user %s half applied: %d of %d", b.user, got, b.k)
		}
	}
	if acked < cycles {
		t.Fatalf("only %d requests acknowledged in %d cycles: the test did not load the node", acked, cycles)
	}
	if totalRetried == 0 {
		t.Fatal("no request was in flight at a kill: the retries were not tested")
	}
	t.Logf("%d cycles, %d requests acknowledged, all present exactly once; %d retried after a kill (%d of them logged before it)", cycles, acked, totalRetried, totalHeld)
}

func userCount(t *testing.T, p *harness.Node, user string) int {
	t.Helper()
	f, err := p.Client.GetFeatures(context.Background(), client.LookupRequest{Service: "fraud_detection",
		JoinKeys:       map[string]any{"user_id": user, "merchant": "m", "country": "FR"},
		RequestContext: map[string]any{"amt": 1, "lat": 0, "long": 0}})
	if err != nil {
		t.Fatalf("lookup %s: %v", user, err)
	}
	v, ok := f.Get("user_transaction_counts.amt_count_1h")
	if !ok {
		t.Fatalf("no amt_count_1h in %+v", f)
	}
	return int(v.(float64))
}
