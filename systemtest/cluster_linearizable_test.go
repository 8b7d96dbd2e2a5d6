package systemtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/systemtest/linearize"
)

// TestClusterLinearizableReadsUnderPause: writers add events to a few
// users and readers read their counts at read_level linearizable through
// every node, while the leader of a group is stopped (SIGSTOP) past the
// election timeout and then resumed (SIGCONT), three times. The history of
// every operation is checked with porcupine: no linearizable read returned
// a stale count (or one ahead of the writes).
func TestClusterLinearizableReadsUnderPause(t *testing.T) {
	pauses := 3
	if testing.Short() {
		pauses = 1
	}
	const groups = 2
	c := startCluster(t, 3, groups, 3)
	rec := linearize.NewRecorder()
	keys := []string{"lz0", "lz1", "lz2", "lz3"}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var acks, reads, readErrs atomic.Int64
	// Writers: each request holds one event for each of 1-3 distinct keys,
	// recorded as one Add(key, 1) per key over the request's interval: a
	// request's events become visible one at a time while it is applied
	// (README "Design decisions"), so an Add is one event. A request
	// never acknowledged has unknown outcomes.
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 5))
			for seq := 0; !stop.Load(); seq++ {
				var lines []string
				var hs []linearize.Handle
				for _, k := range rng.Perm(len(keys))[:1+rng.IntN(3)] {
					lines = append(lines, clusterEvent(keys[k], "m1", "FR", 1))
					hs = append(hs, rec.BeginAdd(w, keys[k], 1))
				}
				id := fmt.Sprintf("lz-w%d-%d", w, seq)
				ok := false
				for attempt := 0; attempt < 20 && !stop.Load(); attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
					_, err := c.nodes[(w+attempt)%3].Client.IngestBulk(ctx, "transactions", []byte(strings.Join(lines, "\n")), client.WriteOptions{RequestID: id})
					cancel()
					if err == nil {
						ok = true
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				for _, h := range hs {
					if ok {
						rec.Ack(h)
					} else {
						rec.Unknown(h)
					}
				}
				if ok {
					acks.Add(1)
				}
			}
		}()
	}
	// Readers: a failed read has no effect and is discarded.
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 11))
			for !stop.Load() {
				key := keys[rng.IntN(len(keys))]
				nd := c.nodes[rng.IntN(3)]
				h := rec.BeginRead(3+r, key)
				ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
				f, err := nd.Client.GetFeatures(ctx, client.LookupRequest{Service: "fraud_detection", ReadLevel: "linearizable",
					JoinKeys:       map[string]any{"user_id": key, "merchant": "m1", "country": "FR"},
					RequestContext: map[string]any{"amt": 1, "lat": 0, "long": 0}})
				cancel()
				if err != nil {
					rec.Discard(h)
					readErrs.Add(1)
					time.Sleep(20 * time.Millisecond)
					continue
				}
				v, _ := f.Get("user_transaction_counts.amt_count_1h")
				if v == nil {
					v = 0.0
				}
				rec.Count(h, int64(toInt(v)))
				reads.Add(1)
			}
		}()
	}
	rng := rand.New(rand.NewPCG(3, 3))
	for p := 0; p < pauses; p++ {
		time.Sleep(time.Duration(800+rng.IntN(800)) * time.Millisecond)
		g := rng.IntN(groups)
		li := -1
		for wait := time.Now(); li < 0; li = c.leaderOf(g) {
			if time.Since(wait) > 30*time.Second {
				t.Fatalf("group %d has no leader", g)
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.nodes[li].Pause()
		time.Sleep(3 * time.Second) // past the 1 s election timeout: the others elect a leader
		c.nodes[li].Resume()
	}
	time.Sleep(time.Second)
	stop.Store(true)
	wg.Wait()
	t.Logf("%d adds acknowledged, %d linearizable reads (%d refused during the pauses), %d operations checked", acks.Load(), reads.Load(), readErrs.Load(), rec.Len())
	if reads.Load() < 20 || acks.Load() < 20 {
		t.Fatalf("too little happened to check: %d reads, %d adds", reads.Load(), acks.Load())
	}
	ok, err := rec.Check(60 * time.Second)
	if !ok {
		t.Fatal(err)
	}
}
