package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/systemtest/harness"
)

// testCluster is a cluster of real tally processes on loopback.
type testCluster struct {
	t     *testing.T
	nodes []*harness.Node
	caddr []string // cluster port of each node
	// lastErr is what the last tallyCluster printed on stderr.
	lastErr string
}

// clusterStatus is GET /api/v1/cluster/status.
type clusterStatus struct {
	Node       string `json:"node"`
	MapVersion uint64 `json:"mapVersion"`
	MetaLeader string `json:"metaLeader"`
	Groups     []struct {
		Group         int    `json:"group"`
		State         string `json:"state"`
		Leader        string `json:"leader"`
		CommitIndex   uint64 `json:"commitIndex"`
		Applied       uint64 `json:"appliedIndex"`
		Checksum      string `json:"checksum"`
		AppliedRecord uint64 `json:"appliedRecord"`
	} `json:"groups"`
}

// startCluster starts n nodes forming one cluster of groups groups with
// replicas replicas each; extra is added to every node's arguments.
func startCluster(t *testing.T, n, groups, replicas int, extra ...string) *testCluster {
	t.Helper()
	key := filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(key, []byte("systemtest-cluster-key-0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, caddr: make([]string, n)}
	var peers []string
	for i := range n {
		c.caddr[i] = harness.FreeAddr(t)
		peers = append(peers, fmt.Sprintf("n%d=%s", i, c.caddr[i]))
	}
	args := append([]string{"--cluster-id", "systemtest", "--cluster-key-file", key, "--cluster-peers", strings.Join(peers, ","),
		"--cluster-groups", fmt.Sprint(groups), "--cluster-replicas", fmt.Sprint(replicas)}, extra...)
	c.nodes = harness.StartN(t, n, harness.Options{
		Args: args,
		PerNode: func(i int, _ []string) []string {
			return []string{"--node-id", fmt.Sprintf("n%d", i), "--cluster-addr", c.caddr[i]}
		},
		ReadyTimeout: 2 * time.Minute,
	})
	return c
}

// status reads node i's view of the cluster.
func (c *testCluster) status(i int, checksums bool) (*clusterStatus, error) {
	url := c.nodes[i].URL + "/api/v1/cluster/status"
	if checksums {
		url += "?checksums=true"
	}
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("status: %s", resp.Status)
	}
	var s clusterStatus
	return &s, json.NewDecoder(resp.Body).Decode(&s)
}

// leaderOf returns the index of the node leading group g, as a running
// node reports it (-1 if none does yet).
func (c *testCluster) leaderOf(g int) int {
	for i, nd := range c.nodes {
		if !nd.Running() {
			continue
		}
		s, err := c.status(i, false)
		if err != nil {
			continue
		}
		for _, gs := range s.Groups {
			if gs.Group == g && gs.State == "Leader" {
				return i
			}
		}
	}
	return -1
}

// waitConverged waits until every replica of every group has applied the
// same records, then checks that their checksums agree.
func (c *testCluster) waitConverged(timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		type rep struct {
			node    string
			applied uint64
			commit  uint64
			sum     string
			record  uint64 // the store's last applied record (with the checksum)
		}
		byGroup := map[int][]rep{}
		ok := true
		for i := range c.nodes {
			s, err := c.status(i, true)
			if err != nil {
				ok = false
				break
			}
			for _, g := range s.Groups {
				byGroup[g.Group] = append(byGroup[g.Group], rep{s.Node, g.Applied, g.CommitIndex, g.Checksum, g.AppliedRecord})
			}
		}
		var diff []string
		if ok {
			for g, reps := range byGroup {
				for _, r := range reps[1:] {
					// Raft's applied index runs ahead of the state machine (it
					// counts entries handed to the FSM goroutine), so compare
					// checksums only once the stores applied the same record.
					if r.applied != reps[0].applied || r.applied < r.commit || r.record != reps[0].record {
						ok = false
					} else if r.sum != reps[0].sum {
						diff = append(diff, fmt.Sprintf("group %d: %s has checksum %s, %s has %s at applied index %d", g, r.node, r.sum, reps[0].node, reps[0].sum, r.applied))
					}
				}
			}
		}
		if ok {
			if len(diff) > 0 {
				c.t.Fatalf("replicas differ:\n%s", strings.Join(diff, "\n"))
			}
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("replicas did not converge within %s: %v", timeout, byGroup)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// clusterEvent is one transaction of the test workload, at now.
func clusterEvent(user, merchant, country string, amt float64) string {
	return fmt.Sprintf(`{"user_id":%q,"merchant":%q,"category":"food","amt":%g,"country":%q,"lat":1,"long":2,"timestamp":%d}`,
		user, merchant, amt, country, time.Now().UnixMilli())
}

// TestClusterLeaderKills: 4 clients ingest through every node (each
// request with its own id, retried with the same id until acknowledged)
// while the leader of a random group is killed with SIGKILL and restarted,
// again and again. Afterwards every acknowledged event is counted exactly
// once, read on every replica, and the replicas of each group have equal
// per-partition checksums.
func TestClusterLeaderKills(t *testing.T) {
	kills := 20
	if testing.Short() {
		kills = 4
	}
	const groups = 4
	c := startCluster(t, 3, groups, 3)
	const users, merchants = 120, 12
	var (
		mu     sync.Mutex
		acked  = map[string]int{} // user -> acknowledged events
		mAcked = map[string]int{} // merchant -> acknowledged events
		stop   atomic.Bool
		wg     sync.WaitGroup
		reqs   atomic.Int64
		errs   atomic.Int64
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			for seq := 0; !stop.Load(); seq++ {
				var lines []string
				perUser := map[string]int{}
				perMerchant := map[string]int{}
				for range 1 + rng.IntN(8) {
					u := fmt.Sprintf("u%d", rng.IntN(users))
					m := fmt.Sprintf("m%d", rng.IntN(merchants))
					lines = append(lines, clusterEvent(u, m, []string{"FR", "DE", "US"}[rng.IntN(3)], float64(1+rng.IntN(100))))
					perUser[u]++
					perMerchant[m]++
				}
				body := []byte(strings.Join(lines, "\n"))
				id := fmt.Sprintf("w%d-%d", w, seq)
				// Retry the same request (same id) on any node until it is
				// acknowledged: an unacknowledged attempt may have applied,
				// and the id makes the retry count it once.
				for attempt := 0; ; attempt++ {
					nd := c.nodes[(w+attempt)%len(c.nodes)]
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					_, err := nd.Client.IngestBulk(ctx, "transactions", body, client.WriteOptions{RequestID: id})
					cancel()
					if err == nil {
						break
					}
					errs.Add(1)
					if attempt > 200 {
						t.Errorf("request %s not acknowledged after %d attempts: %v", id, attempt, err)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
				reqs.Add(1)
				mu.Lock()
				for u, k := range perUser {
					acked[u] += k
				}
				for m, k := range perMerchant {
					mAcked[m] += k
				}
				mu.Unlock()
			}
		}()
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for k := 0; k < kills; k++ {
		time.Sleep(time.Duration(300+rng.IntN(700)) * time.Millisecond)
		g := rng.IntN(groups)
		var li int
		for wait := time.Now(); ; {
			if li = c.leaderOf(g); li >= 0 {
				break
			}
			if time.Since(wait) > 30*time.Second {
				t.Fatalf("group %d has no leader after 30s", g)
			}
			time.Sleep(100 * time.Millisecond)
		}
		c.nodes[li].Kill()
		time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
		c.nodes[li].Restart()
	}
	time.Sleep(500 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	t.Logf("%d requests acknowledged, %d failed attempts retried, %d leader kills", reqs.Load(), errs.Load(), kills)
	if reqs.Load() < int64(kills) {
		t.Fatalf("only %d requests acknowledged during %d kills: the cluster did not take writes", reqs.Load(), kills)
	}
	c.waitConverged(time.Minute)
	ctx := context.Background()
	for i, nd := range c.nodes {
		for u := range users {
			user := fmt.Sprintf("u%d", u)
			f, err := nd.Client.GetFeatures(ctx, client.LookupRequest{Service: "fraud_detection", ReadLevel: "local",
				JoinKeys:       map[string]any{"user_id": user, "merchant": "m0", "country": "FR"},
				RequestContext: map[string]any{"amt": 1, "lat": 0, "long": 0}})
			if err != nil {
				t.Fatalf("node %d: lookup %s: %v", i, user, err)
			}
			got, _ := f.Get("user_transaction_counts.amt_count_1h")
			if want := acked[user]; toInt(got) != want {
				t.Errorf("node %d (local replica): %s counted %v events, %d acknowledged", i, user, got, want)
			}
		}
	}
	for m := range merchants {
		merchant := fmt.Sprintf("m%d", m)
		f, err := c.nodes[0].Client.GetFeatures(ctx, client.LookupRequest{Service: "fraud_detection",
			JoinKeys:       map[string]any{"user_id": "u0", "merchant": merchant, "country": "FR"},
			RequestContext: map[string]any{"amt": 1, "lat": 0, "long": 0}})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := f.Get("merchant_transaction_counts.amt_count_1h")
		if want := mAcked[merchant]; toInt(got) != want {
			t.Errorf("%s counted %v events, %d acknowledged", merchant, got, want)
		}
	}
}

func toInt(v any) int {
	switch x := v.(type) {
	case float64:
		return int(x)
	case int:
		return x
	case json.Number:
		n, _ := x.Int64()
		return int(n)
	}
	return -1
}
