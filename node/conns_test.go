package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/sys/unix"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/wal"
)

// emfileFS is the OS file system, with every open failing with EMFILE
// while full is set: a process that has used all its file descriptors.
type emfileFS struct {
	wal.FS
	full atomic.Bool
}

func (f *emfileFS) OpenFile(name string, flag int, perm os.FileMode) (wal.File, error) {
	if f.full.Load() {
		return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EMFILE}
	}
	return f.FS.OpenFile(name, flag, perm)
}

// syncBuffer is a bytes.Buffer a logger and a test can share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestLogFailureIsVisibleAndRecovers: the process runs out of file
// descriptors when the log must start a segment. Ingest gets 503
// NOT_DURABLE, /readyz answers 503 naming the cause, the failure is logged
// once at ERROR, /metrics shows tally_wal_durable 0 and the error's kind;
// once descriptors are back, the next ingest is acknowledged and readiness
// returns, with no restart.
func TestLogFailureIsVisibleAndRecovers(t *testing.T) {
	ffs := &emfileFS{FS: wal.OS}
	walMetrics := metrics.NewSet()
	l, err := wal.Open(filepath.Join(t.TempDir(), "wal"), wal.Options{FS: ffs, SegmentSize: 4096, Metrics: walMetrics})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var logs syncBuffer
	repo, _ := features.Default()
	clk := &testClock{}
	clk.set(t0)
	cfg := DefaultConfig()
	cfg.APIKeys = []APIKey{{Name: "ops", Key: adminKey, Scopes: []string{"admin"}}}
	n, err := New(repo, cfg, Options{Clock: clk.now, Log: l, RepoFS: features.DefaultFS(),
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	n.Metrics().RegisterMetricsWriter(walMetrics.WritePrometheus)
	n.SetReady(true)
	base := serve(t, n)
	auth := "Bearer " + adminKey
	ingest := func(i int) (int, string) {
		return do(t, "POST", base+"/api/v1/ingest", auth, "", string(ingestBody(txn(fmt.Sprintf("u%d", i), "m1", "FR", 1, t0-1))))
	}
	readyz := func() (int, map[string]string) {
		code, body := do(t, "GET", base+"/readyz", "", "", "")
		var r map[string]string
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			t.Fatalf("/readyz body %q: %v", body, err)
		}
		return code, r
	}
	if code, r := readyz(); code != 200 || r["status"] != "ready" {
		t.Fatalf("/readyz before: %d %v", code, r)
	}

	ffs.full.Store(true)
	acked, failed := 0, 0
	for i := 0; failed < 5; i++ {
		if i == 2000 {
			t.Fatal("no ingest failed in 2,000 requests")
		}
		code, body := ingest(i)
		switch {
		case code == 200:
			acked++
		case code == 503 && strings.Contains(body, "NOT_DURABLE") && strings.Contains(body, "too many open files"):
			failed++
		default:
			t.Fatalf("ingest %d: %d %s", i, code, body)
		}
	}
	code, r := readyz()
	if code != 503 || r["status"] != "not durable" || !strings.Contains(r["reason"], "write-ahead log") || !strings.Contains(r["reason"], "too many open files") {
		t.Fatalf("/readyz while the log cannot roll: %d %v", code, r)
	}
	_, prom := do(t, "GET", base+"/metrics", auth, "", "")
	if !strings.Contains(prom, "tally_wal_durable 0\n") || strings.Contains(prom, `tally_wal_errors_total{kind="emfile"} 0`) {
		t.Fatalf("/metrics while the log cannot roll:\n%s", grepLines(prom, "tally_wal_"))
	}
	if errs := strings.Count(logs.String(), "level=ERROR"); errs != 1 || !strings.Contains(logs.String(), "kind=emfile") {
		t.Fatalf("%d ERROR lines after %d failed ingests, want 1 naming emfile:\n%s", errs, failed, logs.String())
	}

	ffs.full.Store(false)
	if code, body := ingest(9999); code != 200 {
		t.Fatalf("ingest once descriptors are back: %d %s", code, body)
	}
	if code, r := readyz(); code != 200 || r["status"] != "ready" {
		t.Fatalf("/readyz once descriptors are back: %d %v", code, r)
	}
	_, prom = do(t, "GET", base+"/metrics", auth, "", "")
	if !strings.Contains(prom, "tally_wal_durable 1\n") {
		t.Fatalf("/metrics after recovery:\n%s", grepLines(prom, "tally_wal_"))
	}
	if !strings.Contains(logs.String(), "write-ahead log recovered") {
		t.Fatalf("recovery not logged:\n%s", logs.String())
	}
	if got := n.AppliedIndex(); got != uint64(acked+1) || l.LastIndex() != got {
		t.Fatalf("applied %d, log at %d; %d ingests acknowledged", got, l.LastIndex(), acked+1)
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// dialFrom opens a TCP connection to addr from the loopback address local
// (Linux routes all of 127/8 to the loopback interface).
func dialFrom(local, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	return d.Dial("tcp", addr)
}

// flood opens n idle connections from local and sorts them: those the
// server refused (answered with an HTTP status and closed) by status, and
// those it holds, left open. It reads for at most wait.
func flood(t *testing.T, local, addr string, n int, wait time.Duration) (refused map[int]int, held []net.Conn) {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		c, err := dialFrom(local, addr)
		if err != nil {
			t.Fatalf("dial %d from %s: %v", i, local, err)
		}
		conns = append(conns, c)
	}
	refused = map[int]int{}
	deadline := time.Now().Add(wait)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func(c net.Conn) {
			defer wg.Done()
			c.SetReadDeadline(deadline)
			b, err := io.ReadAll(c)
			mu.Lock()
			defer mu.Unlock()
			var status int
			if _, serr := fmt.Sscanf(string(b), "HTTP/1.1 %d", &status); serr == nil && err == nil {
				refused[status]++
				c.Close()
				return
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() && len(b) == 0 {
				held = append(held, c)
				return
			}
			t.Errorf("flood connection from %s: read %q, %v", local, b, err)
		}(c)
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	return refused, held
}

// TestServerBoundsConnections: idle connections (accepted before any key
// is checked) are bounded per client address and in total; those beyond
// are answered 429 or 503 and closed at once. A client with a key, from
// another address, still ingests and reads /readyz as ready.
func TestServerBoundsConnections(t *testing.T) {
	cfg := DefaultConfig()
	cfg.APIKeys = []APIKey{{Name: "producer", Key: ingestKey, Scopes: []string{"ingest"}}}
	cfg.Limits.MaxConns, cfg.Limits.MaxConnsPerIP = 60, 50
	cfg.Limits.ReadTimeout = time.Minute // held connections stay held for the test
	n, _ := newTestNode(t, cfg)
	addr := strings.TrimPrefix(serve(t, n), "http://")
	const wait = 3 * time.Second

	refused, held := flood(t, "127.0.0.1", addr, 200, wait)
	if len(held) != 50 || refused[429] != 150 {
		t.Fatalf("200 connections from one address: %d held, refused %v; want 50 held, 150 refused with 429", len(held), refused)
	}

	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1,
		DialContext: func(_ context.Context, _, a string) (net.Conn, error) { return dialFrom("127.0.0.2", a) }}}
	defer client.CloseIdleConnections()
	check := func(when string) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+addr+"/api/v1/ingest", bytes.NewReader(ingestBody(txn("u1", "m1", "FR", 1, t0-1))))
		req.Header.Set("Authorization", "Bearer "+ingestKey)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: ingest: %v", when, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: ingest: %d %s", when, resp.StatusCode, body)
		}
		resp, err = client.Get("http://" + addr + "/readyz")
		if err != nil {
			t.Fatalf("%s: /readyz: %v", when, err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != `{"status":"ready"}` {
			t.Fatalf("%s: /readyz: %d %s", when, resp.StatusCode, body)
		}
	}
	check("beside the flood") // the 51st connection, kept alive

	refused, held = flood(t, "127.0.0.3", addr, 20, wait)
	if len(held) != 9 || refused[503] != 11 {
		t.Fatalf("20 more connections at 51 of max_conns 60: %d held, refused %v; want 9 held, 11 refused with 503", len(held), refused)
	}
	check("at max_conns, on a connection opened before")
}

// TestConnLimitAnswersAreJSON: a connection over limits.max_conns_per_ip
// (429) or limits.max_conns (503) is answered with the status it always
// had, in the API's JSON error shape with a code, Retry-After and
// Connection: close, and closed. fasthttp, which used to refuse them,
// answers text/plain.
func TestConnLimitAnswersAreJSON(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Limits.MaxConns, cfg.Limits.MaxConnsPerIP = 4, 2
	cfg.Limits.ReadTimeout = time.Minute // held connections stay held for the test
	n, _ := newTestNode(t, cfg)
	addr := strings.TrimPrefix(serve(t, n), "http://")
	// dial opens a connection from local and reads its answer: nil when
	// the server holds it (says nothing for half a second).
	dial := func(local string) (*http.Response, []byte) {
		t.Helper()
		c, err := dialFrom(local, addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return nil, nil
		}
		if err != nil {
			t.Fatalf("connection from %s: %v", local, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("connection from %s: body: %v", local, err)
		}
		return resp, body
	}
	for _, tc := range []struct {
		hold   string // the address of 2 connections held first
		local  string // the address of the one refused
		status int
		code   string
		limit  string
	}{
		{"127.0.0.1", "127.0.0.1", 429, "TOO_MANY_CONNECTIONS", "limits.max_conns_per_ip"},
		{"127.0.0.2", "127.0.0.3", 503, "UNAVAILABLE", "limits.max_conns"}, // 4 held
	} {
		for range 2 {
			if resp, body := dial(tc.hold); resp != nil {
				t.Fatalf("connection from %s refused: %d %s", tc.hold, resp.StatusCode, body)
			}
		}
		resp, body := dial(tc.local)
		if resp == nil {
			t.Fatalf("connection from %s held, want refused with %d", tc.local, tc.status)
		}
		var e struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != tc.code || !strings.Contains(e.Error.Message, tc.limit) {
			t.Errorf("refused from %s: %d %q (%v), want %d with the JSON error %s naming %s", tc.local, resp.StatusCode, body, err, tc.status, tc.code, tc.limit)
		}
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/json" ||
			!resp.Close || resp.Header.Get("Retry-After") == "" {
			t.Errorf("refused from %s: %d, headers %v (close %v), want %d, application/json, Connection: close, Retry-After", tc.local, resp.StatusCode, resp.Header, resp.Close, tc.status)
		}
	}
}

// TestConnLimitFollowsOpenFileLimit: by default the node takes half the
// open-file limit for connections (at most 10,000), and refuses a
// configured number that leaves the log too few descriptors.
func TestConnLimitFollowsOpenFileLimit(t *testing.T) {
	for _, c := range []struct{ configured, files, want int }{
		{0, 1024, 512}, {0, 20_000, 10_000}, {0, 1 << 20, 10_000}, {0, 0, 10_000}, {0, 1, 1},
		{500, 1024, 500}, {896, 1024, 896}, {50_000, 0, 50_000},
	} {
		got, err := connLimit(c.configured, c.files)
		if err != nil || got != c.want {
			t.Errorf("connLimit(%d, %d files) = %d, %v; want %d", c.configured, c.files, got, err, c.want)
		}
	}
	if _, err := connLimit(1000, 1024); err == nil || !strings.Contains(err.Error(), "use at most 896") {
		t.Errorf("max_conns 1000 with 1024 files: %v", err)
	}
	if files := openFileLimit(); files <= 0 {
		t.Errorf("open-file limit %d", files)
	}
}

// TestGoRaisesOpenFileLimit checks what tally relies on instead of raising
// RLIMIT_NOFILE itself: a Go program (1.19 and later) starts with its soft
// open-file limit raised to the hard limit (minus one). The test runs
// itself as a child with a low soft limit and reads the child's limit.
func TestGoRaisesOpenFileLimit(t *testing.T) {
	if os.Getenv("TALLY_PRINT_NOFILE") == "1" {
		var lim unix.Rlimit
		unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
		fmt.Printf("nofile %d %d\n", lim.Cur, lim.Max)
		return
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Max < 512 {
		t.Skipf("hard open-file limit %d: too low to lower the soft one", lim.Max)
	}
	low := unix.Rlimit{Cur: 256, Max: lim.Max}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestGoRaisesOpenFileLimit$", "-test.count=1")
	cmd.Env = append(os.Environ(), "TALLY_PRINT_NOFILE=1")
	out, err := cmd.Output()
	if rerr := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); rerr != nil {
		t.Fatal(rerr)
	}
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var cur, hard uint64
	if _, err := fmt.Sscanf(string(out), "nofile %d %d", &cur, &hard); err != nil {
		t.Fatalf("child printed %q", out)
	}
	if hard != lim.Max || cur < hard-1 {
		t.Fatalf("a Go process started with soft limit 256 (hard %d) runs with %d/%d", lim.Max, cur, hard)
	}
	t.Logf("started with 256/%d, the Go runtime raised it to %d", lim.Max, cur)
}

// TestChangeOverTheLogRecordLimitIs413: a table upload or an ingest whose
// log record is over the log's record limit (a body the node's limits let
// through, grown in encoding) is refused 413 TOO_LARGE, stores nothing,
// logs no log failure and leaves the node ready; a smaller change after
// it is acknowledged. (It was 503 NOT_DURABLE, retried by clients as a
// passing fault, with "write-ahead log failed" in the node's log.)
func TestChangeOverTheLogRecordLimitIs413(t *testing.T) {
	l, err := wal.Open(filepath.Join(t.TempDir(), "wal"), wal.Options{MaxRecordBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var logs syncBuffer
	repo, _ := features.Default()
	clk := &testClock{}
	clk.set(t0)
	n, err := New(repo, DefaultConfig(), Options{Clock: clk.now, Log: l, RepoFS: features.DefaultFS(),
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	n.SetReady(true)
	base := serve(t, n)

	var csv strings.Builder
	csv.WriteString("user_id,home_lat,home_long\n")
	for i := range 400 {
		fmt.Fprintf(&csv, "user%d,48.85,2.35\n", i)
	}
	code, body := do(t, "POST", base+"/api/v1/tables/user_profile", "", "text/csv", csv.String())
	if code != 413 || !strings.Contains(body, "TOO_LARGE") || !strings.Contains(body, "nothing was stored") {
		t.Fatalf("an upload over the record limit: %d %s", code, body)
	}
	if rows := n.Store.Table(0).Len(); rows != 0 {
		t.Fatalf("the refused upload stored %d rows", rows)
	}
	var recs []string
	for i := range 400 {
		recs = append(recs, txn(fmt.Sprintf("u%d", i), "m1", "FR", 1, t0-1))
	}
	code, body = do(t, "POST", base+"/api/v1/ingest", "", "", string(ingestBody(recs...)))
	if code != 413 || !strings.Contains(body, "TOO_LARGE") || !strings.Contains(body, "nothing was ingested") {
		t.Fatalf("an ingest over the record limit: %d %s", code, body)
	}
	if code, body := do(t, "GET", base+"/readyz", "", "", ""); code != 200 {
		t.Fatalf("/readyz after the refusals: %d %s", code, body)
	}
	if strings.Contains(logs.String(), "write-ahead log failed") {
		t.Fatalf("a change over the record limit was logged as a log failure:\n%s", logs.String())
	}
	if code, body := do(t, "POST", base+"/api/v1/tables/user_profile", "", "text/csv", "user_id,home_lat,home_long\nu1,48.85,2.35\n"); code != 200 {
		t.Fatalf("a small upload after the refusals: %d %s", code, body)
	}
	if code, body := do(t, "POST", base+"/api/v1/ingest", "", "", string(ingestBody(txn("u1", "m1", "FR", 1, t0-1)))); code != 200 {
		t.Fatalf("a small ingest after the refusals: %d %s", code, body)
	}
}
