package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestWrongClusterKeyIsNamedInReadiness: a member restarted with another
// cluster key (a changed --cluster-key-file) over a data dir whose
// metadata snapshot holds the map started and stayed not ready for good,
// its readiness blaming an election. The start is still not refused (a
// rolling key change restarts nodes one by one), but while every peer it
// dials refuses its key, its readiness and a WARN line say so, naming the
// peers and the flag; restarted with the cluster's key it is ready again.
func TestWrongClusterKeyIsNamedInReadiness(t *testing.T) {
	w := newWipedCluster(t, 3, 1, 3)
	w.start(0, 1, 2)
	w.write(0, "before")
	if err := w.cs[2].meta.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	w.stop(2)
	cfg := w.cfgs[2]
	cfg.Key = []byte("another-key-0123456789")
	var log lockedBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&log, nil))
	c, err := Open(cfg, w.repo)
	if err != nil {
		t.Fatalf("n2 restarted with another cluster key was refused: %v; want it started (a rolling key change restarts nodes one by one)", err)
	}
	w.cs[2] = c
	var last error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if last = c.Err(); last != nil && strings.Contains(last.Error(), "cluster key") {
			break
		}
	}
	if last == nil || !strings.Contains(last.Error(), "cluster key") {
		t.Fatalf("n2 with another cluster key: readiness %v after 15s; want it to say that its peers refuse its cluster key", last)
	}
	for _, want := range []string{"n0 at " + w.cfgs[0].ClusterAddr, "n1 at " + w.cfgs[1].ClusterAddr, "--cluster-key-file"} {
		if !strings.Contains(last.Error(), want) {
			t.Fatalf("readiness %q does not say %q", last, want)
		}
	}
	t.Log(last)
	if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), "cluster key") {
		t.Fatalf("no WARN line about the cluster key in n2's log:\n%s", log.String())
	}

	w.stop(2)
	w.start(2)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if last = w.cs[2].Err(); last == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("n2 restarted with the cluster's key: still not ready after 20s: %v", last)
		}
	}
}
