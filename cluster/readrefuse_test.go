package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
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

// TestPeerReadBodyBound: the read route read a body of up to 64 MiB whole
// before looking at it, so one request of an authenticated peer (bad, or
// of another version) made a node hold 64 MiB. Its body is now bounded by
// what maxPeerReads reads of keys of peerReadKeyBytes take
// (maxPeerReadBody): a request of maxPeerReads such reads is answered, one
// a byte longer is refused with 413, and a far longer one is refused
// without being read to its end.
func TestPeerReadBodyBound(t *testing.T) {
	cs, _ := openTestCluster(t, nil, 1, 1, 1)
	c := cs[0]
	now := time.Now().UnixMilli()
	full := make([]node.Read, maxPeerReads)
	idx := make([]int, maxPeerReads)
	for i := range full {
		full[i], idx[i] = node.Read{View: 0, Key: bytes.Repeat([]byte{'a' + byte(i%26)}, peerReadKeyBytes)}, i
	}
	send := func(body io.Reader) (int, string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c.cfg.ClusterAddr+"/v1/read?group=0&level=default", body)
		if err != nil {
			t.Fatal(err)
		}
		c.stampMap(req)
		resp, err := c.rpc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK {
			return resp.StatusCode, fmt.Sprintf("(an answer of %d bytes)", len(b)), nil
		}
		return resp.StatusCode, string(b), nil
	}
	body := appendReads(nil, now, full, idx)
	if st, msg, err := send(bytes.NewReader(body)); err != nil || st != http.StatusOK {
		t.Fatalf("%d reads of %d-byte keys (%d bytes): %d %q %v; want 200", maxPeerReads, peerReadKeyBytes, len(body), st, msg, err)
	}
	// The same count, its last key longer: the body one byte over the
	// bound a request of maxPeerReads reads of max-size keys and the
	// largest view numbers can take.
	over := int(maxPeerReadBody()) + 1 - len(body)
	full[len(full)-1].Key = bytes.Repeat([]byte{'z'}, peerReadKeyBytes+over)
	body = appendReads(nil, now, full, idx)
	if int64(len(body)) != maxPeerReadBody()+1 {
		t.Fatalf("test: body of %d bytes, want %d", len(body), maxPeerReadBody()+1)
	}
	if st, msg, err := send(bytes.NewReader(body)); err != nil || st != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "must split") {
		t.Errorf("a read sub-request of %d bytes (bound %d): %d %q %v; want 413 saying the sender must split it", len(body), maxPeerReadBody(), st, msg, err)
	}
	// One read of a 48 MiB key: refused before its end arrives.
	const huge = 48 << 20
	head := binary.AppendVarint(nil, now)
	head = binary.AppendUvarint(head, 1)
	head = append(head, 0, 0)
	head = binary.AppendUvarint(head, huge)
	var sent atomic.Int64
	st, msg, err := send(io.MultiReader(bytes.NewReader(head), &countingZeros{n: huge, sent: &sent}))
	if err == nil && st == http.StatusOK {
		t.Errorf("a read sub-request of one %d MiB key: answered 200 after reading %d MiB", huge>>20, sent.Load()>>20)
	} else if sent.Load() >= huge {
		t.Errorf("a read sub-request of one %d MiB key: refused (%d %q %v) only after all of it was read", huge>>20, st, msg, err)
	}
	t.Logf("a %d MiB request: %d %q %v after %d MiB were sent", huge>>20, st, msg, err, sent.Load()>>20)
}

// countingZeros reads n zeros, counting what was read.
type countingZeros struct {
	n    int64
	sent *atomic.Int64
}

func (z *countingZeros) Read(p []byte) (int, error) {
	left := z.n - z.sent.Load()
	if left <= 0 {
		return 0, io.EOF
	}
	k := min(int64(len(p)), left)
	clear(p[:k])
	z.sent.Add(k)
	return int(k), nil
}

// TestPeerReadsSplitByBytes: a group's reads whose keys are longer than
// peerReadKeyBytes are sent in as many requests as the body bound needs,
// not maxPeerReads to a request: every one is answered. A lone read whose
// key no request can carry fails at once, naming the bound, without
// asking the peer.
func TestPeerReadsSplitByBytes(t *testing.T) {
	reader, _ := remoteReader(t)
	n := maxPeerReads
	reads := make([]node.Read, n)
	for i := range reads {
		reads[i] = node.Read{View: 0, Key: []byte(fmt.Sprintf("%0*d", 2*peerReadKeyBytes, i))}
	}
	out := node.ReadOut{Vals: make([][]windows.Value, n)}
	if _, err := reader.Read(node.ReadDefault, reads, time.Now().UnixMilli(), out); err != nil {
		t.Fatalf("%d reads of %d-byte keys from a peer: %v", n, 2*peerReadKeyBytes, err)
	}
	big := []node.Read{{View: 0, Key: bytes.Repeat([]byte{'k'}, int(maxPeerReadBody()))}}
	t0 := time.Now()
	_, err := reader.Read(node.ReadDefault, big, time.Now().UnixMilli(), node.ReadOut{Vals: make([][]windows.Value, 1)})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(maxPeerReadBody())) || time.Since(t0) > readTimeout/3 {
		t.Fatalf("a read of a %d-byte key from a peer: %v after %s; want a prompt error naming the bound %d", len(big[0].Key), err, time.Since(t0).Round(time.Millisecond), maxPeerReadBody())
	}
}
