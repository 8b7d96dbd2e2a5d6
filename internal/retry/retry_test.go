package retry

import (
	"context"
	"testing"
	"time"
)

// TestBackoffDoubles: each Wait doubles the next delay up to the cap, and
// Reset starts again from the first.
func TestBackoffDoubles(t *testing.T) {
	b := NewBackoff(time.Millisecond, 5*time.Millisecond)
	for i, want := range []time.Duration{1, 2, 4, 5, 5} {
		if b.next != want*time.Millisecond {
			t.Fatalf("wait %d: delay %v, want %v", i, b.next, want*time.Millisecond)
		}
		if !b.Wait(context.Background()) {
			t.Fatalf("wait %d: false without a cancelled context", i)
		}
	}
	b.Reset()
	if b.next != time.Millisecond {
		t.Fatalf("after Reset: delay %v, want 1ms", b.next)
	}
}

// TestBackoffCancelled: Wait returns false as soon as its context ends,
// and at once when it has ended already.
func TestBackoffCancelled(t *testing.T) {
	b := NewBackoff(time.Hour, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if b.Wait(ctx) {
		t.Fatal("Wait on an ended context returned true")
	}
	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	start := time.Now()
	if b.Wait(ctx) {
		t.Fatal("Wait returned true when its context ended")
	}
	if d := time.Since(start); d > time.Minute {
		t.Fatalf("Wait returned after %v, not when its context ended", d)
	}
}
