package store

import (
	"sync"
	"testing"
	"time"

	"github.com/tally-ml/tally/features"
)

// staleEmptyLog is a Log whose Append of no records reads its last index
// and, once, lets another commit run to the end before it returns it, as
// wal.Log's Append() (its LastIndex) can when a concurrent request's
// append and apply complete in between.
type staleEmptyLog struct {
	mu     sync.Mutex
	recs   [][]byte
	before func() // run once by the first empty Append, after reading the index
}

func (l *staleEmptyLog) Append(recs ...[]byte) (uint64, error) {
	l.mu.Lock()
	last := uint64(len(l.recs))
	l.recs = append(l.recs, recs...)
	last += uint64(len(recs))
	hook := l.before
	if len(recs) == 0 {
		l.before = nil
	} else {
		hook = nil
	}
	l.mu.Unlock()
	if hook != nil {
		hook()
	}
	return last, nil
}

func (l *staleEmptyLog) Err() error { return nil }

// TestEmptyCommitKeepsTheApplyOrder: a commit of no records (an ingest of
// an empty body) while another commit is logged and applied leaves the
// applied index where that commit put it: it never moves back, so the
// next commit is applied (not left waiting for an index already applied)
// and a snapshot starts after every record its state holds.
func TestEmptyCommitKeepsTheApplyOrder(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	log := &staleEmptyLog{}
	n, err := New(repo, Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	b := streamBatch(t, n, "u1")
	if _, _, err := n.CommitEvents("", []*Batch{b}, t0, false); err != nil {
		t.Fatal(err)
	}
	other := func() {
		// Another request's record is logged and applied after the empty
		// commit read the log's last index.
		if _, _, err := n.CommitEvents("", []*Batch{streamBatch(t, n, "u2")}, t0, false); err != nil {
			t.Error(err)
		}
	}
	ran := false
	log.before = func() { ran = true; other() }
	if _, _, err := n.CommitEvents("", nil, t0, false); err != nil {
		t.Fatal(err)
	}
	if !ran { // the empty commit did not append: the other one comes after
		log.before = nil
		other()
	}
	if got := n.AppliedIndex(); got != 2 {
		t.Errorf("applied index %d after 2 records were applied, want 2", got)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := n.CommitEvents("", []*Batch{streamBatch(t, n, "u3")}, t0, false)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the next commit was never applied: the sequencer waits for an index it already applied")
	}
	if got := events(n); got != 3 {
		t.Errorf("%d events applied, want 3", got)
	}
}
