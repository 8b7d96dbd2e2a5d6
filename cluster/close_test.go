package cluster

import (
	"sync"
	"testing"
	"time"
)

// TestCloseWhileAReconcileWaits: followMap took a map and is on its way
// into reconcile when Close begins (a map change or the periodic
// reconcile landing during a shutdown). Close must still return: the
// reconcile waits for Close's lock, sees the node closing and returns.
// Close once held that lock while it waited for followMap, and a node told
// to stop hung there forever (TestClusterChangesUnderLoad, CI of e7f8c87).
func TestCloseWhileAReconcileWaits(t *testing.T) {
	parked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	beforeReconcile = func() { once.Do(func() { close(parked); <-release }) }
	t.Cleanup(func() { beforeReconcile = nil })
	cs, _ := openTestCluster(t, nil, 1, 2, 1)
	c := cs[0]
	select {
	case <-parked:
	case <-time.After(time.Minute):
		t.Fatal("followMap never reconciled")
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	// Release followMap once Close holds reconcileMu (followMap, its only
	// other taker, is parked), or 2 s after Close began: Close may take
	// and drop the lock before it waits for followMap.
	<-c.closing
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && c.reconcileMu.TryLock(); time.Sleep(100 * time.Microsecond) {
		c.reconcileMu.Unlock()
	}
	close(release)
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close hangs while followMap waits to reconcile")
	}
}
