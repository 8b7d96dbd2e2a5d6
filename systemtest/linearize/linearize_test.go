package linearize

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func mustCheck(t *testing.T, r *Recorder) {
	t.Helper()
	ok, err := r.Check(10 * time.Second)
	if !ok || err != nil {
		t.Fatalf("Check = %v, %v; want a linearizable history", ok, err)
	}
}

func mustFail(t *testing.T, r *Recorder) {
	t.Helper()
	r.VisualizationPath = filepath.Join(t.TempDir(), "history.html")
	ok, err := r.Check(10 * time.Second)
	if ok || err == nil || errors.Is(err, ErrTimeout) {
		t.Fatalf("Check = %v, %v; want a violation", ok, err)
	}
	if !strings.Contains(err.Error(), r.VisualizationPath) {
		t.Fatalf("error %q does not name the visualization %s", err, r.VisualizationPath)
	}
	b, rerr := os.ReadFile(r.VisualizationPath)
	if rerr != nil || !strings.Contains(string(b), "<html") {
		t.Fatalf("visualization not written: %v (%d bytes)", rerr, len(b))
	}
}

func TestSequentialHistoryLinearizable(t *testing.T) {
	r := NewRecorder()
	r.Count(r.BeginRead(0, "a"), 0)
	r.Ack(r.BeginAdd(0, "a", 3))
	r.Ack(r.BeginAdd(1, "b", 5))
	r.Count(r.BeginRead(1, "a"), 3)
	r.Ack(r.BeginAdd(0, "a", 2))
	r.Count(r.BeginRead(0, "a"), 5)
	r.Count(r.BeginRead(1, "b"), 5)
	mustCheck(t, r)
}

func TestWrongCountFails(t *testing.T) {
	r := NewRecorder()
	r.Ack(r.BeginAdd(0, "a", 3))
	r.Count(r.BeginRead(0, "a"), 4)
	mustFail(t, r)
}

// A read that begins after an acknowledged Add and misses it is stale.
func TestStaleReadFails(t *testing.T) {
	r := NewRecorder()
	r.Ack(r.BeginAdd(0, "a", 1))
	r.Ack(r.BeginAdd(0, "a", 1))
	r.Count(r.BeginRead(1, "a"), 1)
	mustFail(t, r)
}

// A read concurrent with an Add may or may not see it.
func TestConcurrentReadMaySeeAdd(t *testing.T) {
	for _, seen := range []int64{0, 4} {
		r := NewRecorder()
		add := r.BeginAdd(0, "a", 4)
		read := r.BeginRead(1, "a")
		r.Count(read, seen)
		r.Ack(add)
		mustCheck(t, r)
	}
}

// An Add of unknown outcome may be counted or not, and may take effect after
// its client gave up; but once a read saw it, later reads must see it too.
func TestUnknownAddMayBeCountedOrNot(t *testing.T) {
	for _, seen := range []int64{1, 3} {
		r := NewRecorder()
		r.Ack(r.BeginAdd(0, "a", 1))
		r.Unknown(r.BeginAdd(0, "a", 2))
		r.Count(r.BeginRead(1, "a"), 1)
		r.Count(r.BeginRead(1, "a"), seen)
		mustCheck(t, r)
	}
	// Never ended counts as unknown too.
	r := NewRecorder()
	r.BeginAdd(0, "a", 2)
	r.Count(r.BeginRead(1, "a"), 0)
	r.Count(r.BeginRead(1, "a"), 2)
	mustCheck(t, r)

	r = NewRecorder()
	r.Unknown(r.BeginAdd(0, "a", 2))
	r.Count(r.BeginRead(1, "a"), 2)
	r.Count(r.BeginRead(1, "a"), 0)
	mustFail(t, r)

	// Only whole Adds: an unknown Add of 2 cannot show up as 1.
	r = NewRecorder()
	r.Unknown(r.BeginAdd(0, "a", 2))
	r.Count(r.BeginRead(1, "a"), 1)
	mustFail(t, r)
}

func TestDiscardedOperationsConstrainNothing(t *testing.T) {
	r := NewRecorder()
	r.Discard(r.BeginAdd(0, "a", 7)) // refused, nothing applied
	r.Discard(r.BeginRead(1, "a"))   // failed read
	r.BeginRead(1, "a")              // a read that never answered
	r.Count(r.BeginRead(1, "a"), 0)
	if r.Len() != 2 {
		t.Fatalf("Len = %d, want 2 (the pending read and the answered one)", r.Len())
	}
	mustCheck(t, r)
}

// Many clients hammer a correct (mutex-guarded) counter map; the recorded
// history must pass. Run with -race to check the Recorder's locking.
func TestConcurrentClientsOnCorrectStore(t *testing.T) {
	var mu sync.Mutex
	counts := map[string]int64{}
	r := NewRecorder()
	var wg sync.WaitGroup
	for c := 0; c < 6; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				key := fmt.Sprintf("k%d", (c+i)%3)
				if i%3 == 0 {
					h := r.BeginRead(c, key)
					mu.Lock()
					n := counts[key]
					mu.Unlock()
					r.Count(h, n)
					continue
				}
				h := r.BeginAdd(c, key, int64(i%5+1))
				mu.Lock()
				counts[key] += int64(i%5 + 1)
				mu.Unlock()
				if i%7 == 0 {
					r.Unknown(h) // applied, but the client did not learn it
				} else {
					r.Ack(h)
				}
			}
		}(c)
	}
	wg.Wait()
	mustCheck(t, r)
}

// The same workload against a store that serves reads from a copy refreshed
// only now and then (a stale replica) must fail.
func TestConcurrentClientsOnStaleStoreFail(t *testing.T) {
	var mu sync.Mutex
	counts, replica := map[string]int64{}, map[string]int64{}
	r := NewRecorder()
	for i := 0; i < 100; i++ {
		c := i % 3
		if i%4 == 3 {
			h := r.BeginRead(c, "k")
			mu.Lock()
			n := replica["k"]
			mu.Unlock()
			r.Count(h, n)
			continue
		}
		h := r.BeginAdd(c, "k", 1)
		mu.Lock()
		counts["k"]++
		if i%10 == 0 {
			replica["k"] = counts["k"]
		}
		mu.Unlock()
		r.Ack(h)
	}
	mustFail(t, r)
}

func TestEndTwicePanics(t *testing.T) {
	r := NewRecorder()
	h := r.BeginAdd(0, "a", 1)
	r.Ack(h)
	defer func() {
		if recover() == nil {
			t.Fatal("second End did not panic")
		}
	}()
	r.Ack(h)
}
