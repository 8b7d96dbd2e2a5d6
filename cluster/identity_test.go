package cluster

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/features"
)

// TestOpenRefusesAnotherNodesDataDir: a cluster node's data dir holds
// its replicas' Raft logs and votes, which belong to the node id that
// wrote them. Started under another --node-id (a typo, two units' data
// dirs swapped), the node's Raft took them for its own under the new id:
// the node waited out the whole form timeout and then blamed the peers
// ("no cluster map"), or, where the new id is another member's, answered
// for that member with this one's log and votes. Open refuses such a
// start at once, naming the node the data dir belongs to, and changes
// nothing in it; started again under its own id, the node comes back.
func TestOpenRefusesAnotherNodesDataDir(t *testing.T) {
	cfg, repo := soloConfig(t, 30*time.Second)
	dir, addr := cfg.DataDir, cfg.ClusterAddr
	c, err := Open(cfg, repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	before := treeOf(t, dir)

	for _, tc := range []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"another node id", func(c *Config) { c.NodeID, c.Peers = "n1", []Member{{ID: "n1", ClusterAddr: addr}} }, []string{`node "n0"`, "--node-id n1"}},
		{"another node id, joining", func(c *Config) { c.NodeID, c.Join = "n1", true }, []string{`node "n0"`, "--node-id n1"}},
		{"another cluster id", func(c *Config) { c.ClusterID = "other" }, []string{`cluster "c"`, "other"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := cfg
			bad.FormTimeout = 3 * time.Second
			tc.edit(&bad)
			t0 := time.Now()
			c, err := Open(bad, repo)
			if err == nil {
				c.Close()
			}
			took := time.Since(t0)
			if err == nil || took > 2*time.Second {
				t.Fatalf("opened after %v: %v; want a refusal at once", took.Round(time.Millisecond), err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("refusal %q does not say %q", err, w)
				}
			}
			if after := treeOf(t, dir); after != before {
				t.Fatalf("the refused start changed the data dir:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}

	c, err = Open(cfg, repo)
	if err != nil {
		t.Fatalf("started again under its own id: %v", err)
	}
	c.Close()
}

// treeOf lists the files under dir with their sizes and modification
// times.
func treeOf(t *testing.T, dir string) string {
	t.Helper()
	var sb strings.Builder
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			fmt.Fprintf(&sb, "%s %d %s\n", p, fi.Size(), fi.ModTime())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

// soloConfig is the config of a one-node cluster, n0 on a free loopback
// port over a new data dir, forming within form, and the default repo.
func soloConfig(t *testing.T, form time.Duration) (Config, *features.Repo) {
	t.Helper()
	repo, err := features.Load(features.DefaultFS())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return Config{NodeID: "n0", DataDir: t.TempDir(), ClusterAddr: addr, ClusterID: "c", Key: []byte("test-cluster-key-0123"),
		Peers: []Member{{ID: "n0", ClusterAddr: addr}}, Groups: 2, Replicas: 1, FormTimeout: form}, repo
}
