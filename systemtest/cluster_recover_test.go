package systemtest

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/wal"
)

// TestClusterRecoverLostQuorum: a 3-node cluster (3 replicas) takes
// writes, then two nodes are lost for good (SIGKILL, never restarted over
// their data). The survivor cannot write (no quorum). `tally cluster
// recover`:
//   - refuses while the survivor runs (the data dir's lock), exit 1;
//   - with an id that is no member, or without this node kept, exit 2;
//   - without --yes prints the plan and changes no file of the data dir;
//   - with --yes rewrites the node's groups to itself alone, and a group's
//     log still starts where it did (the event archive is kept).
//
// Started again alone with its usual flags, the survivor serves every
// acknowledged write (read on its replica and through its leaders), takes
// new writes, its map lists it alone (the lost nodes are no members), and
// a lost node started over its old data dir is refused as removed.
//
// Then redundancy comes back: with one fresh node (new id) admitted,
// rebalance is refused (exit 1) naming the groups that would stay under 3
// replicas and changes nothing; with a second one, its plan adds two
// replicas to every group and, run, every group lists n0 and both fresh
// nodes, whose replicas hold every acknowledged write (local reads), and
// the replicas check equal. Last, the original survivor is killed: every
// group elects a leader among the fresh nodes, which serve every
// acknowledged write through the leaders and take new writes.
func TestClusterRecoverLostQuorum(t *testing.T) {
	const groups = 3
	c := startCluster(t, 3, groups, 3)
	l := startLoad(t, c, "rc-", 3, 0, 1, 2)
	l.waitAcked(60, time.Minute)
	l.halt()
	// Every acknowledged write is on a quorum; wait until the survivor has
	// applied them all (a survivor that lagged would lose the tail: that
	// is the recovery's documented limit, not what this test is about).
	c.waitConverged(time.Minute)

	c.nodes[1].Kill()
	c.nodes[2].Kill()
	sv := c.nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	_, err := sv.NewClient(client.Options{Retries: -1}).IngestBulk(ctx, "transactions", []byte(clusterEvent("rc-x", "rc-m", "FR", 1)), client.WriteOptions{RequestID: "no-quorum"})
	cancel()
	if err == nil {
		t.Fatal("a write on the survivor without a quorum was acknowledged")
	}
	t.Logf("write without a quorum: %v", err)

	recoverCmd := func(args ...string) (string, string, int) {
		return tallyCtl(t, append([]string{"cluster", "recover", "--data-dir", sv.DataDir}, args...)...)
	}
	// Refused while the node runs.
	if out, errOut, code := recoverCmd("--keep", "n0", "--yes"); code != 1 || !strings.Contains(errOut, "in use by pid") || !strings.Contains(errOut, "must be stopped") {
		t.Fatalf("recover beside the running node: exit %d, want 1 naming the lock:\n%s%s", code, out, errOut)
	}
	if err := sv.Stop(); err != nil {
		t.Fatalf("stop the survivor: %v", err)
	}
	before := treeDigest(t, sv.DataDir)
	for _, tc := range []struct {
		keep string
		want []string
	}{
		{"n0,n9", []string{"--keep n9 is not a member", "n0, n1, n2"}},
		{"n1", []string{"node n0's, which is not kept"}},
		{"n0,n1,n2", []string{"names every member"}},
	} {
		if out, errOut, code := recoverCmd("--keep", tc.keep, "--yes"); code != 2 || !containsAll(errOut, tc.want...) {
			t.Errorf("recover --keep %s: exit %d, want 2 saying %q:\n%s%s", tc.keep, code, tc.want, out, errOut)
		}
	}
	out, errOut, code := recoverCmd("--keep", "n0")
	if code != 0 || !containsAll(out, "dry run: nothing was changed", "lost for good: n1, n2", "g0", "meta") {
		t.Fatalf("recover dry run: exit %d:\n%s%s", code, out, errOut)
	}
	t.Logf("dry run:\n%s", out)
	if after := treeDigest(t, sv.DataDir); !mapsEqual(before, after) {
		t.Fatalf("the dry run changed the data dir:\nbefore %v\nafter  %v", before, after)
	}
	archive := func() uint64 {
		a, err := wal.OpenArchive(nil, filepath.Join(sv.DataDir, "cluster", "g0", "log"))
		if err != nil {
			t.Fatal(err)
		}
		return a.FirstIndex()
	}
	first := archive()
	out, errOut, code = recoverCmd("--keep", "n0", "--yes")
	if code != 0 || !strings.Contains(out, "done: start node n0") {
		t.Fatalf("recover --yes: exit %d:\n%s%s", code, out, errOut)
	}
	// The group's log stays its event archive (historical features).
	if got := archive(); got != first {
		t.Errorf("group 0's archive starts at %d after the recovery, at %d before", got, first)
	}

	// The survivor alone, with its usual flags.
	t0 := time.Now()
	sv.Relaunch()
	sv.WaitReady()
	t.Logf("survivor ready %s after its start", time.Since(t0).Round(time.Millisecond))
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := c.nodeMap(0)
		var members []string
		for _, mb := range m.Members {
			members = append(members, mb.ID)
		}
		done := slices.Equal(members, []string{"n0"})
		for _, g := range m.Groups {
			done = done && slices.Equal(g.Replicas, []string{"n0"})
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the map still lists the lost nodes 30 s after the start: %+v", m)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(sv.DataDir, "cluster", "RECOVER")); !os.IsNotExist(err) {
		t.Errorf("the recovery's file is still there once the map changed: %v", err)
	}
	dead := c.nodes[1:3]
	c.nodes = c.nodes[:1]
	l.check()
	// Through the group's leader (default read level) too.
	f, err := sv.Client.GetFeatures(context.Background(), client.LookupRequest{Service: "fraud_detection",
		JoinKeys:       map[string]any{"user_id": "rc-u1", "merchant": "rc-m1", "country": "FR"},
		RequestContext: map[string]any{"amt": 1, "lat": 0, "long": 0}})
	if err != nil {
		t.Fatalf("lookup at the default level: %v", err)
	}
	if got, _ := f.Get("user_transaction_counts.amt_count_1h"); toInt(got) != l.acked["rc-u1"] {
		t.Errorf("default-level lookup: rc-u1 counted %v, %d acknowledged", got, l.acked["rc-u1"])
	}
	l2 := startLoad(t, c, "rn-", 2, 0)
	l2.waitAcked(20, time.Minute)
	l2.halt()
	l2.check()

	// A lost node started over its old data dir: refused as removed.
	dead[0].Relaunch()
	select {
	case <-dead[0].Exited():
	case <-time.After(30 * time.Second):
		t.Fatal("a lost node started over its old data dir still runs after 30 s; want it refused as removed")
	}
	if out := dead[0].Output(); !strings.Contains(out, "was removed from the cluster") {
		t.Fatalf("the lost node's refusal does not say it was removed:\n%s", out)
	}

	// Redundancy comes back. One fresh node is not enough for 3 replicas
	// per group: refused, nothing changed.
	c.join("n3", 0)
	if _, code := c.tallyCluster(0, "rebalance"); code != 1 || !containsAll(c.lastErr, "groups 0 (n0, n3), 1 (n0, n3), 2 (n0, n3) would stay under the cluster's 3 replicas", "start 1 more node(s)", "nothing was changed") {
		t.Fatalf("rebalance with 2 nodes for 3 replicas per group: exit %d, want 1 naming the groups:\n%s", code, c.lastErr)
	}
	for g, gi := range c.nodeMap(0).Groups {
		if !slices.Equal(gi.Replicas, []string{"n0"}) {
			t.Fatalf("the refused rebalance changed group %d's replicas: %v", g, gi.Replicas)
		}
	}
	// A second one: every group gets its two missing replicas.
	c.join("n4", 0)
	out, code = c.tallyCluster(1, "rebalance", "--dry-run")
	if code != 0 || strings.Count(out, "(new)") != 2*groups || !strings.Contains(out, "dry run: nothing changed") {
		t.Fatalf("rebalance --dry-run: exit %d, want a plan adding %d replicas:\n%s", code, 2*groups, out)
	}
	t.Logf("rebalance --dry-run:\n%s", out)
	t0 = time.Now()
	if out, code = c.tallyCluster(2, "rebalance"); code != 0 {
		t.Fatalf("rebalance onto the new nodes: exit %d", code)
	}
	t.Logf("rebalance (%s):\n%s", time.Since(t0).Round(time.Millisecond), out)
	for g, gi := range c.clusterMap(0).Groups {
		if !slices.Equal(slices.Sorted(slices.Values(gi.Replicas)), []string{"n0", "n3", "n4"}) {
			t.Fatalf("after the rebalance group %d lists %v, want n0, n3 and n4", g, gi.Replicas)
		}
	}
	if out, code := c.tallyCluster(0, "rebalance", "--dry-run"); code != 0 || strings.Contains(out, "(new)") {
		t.Errorf("a second rebalance would add replicas: exit %d:\n%s", code, out)
	}
	c.waitConverged(time.Minute)
	if out, code := c.tallyCluster(1, "check"); code != 0 {
		t.Fatalf("check after the rebalance: exit %d:\n%s", code, out)
	}
	l.check() // on every node's own replica: n3's and n4's hold every acknowledged write
	l2.check()

	// The proof: without the original survivor, every group still has a
	// quorum, which serves reads and writes.
	sv.Kill()
	c.nodes = c.nodes[1:]
	c.waitLeaders(groups, 30*time.Second)
	for _, ld := range []*clusterLoad{l, l2} {
		for u := range loadUsers {
			user := fmt.Sprintf("%su%d", ld.prefix, u)
			f, err := c.nodes[u%2].Client.GetFeatures(context.Background(), client.LookupRequest{Service: "fraud_detection",
				JoinKeys:       map[string]any{"user_id": user, "merchant": "x", "country": "FR"},
				RequestContext: map[string]any{"amt": 1, "lat": 0, "long": 0}})
			if err != nil {
				t.Fatalf("lookup of %s (default level) without n0: %v", user, err)
			}
			if got, _ := f.Get("user_transaction_counts.amt_count_1h"); toInt(got) != ld.acked[user] {
				t.Errorf("without n0: %s counted %v, %d acknowledged", user, got, ld.acked[user])
			}
		}
	}
	l3 := startLoad(t, c, "rk-", 2, 0, 1)
	l3.waitAcked(20, time.Minute)
	l3.halt()
	c.waitConverged(time.Minute) // check reads each node's own replica
	l3.check()
}

// nodeMap is node i's own cluster map (from its overview). clusterMap
// asks rebalance --dry-run, which is refused while groups hold fewer
// than R replicas and too few nodes answer to add them.
func (c *testCluster) nodeMap(i int) (m struct {
	Version uint64
	Members []struct{ ID string }
	Groups  []struct{ Replicas []string }
}) {
	c.t.Helper()
	resp, err := http.Get(c.nodes[i].URL + "/api/v1/cluster/overview")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var o struct{ Map json.RawMessage }
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil || resp.StatusCode != http.StatusOK {
		c.t.Fatalf("overview of node %d: %s: %v", i, resp.Status, err)
	}
	if err := json.Unmarshal(o.Map, &m); err != nil {
		c.t.Fatalf("map: %v", err)
	}
	return m
}

// TestClusterRecoverAcceptDataLoss: a 2-node cluster with one replica per
// group loses a node for good: the groups it alone held have no surviving
// replica. recover refuses (exit 1) naming them and the data loss; with
// --accept-data-loss it goes on, and the survivor, started alone,
// recreates those groups empty and takes writes to every group.
func TestClusterRecoverAcceptDataLoss(t *testing.T) {
	c := startCluster(t, 2, 2, 1) // group 0 on n0, group 1 on n1
	l := startLoad(t, c, "ra-", 2, 0, 1)
	l.waitAcked(20, time.Minute)
	l.halt()
	c.nodes[1].Kill()
	sv := c.nodes[0]
	if err := sv.Stop(); err != nil {
		t.Fatal(err)
	}
	recoverCmd := func(args ...string) (string, string, int) {
		return tallyCtl(t, append([]string{"cluster", "recover", "--data-dir", sv.DataDir, "--keep", "n0", "--yes"}, args...)...)
	}
	before := treeDigest(t, sv.DataDir)
	if out, errOut, code := recoverCmd(); code != 1 || !containsAll(errOut, "groups [1] have no replica on a kept node", "--accept-data-loss", "DATA LOSS") {
		t.Fatalf("recover losing group 1: exit %d, want 1 naming it:\n%s%s", code, out, errOut)
	}
	if after := treeDigest(t, sv.DataDir); !mapsEqual(before, after) {
		t.Fatal("the refused recovery changed the data dir")
	}
	out, errOut, code := recoverCmd("--accept-data-loss")
	if code != 0 || !containsAll(out, "g1", "EMPTY: data lost") {
		t.Fatalf("recover --accept-data-loss: exit %d:\n%s%s", code, out, errOut)
	}
	sv.Relaunch()
	sv.WaitReady()
	c.nodes = c.nodes[:1]
	c.waitLeaders(2, 30*time.Second)
	l2 := startLoad(t, c, "rb-", 2, 0)
	l2.waitAcked(20, time.Minute)
	l2.halt()
	l2.check()
}

// treeDigest is every file under dir (but the lock, which holds the pid of
// its last holder) with a digest of its content.
func treeDigest(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == "LOCK" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[p] = fmt.Sprintf("%x", sha256.Sum256(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
