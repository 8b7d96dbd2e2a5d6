package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/features"
)

// TestOpenRefusesMoreReplicasThanNodes: --cluster-replicas above the
// number of initial nodes was lowered to it without a word, and the
// cluster was created with fewer replicas than the operator asked for.
// Open refuses it at once, saying what to change. A joining node is not
// refused: its peer list is only the nodes it may reach first, and it
// creates no map.
func TestOpenRefusesMoreReplicasThanNodes(t *testing.T) {
	repo, err := features.Load(features.DefaultFS())
	if err != nil {
		t.Fatal(err)
	}
	peers := []Member{{ID: "n0", ClusterAddr: "127.0.0.1:0"}, {ID: "n1", ClusterAddr: "127.0.0.1:1"}}
	cfg := Config{NodeID: "n0", DataDir: t.TempDir(), ClusterAddr: "127.0.0.1:0", ClusterID: "c",
		Key: []byte("test-cluster-key-0123"), Peers: peers, Replicas: 3, FormTimeout: time.Second}
	c, err := Open(cfg, repo)
	if err == nil {
		c.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "3 replicas") || !strings.Contains(err.Error(), "--cluster-replicas 2 or less") {
		t.Fatalf("3 replicas over 2 nodes: %v; want a refusal naming --cluster-replicas", err)
	}
	cfg.Join, cfg.Peers, cfg.DataDir = true, peers[1:], t.TempDir()
	c, err = Open(cfg, repo)
	if err == nil {
		c.Close()
	}
	if err == nil || strings.Contains(err.Error(), "replicas") || !strings.Contains(err.Error(), "not admitted") {
		t.Fatalf("a joining node given one peer and 3 replicas: %v; want it to wait to be admitted", err)
	}
}
