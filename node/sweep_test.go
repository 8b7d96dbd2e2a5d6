package node

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// sweptPair returns a connection accepted by a sweepListener and the
// client's end of it.
func sweptPair(t *testing.T, to connTimeouts) (*sweepListener, net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newSweepListener(ln, to, connLimits{})
	t.Cleanup(func() { l.Close() })
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return l, server, client
}

// TestSweptDeadlines: a swept connection's read and write deadlines end a
// blocked Read or Write with the timeout error a real deadline gives, no
// sooner than set and at most a few ticks late; a renewed or cleared
// deadline does not fire; Close forgets the connection.
func TestSweptDeadlines(t *testing.T) {
	l, server, client := sweptPair(t, connTimeouts{})
	const wait = 300 * time.Millisecond

	start := time.Now()
	server.SetReadDeadline(start.Add(wait))
	_, err := server.Read(make([]byte, 1))
	took := time.Since(start)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	if took < wait || took > wait+5*deadlineTick {
		t.Errorf("read deadline of %s fired after %s", wait, took)
	}

	// Renewed before it passes, again and again: the read waits for data.
	server.SetReadDeadline(time.Now().Add(wait))
	stop := time.Now().Add(3 * wait)
	go func() {
		for time.Now().Before(stop) {
			server.SetReadDeadline(time.Now().Add(wait))
			time.Sleep(deadlineTick / 2)
		}
		server.SetReadDeadline(time.Time{})
		time.Sleep(wait + 3*deadlineTick) // cleared: still no timeout
		client.Write([]byte("x"))
	}()
	b := make([]byte, 1)
	if _, err := io.ReadFull(server, b); err != nil || b[0] != 'x' {
		t.Fatalf("read under renewed, then cleared deadlines: %q %v", b, err)
	}

	// A client that does not read: the write blocks once the socket
	// buffers fill, and its deadline ends it.
	start = time.Now()
	server.SetWriteDeadline(start.Add(wait))
	chunk := make([]byte, 1<<20)
	err = nil
	for err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		if _, err = server.Write(chunk); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("write: %v", err)
		}
		if time.Since(start) > 20*time.Second {
			t.Fatal("a write to a client that reads nothing ran 20 s past a 300 ms deadline")
		}
	}
	if took := time.Since(start); took < wait {
		t.Errorf("write deadline of %s fired after %s", wait, took)
	}

	server.Close()
	l.mu.Lock()
	left := len(l.conns)
	l.mu.Unlock()
	if left != 0 {
		t.Errorf("%d connections held after Close", left)
	}
}

// TestServerClosesIdleConnections: through the node's server, a
// keep-alive connection is closed after limits.idle_timeout, and one
// within it is served.
func TestServerClosesIdleConnections(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Limits.IdleTimeout = 400 * time.Millisecond
	n, _ := newTestNode(t, cfg)
	addr := strings.TrimPrefix(serve(t, n), "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	get := func() error {
		fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "HTTP/1.1 200") {
			return fmt.Errorf("status line %q", line)
		}
		for { // the headers, then a body of Content-Length bytes
			h, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			var size int
			if _, err := fmt.Sscanf(strings.ToLower(h), "content-length: %d", &size); err == nil {
				defer r.Discard(size)
			}
			if h == "\r\n" {
				return nil
			}
		}
	}
	for i := 0; i < 3; i++ {
		if err := get(); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	start := time.Now()
	c.SetReadDeadline(start.Add(10 * time.Second))
	_, err = r.ReadByte()
	if err != io.EOF {
		t.Fatalf("idle connection: %v, want the server to close it", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("idle connection closed after %s with a 400 ms idle timeout", took)
	}
}

// timedRead reads one byte from c and reports how long it took and the
// error. A read still blocked after 10 s (no deadline fired) is ended by
// closing c, and reported as errNeverTimedOut.
func timedRead(c net.Conn) (time.Duration, error) {
	start := time.Now()
	guard := time.AfterFunc(10*time.Second, func() { c.Close() })
	_, err := c.Read(make([]byte, 1))
	if !guard.Stop() {
		err = errNeverTimedOut
	}
	return time.Since(start), err
}

var errNeverTimedOut = errors.New("no deadline fired in 10 s")

// TestSweptTimeoutsFollowRequests: a listener's timeouts follow each
// connection's requests as fasthttp's would: the read timeout from the
// accept and from a request's first byte, the idle timeout once a response
// is written, the write timeout while it is; a connection that keeps
// answering on time is never cut, however long it lives.
func TestSweptTimeoutsFollowRequests(t *testing.T) {
	to := connTimeouts{read: 300 * time.Millisecond, write: 300 * time.Millisecond, idle: 700 * time.Millisecond}
	within := func(what string, took, want time.Duration, err error) {
		t.Helper()
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("%s: %v, want a timeout", what, err)
		}
		if took < want-2*deadlineTick || took > want+5*deadlineTick {
			t.Errorf("%s: timed out after %s, want %s", what, took, want)
		}
	}

	// A new connection that sends nothing: the read timeout.
	_, server, _ := sweptPair(t, to)
	took, err := timedRead(server)
	within("silent new connection", took, to.read, err)

	// Requests and responses for 3 s, each in time: never cut. Then, after
	// a response, the idle timeout, longer than the read timeout.
	_, server, client := sweptPair(t, to)
	go func() {
		for range 12 {
			client.Write([]byte("q"))
			if _, err := client.Read(make([]byte, 1)); err != nil {
				return
			}
			time.Sleep(150 * time.Millisecond)
		}
	}()
	for range 12 { // 3 s
		if _, err := server.Read(make([]byte, 1)); err != nil {
			t.Fatalf("a connection answering every 150 ms was cut: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // the handler
		if _, err := server.Write([]byte("a")); err != nil {
			t.Fatal(err)
		}
	}
	took, err = timedRead(server)
	within("idle connection", took, to.idle, err)

	// A request's first byte starts the read timeout.
	_, server, client = sweptPair(t, to)
	server.Write([]byte("a")) // a response: the connection is idle now
	time.Sleep(to.read + 3*deadlineTick)
	client.Write([]byte("x")) // after the read timeout, within the idle one
	if _, err := server.Read(make([]byte, 1)); err != nil {
		t.Fatalf("the first byte of a request within the idle timeout: %v", err)
	}
	took, err = timedRead(server)
	within("request stalled after its first byte", took, to.read, err)

	// A response the client does not read: the write timeout.
	_, server, _ = sweptPair(t, to)
	start, chunk := time.Now(), make([]byte, 1<<20)
	for err = nil; err == nil; {
		_, err = server.Write(chunk)
		if time.Since(start) > 20*time.Second {
			t.Fatal("a write to a client that reads nothing ran 20 s past a 300 ms timeout")
		}
	}
	within("unread response", time.Since(start), to.write, err)
}

// TestSweptDeadlinesOutliveTheListener: a server shutting down closes its
// listener, then waits for its connections; their deadlines still fire
// (a streamed answer's "stop now" among them), and the sweeper stops once
// the last one closes.
func TestSweptDeadlinesOutliveTheListener(t *testing.T) {
	l, server, _ := sweptPair(t, connTimeouts{read: time.Hour, write: time.Hour, idle: time.Hour})
	l.Close()
	time.Sleep(3 * deadlineTick)
	server.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	took, err := timedRead(server)
	if !errors.Is(err, os.ErrDeadlineExceeded) || took > 5*time.Second {
		t.Fatalf("a deadline set after the listener closed: %v after %s, want a timeout", err, took)
	}
	server.Close()
	select {
	case <-l.swept:
	case <-time.After(5 * time.Second):
		t.Fatal("the sweeper runs on after the listener and its last connection closed")
	}
}

// TestSweptExplicitDeadlineWins: a deadline a handler sets on its
// connection (a streamed answer extending its own) holds for that
// response instead of the write timeout; the next request is back to the
// timeouts.
func TestSweptExplicitDeadlineWins(t *testing.T) {
	to := connTimeouts{read: time.Hour, write: 300 * time.Millisecond, idle: time.Hour}
	_, server, client := sweptPair(t, to)
	client.Write([]byte("q"))
	if _, err := server.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	server.SetWriteDeadline(time.Now().Add(2 * time.Second)) // the handler's
	start, chunk := time.Now(), make([]byte, 1<<20)
	var err error
	for err == nil && time.Since(start) < 20*time.Second {
		_, err = server.Write(chunk)
	}
	if took := time.Since(start); !errors.Is(err, os.ErrDeadlineExceeded) || took < 2*time.Second-2*deadlineTick || took > 2*time.Second+5*deadlineTick {
		t.Fatalf("an unread answer under a 2 s deadline the handler set: %v after %s", err, took)
	}
}
