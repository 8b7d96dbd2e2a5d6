package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
)

// wipedCluster is n in-process nodes whose configs are kept, so that a
// test can stop a node, wipe its data dir and start it again.
type wipedCluster struct {
	t      testing.TB
	repo   *features.Repo
	cfgs   []Config
	cs     []*Cluster
	fronts map[*Cluster]*node.Node
}

func newWipedCluster(t testing.TB, n, groups, replicas int) *wipedCluster {
	repo, err := features.Load(features.DefaultFS())
	if err != nil {
		t.Fatal(err)
	}
	w := &wipedCluster{t: t, repo: repo, cs: make([]*Cluster, n), fronts: map[*Cluster]*node.Node{}}
	var peers []Member
	for i := range n {
		peers = append(peers, Member{ID: fmt.Sprintf("n%d", i), ClusterAddr: freeAddr(t)})
	}
	for i := range n {
		w.cfgs = append(w.cfgs, Config{NodeID: peers[i].ID, DataDir: t.TempDir(), ClusterAddr: peers[i].ClusterAddr, ClusterID: "wiped",
			Key: []byte("wiped-cluster-key-0123"), Peers: peers, Groups: groups, Replicas: replicas, FormTimeout: 30 * time.Second})
	}
	t.Cleanup(func() {
		for _, c := range w.cs {
			if c != nil {
				c.Close()
			}
		}
	})
	return w
}

func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// start opens nodes idx (all at once, as a cluster's nodes start) with
// their configs and fails the test if one is refused.
func (w *wipedCluster) start(idx ...int) {
	w.t.Helper()
	errs := w.startAsync(idx...)
	for range idx {
		if err := <-errs; err != nil {
			w.t.Fatal(err)
		}
	}
}

// startAsync opens nodes idx in the background; each Open's error (nil
// once it opened) arrives on the channel.
func (w *wipedCluster) startAsync(idx ...int) <-chan error {
	errs := make(chan error, len(idx))
	for _, i := range idx {
		go func() {
			c, err := Open(w.cfgs[i], w.repo)
			if err == nil {
				w.cs[i] = c
			}
			if err != nil {
				err = fmt.Errorf("n%d: %w", i, err)
			}
			errs <- err
		}()
	}
	return errs
}

func (w *wipedCluster) stop(i int) {
	w.t.Helper()
	if err := w.cs[i].Close(); err != nil {
		w.t.Fatal(err)
	}
	w.cs[i] = nil
}

// wipe empties node i's data dir, as a replaced disk (or rm -rf) does.
func (w *wipedCluster) wipe(i int) {
	w.t.Helper()
	if err := os.RemoveAll(w.cfgs[i].DataDir); err != nil {
		w.t.Fatal(err)
	}
	if err := os.MkdirAll(w.cfgs[i].DataDir, 0o755); err != nil {
		w.t.Fatal(err)
	}
}

// front is a node front over node i.
func (w *wipedCluster) front(i int) *node.Node {
	w.t.Helper()
	if nd := w.fronts[w.cs[i]]; nd != nil {
		return nd
	}
	nd, err := node.New(w.repo, node.DefaultConfig(), node.Options{Cluster: w.cs[i], RepoFS: features.DefaultFS()})
	if err != nil {
		w.t.Fatal(err)
	}
	nd.SetReady(true)
	w.fronts[w.cs[i]] = nd
	return nd
}

// count is user's 1h transaction count, read linearizably through node
// i (retried while a group elects).
func (w *wipedCluster) count(i int, user string) float64 {
	w.t.Helper()
	nd := w.front(i)
	body := []byte(`{"params":{"feature_service_name":"fraud_detection","read_level":"linearizable","join_key_map":{"user_id":"` + user +
		`","merchant":"m1","country":"FR"},"request_context_map":{"amt":1,"lat":1,"long":2}}}`)
	var last string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out, aerr := nd.GetFeatures(nil, body)
		if aerr != nil {
			last = aerr.Error()
			continue
		}
		f, err := client.DecodeFeatures(out)
		if err != nil {
			w.t.Fatal(err)
		}
		v, _ := f.Get("user_transaction_counts.amt_count_1h")
		n, _ := v.(float64)
		return n
	}
	w.t.Fatalf("n%d: no linearizable read of %s in 20s: %s", i, user, last)
	return 0
}

// write ingests one event of user through node i and waits until it is
// acknowledged (committed on a quorum of each group it goes to).
func (w *wipedCluster) write(i int, user string) {
	w.t.Helper()
	nd := w.front(i)
	body := fmt.Sprintf(`{"user_id":%q,"merchant":"m1","category":"c","amt":5,"country":"FR","lat":1,"long":2,"timestamp":%d}`, user, time.Now().UnixMilli()-1000)
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err = nd.IngestNDJSONAs("write-"+user, "transactions", []byte(body), false); err == nil {
			return
		}
	}
	w.t.Fatalf("n%d: write of %s not acknowledged: %v", i, user, err)
}

// emptyDir fails the test if a refused start left anything in dir.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	if tree := treeOf(t, dir); tree != "" {
		t.Errorf("the refused start wrote to its data dir:\n%s", tree)
	}
	if _, err := os.Stat(filepath.Join(dir, "cluster")); err == nil {
		t.Errorf("the refused start created %s", filepath.Join(dir, "cluster"))
	}
}

// wantWipedRefusal fails the test unless err is the refusal of member id
// started over an empty data dir, with the replacement procedure.
func wantWipedRefusal(t *testing.T, err error, id string) {
	t.Helper()
	if err == nil {
		t.Fatalf("node %s over an empty data dir was started; want it refused", id)
	}
	for _, want := range []string{"empty", "node " + id + " as a member", "--cluster-join", "add-node", "remove-node " + id} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("refusal %q does not say %q", err, want)
		}
	}
	t.Log(err)
}

// TestWipedMemberIsRefused: a member restarted under its old --node-id
// over an empty (wiped, replaced) data dir came back as a voter with an
// empty log: it bootstrapped again the groups that never changed, and
// their leaders counted it in their quorums. An entry committed on n0 and
// n1 only (n2 down) was lost once n1's disk was wiped and n0 was down: the
// empty n1 voted for n2, whose log was longer than its own, and n2 led
// without the entry. Open now asks the peers before it creates anything in
// a new data dir: a node the cluster counts as a member is refused, in
// bootstrap and in join mode (and add-node of it too), with nothing
// written to its data dir; while a peer that could know stays silent, it
// waits instead of starting. The documented way back, a new id joined and
// the old one removed, works and keeps the entry.
func TestWipedMemberIsRefused(t *testing.T) {
	w := newWipedCluster(t, 3, 1, 3)
	w.start(0, 1, 2)
	w.write(0, "before")

	// E is committed on n0 and n1 only.
	w.stop(2)
	w.write(0, "E")
	w.stop(0)
	w.stop(1)
	w.wipe(1)

	t.Run("bootstrap mode, a peer down", func(t *testing.T) {
		n2 := w.startAsync(2) // restarts over its data dir: E is not in it
		n1 := w.startAsync(1) // over the empty data dir
		select {
		case err := <-n1:
			if err == nil {
				// The hazard itself: n1 is a voter again, and n2 leads without E.
				<-n2
				got := w.count(2, "E")
				w.stop(1)
				w.wipe(1)
				w.start(0) // for the subtests below
				t.Fatalf("n1 over an empty data dir started while n0 was down (and n2 restarting); E, acknowledged on n0 and n1, now reads as count %v on n2 (want 1): lost", got)
			}
			t.Fatalf("n1 refused while no peer could say whether it is a member (n0 down, n2 without its map): %v; want it to wait", err)
		case <-time.After(3 * time.Second):
		}
		// n0 back: n0 and n2 elect, learn their map, and n1 is refused.
		w.start(0)
		if err := <-n2; err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-n1:
			if err == nil {
				w.stop(1)
				w.wipe(1)
			}
			wantWipedRefusal(t, err, "n1")
		case <-time.After(20 * time.Second):
			t.Fatal("n1 neither started nor was refused 20s after its peers came back")
		}
		emptyDir(t, w.cfgs[1].DataDir)
		if got := w.count(2, "E"); got != 1 {
			t.Fatalf("E, acknowledged on n0 and n1, reads as count %v on n2; want 1", got)
		}
	})

	t.Run("join mode, asking its peers", func(t *testing.T) {
		cfg := w.cfgs[1]
		cfg.Join, cfg.Peers = true, []Member{w.cfgs[0].Peers[0], w.cfgs[0].Peers[2]}
		t0 := time.Now()
		c, err := Open(cfg, w.repo)
		if err == nil {
			c.Close()
			w.wipe(1)
		}
		wantWipedRefusal(t, err, "n1")
		if took := time.Since(t0); took > 5*time.Second {
			t.Errorf("refused after %v; want at once", took.Round(time.Millisecond))
		}
		emptyDir(t, cfg.DataDir)
	})

	t.Run("join mode, no peers, add-node", func(t *testing.T) {
		cfg := w.cfgs[1]
		cfg.Join, cfg.Peers = true, nil
		opened := make(chan error, 1)
		go func() {
			c, err := Open(cfg, w.repo)
			if err == nil {
				c.Close()
				w.wipe(1)
			}
			opened <- err
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := addNode(ctx, w.cs[0], Member{ID: "n1", ClusterAddr: cfg.ClusterAddr}, opened)
		wantWipedRefusal(t, err, "n1")
		select {
		case err := <-opened:
			wantWipedRefusal(t, err, "n1")
		case <-time.After(10 * time.Second):
			t.Fatal("n1 still waiting 10s after add-node was refused")
		}
		emptyDir(t, cfg.DataDir)
	})

	t.Run("replaced under a new id", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cfg := w.cfgs[1]
		cfg.NodeID, cfg.ClusterAddr, cfg.Join, cfg.Peers = "n3", freeAddr(t), true, nil
		w.cfgs = append(w.cfgs, cfg)
		w.cs = append(w.cs, nil)
		opened := w.startAsync(3)
		err := addNode(ctx, w.cs[0], Member{ID: "n3", ClusterAddr: cfg.ClusterAddr}, opened)
		if err != nil {
			t.Fatalf("add-node n3: %v", err)
		}
		if err := <-opened; err != nil {
			t.Fatal(err)
		}
		if _, err := w.cs[0].RemoveNode(ctx, "n1"); err != nil {
			t.Fatalf("remove-node n1: %v", err)
		}
		m := metaLeaderMap(t, []*Cluster{w.cs[0], w.cs[2], w.cs[3]})
		var ids []string
		for _, mb := range m.Members {
			ids = append(ids, mb.ID)
		}
		if !slices.Equal(ids, []string{"n0", "n2", "n3"}) || !slices.Equal(m.GroupsOf("n3"), []int{0}) {
			t.Fatalf("after the replacement: members %v, n3 holds %v; want n0 n2 n3, group 0", ids, m.GroupsOf("n3"))
		}
		if got := w.count(3, "E"); got != 1 {
			t.Fatalf("E reads as count %v through n3; want 1", got)
		}
	})
}

// TestNewNodeWaitsForEveryPeer: over a new data dir, a node of
// --cluster-peers starts only once every other peer has said it is new
// too, so that a wiped member never starts on silence. A node whose peers
// stay silent fails at the form timeout naming them and leaves its data
// dir empty; nodes started a second apart (each asking the others while
// they ask it) form the cluster.
func TestNewNodeWaitsForEveryPeer(t *testing.T) {
	w := newWipedCluster(t, 3, 2, 3)
	alone := w.cfgs[0]
	alone.FormTimeout = 1500 * time.Millisecond
	t0 := time.Now()
	c, err := Open(alone, w.repo)
	if err == nil {
		c.Close()
		t.Fatal("n0 over a new data dir started while its peers were down; want it to wait for them")
	}
	if took := time.Since(t0); took < alone.FormTimeout || took > alone.FormTimeout+3*time.Second {
		t.Errorf("refused after %v; want after the form timeout, %v", took.Round(time.Millisecond), alone.FormTimeout)
	}
	for _, want := range []string{"n1 at " + alone.Peers[1].ClusterAddr + ": no answer", "n2 at", "every node of --cluster-peers"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("refusal %q does not say %q", err, want)
		}
	}
	t.Log(err)
	emptyDir(t, alone.DataDir)

	first := w.startAsync(0, 1)
	time.Sleep(time.Second)
	w.start(2)
	for range 2 {
		if err := <-first; err != nil {
			t.Fatal(err)
		}
	}
	w.write(2, "formed")
	if got := w.count(0, "formed"); got != 1 {
		t.Fatalf("count %v after the first write; want 1", got)
	}
}

// addNode runs add-node of mb through c, again while mb's cluster port is
// not up yet; a start of mb that ends meanwhile (opened) is reported with
// add-node's error.
func addNode(ctx context.Context, c *Cluster, mb Member, opened <-chan error) error {
	for {
		_, err := c.AddNode(ctx, mb)
		if err == nil || !strings.Contains(err.Error(), "does not answer") || ctx.Err() != nil {
			return err
		}
		select {
		case oerr := <-opened:
			return fmt.Errorf("%w; and %s's start ended: %v", err, mb.ID, oerr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
