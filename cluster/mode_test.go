package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
)

// TestDataDirOfTheOtherModeIsRefused: a single node keeps its state in
// <data-dir>/wal and snapshots, a cluster node in <data-dir>/cluster.
// Started over the other mode's data dir (a restart that lost its
// --cluster-* flags or its config file's cluster block, or a single
// node's dir given to a cluster node), the node started empty beside the
// data it did not look at, was ready, and answered every lookup of an
// acknowledged event with nothing (and took writes the other copy never
// sees). Each refuses at once, naming the mode the data dir holds, and
// creates nothing in it.
func TestDataDirOfTheOtherModeIsRefused(t *testing.T) {
	ccfg, repo := soloConfig(t, 3*time.Second)
	c, err := Open(ccfg, repo)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	t.Run("single node over a cluster node's data dir", func(t *testing.T) {
		cfg := node.DefaultConfig()
		cfg.DataDir = ccfg.DataDir
		in, err := node.Open(cfg, repo, node.OpenOptions{Node: node.Options{RepoFS: features.DefaultFS()}})
		if err == nil {
			in.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "cluster node") || !strings.Contains(err.Error(), "--node-id") {
			t.Fatalf("single node over a cluster node's data dir: %v; want a refusal naming the cluster flags", err)
		}
		for _, f := range []string{"wal", "snapshots", "schema.json"} {
			if _, err := os.Stat(filepath.Join(cfg.DataDir, f)); err == nil {
				t.Errorf("the refused start created %s", f)
			}
		}
	})

	t.Run("cluster node over a single node's data dir", func(t *testing.T) {
		cfg := node.DefaultConfig()
		cfg.DataDir = t.TempDir()
		in, err := node.Open(cfg, repo, node.OpenOptions{Node: node.Options{RepoFS: features.DefaultFS()}})
		if err != nil {
			t.Fatal(err)
		}
		if err := in.Close(); err != nil {
			t.Fatal(err)
		}
		cc := ccfg
		cc.DataDir = cfg.DataDir
		c, err := Open(cc, repo)
		if err == nil {
			c.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "single node") {
			t.Fatalf("cluster node over a single node's data dir: %v; want a refusal naming the single node's data", err)
		}
		if _, err := os.Stat(filepath.Join(cfg.DataDir, "cluster")); err == nil {
			t.Error("the refused start created cluster/")
		}
	})
}
