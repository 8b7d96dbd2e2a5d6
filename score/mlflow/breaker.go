package mlflow

import (
	"sync"
	"sync/atomic"
	"time"
)

const (
	closed int32 = iota
	open
	halfOpen
)

// breaker is a consecutive-failure circuit breaker. Closed, it lets every
// call through at the cost of one atomic load; threshold consecutive
// failures open it; after cooldown one probe call is let through (half
// open), and the probe's outcome closes or reopens it.
type breaker struct {
	threshold int // < 0: never opens
	cooldown  time.Duration

	state    atomic.Int32
	failures atomic.Int32 // consecutive failed calls
	opens    atomic.Uint64

	mu       sync.Mutex
	openedAt time.Time
	probing  bool
}

// allow reports whether a call may go out, and whether it is the probe.
func (b *breaker) allow() (probe, ok bool) {
	if b.state.Load() == closed {
		return false, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state.Load() {
	case closed:
		return false, true
	case open:
		if time.Since(b.openedAt) < b.cooldown {
			return false, false
		}
		b.state.Store(halfOpen)
	}
	if b.probing {
		return false, false
	}
	b.probing = true
	return true, true
}

// release gives back a probe slot that was not used.
func (b *breaker) release(probe bool) {
	if probe {
		b.mu.Lock()
		b.probing = false
		b.mu.Unlock()
	}
}

func (b *breaker) success() {
	if b.state.Load() == closed && b.failures.Load() == 0 {
		return
	}
	b.mu.Lock()
	b.failures.Store(0)
	b.state.Store(closed)
	b.probing = false
	b.mu.Unlock()
}

func (b *breaker) failure(probe bool) {
	if b.threshold < 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.failures.Add(1)
	switch {
	case probe:
		b.probing = false
	case b.state.Load() != closed:
		// A call from before the breaker opened; it opened already.
		return
	case int(f) < b.threshold:
		return
	}
	b.state.Store(open)
	b.openedAt = time.Now()
	b.opens.Add(1)
}
