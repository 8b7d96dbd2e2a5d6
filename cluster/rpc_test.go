package cluster

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/cluster/transport"
)

// dialRPC opens an authenticated connection to c's internal RPC server,
// as a peer's HTTP client would.
func dialRPC(t *testing.T, c *Cluster) net.Conn {
	t.Helper()
	mux, err := transport.Listen("127.0.0.1:0", transport.Config{ClusterID: c.cfg.ClusterID, Key: c.cfg.Key, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mux.Close() })
	conn, err := mux.Layer("rpc").Dial(raft.ServerAddress(c.cfg.ClusterAddr), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestRPCBodyStalled: the cluster port's RPC server bounded the headers of
// a request (5 s) and nothing after them: a peer that announced a body and
// stopped sending it held the connection and a goroutine of the node
// forever. The request now has rpcReadTimeout to arrive; after it the
// server answers (400) or closes.
func TestRPCBodyStalled(t *testing.T) {
	saved := rpcReadTimeout
	t.Cleanup(func() { rpcReadTimeout = saved })
	rpcReadTimeout = 300 * time.Millisecond
	cs, _ := openTestCluster(t, nil, 1, 1, 1)
	conn := dialRPC(t, cs[0])
	t0 := time.Now()
	if _, err := io.WriteString(conn, "POST /v1/read?group=0&level=default HTTP/1.1\r\nHost: n0\r\nContent-Length: 1000\r\n\r\npartial"); err != nil {
		t.Fatal(err)
	}
	// Then nothing more: the server must give up within the bound.
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("a stalled body held the connection for %s: no answer and no close (bound %s)", time.Since(t0).Round(time.Millisecond), rpcReadTimeout)
	}
	if err == nil && !strings.HasPrefix(line, "HTTP/1.1 400") {
		t.Fatalf("a stalled body was answered %q; want 400 or a close", strings.TrimSpace(line))
	}
	if err != nil && !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("reading the answer to a stalled body: %v", err)
	}
	// And the connection is freed: the server closes it.
	if err == nil {
		if _, err := io.Copy(io.Discard, br); err != nil && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("the connection of a stalled body stays open after the answer: %v", err)
		}
	}
	t.Logf("answered %q and closed after %s", strings.TrimSpace(line), time.Since(t0).Round(time.Millisecond))
}

// TestRPCReadTimeoutSparesLongHandlers: the read deadline ends with the
// body. Had it stayed on the connection, it would fire while the handler
// still runs (the server reads the connection after the body, to notice
// a hang-up) and cancel the request's context: an admin change running
// longer than rpcReadTimeout would be cut off. Nor does it close an idle
// connection the client still means to reuse.
func TestRPCReadTimeoutSparesLongHandlers(t *testing.T) {
	saved := rpcReadTimeout
	t.Cleanup(func() { rpcReadTimeout = saved })
	rpcReadTimeout = 100 * time.Millisecond
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = rpcServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		select {
		case <-r.Context().Done():
			http.Error(w, "context canceled while the handler ran", http.StatusInternalServerError)
		case <-time.After(4 * rpcReadTimeout):
			io.WriteString(w, "ok")
		}
	}))
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	for i := range 2 { // the second on the first's connection, idle meanwhile
		if i > 0 {
			time.Sleep(2 * rpcReadTimeout)
		}
		resp, err := srv.Client().Post(srv.URL, "application/json", strings.NewReader(`{"op":"move-replica"}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: a handler running past the read deadline: %s: %s", i, resp.Status, b)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("the server closed an idle connection after the read timeout: %d connections for 2 requests", n)
	}
}
