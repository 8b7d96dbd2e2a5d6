package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/features"
)

// TestOpenRefusesOtherGroupsOrReplicas: a node restarted over its data
// dir with --cluster-groups or --cluster-replicas other than its
// cluster's started and silently ran the cluster's (the flags only say
// what a new cluster is created with), so an operator who meant to change
// them was never told. Such a start is refused at once, saying what the
// cluster has and how to start, and changes nothing in the data dir,
// whether the map is in the metadata replica's log or its snapshot; a
// start without the flags, or with the cluster's values, comes back.
func TestOpenRefusesOtherGroupsOrReplicas(t *testing.T) {
	cfg, repo := soloConfig(t, 30*time.Second) // 2 groups of 1 replica
	c, err := Open(cfg, repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	refusesOtherShapes(t, cfg, repo, "log")

	c, err = Open(cfg, repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.meta.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	refusesOtherShapes(t, cfg, repo, "snapshot")

	unset := cfg
	unset.Groups, unset.Replicas = 0, 0
	for _, ok := range []Config{unset, cfg} {
		c, err := Open(ok, repo)
		if err != nil {
			t.Fatalf("started again with groups %d, replicas %d: %v", ok.Groups, ok.Replicas, err)
		}
		if m := c.Map(); len(m.Groups) != 2 || m.Replicas != 1 {
			t.Fatalf("map after a restart: %d groups of %d", len(m.Groups), m.Replicas)
		}
		c.Close()
	}
}

// refusesOtherShapes checks that starts over cfg's data dir with other
// groups or replicas are refused at once and leave the dir as it was;
// held says where the dir keeps its map.
func refusesOtherShapes(t *testing.T, cfg Config, repo *features.Repo, held string) {
	t.Helper()
	before := treeOf(t, cfg.DataDir)
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"more groups", func(c *Config) { c.Groups = 4 }, []string{"--cluster-groups 4", "has 2 groups of 1 replicas", "--cluster-groups 2 --cluster-replicas 1", "without them"}},
		{"more replicas, more peers", func(c *Config) {
			c.Replicas, c.Peers = 2, append(c.Peers, Member{ID: "n1", ClusterAddr: "127.0.0.1:1"})
		}, []string{"--cluster-replicas 2", "has 2 groups of 1 replicas"}},
		{"both, joining", func(c *Config) { c.Groups, c.Replicas, c.Join = 8, 3, true }, []string{"--cluster-groups 8 and --cluster-replicas 3"}},
	} {
		t.Run(held+", "+tc.name, func(t *testing.T) {
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
			if after := treeOf(t, cfg.DataDir); after != before {
				t.Fatalf("the refused start changed the data dir:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}
