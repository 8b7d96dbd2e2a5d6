package history

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/tabular"
)

// historyServer serves a live node's historical features on loopback with
// limits lim; stop cancels the handler's context and shuts the server down,
// as `tally serve` does.
type historyServer struct {
	base string
	stop func() error
}

func startHistoryServer(t *testing.T, ln *liveNode, lim node.Limits) *historyServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := node.NewServer(ln.n)
	srv.Handle(Path, "historical-features", node.ScopeRead, Handler(ctx, ln.repo, ln.log, nil, lim))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	stopped := false
	h := &historyServer{base: "http://" + l.Addr().String()}
	h.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		err := srv.Shutdown()
		<-done
		return err
	}
	t.Cleanup(func() { h.stop() })
	return h
}

func csvSpine(rows int, spineStart int64) string {
	var b strings.Builder
	b.WriteString("user_id,merchant,country,timestamp,amt,lat,long\n")
	for i := 0; i < rows; i++ {
		fmt.Fprintf(&b, "u%d,m%d,FR,%d,%d.5,48.8,2.3\n", i%50, i%7, spineStart+int64(i), i%100)
	}
	return b.String()
}

func postSpine(t *testing.T, url, contentType string, body []byte) (int, string) {
	t.Helper()
	resp, err := http.Post(url, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const spineStart = int64(1_790_000_000_000)

// A spine over the row or decoded-size limit is refused with a 413 naming
// the limit, before the join; a Parquet one from its footer, however small
// it is on the wire.
func TestSpineLimits(t *testing.T) {
	ln := newLiveNode(t, spineStart)
	ln.ingest(t, txn{user: "u1", merchant: "m1", country: "FR", amt: 3, ts: spineStart - 1000})
	lim := node.DefaultConfig().Limits
	lim.MaxSpineRows, lim.MaxSpineBytes = 1000, 1<<20
	h := startHistoryServer(t, ln, lim)
	url := h.base + Path + "?service=fraud_detection&format=csv"

	if status, body := postSpine(t, url, "text/csv", []byte(csvSpine(1000, spineStart))); status != 200 {
		t.Fatalf("a spine at the row limit: %d %s", status, body[:min(len(body), 300)])
	}
	status, body := postSpine(t, url, "text/csv", []byte(csvSpine(1001, spineStart)))
	if status != 413 || !strings.Contains(body, "SPINE_TOO_LARGE") || !strings.Contains(body, "limits.max_spine_rows") {
		t.Fatalf("1001 rows: %d %s", status, body)
	}

	// 300k identical rows: a few KB of Parquet.
	cols := []tabular.Column{{Name: "user_id", Type: tabular.String}, {Name: "merchant", Type: tabular.String}, {Name: "country", Type: tabular.String},
		{Name: "timestamp", Type: tabular.Int64}, {Name: "amt", Type: tabular.Float64}, {Name: "lat", Type: tabular.Float64}, {Name: "long", Type: tabular.Float64}}
	var buf bytes.Buffer
	w, err := tabular.NewWriter(tabular.Parquet, &buf, cols)
	if err != nil {
		t.Fatal(err)
	}
	row := []tabular.Value{{Str: "u1"}, {Str: "m1"}, {Str: "FR"}, {Int: spineStart}, {Num: 1}, {Num: 2}, {Num: 3}}
	for i := 0; i < 300_000; i++ {
		w.Write(row)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	status, body = postSpine(t, url, "application/vnd.apache.parquet", buf.Bytes())
	if status != 413 || !strings.Contains(body, "limits.max_spine_rows") {
		t.Fatalf("a %d-byte Parquet spine of 300k rows: %d %s", buf.Len(), status, body)
	}

	// Under the row limit but over the decoded size: 900 rows of 2 KB text.
	lim.MaxSpineBytes = 1 << 20
	var b strings.Builder
	b.WriteString("user_id,merchant,country,timestamp,amt,lat,long,note\n")
	note := strings.Repeat("n", 2048)
	for i := 0; i < 900; i++ {
		fmt.Fprintf(&b, "u1,m1,FR,%d,1,2,3,%s\n", spineStart+int64(i), note)
	}
	status, body = postSpine(t, url, "text/csv", []byte(b.String()))
	if status != 413 || !strings.Contains(body, "limits.max_spine_bytes") {
		t.Fatalf("a spine of 1.8 MB text: %d %s", status, body)
	}

	// Numbers in a CSV spine follow tabular.ParseNumber.
	status, body = postSpine(t, url, "text/csv", []byte(fmt.Sprintf("user_id,merchant,country,timestamp,amt,lat,long\nu1,m1,FR,%d,1_000,2,3\n", spineStart)))
	if status != 400 || !strings.Contains(body, "INVALID_SPINE") || !strings.Contains(body, "amt") {
		t.Fatalf("amt 1_000: %d %s", status, body)
	}
	status, body = postSpine(t, url+"&allow_partial=yes", "text/csv", []byte(csvSpine(1, spineStart)))
	if status != 400 || !strings.Contains(body, "allow_partial") {
		t.Fatalf("allow_partial=yes: %d %s", status, body)
	}
}

// stalledClient asks for a large answer on a socket with a small receive
// buffer, reads its first bytes, then stops reading.
func stalledClient(t *testing.T, base string, spine string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return serr
	}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST %s?service=fraud_detection&format=ndjson HTTP/1.1\r\nHost: tally\r\nContent-Type: text/csv\r\nContent-Length: %d\r\n\r\n%s",
		Path, len(spine), spine)
	conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	head := make([]byte, 512)
	n, err := io.ReadAtLeast(conn, head, 12)
	if err != nil || !bytes.HasPrefix(head[:n], []byte("HTTP/1.1 200")) {
		t.Fatalf("stalled client: %v %q", err, head[:n])
	}
	return conn
}

// A client that stops reading a large answer loses it after the stall
// timeout, which frees the join for the next client.
func TestStalledClientReleasesJoin(t *testing.T) {
	ln := newLiveNode(t, spineStart)
	ln.ingest(t, txn{user: "u1", merchant: "m1", country: "FR", amt: 3, ts: spineStart - 1000})
	lim := node.DefaultConfig().Limits
	lim.StallTimeout = time.Second
	h := startHistoryServer(t, ln, lim)
	stalledClient(t, h.base, csvSpine(60_000, spineStart-3_600_000)) // ~25 MB of NDJSON

	small := []byte(csvSpine(3, spineStart))
	var status int
	var body string
	for i := 0; i < 100; i++ { // up to ~30 s: far beyond the 1 s stall timeout
		status, body = postSpine(t, h.base+Path+"?service=fraud_detection&format=csv", "text/csv", small)
		if status != 429 {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if status != 200 {
		t.Fatalf("a second join while a client stalls: %d %s", status, body)
	}
}

// Stopping the server cancels a join blocked on a client that reads
// nothing, so shutdown does not wait for it (the stall timeout here is far
// longer than the test).
func TestShutdownCancelsStalledJoin(t *testing.T) {
	ln := newLiveNode(t, spineStart)
	ln.ingest(t, txn{user: "u1", merchant: "m1", country: "FR", amt: 3, ts: spineStart - 1000})
	lim := node.DefaultConfig().Limits
	lim.StallTimeout = time.Hour
	h := startHistoryServer(t, ln, lim)
	conn := stalledClient(t, h.base, csvSpine(60_000, spineStart-3_600_000))

	done := make(chan error, 1)
	go func() { done <- h.stop() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("shutdown still waits on the stalled join after 30s")
	}
	// The answer was cut short: the connection ends without a complete body.
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatalf("after shutdown the stalled connection should be closed: %v", err)
	}
}
