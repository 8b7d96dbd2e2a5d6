package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestTargetLeaderNewerThanTheMap: this node's replica of a group knows
// its leader (Raft told it: id and address), but this node's copy of the
// cluster map is older than the leader's admission (the node was down
// while a node was added and the group moved onto it, and its metadata
// replica has not caught up). target looked the leader up in the map
// only, found nothing and gave up: a read answered 503 at once ("no other
// replica"), a write retried without ever reaching the leader. The
// leader is asked at the address Raft knows; it answers 409 with the
// newer map, which this node adopts, and the retry succeeds.
func TestTargetLeaderNewerThanTheMap(t *testing.T) {
	cs, fronts := openTestCluster(t, nil, 2, 1, 2) // group 0 on n0 and n1
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lead, follow := -1, -1
	for lead < 0 {
		for i, c := range cs {
			if c.group(0).rep.raft.State() == raft.Leader {
				lead, follow = i, 1-i
			}
		}
		if ctx.Err() != nil {
			t.Fatal("group 0 has no leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
	L, F := cs[lead], cs[follow]
	// A map change, so that there is an older version for F to lag at.
	err := L.casMeta(ctx, func(m *Map) *metaCommand {
		mb := *m.Member(F.cfg.NodeID)
		mb.HTTPAddr = "127.0.0.1:1"
		return &metaCommand{Op: "update-member", Member: &mb}
	})
	if err != nil {
		t.Fatal(err)
	}
	for F.Map().Member(F.cfg.NodeID).HTTPAddr != "127.0.0.1:1" {
		if ctx.Err() != nil {
			t.Fatal("F never saw the map change")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cur := F.Map()
	lag := cur.clone()
	lag.Version = cur.Version - 1
	lag.Members = []Member{*cur.Member(F.cfg.NodeID)}
	lag.Groups[0].Replicas = []string{F.cfg.NodeID}
	F.m.Store(lag)

	if mb := F.target(0, 0); mb == nil || mb.ID != L.cfg.NodeID || mb.ClusterAddr != L.cfg.ClusterAddr {
		t.Errorf("target of group 0 with a map that lacks its leader %s (at %s): %+v", L.cfg.NodeID, L.cfg.ClusterAddr, mb)
	}
	lookup := []byte(`{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"u1","merchant":"m1","country":"FR"},"request_context_map":{"amt":1,"lat":1,"long":2}}}`)
	if _, aerr := fronts[follow].GetFeatures(nil, lookup); aerr != nil {
		t.Fatalf("a read on a node whose map lacks the group's leader: %v", aerr)
	}
	if v := F.Map().Version; v < cur.Version {
		t.Fatalf("F's map is at version %d after the leader answered; want %d or later", v, cur.Version)
	}
}
