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
	"github.com/tally-ml/tally/systemtest/faultproxy"
	"github.com/tally-ml/tally/systemtest/harness"
)

// startProxiedCluster is startCluster with a faultproxy.Proxy in front of
// every node's cluster port: node i listens on its own port, advertises its
// proxy's address (the peers list holds the proxies), and dials its peers
// from faultproxy.NodeIP(i), so net can cut any pair of nodes apart.
func startProxiedCluster(t *testing.T, n, groups, replicas int, extra ...string) (*testCluster, *faultproxy.Net) {
	t.Helper()
	key := writeClusterKey(t, "systemtest-cluster-key-0123456789")
	c := &testCluster{t: t, caddr: make([]string, n)}
	for i := range n {
		c.caddr[i] = harness.FreeAddr(t)
	}
	net, err := faultproxy.NewNet(c.caddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { net.Close() })
	var peers []string
	for i, p := range net.Proxies {
		peers = append(peers, fmt.Sprintf("n%d=%s", i, p.Addr()))
	}
	args := append([]string{"--cluster-id", "systemtest", "--cluster-key-file", key, "--cluster-peers", strings.Join(peers, ","),
		"--cluster-groups", fmt.Sprint(groups), "--cluster-replicas", fmt.Sprint(replicas)}, extra...)
	c.nodes = harness.StartN(t, n, harness.Options{
		Args: args,
		PerNode: func(i int, _ []string) []string {
			return []string{"--node-id", fmt.Sprintf("n%d", i), "--cluster-addr", c.caddr[i],
				"--cluster-advertise", net.Proxies[i].Addr(), "--cluster-bind-ip", net.IPs[i]}
		},
		ReadyTimeout: 2 * time.Minute,
	})
	return c, net
}

// clusterLoad is writers ingesting into a cluster, each request with its
// own id and retried with the same id (on the allowed nodes in turn) until
// acknowledged; it counts what was acknowledged per user and merchant.
type clusterLoad struct {
	t      *testing.T
	c      *testCluster
	prefix string // of user and merchant names: loads on one cluster do not mix

	mu     sync.Mutex
	nodes  []int          // the nodes writers send to (setNodes)
	acked  map[string]int // user -> acknowledged events
	mAcked map[string]int // merchant -> acknowledged events

	stop       atomic.Bool
	abandon    atomic.Bool // the test has ended: stop retrying, report nothing
	wg         sync.WaitGroup
	reqs, errs atomic.Int64
	slowest    [8]atomic.Int64 // per node: the longest acknowledged attempt, in ns
}

const loadUsers, loadMerchants = 60, 8

// startLoad starts writers goroutines sending through nodes. A test that
// ends before halt (a Fatal) stops them in its cleanup, before its nodes
// are killed: a goroutine must not report to a test that has completed.
func startLoad(t *testing.T, c *testCluster, prefix string, writers int, nodes ...int) *clusterLoad {
	l := &clusterLoad{t: t, c: c, prefix: prefix, nodes: nodes, acked: map[string]int{}, mAcked: map[string]int{}}
	for w := range writers {
		l.wg.Add(1)
		go l.writer(w)
	}
	t.Cleanup(func() {
		l.abandon.Store(true)
		l.stop.Store(true)
		l.wg.Wait()
	})
	return l
}

// setNodes changes the nodes writers send to (retries included).
func (l *clusterLoad) setNodes(nodes ...int) {
	l.mu.Lock()
	l.nodes = nodes
	l.mu.Unlock()
}

func (l *clusterLoad) pick(k int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nodes[k%len(l.nodes)]
}

func (l *clusterLoad) writer(w int) {
	defer l.wg.Done()
	rng := rand.New(rand.NewPCG(uint64(w), 1234))
	for seq := 0; !l.stop.Load(); seq++ {
		var lines []string
		perUser := map[string]int{}
		perMerchant := map[string]int{}
		for range 1 + rng.IntN(6) {
			u := fmt.Sprintf("%su%d", l.prefix, rng.IntN(loadUsers))
			m := fmt.Sprintf("%sm%d", l.prefix, rng.IntN(loadMerchants))
			lines = append(lines, clusterEvent(u, m, []string{"FR", "DE", "US"}[rng.IntN(3)], float64(1+rng.IntN(100))))
			perUser[u]++
			perMerchant[m]++
		}
		body := []byte(strings.Join(lines, "\n"))
		id := fmt.Sprintf("%sw%d-%d", l.prefix, w, seq)
		// Retry the same request (same id) until acknowledged, past the
		// stop: an attempt that was not acknowledged may have applied, and
		// only its acknowledged retry makes the count exact.
		start := time.Now()
		for attempt := 0; ; attempt++ {
			ni := l.pick(w + attempt)
			nd := l.c.nodes[ni]
			// The client itself retries a 503 of a request with an id (on
			// the same node), within the context's 10 s.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			t0 := time.Now()
			_, err := nd.Client.IngestBulk(ctx, "transactions", body, client.WriteOptions{RequestID: id})
			cancel()
			if l.abandon.Load() {
				return
			}
			if err == nil {
				for d := int64(time.Since(t0)); ; {
					old := l.slowest[ni].Load()
					if d <= old || l.slowest[ni].CompareAndSwap(old, d) {
						break
					}
				}
				break
			}
			if l.errs.Add(1) <= 3 {
				l.t.Logf("%s via %s (attempt %d, retried): %v", id, nd.Name, attempt+1, err)
			}
			if time.Since(start) > 75*time.Second {
				l.t.Errorf("request %s not acknowledged after %d attempts in %s: %v", id, attempt+1, time.Since(start).Round(time.Second), err)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		l.reqs.Add(1)
		l.mu.Lock()
		for u, k := range perUser {
			l.acked[u] += k
		}
		for m, k := range perMerchant {
			l.mAcked[m] += k
		}
		l.mu.Unlock()
	}
}

// halt stops the writers once their requests in flight are acknowledged.
func (l *clusterLoad) halt() {
	l.stop.Store(true)
	l.wg.Wait()
	var slow []string
	for i := range l.c.nodes {
		slow = append(slow, time.Duration(l.slowest[i].Load()).Round(time.Millisecond).String())
	}
	l.t.Logf("load %q: %d requests acknowledged, %d failed attempts retried; slowest acknowledged attempt per node %v",
		l.prefix, l.reqs.Load(), l.errs.Load(), slow)
}

// phase logs what the writers saw since the last phase (acknowledged
// requests, failed attempts, the slowest acknowledged attempt) and starts
// counting anew.
func (l *clusterLoad) phase(name string) {
	var slowest time.Duration
	for i := range l.slowest {
		slowest = max(slowest, time.Duration(l.slowest[i].Swap(0)))
	}
	reqs, errs := l.reqs.Load(), l.errs.Swap(0)
	l.t.Logf("%s: %d requests acknowledged so far; %d failed attempts (retried) and slowest acknowledged attempt %s in this phase",
		name, reqs, errs, slowest.Round(time.Millisecond))
}

// waitAcked waits until at least n more requests are acknowledged than
// when it was called, failing the test after timeout.
func (l *clusterLoad) waitAcked(n int64, timeout time.Duration) {
	l.t.Helper()
	from := l.reqs.Load()
	deadline := time.Now().Add(timeout)
	for l.reqs.Load() < from+n {
		if time.Now().After(deadline) {
			l.t.Fatalf("only %d of %d requests acknowledged within %s", l.reqs.Load()-from, n, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// check reads every user's and merchant's count on every node's own
// replica (read level local): each must be exactly the acknowledged
// events. Call after halt and waitConverged.
func (l *clusterLoad) check() {
	l.t.Helper()
	ctx := context.Background()
	bad := 0
	for i, nd := range l.c.nodes {
		for u := range loadUsers {
			user := fmt.Sprintf("%su%d", l.prefix, u)
			merchant := fmt.Sprintf("%sm%d", l.prefix, u%loadMerchants)
			f, err := nd.Client.GetFeatures(ctx, client.LookupRequest{Service: "fraud_detection", ReadLevel: "local",
				JoinKeys:       map[string]any{"user_id": user, "merchant": merchant, "country": "FR"},
				RequestContext: map[string]any{"amt": 1, "lat": 0, "long": 0}})
			if err != nil {
				l.t.Fatalf("node %d: local lookup of %s: %v", i, user, err)
			}
			got, _ := f.Get("user_transaction_counts.amt_count_1h")
			if want := l.acked[user]; toInt(got) != want {
				bad++
				l.t.Errorf("node %d (local replica): %s counted %v events, %d acknowledged", i, user, got, want)
			}
			if u < loadMerchants {
				got, _ := f.Get("merchant_transaction_counts.amt_count_1h")
				if want := l.mAcked[merchant]; toInt(got) != want {
					bad++
					l.t.Errorf("node %d (local replica): %s counted %v events, %d acknowledged", i, merchant, got, want)
				}
			}
			if bad > 20 {
				l.t.FailNow()
			}
		}
	}
}

// groupIndexes is every group's applied index as node i reports it.
func (c *testCluster) groupIndexes(i int) map[int]uint64 {
	c.t.Helper()
	s, err := c.status(i, false)
	if err != nil {
		c.t.Fatalf("node %d status: %v", i, err)
	}
	out := map[int]uint64{}
	for _, g := range s.Groups {
		out[g.Group] = g.Applied
	}
	return out
}

// checksums is every group's replica checksum as node i reports it.
func (c *testCluster) checksums(i int) map[int]string {
	c.t.Helper()
	s, err := c.status(i, true)
	if err != nil {
		c.t.Fatalf("node %d status: %v", i, err)
	}
	out := map[int]string{}
	for _, g := range s.Groups {
		out[g.Group] = g.Checksum
	}
	return out
}

// leaderAnywhere returns the node leading any group (-1 if none).
func (c *testCluster) leaderAnywhere(groups int) int {
	for g := range groups {
		if i := c.leaderOf(g); i >= 0 {
			return i
		}
	}
	return -1
}

// others is 0..n-1 without i.
func others(n, i int) []int {
	var out []int
	for j := range n {
		if j != i {
			out = append(out, j)
		}
	}
	return out
}

// writeClusterKey writes key to a file for --cluster-key-file.
func writeClusterKey(t *testing.T, key string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(p, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// snapshotRestores is every group's count of restored snapshots on node i
// (status field snapshotRestores).
func (c *testCluster) snapshotRestores(i int) (map[int]uint64, error) {
	resp, err := http.Get(c.nodes[i].URL + "/api/v1/cluster/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var s struct {
		Groups []struct {
			Group    int    `json:"group"`
			Restores uint64 `json:"snapshotRestores"`
		} `json:"groups"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return nil, err
	}
	out := map[int]uint64{}
	for _, g := range s.Groups {
		out[g.Group] = g.Restores
	}
	return out, nil
}
