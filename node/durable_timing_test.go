package node

import (
	"net"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tally-ml/tally/bench/workload"
	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/wal"
)

func bulkBodies(n, batch int, seed uint64, users int) [][]byte {
	g := workload.New(workload.Config{Seed: seed, Users: users, Merchants: 5000, FraudRate: 0.001})
	bodies := make([][]byte, n)
	ts := t0 - int64(n*batch)
	for i := range bodies {
		var body []byte
		for j := 0; j < batch; j++ {
			ts++
			tx := g.Next(ts)
			body = tx.AppendJSON(body)
			body = append(body, '\n')
		}
		bodies[i] = body
	}
	return bodies
}

// BenchmarkHTTPBulkIngestWAL: events/s over loopback HTTP, bulk NDJSON in
// requests of 1000 events from 8 concurrent clients, with the write-ahead
// log at fsync=always (every acknowledged request is on disk).
func BenchmarkHTTPBulkIngestWAL(b *testing.B) {
	l, err := wal.Open(b.TempDir(), wal.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	repo, _ := features.Default()
	clk := &testClock{}
	clk.set(t0)
	cfg := DefaultConfig()
	n, err := New(repo, cfg, Options{Clock: clk.now, Log: l, RepoFS: features.DefaultFS()})
	if err != nil {
		b.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := NewServer(n)
	go srv.Serve(ln)
	defer srv.Shutdown()
	const batch = 1000
	bodies := bulkBodies(max(b.N, 8), batch, 5, 1_000_000)
	client := &fasthttp.HostClient{Addr: ln.Addr().String(), MaxConns: 16, ReadTimeout: 30 * time.Second}
	url := "http://" + ln.Addr().String() + "/api/v1/ingest/bulk?source=transactions"
	b.ResetTimer()
	var wg sync.WaitGroup
	next := make(chan []byte, len(bodies))
	for _, body := range bodies[:b.N] {
		next <- body
	}
	close(next)
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			req.SetRequestURI(url)
			req.Header.SetMethod("POST")
			for body := range next {
				req.SetBody(body)
				if err := client.Do(req, resp); err != nil || resp.StatusCode() != 200 {
					b.Errorf("ingest: %v %d %s", err, resp.StatusCode(), resp.Body())
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRecovery: replaying a write-ahead log of 1M events (1000-event
// records, over 200k users) into a fresh node, as a restart without a
// snapshot does.
func BenchmarkRecovery(b *testing.B) {
	dir := b.TempDir()
	l, err := wal.Open(dir, wal.Options{Sync: wal.SyncNever, Compress: true})
	if err != nil {
		b.Fatal(err)
	}
	repo, _ := features.Default()
	src, err := New(repo, DefaultConfig(), Options{Clock: func() int64 { return t0 }, Log: l, RepoFS: features.DefaultFS()})
	if err != nil {
		b.Fatal(err)
	}
	for _, body := range bulkBodies(1000, 1000, 9, 200_000) {
		if _, err := src.IngestNDJSON("transactions", body, false); err != nil {
			b.Fatal(err)
		}
	}
	l.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l, err := wal.Open(dir, wal.Options{})
		if err != nil {
			b.Fatal(err)
		}
		n, _ := newTestNode(b, DefaultConfig())
		rec, err := n.RecoverFrom(l)
		if err != nil || rec.Replayed != 1000 {
			b.Fatalf("recovered %d records: %v", rec.Replayed, err)
		}
		l.Close()
	}
	b.ReportMetric(1e6*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkSnapshot1M: time and size of a snapshot of 1M active users (2M
// events over the last day), written while nothing else runs.
func BenchmarkSnapshot1M(b *testing.B) {
	n, _ := newTestNode(b, DefaultConfig())
	populate(b, n, 1_000_000, 2)
	dir := b.TempDir()
	b.ResetTimer()
	var size int64
	for i := 0; i < b.N; i++ {
		_, sz, err := n.SnapshotInto(dir)
		if err != nil {
			b.Fatal(err)
		}
		size = sz
	}
	b.ReportMetric(float64(size)/(1<<20), "MiB")
}
