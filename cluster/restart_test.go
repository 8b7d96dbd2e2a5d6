package cluster

import (
	"maps"
	"sync"
	"testing"
)

// TestRestartAsksEachPeerOnce: a restarting node's start checks each
// asked the peers a round of their own (checkNotRestored,
// checkNotRemoved, checkSingleProcess, freshMap: four hellos to every
// peer, and four waits for a peer that does not answer, up to
// peerCheckTimeout each). The start now asks every peer once, and each
// check reads that round's answers.
func TestRestartAsksEachPeerOnce(t *testing.T) {
	var mu sync.Mutex
	heard := map[string]int{} // "to<-from"
	helloHeard = func(to *Cluster, id string) {
		mu.Lock()
		heard[to.cfg.NodeID+"<-"+id]++
		mu.Unlock()
	}
	t.Cleanup(func() { helloHeard = nil })
	w := newWipedCluster(t, 3, 2, 3)
	w.start(0, 1, 2)
	w.write(0, "a")
	w.waitReported(1, "g0")
	w.stop(1)
	mu.Lock()
	clear(heard)
	mu.Unlock()
	w.start(1)
	mu.Lock()
	got := maps.Clone(heard)
	mu.Unlock()
	if got["n0<-n1"] != 1 || got["n2<-n1"] != 1 {
		t.Fatalf("n1's restart sent n0 %d hellos and n2 %d (all hellos: %v); want one each", got["n0<-n1"], got["n2<-n1"], got)
	}
}
