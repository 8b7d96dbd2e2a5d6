package node

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Connections cost a file descriptor each, the same descriptors the
// write-ahead log and snapshots need: the node bounds them well below the
// process's open-file limit. (Go raises the soft limit to the hard one at
// start, on every Unix: see TestGoRaisesOpenFileLimit.)
const (
	autoMaxConns = 10_000 // limits.max_conns: 0 takes half the open-file limit, at most this
	reservedFDs  = 128    // what an explicit limits.max_conns must leave to the rest
)

// openFileLimit is the process's soft RLIMIT_NOFILE, 0 if unknown.
func openFileLimit() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return 0
	}
	return int(lim.Cur)
}

// connLimit resolves limits.max_conns against the open-file limit files (0:
// unknown): 0 picks half of it (at most autoMaxConns); a number that leaves
// fewer than reservedFDs descriptors to the log, snapshots and archive
// reads is refused.
func connLimit(configured, files int) (int, error) {
	if configured == 0 {
		if files == 0 {
			return autoMaxConns, nil
		}
		return max(1, min(autoMaxConns, files/2)), nil
	}
	if files > 0 && configured > files-reservedFDs {
		return 0, fmt.Errorf("limits.max_conns %d: the process may open %d files, and the write-ahead log and snapshots need some of them; "+
			"use at most %d, or 0 for half the limit, or raise the open-file limit (ulimit -n, systemd LimitNOFILE)",
			configured, files, max(0, files-reservedFDs))
	}
	return configured, nil
}

// retryListener keeps accepting when the process or the system is out of
// file descriptors (EMFILE, ENFILE): it pauses, up to a second, and tries
// again, where fasthttp would stop serving.
type retryListener struct{ net.Listener }

func (l retryListener) Accept() (net.Conn, error) {
	pause := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err == nil || !(errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)) {
			return c, err
		}
		time.Sleep(pause)
		pause = min(2*pause, time.Second)
	}
}

// deadlineTick is how often a sweepListener checks its connections'
// deadlines: a deadline fires up to this late.
const deadlineTick = 100 * time.Millisecond

// sweepListener hands out connections whose deadlines are numbers checked
// by one sweeper every deadlineTick, not timers. fasthttp sets three
// deadlines per request (the idle wait, the read, the write); on a real
// connection each rearms a runtime timer under the poller's locks, about
// 0.2 µs apiece (measured: see README, "lookup over HTTP"). Here setting one
// is an atomic store. When the sweeper finds a deadline passed, it sets a
// real deadline in the past, so the blocked Read or Write returns the same
// timeout error it would have returned on time.
type sweepListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[*sweptConn]struct{}
	stop  chan struct{}
	once  sync.Once
}

// newSweepListener wraps ln and starts its sweeper, which Close stops.
func newSweepListener(ln net.Listener) *sweepListener {
	l := &sweepListener{Listener: ln, conns: map[*sweptConn]struct{}{}, stop: make(chan struct{})}
	go l.sweep()
	return l
}

func (l *sweepListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc := &sweptConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[sc] = struct{}{}
	l.mu.Unlock()
	return sc, nil
}

func (l *sweepListener) Close() error {
	l.once.Do(func() { close(l.stop) })
	return l.Listener.Close()
}

func (l *sweepListener) sweep() {
	t := time.NewTicker(deadlineTick)
	defer t.Stop()
	var due []*sweptConn
	for {
		select {
		case <-l.stop:
			return
		case now := <-t.C:
			due = due[:0]
			ns := now.UnixNano()
			l.mu.Lock()
			for c := range l.conns {
				if c.due(ns) {
					due = append(due, c)
				}
			}
			l.mu.Unlock()
			for _, c := range due {
				c.expire(ns)
			}
		}
	}
}

// sweptConn is a connection of a sweepListener. Its deadlines are Unix
// nanoseconds, 0 for none.
type sweptConn struct {
	net.Conn
	l      *sweepListener
	soft   [2]atomic.Int64 // the read and the write deadline
	passed [2]atomic.Bool  // the real one is set in the past
	closed atomic.Bool
}

// The directions of a sweptConn's deadlines.
const (
	reading = iota
	writing
)

func (c *sweptConn) SetDeadline(t time.Time) error {
	c.set(reading, t)
	c.set(writing, t)
	return nil
}

func (c *sweptConn) SetReadDeadline(t time.Time) error  { c.set(reading, t); return nil }
func (c *sweptConn) SetWriteDeadline(t time.Time) error { c.set(writing, t); return nil }

// set stores deadline t of direction d. Only after the sweeper has expired
// the connection does it touch the real one, to take that expiry back.
func (c *sweptConn) set(d int, t time.Time) {
	var ns int64
	if !t.IsZero() {
		ns = max(t.UnixNano(), 1)
	}
	c.soft[d].Store(ns)
	if c.passed[d].Load() {
		c.real(d, time.Time{})
	}
}

func (c *sweptConn) real(d int, t time.Time) {
	c.passed[d].Store(!t.IsZero())
	if d == reading {
		c.Conn.SetReadDeadline(t)
	} else {
		c.Conn.SetWriteDeadline(t)
	}
}

func (c *sweptConn) due(now int64) bool {
	r, w := c.soft[reading].Load(), c.soft[writing].Load()
	return r != 0 && r <= now || w != 0 && w <= now
}

// expire ends the connection's blocked Read or Write with a timeout by
// setting each passed deadline on the real connection. A deadline renewed
// meanwhile (a request arriving as the idle time ran out) takes the real one
// off again, here or in set, so at worst a read or write in that instant
// times out, as it could have with timers.
func (c *sweptConn) expire(now int64) {
	for d := range c.soft {
		ns := c.soft[d].Load()
		if ns == 0 || ns > now {
			continue
		}
		c.real(d, time.Unix(0, now))
		if c.soft[d].Load() != ns {
			c.real(d, time.Time{})
		}
	}
}

func (c *sweptConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	}
	return c.Conn.Close()
}
