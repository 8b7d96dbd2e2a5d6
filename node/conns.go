package node

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
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
// deadlines, and the resolution of its clock: a timeout fires up to a tick
// early or late.
const deadlineTick = 100 * time.Millisecond

// connTimeouts are the timeouts a sweepListener's connections keep by
// themselves (zero: none): read, from a request's first byte (a new
// connection's: from its accept) until its response is written; write, for
// the response; idle, for the next request's first byte. They are
// fasthttp's ReadTimeout, WriteTimeout and IdleTimeout, which the node's
// server leaves at zero.
type connTimeouts struct{ read, write, idle time.Duration }

// sweepListener hands out connections whose deadlines are numbers checked
// by one sweeper every deadlineTick, not timers, and read from the
// sweeper's clock, not the system's. fasthttp keeping the timeouts itself
// read the clock three times per request and set three deadlines, each
// rearming a runtime timer under the poller's locks: together 5% of the
// server's CPU under wrk, beside a lookup (README, "lookup over HTTP").
// Here a connection tells a request from the next by the order of its
// reads and writes, and arming a deadline is an atomic store. When the
// sweeper finds a deadline passed, it sets a real deadline in the past, so
// the blocked Read or Write returns the timeout error it would have
// returned on time.
type sweepListener struct {
	net.Listener
	timeouts connTimeouts
	timed    bool // timeouts has one
	limits   connLimits
	clock    atomic.Int64 // Unix nanoseconds at the sweeper's last tick
	mu       sync.Mutex
	conns    map[*sweptConn]struct{}
	perIP    map[netip.Addr]int // connections by client address, when limits.perIP is set
	ended    bool               // the sweeper is done: Accept hands out no more
	stop     chan struct{}      // closed by Close; the sweeper runs on until the last connection closes
	swept    chan struct{}      // closed when the sweeper returns
	once     sync.Once
	closeErr error // the first Close's
}

// connLimits are limits.max_conns and limits.max_conns_per_ip (0: none).
// A sweepListener keeps them, not fasthttp (Server.Concurrency,
// MaxConnsPerIP): fasthttp answers the connections it refuses in
// text/plain, from its accept loop, with no hook to answer otherwise, and
// every other error of the API is its JSON error.
type connLimits struct{ total, perIP int }

// newSweepListener wraps ln and starts its sweeper, which Close stops.
func newSweepListener(ln net.Listener, to connTimeouts, lim connLimits) *sweepListener {
	l := &sweepListener{Listener: ln, timeouts: to, timed: to != connTimeouts{}, limits: lim, conns: map[*sweptConn]struct{}{}, perIP: map[netip.Addr]int{}, stop: make(chan struct{}), swept: make(chan struct{})}
	l.clock.Store(time.Now().UnixNano())
	go l.sweep()
	return l
}

// Accept returns the next connection within the limits. One beyond them is
// answered, as fasthttp would, 429 (its address holds limits.perIP) or 503
// (the listener holds limits.total; an address's limit is checked first),
// with Connection: close, and closed at once.
func (l *sweepListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		sc := &sweptConn{Conn: c, l: l, phase: phaseRequest}
		if l.limits.perIP > 0 {
			if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
				sc.ip = a.AddrPort().Addr().Unmap()
			}
		}
		sc.arm(reading, l.after(l.timeouts.read))
		l.mu.Lock()
		if l.ended { // accepted as the listener closed, after its last connection
			l.mu.Unlock()
			c.Close()
			return nil, net.ErrClosed
		}
		var refused *APIError
		switch {
		case sc.ip.IsValid() && l.perIP[sc.ip] >= l.limits.perIP:
			refused = &APIError{Status: 429, Code: "TOO_MANY_CONNECTIONS", Message: fmt.Sprintf(
				"this client address holds limits.max_conns_per_ip (%d) connections to the node: reuse them (keep-alive), or raise the limit", l.limits.perIP)}
		case l.limits.total > 0 && len(l.conns) >= l.limits.total:
			refused = &APIError{Status: 503, Code: "UNAVAILABLE", Message: fmt.Sprintf(
				"the node holds limits.max_conns (%d) connections: try again shortly, or raise the limit (and the open-file limit)", l.limits.total)}
		default:
			l.conns[sc] = struct{}{}
			if sc.ip.IsValid() {
				l.perIP[sc.ip]++
			}
		}
		l.mu.Unlock()
		if refused == nil {
			return sc, nil
		}
		// The answer fits a new connection's empty send buffer: the write
		// does not block the accept loop.
		c.Write(l.refusal(refused))
		c.Close()
	}
}

// refusal is the HTTP answer of a connection refused with e: the API's
// JSON error, Retry-After: 1, Connection: close.
func (l *sweepListener) refusal(e *APIError) []byte {
	body := errorBody(e)
	b := make([]byte, 0, 256+len(body))
	b = fmt.Appendf(b, "HTTP/1.1 %d %s\r\nServer: tally\r\nDate: ", e.Status, fasthttp.StatusMessage(e.Status))
	b = time.Unix(0, l.clock.Load()).UTC().AppendFormat(b, "Mon, 02 Jan 2006 15:04:05 GMT")
	b = fmt.Appendf(b, "\r\nContent-Type: application/json\r\nContent-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n", len(body))
	return append(b, body...)
}

// after returns the deadline d from now by the sweeper's clock, 0 for d 0.
func (l *sweepListener) after(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return l.clock.Load() + int64(d)
}

// Close closes the listener and stops the sweeper once its connections are
// closed. It may be called again (Server.Shutdown closes the listener before
// fasthttp does): a later call does nothing and returns the first's error.
func (l *sweepListener) Close() error {
	l.once.Do(func() {
		close(l.stop)
		l.closeErr = l.Listener.Close()
	})
	return l.closeErr
}

// sweep checks the connections' deadlines every tick until the listener is
// closed and its last connection too: a server shutting down closes its
// listener first and then waits for its connections, whose deadlines (a
// handler's "stop now" among them) must still fire.
func (l *sweepListener) sweep() {
	defer close(l.swept)
	t := time.NewTicker(deadlineTick)
	defer t.Stop()
	var due []*sweptConn
	stop := l.stop
	for {
		select {
		case <-stop:
			stop = nil // closed: no more to hear from it
		case now := <-t.C:
			due = due[:0]
			ns := now.UnixNano()
			l.clock.Store(ns)
			l.mu.Lock()
			for c := range l.conns {
				if c.due(ns) {
					due = append(due, c)
				}
			}
			l.ended = stop == nil && len(l.conns) == 0
			ended := l.ended
			l.mu.Unlock()
			for _, c := range due {
				c.expire(ns)
			}
			if ended {
				return
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
	// set: the deadline was set by Set*Deadline during this request (a
	// handler's, e.g. a streamed answer that extends its own), so the
	// phases leave it alone until the next request.
	set   [2]atomic.Bool
	phase uint8 // Read's and Write's (one goroutine's: fasthttp's for the connection)
	// drain: the connection answered a request it did not read to the end
	// (an oversized body), so Close reads the rest first (drainOnClose).
	// Set and read by fasthttp's goroutine for the connection.
	drain bool
	ip    netip.Addr // the client's address, counted in l.perIP; zero when not counted
}

// The directions of a sweptConn's deadlines.
const (
	reading = iota
	writing
)

// A sweptConn's phases, which its timeouts follow.
const (
	phaseRequest  = iota // reading a request: the read timeout
	phaseIdle            // waiting for a request's first byte: the idle timeout
	phaseResponse        // writing a response: the write timeout
)

// Read and Write move the connection's phase, and arm its deadlines for it
// if the listener has timeouts (without, deadlines are Set*Deadline's).
func (c *sweptConn) Read(b []byte) (int, error) {
	if !c.l.timed {
		return c.Conn.Read(b)
	}
	if c.phase == phaseResponse {
		c.phase = phaseIdle
		for d := range c.set {
			if c.set[d].Load() { // a store is a locked exchange: only when set
				c.set[d].Store(false)
			}
		}
		c.arm(writing, 0)
		c.arm(reading, c.l.after(c.l.timeouts.idle))
	}
	n, err := c.Conn.Read(b)
	if n > 0 && c.phase == phaseIdle {
		c.phase = phaseRequest
		c.armPhase(reading, c.l.after(c.l.timeouts.read))
	}
	return n, err
}

func (c *sweptConn) Write(b []byte) (int, error) {
	if c.l.timed && c.phase != phaseResponse {
		c.phase = phaseResponse
		c.armPhase(reading, 0)
		c.armPhase(writing, c.l.after(c.l.timeouts.write))
	}
	return c.Conn.Write(b)
}

// armPhase arms deadline ns of direction d for a phase, unless one was set
// explicitly during this request.
func (c *sweptConn) armPhase(d int, ns int64) {
	if !c.set[d].Load() {
		c.arm(d, ns)
	}
}

func (c *sweptConn) SetDeadline(t time.Time) error {
	c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *sweptConn) SetReadDeadline(t time.Time) error {
	c.set[reading].Store(true)
	c.arm(reading, deadlineNanos(t))
	return nil
}

func (c *sweptConn) SetWriteDeadline(t time.Time) error {
	c.set[writing].Store(true)
	c.arm(writing, deadlineNanos(t))
	return nil
}

func deadlineNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(t.UnixNano(), 1)
}

// arm sets deadline ns (0: none) of direction d. Only after the sweeper
// has expired the connection does it touch the real one, to take that
// expiry back.
func (c *sweptConn) arm(d int, ns int64) {
	if c.soft[d].Load() != ns {
		c.soft[d].Store(ns)
	}
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
// off again, here or in arm, so at worst a read or write in that instant
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
	c.l.mu.Lock()
	if _, ok := c.l.conns[c]; ok {
		delete(c.l.conns, c)
		if c.ip.IsValid() {
			if c.l.perIP[c.ip]--; c.l.perIP[c.ip] == 0 {
				delete(c.l.perIP, c.ip)
			}
		}
	}
	c.l.mu.Unlock()
	if c.drain {
		c.discardInput()
	}
	return c.Conn.Close()
}

// drainTimeout bounds how long a connection closing with a request unread
// reads what its client still sends: long enough for the answer to cross
// a network and the client to hang up.
const drainTimeout = time.Second

// drainOnClose makes conn, a sweepListener's, read what its client still
// sends before it closes. fasthttp answers a request it refuses unread (a
// body over MaxRequestBodySize, known from its Content-Length) and closes
// the connection: closing a socket with unread input resets it, and the
// reset can reach the client before the client has read the answer, which
// it then never sees (Go's client reports "connection reset by peer",
// which a client retries as a transient failure). fasthttp hands the
// handler the listener's connection itself: it keeps no per-address
// limit, which would wrap it (connLimits).
func drainOnClose(conn net.Conn) {
	if c, ok := conn.(*sweptConn); ok {
		c.drain = true
	}
}

// discardInput ends the connection's output (the answer is written) and
// reads and discards its input until the client closes or drainTimeout
// passes. The connection has left its listener's sweeper: the deadline is
// the real one.
func (c *sweptConn) discardInput() {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.Conn.SetReadDeadline(time.Now().Add(drainTimeout))
	buf := make([]byte, 32<<10)
	for {
		if _, err := c.Conn.Read(buf); err != nil {
			return
		}
	}
}
