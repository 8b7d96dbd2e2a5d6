package client_test

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/history"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/wal"
)

// testNode is a real node and its HTTP API (with historical features over
// its write-ahead log) on a loopback port, as `tally serve` wires them.
type testNode struct {
	n    *node.Node
	log  *wal.Log
	srv  *node.Server
	addr string
	done chan error
	stop context.CancelFunc
}

// startNode serves a node with cfg on addr ("" for a free port).
func startNode(t *testing.T, cfg node.Config, addr string) *testNode {
	t.Helper()
	tn, err := serveNode(cfg, t.TempDir(), addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tn.shutdown)
	return tn
}

// serveNode is startNode for any goroutine: the caller shuts it down.
func serveNode(cfg node.Config, dir, addr string) (*testNode, error) {
	repo, err := features.Default()
	if err != nil {
		return nil, err
	}
	l, err := wal.Open(filepath.Join(dir, "wal"), wal.Options{Sync: wal.SyncNever, Compress: true})
	if err != nil {
		return nil, err
	}
	n, err := node.New(repo, cfg, node.Options{RepoFS: features.DefaultFS(), Log: l})
	if err != nil {
		l.Close()
		return nil, err
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		l.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	tn := &testNode{n: n, log: l, srv: node.NewServer(n), addr: ln.Addr().String(), done: make(chan error, 1), stop: cancel}
	tn.srv.Handle(history.Path, "historical-features", node.ScopeRead, history.Handler(ctx, repo, l, nil, cfg.Limits))
	go func() { tn.done <- tn.srv.Serve(ln) }()
	n.SetReady(true)
	return tn, nil
}

// shutdown stops serving and closes the log; a second call does nothing.
func (tn *testNode) shutdown() {
	if tn.done == nil {
		return
	}
	tn.stop()
	tn.srv.Shutdown()
	<-tn.done
	tn.done = nil
	tn.log.Close()
}

func newClient(t *testing.T, addr string, o client.Options) *client.Client {
	t.Helper()
	c, err := client.New("http://"+addr, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func txn(user, merchant string, amt float64, ts int64) client.Record {
	return client.Record{"user_id": user, "merchant": merchant, "category": "grocery_pos", "amt": amt,
		"country": "FR", "lat": 48.85, "long": 2.35, "is_fraud": 0, "timestamp": ts}
}

func lookup(user string) client.LookupRequest {
	return client.LookupRequest{Service: "fraud_detection",
		JoinKeys:       map[string]any{"user_id": user, "merchant": "m1", "country": "FR"},
		RequestContext: map[string]any{"amt": 80.0, "lat": 51.5, "long": -0.12}}
}

// TestEveryEndpoint drives each endpoint of a real node through the client
// and checks what it answers.
func TestEveryEndpoint(t *testing.T) {
	tn := startNode(t, node.DefaultConfig(), "")
	c := newClient(t, tn.addr, client.Options{})
	ctx := context.Background()
	now := time.Now().UnixMilli()

	res, err := c.Ingest(ctx, "transactions", []client.Record{txn("u1", "m1", 10, now-3000), txn("u1", "m2", 20, now-2000)})
	if err != nil || res.Accepted != 2 || res.DryRun || res.Workspace != "default" {
		t.Fatalf("ingest: %+v %v", res, err)
	}
	res, err = c.IngestJSON(ctx, []byte(fmt.Sprintf(`{"records":{"transactions":[{"record":{"user_id":"u1","merchant":"m1","category":"c","amt":30,"country":"FR","lat":0,"long":0,"is_fraud":0,"timestamp":%d}}]}}`, now-1000)))
	if err != nil || res.Accepted != 1 {
		t.Fatalf("ingest JSON: %+v %v", res, err)
	}
	bulk := []byte(fmt.Sprintf(`{"user_id":"u2","merchant":"m1","category":"c","amt":5,"country":"FR","lat":0,"long":0,"is_fraud":0,"timestamp":%d}
{"user_id":"u2","merchant":"m1","category":"c","amt":7,"country":"FR","lat":0,"long":0,"is_fraud":0,"timestamp":%d}
`, now-2000, now-1000))
	if res, err = c.IngestBulk(ctx, "transactions", bulk, client.WriteOptions{DryRun: true}); err != nil || res.Accepted != 2 || !res.DryRun {
		t.Fatalf("bulk dry run: %+v %v", res, err)
	}
	if res, err = c.IngestBulk(ctx, "transactions", bulk, client.WriteOptions{}); err != nil || res.Accepted != 2 || res.DryRun {
		t.Fatalf("bulk: %+v %v", res, err)
	}
	imp := []byte(fmt.Sprintf(`{"user_id":"u3","merchant":"m1","category":"c","amt":9,"country":"FR","lat":0,"long":0,"is_fraud":0,"timestamp":%d}
`, now-5000))
	if res, err = c.Import(ctx, "transactions", imp, client.WriteOptions{}); err != nil || res.Accepted != 1 {
		t.Fatalf("import: %+v %v", res, err)
	}
	rows, err := c.UploadTable(ctx, "user_profile", client.CSV, []byte("user_id,home_lat,home_long\nu1,48.85,2.35\nu9,1,1\n"), client.TableOptions{})
	if err != nil || rows != 2 {
		t.Fatalf("upload CSV: %d %v", rows, err)
	}
	rows, err = c.UploadTable(ctx, "user_profile", client.NDJSON, []byte(`{"user_id":"u1","home_lat":40.0,"home_long":3.0}`+"\n"), client.TableOptions{Replace: true})
	if err != nil || rows != 1 {
		t.Fatalf("upload NDJSON replace: %d %v", rows, err)
	}

	f, err := c.GetFeatures(ctx, lookup("u1"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"user_transaction_counts.amt_count_1h": 3.0, "user_transaction_amounts.amt_sum_1h": 60.0,
		"user_distinct_merchants.merchant_distinct_count_1h": 2.0, "user_profile.home_lat": 40.0}
	for name, w := range want {
		if got, ok := f.Get(name); !ok || got != w {
			t.Errorf("get-features %s = %v, want %v", name, got, w)
		}
	}
	// The replace removed u9: its home is missing.
	f9, err := c.GetFeatures(ctx, lookup("u9"))
	if v, _ := f9.Get("user_profile.home_lat"); err != nil || v != nil {
		t.Errorf("u9 after replace: home_lat %v, %v", v, err)
	}
	if len(f.Metadata.Features) != len(f.Result.Features) || f.Metadata.Features[0].Status != "PRESENT" || f.Metadata.ServerTime == "" {
		t.Errorf("get-features metadata: %+v", f.Metadata)
	}

	b, err := c.GetFeaturesBatch(ctx, client.BatchRequest{Service: "fraud_detection", Rows: []client.Row{
		{JoinKeys: lookup("u1").JoinKeys, RequestContext: lookup("u1").RequestContext},
		{JoinKeys: lookup("u2").JoinKeys, RequestContext: lookup("u2").RequestContext},
	}})
	if err != nil || len(b.Result) != 2 {
		t.Fatalf("batch: %+v %v", b, err)
	}
	if b.Result[0].Features[0] != 3.0 || b.Result[1].Features[0] != 2.0 || b.Metadata.Features[0].Name != "user_transaction_counts.amt_count_1m" {
		t.Errorf("batch: %+v", b)
	}

	p, err := c.Predict(ctx, lookup("u1"))
	if err != nil || p.Result.PredictionStatus != "PRESENT" || p.Result.Prediction == nil || len(p.Result.Prediction.Probabilities) != 2 {
		t.Fatalf("predict: %+v %v", p, err)
	}

	svcs, err := c.FeatureServices(ctx)
	if err != nil || len(svcs) != 1 || svcs[0].Name != "fraud_detection" || len(svcs[0].JoinKeys) != 3 || len(svcs[0].Features) != len(f.Result.Features) {
		t.Fatalf("feature services: %+v %v", svcs, err)
	}

	// Historical features of u1 after its three events were acknowledged:
	// the answer streams.
	time.Sleep(2 * time.Millisecond)
	spine := fmt.Sprintf("user_id,merchant,country,timestamp,amt,lat,long,label\nu1,m1,FR,%d,1,0,0,a\n", time.Now().UnixMilli())
	rc, err := c.HistoricalFeatures(ctx, client.HistoricalRequest{Service: "fraud_detection", Spine: []byte(spine), SpineFormat: client.CSV, Format: client.CSV})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(rc).ReadAll()
	rc.Close()
	if err != nil || len(recs) != 2 {
		t.Fatalf("historical features: %v %v", recs, err)
	}
	for i, h := range recs[0] {
		if h == "user_transaction_counts.amt_count_1h" && recs[1][i] != "3" {
			t.Errorf("historical count_1h = %s, want 3", recs[1][i])
		}
	}

	if err := c.Healthz(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Readyz(ctx); !ok || err != nil {
		t.Fatalf("readyz: %v %v", ok, err)
	}
	tn.n.SetReady(false)
	if ok, err := c.Readyz(ctx); ok || err != nil {
		t.Fatalf("readyz while not ready: %v %v", ok, err)
	}
	m, err := c.Metrics(ctx)
	if err != nil || !strings.Contains(string(m), `tally_http_requests_total{route="ingest-bulk"} 2`) {
		t.Fatalf("metrics: %v\n%.500s", err, m)
	}
}

// TestTypedErrors checks that refusals come back as *client.Error with the
// node's status and code, matched by the sentinels.
func TestTypedErrors(t *testing.T) {
	cfg := node.DefaultConfig()
	cfg.APIKeys = []node.APIKey{
		{Name: "producer", Key: "ingest-key-0123456789", Scopes: []string{"ingest"}},
		{Name: "model", Key: "read-key-0123456789ab", Scopes: []string{"read"}},
	}
	tn := startNode(t, cfg, "")
	ctx := context.Background()
	anon := newClient(t, tn.addr, client.Options{})
	reader := newClient(t, tn.addr, client.Options{APIKey: "read-key-0123456789ab"})
	producer := newClient(t, tn.addr, client.Options{APIKey: "ingest-key-0123456789"})

	check := func(what string, err error, status int, sentinel *client.Error) *client.Error {
		t.Helper()
		var e *client.Error
		if !errors.As(err, &e) || e.Status != status || !errors.Is(err, sentinel) || !client.IsCode(err, sentinel.Code) || e.Message == "" {
			t.Fatalf("%s: got %v, want %d %s", what, err, status, sentinel.Code)
		}
		return e
	}
	_, err := anon.GetFeatures(ctx, lookup("u1"))
	check("no key", err, 401, client.ErrUnauthenticated)
	_, err = producer.GetFeatures(ctx, lookup("u1"))
	check("ingest key reading", err, 403, client.ErrPermissionDenied)
	_, err = reader.Ingest(ctx, "transactions", []client.Record{txn("u1", "m1", 1, time.Now().UnixMilli())})
	check("read key ingesting", err, 403, client.ErrPermissionDenied)
	_, err = reader.Metrics(ctx)
	check("read key on metrics", err, 403, client.ErrPermissionDenied)

	r := lookup("u1")
	r.Service = "fraud"
	_, err = reader.GetFeatures(ctx, r)
	check("unknown service", err, 404, client.ErrUnknownService)
	_, err = reader.HistoricalFeatures(ctx, client.HistoricalRequest{Service: "nope", Spine: []byte("a\n1\n"), SpineFormat: client.CSV})
	check("historical, unknown service", err, 404, client.ErrUnknownService)
	_, err = reader.HistoricalFeatures(ctx, client.HistoricalRequest{Service: "fraud_detection", Spine: []byte("user_id,timestamp\nu1,2026-01-01T00:00:00Z\n"), SpineFormat: client.CSV})
	check("spine without join keys", err, 400, client.ErrInvalidSpine)
	_, err = producer.IngestBulk(ctx, "nope", []byte("{}\n"), client.WriteOptions{})
	check("unknown source", err, 404, client.ErrUnknownSource)

	// A refused ingest lists its records; nothing of it was applied.
	now := time.Now().UnixMilli()
	bad := txn("u1", "m1", 1, now)
	bad["amt"] = "lots"
	_, err = producer.Ingest(ctx, "transactions", []client.Record{txn("u1", "m1", 1, now), bad})
	e := check("invalid record", err, 400, client.ErrInvalidRecords)
	if e.Refused != 1 || e.Total != 2 || len(e.Records) != 1 || e.Records[0].Index != 1 || e.Records[0].Reason == "" {
		t.Fatalf("refused records: %+v", e)
	}
	f, err := reader.GetFeatures(ctx, lookup("u1"))
	if v, _ := f.Get("user_transaction_counts.amt_count_1h"); err != nil || v != 0.0 {
		t.Fatalf("after a refused ingest: count %v, %v", v, err)
	}
	// Options.Workspace is sent, and a workspace the node does not serve is
	// refused.
	other := newClient(t, tn.addr, client.Options{APIKey: "read-key-0123456789ab", Workspace: "other"})
	_, err = other.GetFeatures(ctx, lookup("u1"))
	check("unknown workspace", err, 404, &client.Error{Code: "UNKNOWN_WORKSPACE"})
	// A missing join key is a 400 with its own code.
	r = lookup("u1")
	delete(r.JoinKeys, "merchant")
	_, err = reader.GetFeatures(ctx, r)
	if client.StatusOf(err) != 400 || !client.IsCode(err, "MISSING_JOIN_KEY") || errors.Is(err, client.ErrUnknownService) {
		t.Fatalf("missing join key: %v", err)
	}
}

// TestWriteNotRetried: a write that reached the node is sent once, whatever
// the answer; the same failure on a read is retried.
func TestWriteNotRetried(t *testing.T) {
	tn := startNode(t, node.DefaultConfig(), "")
	c := newClient(t, tn.addr, client.Options{Retries: 3, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	ctx := context.Background()
	// A node whose log fails answers 503 NOT_DURABLE.
	tn.log.Close()
	_, err := c.Ingest(ctx, "transactions", []client.Record{txn("u1", "m1", 1, time.Now().UnixMilli())})
	if !errors.Is(err, client.ErrNotDurable) || client.StatusOf(err) != 503 {
		t.Fatalf("ingest into a failed log: %v", err)
	}
	m, err := newClient(t, tn.addr, client.Options{}).Metrics(ctx)
	if err != nil || !strings.Contains(string(m), `tally_http_requests_total{route="ingest"} 1`+"\n") {
		t.Fatalf("a 503 write was sent more than once (or metrics failed: %v):\n%s", err, grep(m, "route=\"ingest\""))
	}

	// A server that reads each request and hangs up without answering: the
	// write's outcome is unknown, so it is sent once; a read is sent
	// 1 + Retries times.
	var got atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err == nil {
					io.Copy(io.Discard, req.Body)
					got.Add(1)
				}
			}()
		}
	}()
	hang := newClient(t, ln.Addr().String(), client.Options{Retries: 3, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	if _, err := hang.IngestBulk(ctx, "transactions", []byte("{}\n"), client.WriteOptions{}); err == nil || client.StatusOf(err) != 0 {
		t.Fatalf("bulk ingest to a server that hangs up: %v", err)
	}
	if n := got.Swap(0); n != 1 {
		t.Fatalf("a write that reached the server was sent %d times, want 1", n)
	}
	if _, err := hang.GetFeatures(ctx, lookup("u1")); err == nil {
		t.Fatal("lookup from a server that hangs up succeeded")
	}
	if n := got.Load(); n != 4 {
		t.Fatalf("a read was sent %d times, want 1 + 3 retries", n)
	}
}

// TestRetryAfterRestart: a read, and a write that could not connect, are
// retried until the node is back on the same port; with retries off, the
// same calls fail.
func TestRetryAfterRestart(t *testing.T) {
	tn := startNode(t, node.DefaultConfig(), "")
	addr := tn.addr
	// refused is signalled when a dial fails: the node is down and the
	// client has tried at least once.
	refused := make(chan struct{}, 1)
	dialer := &net.Dialer{Timeout: time.Second}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		conn, err := dialer.DialContext(ctx, network, a)
		if err != nil {
			select {
			case refused <- struct{}{}:
			default:
			}
		}
		return conn, err
	}}}
	ctx := context.Background()
	c := newClient(t, addr, client.Options{HTTPClient: hc, Retries: 50, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	now := time.Now().UnixMilli()
	if _, err := c.Ingest(ctx, "transactions", []client.Record{txn("u1", "m1", 1, now-1000)}); err != nil {
		t.Fatal(err)
	}
	for _, call := range []struct {
		name string
		do   func(*client.Client) error
	}{
		{"read", func(c *client.Client) error { _, err := c.GetFeatures(ctx, lookup("u1")); return err }},
		{"unsent write", func(c *client.Client) error {
			_, err := c.Ingest(ctx, "transactions", []client.Record{txn("u2", "m1", 1, now-500)})
			return err
		}},
	} {
		tn.shutdown()
		hc.CloseIdleConnections()
		noRetry := newClient(t, addr, client.Options{Retries: -1})
		if err := call.do(noRetry); err == nil || client.StatusOf(err) != 0 {
			t.Fatalf("%s with the node down and no retries: %v", call.name, err)
		}
		select {
		case <-refused:
		default:
		}
		restarted := make(chan error, 1)
		dir := t.TempDir()
		go func() {
			<-refused
			var err error
			tn, err = serveNode(node.DefaultConfig(), dir, addr)
			restarted <- err
		}()
		err := call.do(c)
		if rerr := <-restarted; rerr != nil {
			t.Fatalf("restart on %s: %v", addr, rerr)
		}
		t.Cleanup(tn.shutdown)
		if err != nil {
			t.Fatalf("%s across a restart on the same port: %v", call.name, err)
		}
	}
	// The restarted node (in memory, fresh) holds what the retried write sent.
	f, err := c.GetFeatures(ctx, lookup("u2"))
	if v, _ := f.Get("user_transaction_counts.amt_count_1h"); err != nil || v != 1.0 {
		t.Fatalf("the retried write: count %v, %v", v, err)
	}
}

func grep(b []byte, s string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestManyRetriesDoNotOverflowTheBackoff: with Options.Retries of 38 or
// more, MinBackoff<<attempt overflowed (a negative wait), and the jitter's
// rand.N panicked on it; the backoff stays at MaxBackoff instead.
func TestManyRetriesDoNotOverflowTheBackoff(t *testing.T) {
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"error":{"code":"UNAVAILABLE","message":"busy"}}`)
	}))
	defer srv.Close()
	// 1 ms = 2^20 ns: 1ms<<43 overflows int64.
	c := newClient(t, strings.TrimPrefix(srv.URL, "http://"), client.Options{Retries: 70, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	_, err := c.GetFeatures(context.Background(), lookup("u1"))
	if client.StatusOf(err) != 503 {
		t.Fatalf("lookup of a node answering 503: %v", err)
	}
	if n := got.Load(); n != 71 {
		t.Fatalf("sent %d times, want 1 + 70 retries", n)
	}
}

// TestUploadTableWithRequestID: a table upload with a RequestID is sent
// with it as the Idempotency-Key and retried on 503 as a read is, as
// IngestBulk and Import with one are; without one it is sent once.
func TestUploadTableWithRequestID(t *testing.T) {
	var got atomic.Int64
	var keys []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		mu.Unlock()
		if got.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"code":"UNAVAILABLE","message":"no leader"}}`)
			return
		}
		io.WriteString(w, `{"table":"user_profile","rows":1}`)
	}))
	defer srv.Close()
	c := newClient(t, strings.TrimPrefix(srv.URL, "http://"), client.Options{Retries: 3, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	ctx := context.Background()
	rows, err := c.UploadTable(ctx, "user_profile", client.CSV, []byte("user_id,home_lat\nu1,1\n"), client.TableOptions{RequestID: "up-1"})
	if err != nil || rows != 1 {
		t.Fatalf("upload with a request id after a 503: %d %v", rows, err)
	}
	if n := got.Load(); n != 2 || keys[0] != "up-1" || keys[1] != "up-1" {
		t.Fatalf("sent %d times with keys %q, want twice with up-1", n, keys)
	}
	got.Store(0)
	if _, err := c.UploadTable(ctx, "user_profile", client.CSV, []byte("user_id,home_lat\nu1,1\n"), client.TableOptions{}); client.StatusOf(err) != 503 {
		t.Fatalf("upload without a request id after a 503: %v", err)
	}
	if n := got.Load(); n != 1 {
		t.Fatalf("an upload without a request id was sent %d times, want 1", n)
	}
}

// TestPartlyAppliedError: a 409 PARTLY_APPLIED (the retry of an ingest
// part of which was applied before) is ErrPartlyApplied, not
// ErrInvalidRecords, with the groups' shares and the refused records
// decoded, and is not retried under its id.
func TestPartlyAppliedError(t *testing.T) {
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusConflict)
		io.WriteString(w, `{"error":{"code":"PARTLY_APPLIED","message":"1 of 1 records refused, and request \"k\" was partly applied before: ...",`+
			`"groups":[{"group":0,"records":1,"share":"applied"},{"group":1,"records":1,"share":"unknown","error":"no leader"}],`+
			`"records":[{"source":"transactions","index":0,"reason":"too old"}],"refused":1,"total":1}}`)
	}))
	defer srv.Close()
	c := newClient(t, strings.TrimPrefix(srv.URL, "http://"), client.Options{Retries: 3, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	_, err := c.IngestBulk(context.Background(), "transactions", []byte("{}\n"), client.WriteOptions{RequestID: "k"})
	var e *client.Error
	if !errors.As(err, &e) || e.Status != 409 || !errors.Is(err, client.ErrPartlyApplied) || errors.Is(err, client.ErrInvalidRecords) {
		t.Fatalf("got %v, want 409 PARTLY_APPLIED", err)
	}
	want := []client.GroupShare{{Group: 0, Records: 1, Share: "applied"}, {Group: 1, Records: 1, Share: "unknown", Error: "no leader"}}
	if !slices.Equal(e.Groups, want) || e.Refused != 1 || len(e.Records) != 1 {
		t.Fatalf("groups %+v, refused %d, records %+v", e.Groups, e.Refused, e.Records)
	}
	if n := got.Load(); n != 1 {
		t.Fatalf("sent %d times, want once", n)
	}
}

// TestIngestWithRequestID: Ingest with a RequestID sends it as the
// Idempotency-Key on every attempt and is retried on 503 as a read is;
// without one it is sent once; a dry run is refused before sending.
func TestIngestWithRequestID(t *testing.T) {
	var got atomic.Int64
	var keys []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		mu.Unlock()
		if got.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"code":"UNAVAILABLE","message":"no leader"}}`)
			return
		}
		io.WriteString(w, `{"accepted":1}`)
	}))
	defer srv.Close()
	c := newClient(t, strings.TrimPrefix(srv.URL, "http://"), client.Options{Retries: 3, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	ctx := context.Background()
	recs := []client.Record{{"user_id": "u1", "amt": 1, "timestamp": 1}}
	res, err := c.Ingest(ctx, "transactions", recs, client.WriteOptions{RequestID: "in-1"})
	if err != nil || res.Accepted != 1 {
		t.Fatalf("ingest with a request id after a 503: %+v %v", res, err)
	}
	if n := got.Load(); n != 2 || keys[0] != "in-1" || keys[1] != "in-1" {
		t.Fatalf("sent %d times with keys %q, want twice with in-1", n, keys)
	}
	got.Store(0)
	if _, err := c.Ingest(ctx, "transactions", recs); client.StatusOf(err) != 503 {
		t.Fatalf("ingest without a request id after a 503: %v", err)
	}
	if n := got.Load(); n != 1 {
		t.Fatalf("an ingest without a request id was sent %d times, want 1", n)
	}
	got.Store(0)
	if _, err := c.Ingest(ctx, "transactions", recs, client.WriteOptions{DryRun: true}); err == nil || got.Load() != 0 {
		t.Fatalf("a dry run of the JSON ingest: %v, sent %d times; want refused unsent", err, got.Load())
	}
}

// countingTransport counts the requests sent through it.
type countingTransport struct {
	http.RoundTripper
	n atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.RoundTripper.RoundTrip(r)
}

// TestOversizedBodyIs413: a body over limits.max_body_bytes, far larger
// than the sockets' buffers, gets the node's 413 BODY_TOO_LARGE, not a
// connection reset (the node hung up with the body unread, and the reset
// lost its answer: a write saw an unknown outcome, a read or a write with a
// RequestID was retried as if the failure were transient), and is sent once.
func TestOversizedBodyIs413(t *testing.T) {
	cfg := node.DefaultConfig()
	cfg.Limits.MaxBodyBytes = 64 << 10
	tn := startNode(t, cfg, "")
	ct := &countingTransport{RoundTripper: http.DefaultTransport.(*http.Transport).Clone()}
	c := newClient(t, tn.addr, client.Options{HTTPClient: &http.Client{Transport: ct}, Retries: 3, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	ctx := context.Background()
	line := fmt.Sprintf(`{"user_id":"u1","merchant":"m1","category":"c","amt":5,"country":"FR","lat":0,"long":0,"is_fraud":0,"timestamp":%d}`+"\n", time.Now().UnixMilli())
	big := []byte(strings.Repeat(line, (16<<20)/len(line)))
	lookupBody := []byte(`{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"` + strings.Repeat("u", 16<<20) + `"}}}`)
	for _, call := range []struct {
		name string
		do   func() error
	}{
		{"bulk ingest", func() error { _, err := c.IngestBulk(ctx, "transactions", big, client.WriteOptions{}); return err }},
		{"bulk ingest with a request id", func() error {
			_, err := c.IngestBulk(ctx, "transactions", big, client.WriteOptions{RequestID: "big-1"})
			return err
		}},
		{"lookup", func() error { _, err := c.LookupJSON(ctx, client.PathGetFeatures, lookupBody); return err }},
	} {
		for i := range 3 { // each time on a fresh connection, and on one kept alive
			ct.n.Store(0)
			err := call.do()
			if !errors.Is(err, client.ErrBodyTooLarge) || client.StatusOf(err) != 413 || !strings.Contains(err.Error(), "limits.max_body_bytes (65536 bytes)") {
				t.Fatalf("%s over max_body_bytes (try %d): %v, want 413 BODY_TOO_LARGE naming the limit", call.name, i, err)
			}
			if n := ct.n.Load(); n != 1 {
				t.Fatalf("%s over max_body_bytes was sent %d times, want once", call.name, n)
			}
		}
	}
	// Nothing of it was applied, and the node still serves.
	f, err := c.GetFeatures(ctx, lookup("u1"))
	if v, _ := f.Get("user_transaction_counts.amt_count_1h"); err != nil || v != 0.0 {
		t.Fatalf("after refused oversized writes: count %v, %v", v, err)
	}
}

// TestUploadTableAllowEmpty: a replace with no rows is refused (400
// EMPTY_REPLACE) and the table kept, unless TableOptions.AllowEmpty says
// to empty it.
func TestUploadTableAllowEmpty(t *testing.T) {
	tn := startNode(t, node.DefaultConfig(), "")
	c := newClient(t, tn.addr, client.Options{})
	ctx := context.Background()
	home := func() any {
		t.Helper()
		f, err := c.GetFeatures(ctx, lookup("u1"))
		if err != nil {
			t.Fatal(err)
		}
		v, _ := f.Get("user_profile.home_lat")
		return v
	}
	if _, err := c.UploadTable(ctx, "user_profile", client.CSV, []byte("user_id,home_lat\nu1,48.85\n"), client.TableOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		format client.Format
		body   string
	}{{client.CSV, "user_id,home_lat\n"}, {client.NDJSON, ""}} {
		_, err := c.UploadTable(ctx, "user_profile", f.format, []byte(f.body), client.TableOptions{Replace: true})
		if client.StatusOf(err) != 400 || !client.IsCode(err, "EMPTY_REPLACE") {
			t.Fatalf("empty %s replace without AllowEmpty: %v, want 400 EMPTY_REPLACE", f.format, err)
		}
		if v := home(); v != 48.85 {
			t.Fatalf("after a refused empty replace: home_lat %v, want 48.85", v)
		}
	}
	rows, err := c.UploadTable(ctx, "user_profile", client.CSV, []byte("user_id,home_lat\n"), client.TableOptions{Replace: true, AllowEmpty: true})
	if err != nil || rows != 0 {
		t.Fatalf("empty replace with AllowEmpty: %d %v", rows, err)
	}
	if v := home(); v != nil {
		t.Fatalf("after an empty replace with AllowEmpty: home_lat %v, want nil", v)
	}
}

// encodingTransport sends every request with a Content-Encoding.
type encodingTransport struct{ http.RoundTripper }

func (e encodingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Content-Encoding", "gzip")
	return e.RoundTripper.RoundTrip(r)
}

// TestUnavailableTooLargeAndMediaTypeErrors: 503 UNAVAILABLE, 413
// TOO_LARGE and 415 UNSUPPORTED_MEDIA_TYPE match their sentinels, and no
// other's (BODY_TOO_LARGE is max_body_bytes', NOT_DURABLE a failed log's);
// a read is retried on UNAVAILABLE, the others are sent once.
func TestUnavailableTooLargeAndMediaTypeErrors(t *testing.T) {
	// A real node refuses a compressed body.
	tn := startNode(t, node.DefaultConfig(), "")
	gz := newClient(t, tn.addr, client.Options{HTTPClient: &http.Client{Transport: encodingTransport{http.DefaultTransport}}})
	ctx := context.Background()
	_, err := gz.Ingest(ctx, "transactions", []client.Record{txn("u1", "m1", 1, time.Now().UnixMilli())})
	if !errors.Is(err, client.ErrUnsupportedMediaType) || client.StatusOf(err) != 415 || errors.Is(err, client.ErrInvalidRequest) {
		t.Fatalf("a gzip-encoded ingest: %v, want 415 UNSUPPORTED_MEDIA_TYPE", err)
	}

	// UNAVAILABLE and TOO_LARGE come from a cluster and from a change near
	// the log's 1 GiB record limit: a stand-in answers them.
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		got.Add(1)
		if r.URL.Path == client.PathGetFeatures {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"code":"UNAVAILABLE","message":"group 2 has no leader"}}`)
			return
		}
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		io.WriteString(w, `{"error":{"code":"TOO_LARGE","message":"log record too large; nothing was stored"}}`)
	}))
	defer srv.Close()
	c := newClient(t, strings.TrimPrefix(srv.URL, "http://"), client.Options{Retries: 2, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	_, err = c.GetFeatures(ctx, lookup("u1"))
	if !errors.Is(err, client.ErrUnavailable) || client.StatusOf(err) != 503 || errors.Is(err, client.ErrNotDurable) {
		t.Fatalf("lookup answered UNAVAILABLE: %v", err)
	}
	if n := got.Swap(0); n != 3 {
		t.Fatalf("a lookup answered UNAVAILABLE was sent %d times, want 1 + 2 retries", n)
	}
	_, err = c.UploadTable(ctx, "user_profile", client.CSV, []byte("user_id,home_lat\nu1,1\n"), client.TableOptions{RequestID: "big"})
	if !errors.Is(err, client.ErrTooLarge) || client.StatusOf(err) != 413 || errors.Is(err, client.ErrBodyTooLarge) {
		t.Fatalf("upload answered TOO_LARGE: %v", err)
	}
	if n := got.Load(); n != 1 {
		t.Fatalf("an upload answered TOO_LARGE was sent %d times, want once", n)
	}
}
