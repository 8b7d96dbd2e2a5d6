package systemtest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/systemtest/harness"
)

// TestClusterRestart: a 3-node cluster takes writes; then
//   - every node is stopped and all are started again with the same data
//     dirs: each group's replicas come back with the same checksums and
//     every acknowledged event counted once, and the cluster takes writes;
//   - one node is killed while the others take writes, and restarted with
//     the same id and data dir: it rejoins and converges;
//   - that node started under its id over an empty data dir (a replaced
//     disk) exits at once, saying the cluster counts it as a member and how
//     to replace it (it came back as an empty voter, which can lose
//     acknowledged writes); with its data dir back, it rejoins;
//   - a node with a wrong cluster key, then one with a wrong cluster id,
//     try to join: they never become ready, the cluster logs its refusals,
//     and nothing changes (map version, checksums, counts).
func TestClusterRestart(t *testing.T) {
	const groups = 3
	c := startCluster(t, 3, groups, 3)
	l := startLoad(t, c, "rs-", 3, 0, 1, 2)
	l.waitAcked(100, time.Minute)
	l.halt()
	c.waitConverged(time.Minute)
	l.check()
	before := c.checksums(0)
	applied := c.groupIndexes(0)

	// Full restart: stop all, start all (they wait for each other).
	t0 := time.Now()
	for _, nd := range c.nodes {
		if err := nd.Stop(); err != nil {
			t.Fatalf("%s: stop: %v", nd.Name, err)
		}
	}
	for _, nd := range c.nodes {
		nd.Relaunch()
	}
	for _, nd := range c.nodes {
		nd.WaitReady()
	}
	c.waitApplied(applied, time.Minute)
	t.Logf("full restart: stopped, started and caught up in %s", time.Since(t0).Round(time.Millisecond))
	c.waitConverged(time.Minute)
	for i := range c.nodes {
		if got := c.checksums(i); fmt.Sprint(got) != fmt.Sprint(before) {
			t.Errorf("node %d after the restart: checksums %v, before it %v", i, got, before)
		}
	}
	l.check()

	// Writes after the restart; then one node killed and restarted with
	// the same id and data dir while the others take writes.
	l2 := startLoad(t, c, "rj-", 3, 0, 1)
	l2.waitAcked(30, time.Minute)
	c.nodes[2].Kill()
	l2.waitAcked(50, time.Minute)
	t0 = time.Now()
	c.nodes[2].Restart()
	l2.setNodes(0, 1, 2)
	l2.waitAcked(30, time.Minute)
	l2.halt()
	c.waitConverged(time.Minute)
	t.Logf("rejoin: node 2 restarted and converged in %s", time.Since(t0).Round(time.Millisecond))
	l.check()
	l2.check()

	// Node 2 over an empty data dir under its id: refused.
	nd := c.nodes[2]
	if err := nd.Stop(); err != nil {
		t.Fatal(err)
	}
	aside := nd.DataDir + ".aside"
	if err := os.Rename(nd.DataDir, aside); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(nd.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var peers []string
	for i, a := range c.caddr {
		peers = append(peers, fmt.Sprintf("n%d=%s", i, a))
	}
	wiped := harness.Launch(t, harness.Options{DataDir: nd.DataDir, Args: []string{"--cluster-id", "systemtest",
		"--cluster-key-file", writeClusterKey(t, "systemtest-cluster-key-0123456789"), "--cluster-peers", strings.Join(peers, ","),
		"--cluster-groups", fmt.Sprint(groups), "--cluster-replicas", "3", "--node-id", "n2", "--cluster-addr", c.caddr[2]}})
	select {
	case <-wiped.Exited():
	case <-time.After(30 * time.Second):
		t.Fatal("node 2 over an empty data dir is still running after 30 s; want it refused")
	}
	for _, want := range []string{"is empty (never started)", "node n2 as a member", "--cluster-join", "remove-node n2"} {
		if out := wiped.Output(); !strings.Contains(out, want) {
			t.Fatalf("node 2 over an empty data dir does not say %q:\n%s", want, out)
		}
	}
	if err := os.RemoveAll(nd.DataDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(aside, nd.DataDir); err != nil {
		t.Fatal(err)
	}
	nd.Restart()
	c.waitConverged(time.Minute)

	// Strangers: a wrong cluster key, then a wrong cluster id.
	s0, err := c.status(0, false)
	if err != nil {
		t.Fatal(err)
	}
	sums := c.checksums(0)
	good := writeClusterKey(t, "systemtest-cluster-key-0123456789")
	bad := writeClusterKey(t, "another-clusters-key-0123456789")
	for _, tc := range []struct {
		name, id, key, refusal string
	}{
		{"wrong key", "systemtest", bad, "bad cluster key"},
		{"wrong cluster id", "othercluster", good, "wrong cluster id"},
	} {
		marks := make([]int, len(c.nodes))
		for i, nd := range c.nodes {
			marks[i] = len(nd.Output())
		}
		addr := harness.FreeAddr(t)
		var peers []string
		for i, a := range c.caddr {
			peers = append(peers, fmt.Sprintf("n%d=%s", i, a))
		}
		peers = append(peers, "n3="+addr)
		x := harness.Launch(t, harness.Options{Args: []string{"--cluster-id", tc.id, "--cluster-key-file", tc.key,
			"--cluster-peers", strings.Join(peers, ","), "--cluster-groups", fmt.Sprint(groups), "--node-id", "n3", "--cluster-addr", addr}})
		// The cluster refuses it: wait for the refusal in a node's log.
		deadline := time.Now().Add(30 * time.Second)
		for seen := false; !seen; {
			for i, nd := range c.nodes {
				if out := nd.Output(); len(out) >= marks[i] && strings.Contains(out[marks[i]:], tc.refusal) {
					seen = true
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no node logged a refusal (%q) within 30 s", tc.name, tc.refusal)
			}
			time.Sleep(100 * time.Millisecond)
		}
		// ... and it never becomes ready (it waits for a cluster map no
		// one gives it): give it a few more seconds, then stop it.
		time.Sleep(3 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ready, _ := x.NewClient(client.Options{Retries: -1}).Readyz(ctx)
		cancel()
		if ready {
			t.Errorf("%s: the node is ready", tc.name)
		}
		select {
		case <-x.Exited():
			t.Errorf("%s: the node exited instead of waiting: %v\n%s", tc.name, x.ExitErr(), x.Output())
		default:
		}
		x.Kill()
		s, err := c.status(0, false)
		if err != nil {
			t.Fatal(err)
		}
		if s.MapVersion != s0.MapVersion {
			t.Errorf("%s: the map version went from %d to %d", tc.name, s0.MapVersion, s.MapVersion)
		}
		if got := c.checksums(0); fmt.Sprint(got) != fmt.Sprint(sums) {
			t.Errorf("%s: checksums went from %v to %v", tc.name, sums, got)
		}
	}
	c.waitConverged(time.Minute)
	l.check()
	l2.check()
}

// waitApplied waits until every node's replica of every group has applied
// at least the index in min (after a restart, Raft applies the log once a
// leader commits in the new term).
func (c *testCluster) waitApplied(min map[int]uint64, timeout time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		behind := ""
		for i := range c.nodes {
			s, err := c.status(i, false)
			if err != nil {
				behind = err.Error()
				break
			}
			for _, g := range s.Groups {
				if g.Applied < min[g.Group] {
					behind = fmt.Sprintf("node %d group %d applied %d < %d", i, g.Group, g.Applied, min[g.Group])
				}
			}
		}
		if behind == "" {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("replicas did not catch up within %s: %s", timeout, behind)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
