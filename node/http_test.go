package node

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// serve starts n's HTTP API on a free loopback port.
func serve(t *testing.T, n *Node) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(n)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.Shutdown(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		<-done
	})
	return "http://" + ln.Addr().String()
}

func do(t *testing.T, method, url, auth, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const (
	ingestKey = "ingest-key-0123456789"
	readKey   = "read-key-0123456789ab"
	adminKey  = "admin-key-0123456789a"
)

func TestHTTPAuthScopes(t *testing.T) {
	cfg := DefaultConfig()
	cfg.APIKeys = []APIKey{
		{Name: "producer", Key: ingestKey, Scopes: []string{"ingest"}},
		{Name: "model", Key: readKey, Scopes: []string{"read"}},
		{Name: "ops", Key: adminKey, Scopes: []string{"admin"}},
	}
	n, _ := newTestNode(t, cfg)
	base := serve(t, n)
	ingest := string(ingestBody(txn("u1", "m1", "FR", 3, t0-1)))
	lookup := string(lookupBody("u1", "m1", "FR", 1, 0, 0))
	cases := []struct {
		path, auth, body string
		want             int
	}{
		{"/api/v1/ingest", "", ingest, 401},
		{"/api/v1/ingest", "Bearer wrong-key-000000000", ingest, 401},
		{"/api/v1/ingest", "Bearer " + readKey, ingest, 403},
		{"/api/v1/ingest", "Bearer " + ingestKey, ingest, 200},
		{"/api/v1/ingest", "Tecton-key " + adminKey, ingest, 200},
		{"/api/v1/feature-service/get-features", "Bearer " + ingestKey, lookup, 403},
		{"/api/v1/feature-service/get-features", "Tecton-key " + readKey, lookup, 200},
		{"/api/v1/feature-service/get-features", "Basic " + readKey, lookup, 401},
	}
	for _, c := range cases {
		if got, body := do(t, "POST", base+c.path, c.auth, "application/json", c.body); got != c.want {
			t.Errorf("POST %s with %q: %d %s, want %d", c.path, c.auth, got, body, c.want)
		}
	}
	if got, _ := do(t, "GET", base+"/metrics", "Bearer "+readKey, "", ""); got != 403 {
		t.Errorf("/metrics with a read key: %d, want 403", got)
	}
	if got, body := do(t, "GET", base+"/metrics", "Bearer "+adminKey, "", ""); got != 200 || !strings.Contains(body, "tally_ingest_events_total 2") {
		t.Errorf("/metrics: %d\n%s", got, body)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if got, _ := do(t, "GET", base+p, "", "", ""); got != 200 {
			t.Errorf("%s: %d without a key, want 200 (probes need no key)", p, got)
		}
	}
}

func TestInsecureListenRefused(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen = "0.0.0.0:8080"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--insecure") {
		t.Fatalf("listening on all interfaces with no keys: %v", err)
	}
	cfg.Insecure = true
	if err := cfg.Validate(); err != nil {
		t.Fatalf("--insecure: %v", err)
	}
	cfg.Insecure = false
	cfg.APIKeys = []APIKey{{Name: "k", Key: readKey, Scopes: []string{"read"}}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("with keys: %v", err)
	}
	cfg.APIKeys[0].Key = "short"
	if err := cfg.Validate(); err == nil {
		t.Fatal("a 5-character key was accepted")
	}
}

func TestHTTPLimits(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Limits.MaxBodyBytes = 4096
	cfg.Limits.MaxHeaderBytes = 2048
	cfg.Limits.ReadTimeout = 300 * time.Millisecond
	n, _ := newTestNode(t, cfg)
	base := serve(t, n)
	big := `{"records":{"transactions":[` + strings.Repeat(txn("u", "m", "FR", 1, t0)+",", 100) + `]}}`
	if got, body := do(t, "POST", base+"/api/v1/ingest", "", "application/json", big); got != 413 {
		t.Errorf("oversized body: %d %s, want 413", got, body)
	}
	req, _ := http.NewRequest("POST", base+"/api/v1/ingest", strings.NewReader("{}"))
	req.Header.Set("X-Padding", strings.Repeat("a", 4096))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		if resp.StatusCode != 431 && resp.StatusCode != 400 {
			t.Errorf("oversized headers: %d, want 431", resp.StatusCode)
		}
		resp.Body.Close()
	}
	if got, _ := do(t, "GET", base+"/api/v1/ingest", "", "", ""); got != 405 {
		t.Errorf("GET on ingest: %d, want 405", got)
	}
	if got, _ := do(t, "POST", base+"/nope", "", "", ""); got != 404 {
		t.Errorf("unknown path: %d, want 404", got)
	}

	// Slowloris: a client that trickles its headers is cut off by the read
	// timeout instead of holding the connection forever.
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\n")
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		r := bufio.NewReader(conn)
		for i := 0; i < 100; i++ {
			if _, err := fmt.Fprint(conn, "X-Slow: 1\r\n"); err != nil {
				return
			}
			conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if _, err := r.ReadByte(); err == io.EOF {
				return
			}
		}
	}()
	select {
	case <-closed:
	case <-time.After(15 * time.Second):
		t.Fatal("a slow client held its connection for 15 s with a 300 ms read timeout")
	}
}

func TestHTTPTablesAndServices(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	base := serve(t, n)
	if got, body := do(t, "POST", base+"/api/v1/tables/user_profile", "", "text/csv", "user_id,home_lat,home_long\nu1,1,2\n"); got != 200 || !strings.Contains(body, `"rows":1`) {
		t.Fatalf("csv upload: %d %s", got, body)
	}
	if got, body := do(t, "POST", base+"/api/v1/tables/user_profile?format=ndjson", "", "", `{"user_id":"u2","home_lat":1,"home_long":2}`); got != 200 {
		t.Fatalf("ndjson upload: %d %s", got, body)
	}
	if got, body := do(t, "GET", base+"/api/v1/feature-services", "", "", ""); got != 200 || !strings.Contains(body, `"transaction_request.distance_from_home_km"`) {
		t.Fatalf("services: %d %s", got, body)
	}
	if got, body := do(t, "POST", base+"/api/v1/ingest/bulk", "", "", "{}"); got != 400 || !strings.Contains(body, "source") {
		t.Fatalf("bulk without source: %d %s", got, body)
	}
}

// A body sent with a Content-Encoding (gzip, ...) is refused with 415
// naming it, and nothing is applied: the node reads bodies as they come,
// and read compressed bytes as JSON, CSV or NDJSON (a 400 quoting binary
// garbage, "cannot parse JSON: ... unexpected char: \x1f").
func TestHTTPContentEncodingRefused(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	base := serve(t, n)
	gz := func(s string) []byte {
		var b strings.Builder
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(s))
		zw.Close()
		return []byte(b.String())
	}
	line := `{"user_id":"g1","merchant":"m","country":"FR","amt":1,"timestamp":` + fmt.Sprint(t0-1) + `}` + "\n"
	for _, c := range []struct{ path, ctype, body string }{
		{"/api/v1/ingest/bulk?source=transactions", "application/x-ndjson", line},
		{"/api/v1/import?source=transactions", "application/x-ndjson", line},
		{"/api/v1/ingest", "application/json", string(ingestBody(txn("g1", "m", "FR", 1, t0-1)))},
		{"/api/v1/tables/user_profile", "text/csv", "user_id,home_lat,home_long\ng1,1,2\n"},
		{"/api/v1/feature-service/get-features", "application/json", string(lookupBody("g1", "m", "FR", 1, 2, 3))},
		{"/push", "application/json", `{"push_source_name":"transactions","df":{"user_id":["g1"],"merchant":["m"],"country":["FR"],"timestamp":[` + fmt.Sprint(t0-1) + `]}}`},
	} {
		req, _ := http.NewRequest("POST", base+c.path, strings.NewReader(string(gz(c.body))))
		req.Header.Set("Content-Type", c.ctype)
		req.Header.Set("Content-Encoding", "gzip")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 415 || !strings.Contains(string(b), "UNSUPPORTED_MEDIA_TYPE") || !strings.Contains(string(b), "Content-Encoding gzip") {
			t.Errorf("%s with Content-Encoding gzip: %d %.300s, want 415 UNSUPPORTED_MEDIA_TYPE naming Content-Encoding gzip", c.path, resp.StatusCode, b)
		}
	}
	if n.AppliedIndex() != 0 {
		t.Fatalf("a refused compressed body was applied (index %d)", n.AppliedIndex())
	}
	// identity is no coding at all.
	req, _ := http.NewRequest("POST", base+"/api/v1/ingest/bulk?source=transactions", strings.NewReader(line))
	req.Header.Set("Content-Encoding", "identity")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("Content-Encoding identity: %d", resp.StatusCode)
	}
}

// reworded is err under another text, as another fasthttp release could
// word it.
type reworded struct {
	err error
	msg string
}

func (r reworded) Error() string { return r.msg }
func (r reworded) Unwrap() error { return r.err }

// TestConnErrorClass: the ErrorHandler's classes go by fasthttp's error
// values and types, so a release that words them otherwise changes no
// status; text is the fallback for an error that arrives unwrapped.
func TestConnErrorClass(t *testing.T) {
	var h fasthttp.RequestHeader
	small := h.Read(bufio.NewReaderSize(strings.NewReader("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: "+strings.Repeat("a", 8192)+"\r\n\r\n"), 4096))
	if sb := (*fasthttp.ErrSmallBuffer)(nil); !errors.As(small, &sb) {
		t.Fatalf("headers over the read buffer: %T %v, want a *fasthttp.ErrSmallBuffer", small, small)
	}
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	c1.SetReadDeadline(time.Now())
	_, timeout := c1.Read(make([]byte, 1))
	if ne := net.Error(nil); !errors.As(timeout, &ne) || !ne.Timeout() {
		t.Fatalf("a read past its deadline: %T %v, want a net.Error timeout", timeout, timeout)
	}
	for _, c := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("read body: %w", fasthttp.ErrBodyTooLarge), 413},
		{reworded{fasthttp.ErrBodyTooLarge, "the body is over the limit"}, 413},
		{small, 431},
		{reworded{small, "request headers do not fit"}, 431},
		{fmt.Errorf("error when reading request headers: %w", timeout), 408},
		{reworded{timeout, "read: the deadline passed"}, 408},
		{reworded{fasthttp.ErrTimeout, "gave up waiting"}, 408},
		// Unwrapped errors, by their text.
		{errors.New("error when reading request headers: small read buffer. increase ReadBufferSize"), 431},
		{errors.New("read tcp 127.0.0.1:8080: i/o timeout"), 408},
		{errors.New("cannot find http request method"), 400},
	} {
		if got, _ := connErrorClass(c.err); got != c.want {
			t.Errorf("%q (%T): %d, want %d", c.err, c.err, got, c.want)
		}
	}
}

// TestHTTPErrorClasses: each class of request fasthttp cannot read is
// answered with its status and code, through a real connection.
func TestHTTPErrorClasses(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Limits.MaxBodyBytes = 4096
	cfg.Limits.MaxHeaderBytes = 2048
	cfg.Limits.ReadTimeout = 300 * time.Millisecond
	n, _ := newTestNode(t, cfg)
	addr := strings.TrimPrefix(serve(t, n), "http://")
	for _, c := range []struct {
		name, req string
		status    int
		code      string
	}{
		{"body too large", "POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{", 413, "BODY_TOO_LARGE"},
		{"headers too large", "POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 4096) + "\r\n\r\n", 431, "HEADERS_TOO_LARGE"},
		{"read timeout in the body", "POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{", 408, "TIMEOUT"},
		{"read timeout in the headers", "POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\n", 408, "TIMEOUT"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(conn, c.req); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status || !strings.Contains(string(b), `"code":"`+c.code+`"`) {
				t.Fatalf("%d %s, want %d %s", resp.StatusCode, b, c.status, c.code)
			}
		})
	}
}
