package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
