package retry

import (
	"context"
	"time"
)

// Backoff is a retry loop's delay between attempts. Make one with
// NewBackoff; it is not safe for concurrent use (one per loop).
type Backoff struct {
	first, max, next time.Duration
}

// NewBackoff returns a Backoff whose first Wait sleeps first, each later
// one twice the one before, up to max.
func NewBackoff(first, max time.Duration) Backoff {
	return Backoff{first: first, max: max, next: first}
}

// Wait sleeps for the current delay, then doubles it (up to max) for the
// next Wait. It returns false as soon as ctx ends (at once if it has
// ended): the caller stops retrying.
func (b *Backoff) Wait(ctx context.Context) bool {
	t := time.NewTimer(b.next)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	}
	b.next = min(2*b.next, b.max)
	return true
}

// Reset makes the next Wait sleep the first delay again (an attempt
// succeeded).
func (b *Backoff) Reset() { b.next = b.first }
