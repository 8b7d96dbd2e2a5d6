package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
)

// TestForwardedChangeOutlivesItsForwarder: a change sent to a node that
// does not lead the metadata group is forwarded to the leader (POST
// /v1/admin), which ran it under the forwarded request's context: when the
// forwarding node died (kill -9 of the node a `tally cluster rebalance`
// was sent to), the leader's change was cancelled mid-move, leaving a
// group listing a replica that is not a voter. A change sent to the
// leader itself runs detached from its client's connection; a forwarded
// one now does too. Here the forwarder is gone before the leader reads
// the request (its context is already cancelled): the move must still be
// made.
func TestForwardedChangeOutlivesItsForwarder(t *testing.T) {
	cs, _ := openTestCluster(t, nil, 3, 1, 2) // group 0 on n0, n1
	var leader *Cluster
	for _, c := range cs {
		if c.meta.raft.State() == raft.Leader {
			leader = c
		}
	}
	if leader == nil {
		metaLeaderMap(t, cs) // waits, or fails naming it
		for _, c := range cs {
			if c.meta.raft.State() == raft.Leader {
				leader = c
			}
		}
	}
	from := metaLeaderMap(t, cs).Groups[0].Replicas[0]
	body, _ := json.Marshal(adminRequest{Op: "move-replica", Move: &Move{Group: 0, From: from, To: "n2"}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the forwarding node died
	w := httptest.NewRecorder()
	leader.rpcHandler().ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/admin", bytes.NewReader(body)).WithContext(ctx))
	got := metaLeaderMap(t, cs).Groups[0].Replicas
	if slices.Contains(got, from) || !slices.Contains(got, "n2") {
		t.Fatalf("a move forwarded by a node that then died: answered %d %s; the map lists %v, want %s moved to n2",
			w.Code, bytes.TrimSpace(w.Body.Bytes()), got, from)
	}
}
