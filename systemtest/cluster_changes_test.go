package systemtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/systemtest/harness"
)

// tallyCluster runs `tally cluster args...` (the real binary) against
// node i and returns its stdout and exit code.
func (c *testCluster) tallyCluster(i int, args ...string) (string, int) {
	c.t.Helper()
	args = append([]string{"cluster", "--addr", c.nodes[i].URL, "--timeout", "5m"}, args...)
	cmd := exec.Command(harness.Binary(c.t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("tally cluster %v: %v", args, err)
	}
	c.lastErr = errb.String()
	if code != 0 {
		c.t.Logf("tally %s: exit %d: %s%s", strings.Join(args, " "), code, out.String(), errb.String())
	}
	return out.String(), code
}

// join starts node id with --cluster-join (it waits to be admitted) and
// admits it with `tally cluster add-node` through node via; it returns
// the new node's index.
func (c *testCluster) join(id string, via int) int {
	c.t.Helper()
	key := writeClusterKey(c.t, "systemtest-cluster-key-0123456789")
	caddr := harness.FreeAddr(c.t)
	nd := harness.Launch(c.t, harness.Options{
		Args:         []string{"--cluster-id", "systemtest", "--cluster-key-file", key, "--cluster-join", "--node-id", id, "--cluster-addr", caddr},
		ReadyTimeout: 2 * time.Minute,
	})
	nd.Name = id
	// The node's cluster port opens at once; add-node reaches it there.
	var code int
	for range 50 {
		if _, code = c.tallyCluster(via, "add-node", "--id", id, "--cluster-addr", caddr); code == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code != 0 {
		c.t.Fatalf("add-node %s: exit %d", id, code)
	}
	nd.WaitReady()
	c.nodes = append(c.nodes, nd)
	c.caddr = append(c.caddr, caddr)
	return len(c.nodes) - 1
}

// replicasHeld counts the replicas each node holds in node i's map.
func (c *testCluster) replicasHeld(i int) map[string]int {
	c.t.Helper()
	out, code := c.tallyCluster(i, "rebalance", "--dry-run", "--json")
	if code != 0 {
		c.t.Fatalf("rebalance --dry-run: exit %d", code)
	}
	var o struct {
		Map struct {
			Members []struct{ ID string }
			Groups  []struct{ Replicas []string }
		}
	}
	if err := json.Unmarshal([]byte(out), &o); err != nil {
		c.t.Fatalf("rebalance --json: %v: %s", err, out)
	}
	held := map[string]int{}
	for _, m := range o.Map.Members {
		held[m.ID] = 0
	}
	for _, g := range o.Map.Groups {
		for _, r := range g.Replicas {
			held[r]++
		}
	}
	return held
}

// lookups reads features through the allowed nodes until stopped,
// counting failed lookups.
type lookups struct {
	stop       atomic.Bool
	wg         sync.WaitGroup
	reads, bad atomic.Int64
	slowest    atomic.Int64 // ns
	mu         sync.Mutex
	nodes      []*harness.Node
	logf       func(string, ...any)
}

// startLookups starts readers goroutines; like startLoad's writers, they
// stop in the test's cleanup if halt was not called.
func startLookups(l *clusterLoad, readers int, nodes ...*harness.Node) *lookups {
	lk := &lookups{nodes: nodes, logf: l.t.Logf}
	l.t.Cleanup(lk.halt)
	for r := range readers {
		lk.wg.Add(1)
		go func() {
			defer lk.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 99))
			for !lk.stop.Load() {
				lk.mu.Lock()
				nd := lk.nodes[rng.IntN(len(lk.nodes))]
				lk.mu.Unlock()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				t0 := time.Now()
				_, err := nd.Client.GetFeatures(ctx, client.LookupRequest{Service: "fraud_detection",
					JoinKeys:       map[string]any{"user_id": fmt.Sprintf("%su%d", l.prefix, rng.IntN(loadUsers)), "merchant": l.prefix + "m0", "country": "FR"},
					RequestContext: map[string]any{"amt": 1, "lat": 0, "long": 0}})
				cancel()
				if d := time.Since(t0); d > time.Second {
					lk.logf("slow lookup via %s: %s (err %v) at %s", nd.Name, d.Round(time.Millisecond), err, time.Now().Format("15:04:05.000"))
				}
				for d := int64(time.Since(t0)); ; {
					old := lk.slowest.Load()
					if d <= old || lk.slowest.CompareAndSwap(old, d) {
						break
					}
				}
				lk.reads.Add(1)
				if err != nil && lk.bad.Add(1) <= 5 {
					lk.logf("lookup via %s: %v", nd.Name, err)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return lk
}

func (lk *lookups) setNodes(nodes ...*harness.Node) {
	lk.mu.Lock()
	lk.nodes = nodes
	lk.mu.Unlock()
}

func (lk *lookups) halt() {
	lk.stop.Store(true)
	lk.wg.Wait()
}

// phase logs the lookups and the writes since the last phase.
func phase(name string, l *clusterLoad, lk *lookups) {
	l.phase(name)
	l.t.Logf("%s: %d lookups, %d failed (client-visible), slowest %s", name, lk.reads.Swap(0), lk.bad.Swap(0), time.Duration(lk.slowest.Swap(0)).Round(time.Millisecond))
}

// TestClusterChangesUnderLoad changes a 3-node cluster (8 groups, 3
// replicas) while 4 clients ingest (retrying with their request ids) and
// 2 look up: (a) a 4th node joins and the cluster rebalances onto it,
// (b) the metadata leader is removed (its replicas move away first), (c) every node is
// restarted one at a time. After each, every acknowledged event is counted
// exactly once on every replica, the replicas of each group have equal
// checksums, and `tally cluster check` is clean; the test logs the client-visible errors and the longest
// acknowledged write.
func TestClusterChangesUnderLoad(t *testing.T) {
	const groups = 8
	c := startCluster(t, 3, groups, 3)
	l := startLoad(t, c, "ch-", 4, 0, 1, 2)
	lk := startLookups(l, 2, c.nodes...)
	l.waitAcked(50, time.Minute)
	phase("steady", l, lk)

	// (a) Add n3 and rebalance.
	n3 := c.join("n3", 0)
	if held := c.replicasHeld(0)["n3"]; held != 0 {
		t.Fatalf("a node just added holds %d replicas, want 0", held)
	}
	out, code := c.tallyCluster(1, "rebalance")
	if code != 0 {
		t.Fatalf("rebalance: exit %d", code)
	}
	t.Logf("rebalance:\n%s", out)
	held := c.replicasHeld(n3)
	for id, k := range held {
		// 8 groups x 3 replicas over 4 nodes: 6 each.
		if k != groups*3/4 {
			t.Errorf("after rebalance %s holds %d replicas, want %d (all: %v)", id, k, groups*3/4, held)
		}
	}
	if out, _ := c.tallyCluster(2, "rebalance", "--dry-run"); !strings.Contains(out, "balanced") {
		t.Errorf("a second rebalance would still change things:\n%s", out)
	}
	// One replica by hand: group 0's last replica to the node without it.
	m := c.clusterMap(0)
	from := m.Groups[0].Replicas[len(m.Groups[0].Replicas)-1]
	var to string
	for _, mb := range m.Members {
		if !slices.Contains(m.Groups[0].Replicas, mb.ID) {
			to = mb.ID
		}
	}
	if _, code := c.tallyCluster(3, "move-replica", "--group", "0", "--from", from, "--to", to); code != 0 {
		t.Fatalf("move-replica: exit %d", code)
	}
	if got := c.clusterMap(1).Groups[0].Replicas; slices.Contains(got, from) || !slices.Contains(got, to) {
		t.Fatalf("after moving group 0 from %s to %s its replicas are %v", from, to, got)
	}
	if _, code := c.tallyCluster(0, "rebalance"); code != 0 {
		t.Fatalf("rebalance after the move: exit %d", code)
	}
	// Exit codes scripts rely on.
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"move-replica", "--group", "99", "--from", "n0", "--to", "n1"}, 1},   // refused: no group 99
		{[]string{"move-replica", "--group", "0"}, 2},                                  // usage
		{[]string{"add-node", "--id", "n9", "--cluster-addr", harness.FreeAddr(t)}, 1}, // nothing answers there
	} {
		if _, code := c.tallyCluster(0, tc.args...); code != tc.code {
			t.Errorf("tally cluster %v: exit %d, want %d", tc.args, code, tc.code)
		}
	}
	if code := exitOf(exec.Command(harness.Binary(t), "cluster", "--addr", "http://"+harness.FreeAddr(t), "rebalance", "--dry-run")); code != 3 {
		t.Errorf("tally cluster against an address nobody listens on: exit %d, want 3", code)
	}
	l.setNodes(0, 1, 2, 3)
	lk.setNodes(c.nodes...)
	l.waitAcked(50, time.Minute)
	c.waitLeaders(groups, time.Minute)
	phase("(a) add n3 and rebalance", l, lk)

	// (b) Remove the metadata group's leader (the change runs there, so it
	// moves the leadership away and goes on on the new leader), through
	// another node; writers and readers leave it first.
	st, err := c.status(0, false)
	if err != nil {
		t.Fatal(err)
	}
	var victim int
	if _, err := fmt.Sscanf(st.MetaLeader, "n%d", &victim); err != nil {
		t.Fatalf("metadata leader %q: %v", st.MetaLeader, err)
	}
	rest := others(len(c.nodes), victim)
	l.setNodes(rest...)
	lk.setNodes(c.nodes[rest[0]], c.nodes[rest[1]], c.nodes[rest[2]])
	if _, code := c.tallyCluster(rest[0], "remove-node", st.MetaLeader); code != 0 {
		t.Fatalf("remove-node %s: exit %d", st.MetaLeader, code)
	}
	held = c.replicasHeld(rest[1])
	if _, ok := held[st.MetaLeader]; ok {
		t.Fatalf("%s still a member after remove-node: %v", st.MetaLeader, held)
	}
	for id, k := range held {
		if k != groups {
			t.Errorf("after removing %s, %s holds %d replicas, want %d (all: %v)", st.MetaLeader, id, k, groups, held)
		}
	}
	if _, code := c.tallyCluster(rest[2], "remove-node", fmt.Sprintf("n%d", rest[0])); code != 1 {
		// 3 replicas need 3 nodes: removing another must be refused.
		t.Errorf("remove-node with 3 nodes left and 3 replicas per group: exit %d, want 1 (refused)", code)
	}
	l.waitAcked(50, time.Minute)
	gone := c.nodes[victim]
	if err := gone.Stop(); err != nil {
		t.Fatalf("stop the removed %s: %v", st.MetaLeader, err)
	}
	// Its data dir still holds a map that lists it: started again over it,
	// the node must learn from the others that it was removed, refuse, and
	// leave a tombstone that refuses the next start with no peer asked.
	for _, want := range []string{"lists it as removed", "its tombstone"} {
		gone.Relaunch()
		select {
		case <-gone.Exited():
		case <-time.After(time.Minute):
			t.Fatalf("the removed %s started again over its old data dir\n%s", st.MetaLeader, gone.Output())
		}
		if out := gone.Output(); gone.ExitErr() == nil || !strings.Contains(out, "was removed from the cluster") || !strings.Contains(out, want) || !strings.Contains(out, "--cluster-join") {
			t.Fatalf("the removed %s over its old data dir: %v\n%s", st.MetaLeader, gone.ExitErr(), out)
		}
	}
	if _, err := os.Stat(filepath.Join(gone.DataDir, "cluster", "REMOVED")); err != nil {
		t.Errorf("no tombstone in the removed node's data dir: %v", err)
	}
	c.nodes = slices.Delete(c.nodes, victim, victim+1)
	c.caddr = slices.Delete(c.caddr, victim, victim+1)
	l.setNodes(0, 1, 2)
	phase("(b) remove "+st.MetaLeader, l, lk)

	// (c) Rolling restart: each node in turn, the others taking writes.
	for i := range c.nodes {
		l.setNodes(others(len(c.nodes), i)...)
		var up []*harness.Node
		for _, j := range others(len(c.nodes), i) {
			up = append(up, c.nodes[j])
		}
		lk.setNodes(up...)
		if err := c.nodes[i].Stop(); err != nil {
			t.Fatalf("%s: stop: %v", c.nodes[i].Name, err)
		}
		l.waitAcked(20, time.Minute)
		c.nodes[i].Restart()
		c.waitLeaders(groups, time.Minute)
		l.setNodes(0, 1, 2)
		lk.setNodes(c.nodes...)
		l.waitAcked(20, time.Minute)
		phase("(c) restart "+c.nodes[i].Name, l, lk)
	}
	lk.halt()
	l.halt()
	c.waitConverged(2 * time.Minute)
	l.check()
	if out, code := c.tallyCluster(1, "check"); code != 0 {
		t.Errorf("tally cluster check after the changes: exit %d\n%s", code, out)
	}
	if _, code := c.tallyCluster(0, "rebalance", "--dry-run"); code != 0 {
		t.Errorf("rebalance --dry-run after the changes: exit %d", code)
	}
	for _, nd := range c.nodes {
		for _, line := range strings.Split(nd.Output(), "\n") {
			if strings.Contains(line, "slow internal RPC") || strings.Contains(line, "no replica answered") {
				t.Logf("%s: %s", nd.Name, line)
			}
		}
	}
}

// waitLeaders waits until every group has a leader that a running node
// reports.
func (c *testCluster) waitLeaders(groups int, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for g := range groups {
		for c.leaderOf(g) < 0 {
			if time.Now().After(deadline) {
				c.t.Fatalf("group %d has no leader after %s", g, timeout)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// clusterMap is the cluster map as node i's rebalance --dry-run reports it.
func (c *testCluster) clusterMap(i int) (m struct {
	Version uint64
	Members []struct{ ID string }
	Groups  []struct{ Replicas []string }
}) {
	c.t.Helper()
	out, code := c.tallyCluster(i, "rebalance", "--dry-run", "--json")
	if code != 0 {
		c.t.Fatalf("rebalance --dry-run: exit %d", code)
	}
	var o struct{ Map json.RawMessage }
	if err := json.Unmarshal([]byte(out), &o); err != nil {
		c.t.Fatalf("rebalance --json: %v: %s", err, out)
	}
	if err := json.Unmarshal(o.Map, &m); err != nil {
		c.t.Fatalf("map: %v", err)
	}
	return m
}

// exitOf runs cmd and returns its exit code.
func exitOf(cmd *exec.Cmd) int {
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// changedRepo writes the default repo with one window changed (the user
// view's 1h count becomes 2h) and returns its directory.
func changedRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"fraud.yaml", "fraud_model.onnx"} {
		b, err := os.ReadFile(filepath.Join("..", "features", "defaultrepo", name))
		if err != nil {
			t.Fatal(err)
		}
		if name == "fraud.yaml" {
			b = bytes.Replace(b, []byte("{column: amt, function: count, window: 1h}"), []byte("{column: amt, function: count, window: 2h}"), 1)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestClusterRefusesAnotherRepo: a node running another feature repo is
// refused, naming the difference: add-node refuses to admit it, and a
// member restarted with it exits; restarted with the cluster's repo it
// serves again.
func TestClusterRefusesAnotherRepo(t *testing.T) {
	c := startCluster(t, 3, 2, 3)
	repo := changedRepo(t)
	key := writeClusterKey(t, "systemtest-cluster-key-0123456789")
	caddr := harness.FreeAddr(t)
	other := harness.Launch(t, harness.Options{
		Args: []string{"--cluster-id", "systemtest", "--cluster-key-file", key, "--cluster-join", "--node-id", "n9", "--cluster-addr", caddr, "--repo", repo},
	})
	var code int
	for range 50 {
		// Until the node's cluster port is up, add-node says it does not answer.
		if _, code = c.tallyCluster(0, "add-node", "--id", "n9", "--cluster-addr", caddr); strings.Contains(c.lastErr, "another feature repo") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code != 1 || !strings.Contains(c.lastErr, "window") {
		t.Fatalf("add-node of a node with another repo: exit %d, %q; want 1 naming the changed window", code, c.lastErr)
	}
	other.Kill()
	if held := c.replicasHeld(1); len(held) != 3 {
		t.Fatalf("members after the refused add-node: %v", held)
	}

	// A member restarted with the changed repo exits, naming it.
	nd := c.nodes[2]
	if err := nd.Stop(); err != nil {
		t.Fatal(err)
	}
	bad := harness.Launch(t, harness.Options{DataDir: nd.DataDir,
		Args: []string{"--cluster-id", "systemtest", "--cluster-key-file", key, "--node-id", "n2", "--cluster-addr", c.caddr[2],
			"--cluster-peers", fmt.Sprintf("n0=%s,n1=%s,n2=%s", c.caddr[0], c.caddr[1], c.caddr[2]), "--repo", repo}})
	select {
	case <-bad.Exited():
	case <-time.After(time.Minute):
		t.Fatal("a member restarted with another repo is still running after a minute")
	}
	if out := bad.Output(); !strings.Contains(out, "differs from the cluster's") || !strings.Contains(out, "window") {
		t.Fatalf("a member restarted with another repo said:\n%s", out)
	}
	nd.Restart()
	c.waitConverged(time.Minute)
}

// TestClusterNoHandBackToADeadNode: leaderships are handed back to each
// group's preferred replica every 5 s, but never to one that is down (the
// transfer would stop the group's writes until it timed out, every 5 s):
// with n0, the preferred leader of group 0, killed, the survivors lead and
// take writes for three hand-back rounds without trying it once; back up,
// n0 leads its group again.
func TestClusterNoHandBackToADeadNode(t *testing.T) {
	c := startCluster(t, 3, 2, 3)
	c.waitLeaders(2, time.Minute)
	c.nodes[0].Kill()
	l := startLoad(t, c, "hb-", 2, 1, 2)
	time.Sleep(16 * time.Second)
	l.halt()
	for _, i := range []int{1, 2} {
		if out := c.nodes[i].Output(); strings.Contains(out, "leadership back") && strings.Contains(out, "to=n0") {
			t.Errorf("%s tried to hand a group to the dead n0:\n%s", c.nodes[i].Name, out)
		}
	}
	c.nodes[0].Restart()
	deadline := time.Now().Add(time.Minute)
	for c.leaderOf(0) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("n0, back up, does not lead its preferred group 0 after a minute (leader: %d)", c.leaderOf(0))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
