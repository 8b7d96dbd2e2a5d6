package cluster

import (
	"strings"
	"testing"
	"time"
)

// TestRestartAtANewAddressIsRefused: a member restarted with another
// cluster address (a new --cluster-addr, or --cluster-advertise) was not
// heard by its peers, whose groups' Raft configurations keep the old one:
// with a map in its metadata snapshot it started, ran not ready for good
// and its announced address never committed; with n0 then down, group 0
// (n1 and n2 up) had no quorum, and an acknowledged write could not be
// read. Without a snapshot it waited the form timeout and blamed
// --cluster-peers. Now the start is refused at once, naming the address
// its peers dial, and changes nothing; started again at that address it
// serves, and another name of the same address is taken.
func TestRestartAtANewAddressIsRefused(t *testing.T) {
	w := newWipedCluster(t, 3, 1, 3)
	w.start(0, 1, 2)
	w.write(0, "before")
	if err := w.cs[2].meta.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	w.stop(2)
	old := w.cfgs[2]
	moved := old
	moved.ClusterAddr = freeAddr(t)
	before := treeOf(t, old.DataDir)
	t0 := time.Now()
	c, err := Open(moved, w.repo)
	if err == nil {
		w.cs[2] = c
		w.write(0, "after")
		w.stop(0)
		got := w.count(2, "after")
		t.Fatalf("n2 restarted at a new cluster address; with n0 then down, the acknowledged write reads as count %v (want a refusal at start)", got)
	}
	if took := time.Since(t0); took > 5*time.Second {
		t.Errorf("refused after %v; want at once", took.Round(time.Millisecond))
	}
	for _, want := range []string{old.ClusterAddr, moved.ClusterAddr, "--cluster-advertise " + old.ClusterAddr, "--node-id", "remove-node n2"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("refusal %q does not say %q", err, want)
		}
	}
	t.Log(err)
	if after := treeOf(t, old.DataDir); after != before {
		t.Errorf("the refused start changed the data dir:\nbefore\n%s\nafter\n%s", before, after)
	}

	// The same port under another name reaches this process: taken.
	same := old
	same.Advertise = strings.Replace(old.ClusterAddr, "127.0.0.1", "localhost", 1)
	w.cfgs[2] = same
	w.start(2)
	w.write(0, "after")
	w.stop(0)
	if got := w.count(2, "after"); got != 1 {
		t.Fatalf("with n0 down, the acknowledged write reads as count %v through n2; want 1", got)
	}
}
