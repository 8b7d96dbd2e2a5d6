package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/windows"
)

// remoteReader opens two nodes with one group of one replica and returns
// the node that does not hold it (every read goes to its peer) and the
// one that does.
func remoteReader(t *testing.T) (reader, holder *Cluster) {
	cs, _ := openTestCluster(t, nil, 2, 1, 1)
	h := cs[0].Map().Groups[0].Replicas[0]
	for _, c := range cs {
		if c.cfg.NodeID == h {
			holder = c
		} else {
			reader = c
		}
	}
	return reader, holder
}

// TestPeerReadRefusalIsFinal: a read sub-request its peer refuses with
// 400 (here a read of a view the peer's repo does not have; in the field
// also a request of more reads than maxPeerReads from a node of another
// version) was retried for the read's whole 3 s budget, as if the peer
// were briefly unavailable, and ended in a 503 that blamed availability.
// A 4xx is final: the read stops at once with an error naming the peer
// and the peer's message, and not as unavailable.
func TestPeerReadRefusalIsFinal(t *testing.T) {
	reader, holder := remoteReader(t)
	reads := []node.Read{{View: 1 << 19, Key: []byte("u1")}}
	out := node.ReadOut{Vals: make([][]windows.Value, 1)}
	t0 := time.Now()
	_, err := reader.Read(node.ReadDefault, reads, time.Now().UnixMilli(), out)
	took := time.Since(t0)
	if err == nil {
		t.Fatal("a read of a view the peer does not have: no error")
	}
	t.Logf("after %s: %v", took.Round(time.Millisecond), err)
	if took > readTimeout/3 {
		t.Errorf("a read the peer refused with 400 took %s (budget %s): retried as if the peer were unavailable; err %v", took.Round(time.Millisecond), readTimeout, err)
	}
	if errors.Is(err, node.ErrUnavailable) {
		t.Errorf("a refused read reported as unavailable (503, retry): %v", err)
	}
	for _, want := range []string{holder.cfg.NodeID, "400", "read names a view this node's repo does not have"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}
