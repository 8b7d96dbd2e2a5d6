package cluster

import (
	"sync"
	"testing"
	"time"

	"github.com/tally-ml/tally/wal"
)

// TestProgressSyncsOutsideTheReconcileLock: under the interval fsync
// policy the progress report syncs each replica's log before it reports
// the replica's applied index. It did so holding reconcileMu, so a
// reconcile (opening, closing, moving replicas) and Close waited for the
// fsyncs of every replica. It now holds only the synced replica's own
// lock: reconcileMu is free while the report syncs, the replica does not
// close under the Sync (Close waits for it), and a closed replica is left
// out of the report, its log not synced (a Sync of a closed log fails and
// breaks it).
func TestProgressSyncsOutsideTheReconcileLock(t *testing.T) {
	parked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	beforeProgressSync = func() { once.Do(func() { close(parked); <-release }) }
	t.Cleanup(func() { beforeProgressSync = nil })
	w := newWipedCluster(t, 1, 1, 1)
	w.cfgs[0].Sync = wal.SyncInterval
	w.start(0)
	c := w.cs[0]
	select {
	case <-parked:
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("no progress report synced a replica's log in 10s")
	}
	free := c.reconcileMu.TryLock()
	if free {
		c.reconcileMu.Unlock()
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		t.Errorf("Close finished (%v) while the progress report synced a replica's log", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	w.cs[0] = nil
	if !free {
		t.Error("reconcileMu is held while the progress report syncs a replica's log")
	}
	if mk, ok := c.progressOf(c.meta); ok {
		t.Errorf("the closed metadata replica is reported: %+v", mk)
	}
	if err := c.meta.logs.Log().Err(); err != nil {
		t.Errorf("the closed metadata replica's log was synced by the report: %v", err)
	}
}
