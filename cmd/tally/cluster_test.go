package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/tally-ml/tally/cluster"
	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
)

// TestClusterConfigFromFile: the config file's cluster block starts cluster
// mode, a flag overrides its field, and a block missing what the cluster
// needs is refused saying which flags.
func TestClusterConfigFromFile(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte("0123456789abcdef0123\n"), 0o600)
	cfgPath := filepath.Join(dir, "tally.yaml")
	os.WriteFile(cfgPath, []byte(`cluster:
  node_id: n2
  addr: 127.0.0.1:7002
  peers: [n1=127.0.0.1:7001, n2=127.0.0.1:7002, n3=127.0.0.1:7003]
  cluster_id: prod
  key_file: `+key+`
  groups: 12
`), 0o600)
	cfg, err := node.LoadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	f := clusterFlags{replicas: 1} // as if --cluster-replicas 1 were given
	f.merge(cfg.Cluster)
	if !f.enabled() {
		t.Fatal("a config file with a cluster block did not enable cluster mode")
	}
	cc, err := f.config(dir, "127.0.0.1:8082", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cc.NodeID != "n2" || cc.ClusterID != "prod" || len(cc.Peers) != 3 || cc.Groups != 12 || cc.Replicas != 1 ||
		string(cc.Key) != "0123456789abcdef0123" || cc.Peers[1].HTTPAddr != "127.0.0.1:8082" {
		t.Fatalf("cluster config from the file: %+v", cc)
	}
	var none clusterFlags
	none.merge(node.ClusterConfig{NodeID: "n1"})
	if _, err := none.config(dir, "", nil); err == nil || !strings.Contains(err.Error(), "--cluster-peers") {
		t.Fatalf("an incomplete cluster block: %v", err)
	}
}

// TestClusterReplicasAboveThePeers: --cluster-replicas above the number
// of --cluster-peers was lowered to it without a word. The value given is
// passed on and the node refuses to start, saying what to give; left
// unset, the cluster's default (3, or the number of peers if fewer)
// applies, so a one-node cluster needs no flag.
func TestClusterReplicasAboveThePeers(t *testing.T) {
	t.Setenv("TALLY_CLUSTER_KEY", "a-cluster-key-for-the-test-0123456789")
	dir := t.TempDir()
	f := clusterFlags{nodeID: "n1", addr: "127.0.0.1:0", peers: "n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003", id: "prod", replicas: 5}
	f.merge(node.ClusterConfig{})
	cc, err := f.config(dir, "127.0.0.1:8082", nil)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := features.Load(features.DefaultFS())
	if err != nil {
		t.Fatal(err)
	}
	c, err := cluster.Open(cc, repo)
	if err == nil {
		c.Close()
		t.Fatal("a node started with --cluster-replicas 5 and 3 peers")
	}
	if !strings.Contains(err.Error(), "give --cluster-replicas 3 or less") {
		t.Fatalf("--cluster-replicas 5 over 3 peers: %v; want a refusal saying to give 3 or less", err)
	}
	unset := clusterFlags{nodeID: "n1", addr: "127.0.0.1:0", peers: "n1=127.0.0.1:7001", id: "dev"}
	unset.merge(node.ClusterConfig{})
	if cc, err := unset.config(dir, "", nil); err != nil || cc.Replicas != 0 {
		t.Fatalf("--cluster-replicas unset: replicas %d (%v); want 0, the cluster's default", cc.Replicas, err)
	}
}

// TestClusterGroupsUnsetIsNotGiven: --cluster-groups left unset was
// passed on as 8, so a node restarted without it over a cluster created
// with other groups would be refused as if it had been given 8. Unset
// (flag and config file), groups and replicas reach the cluster as 0: not
// given, the cluster's own (a new cluster's defaults: 8 and 3).
func TestClusterGroupsUnsetIsNotGiven(t *testing.T) {
	t.Setenv("TALLY_CLUSTER_KEY", "a-cluster-key-for-the-test-0123456789")
	f := clusterFlags{nodeID: "n1", addr: "127.0.0.1:0", peers: "n1=127.0.0.1:7001", id: "dev"}
	f.merge(node.ClusterConfig{})
	cc, err := f.config(t.TempDir(), "", nil)
	if err != nil || cc.Groups != 0 || cc.Replicas != 0 {
		t.Fatalf("--cluster-groups and --cluster-replicas unset: groups %d, replicas %d (%v); want 0 and 0, not given", cc.Groups, cc.Replicas, err)
	}
}

// TestClusterChangeTimeoutSaysTheChangeMayRun: a change (move-replica) the
// node took and did not answer within --timeout was reported as "no
// answer ... is the node up?", exit 3 (nothing known about the cluster),
// while the node went on with it. It says the change may have been made in
// part or still run, and to run it again; exit 1.
func TestClusterChangeTimeoutSaysTheChangeMayRun(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-release
	}))
	defer srv.Close()
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	c := &ctl{addr: srv.URL, timeout: 200 * time.Millisecond}
	cmd := &cobra.Command{}
	cmd.SetContext(context.Background())
	err := c.call(cmd, http.MethodPost, "/api/v1/cluster/move-replica", map[string]any{"group": 0, "from": "n0", "to": "n3"}, nil)
	if exitCode(err) != exitFailed || !strings.Contains(err.Error(), "run the same command again") {
		t.Fatalf("a change left without an answer: exit %d: %v", exitCode(err), err)
	}
	// Nothing listening: nothing was sent, and that is what it says.
	unblock()
	srv.Close()
	err = c.call(cmd, http.MethodPost, "/api/v1/cluster/move-replica", map[string]any{"group": 0}, nil)
	if exitCode(err) != exitUnreachable {
		t.Fatalf("a change to a node that is down: exit %d: %v", exitCode(err), err)
	}
}

// TestStatusProblemsNameRepoMismatch: `tally cluster status` exits 1 when
// nodes that answered run different feature repos (their lookups answer
// differently), naming them; a node down or on a build without a digest
// does not count.
func TestStatusProblemsNameRepoMismatch(t *testing.T) {
	o := &cluster.Overview{Nodes: []cluster.NodeOverview{
		{Member: cluster.Member{ID: "n1"}, Up: true, Repo: "sha256:aa"},
		{Member: cluster.Member{ID: "n2"}, Up: true, Repo: "sha256:aa"},
		{Member: cluster.Member{ID: "n3"}, Up: true},
	}}
	if p := problems(o); len(p) != 0 {
		t.Fatalf("problems %q; want none", p)
	}
	o.Nodes = append(o.Nodes, cluster.NodeOverview{Member: cluster.Member{ID: "n4"}, Up: true, Repo: "sha256:bb"})
	p := problems(o)
	if len(p) != 1 || !strings.Contains(p[0], "n1, n2 run sha256:aa; n4 runs sha256:bb") {
		t.Fatalf("problems %q; want the repo mismatch naming n1, n2 and n4", p)
	}
}
