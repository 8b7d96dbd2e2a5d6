package cluster

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestAddNodeRefusesAnotherShape: a node started with --cluster-join and
// --cluster-groups other than the cluster's was admitted (a voter of the
// metadata group, a member of the map), then refused its own start once
// the map arrived: the metadata group counted a voter that never runs.
// add-node now refuses it before anything changes, naming the flag.
func TestAddNodeRefusesAnotherShape(t *testing.T) {
	w := newWipedCluster(t, 3, 2, 3)
	w.start(0, 1, 2)
	cfg := w.cfgs[0]
	cfg.NodeID, cfg.DataDir, cfg.ClusterAddr, cfg.Join, cfg.Peers, cfg.Groups = "n3", t.TempDir(), freeAddr(t), true, nil, 4
	cfg.FormTimeout = 20 * time.Second
	w.cfgs = append(w.cfgs, cfg)
	w.cs = append(w.cs, nil)
	opened := w.startAsync(3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := addNode(ctx, w.cs[0], Member{ID: "n3", ClusterAddr: cfg.ClusterAddr}, opened)
	if err == nil {
		oerr := <-opened
		cf := w.cs[0].meta.raft.GetConfiguration()
		t.Fatalf("add-node of a node started with --cluster-groups 4 (the cluster has 2) succeeded; its start then ended with %v, and the metadata group's configuration is %+v", oerr, cf.Configuration().Servers)
	}
	for _, want := range []string{"n3", "--cluster-groups 4", "2 groups"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("refusal %q does not say %q", err, want)
		}
	}
	t.Log(err)
	cf := w.cs[0].meta.raft.GetConfiguration()
	for _, s := range cf.Configuration().Servers {
		if s.ID == "n3" {
			t.Fatalf("the refused add-node left n3 in the metadata group: %+v", cf.Configuration().Servers)
		}
	}
	if m := metaLeaderMap(t, w.cs[:3]); m.Member("n3") != nil {
		t.Fatal("the refused add-node left n3 in the map")
	}
}
