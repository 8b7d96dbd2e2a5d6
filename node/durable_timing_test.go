package node

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
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
	// TALLY_APPLY_WORKERS compares a request's apply on several cores.
	workers, _ := strconv.Atoi(os.Getenv("TALLY_APPLY_WORKERS"))
	n, err := New(repo, cfg, Options{Clock: clk.now, Log: l, RepoFS: features.DefaultFS(), ApplyWorkers: workers})
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
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		recoverLog(b, dir, 1000)
	}
	b.ReportMetric(1e6*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/1e9/float64(b.N), "cpu-s/op")
}

// recoverLog replays the write-ahead log in walDir into a fresh node, which
// must apply records records, and drops the node.
func recoverLog(b *testing.B, walDir string, records uint64) {
	l, err := wal.Open(walDir, wal.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	n, _ := newTestNode(b, DefaultConfig())
	if rec, err := n.RecoverFrom(l); err != nil || rec.Replayed != records {
		b.Fatalf("recovered %d records: %v", rec.Replayed, err)
	}
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

// The 10M-event restart benchmarks build their data dir once, into
// $TMPDIR/tally-restart10m-<version>-<tail> (a few GiB of memory and ~1 GiB
// of disk, minutes), and run only with TALLY_BENCH_10M=1 so that `make
// bench` does not pay for it.
const restart10MVersion = "v1"

// restart10MDir returns the data dir of a node that has ingested 10M events
// (1000-event bulk requests, 1M Zipf-skewed users, over the last day) with
// the default snapshot bound: its newest snapshot was taken tail events
// before the end, the worst a restart sees (the next snapshot is due).
func restart10MDir(b *testing.B, tail int) string {
	if os.Getenv("TALLY_BENCH_10M") == "" {
		b.Skip("set TALLY_BENCH_10M=1 to build (once, minutes) and time a 10M-event data dir")
	}
	const total, batch = 10_000_000, 1000
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("tally-restart10m-%s-%d", restart10MVersion, tail))
	if _, err := os.Stat(filepath.Join(dir, "built")); err == nil {
		return dir
	}
	os.RemoveAll(dir)
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Durability.Fsync = "never" // the same log, faster to build
	cfg.Durability.SnapshotEvery = 0
	in, err := Open(cfg, repoOrFail(b), OpenOptions{Node: Options{Clock: func() int64 { return t0 }, RepoFS: features.DefaultFS()}})
	if err != nil {
		b.Fatal(err)
	}
	g := workload.New(workload.Config{Seed: 10, Users: 1_000_000, Merchants: 5000, FraudRate: 0.001})
	var body []byte
	for i := 0; i < total; i += batch {
		if i == total-tail {
			if _, err := in.Snapshot(); err != nil {
				b.Fatal(err)
			}
		}
		body = body[:0]
		for j := i; j < i+batch; j++ {
			// Over the last day, oldest first, with small disorder.
			ts := t0 - 86_400_000 + int64(j)*(86_400_000/total) - int64(j%7)*1000
			tx := g.Next(ts)
			body = tx.AppendJSON(body)
			body = append(body, '\n')
		}
		if _, err := in.IngestNDJSON("transactions", body, false); err != nil {
			b.Fatal(err)
		}
	}
	if err := in.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "built"), nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return dir
}

func repoOrFail(b *testing.B) *features.Repo {
	repo, err := features.Default()
	if err != nil {
		b.Fatal(err)
	}
	return repo
}

// BenchmarkRestart10M: what a restart of a node that has ingested 10M events
// costs with the default config: Open (the newest snapshot's load, then the
// log after it: at most Durability.SnapshotEveryEvents events) on the data
// dir restart10MDir builds. TALLY_BENCH_10M=1 runs it.
func BenchmarkRestart10M(b *testing.B) {
	cfg := DefaultConfig()
	tail := int(cfg.Durability.SnapshotEveryEvents)
	cfg.DataDir = restart10MDir(b, tail)
	cfg.Durability.SnapshotEvery = 0 // Close must not snapshot: every run restarts the same way
	b.ResetTimer()
	cpu, cpu0 := int64(0), cpuTime()
	var replayed uint64
	var load, replay time.Duration
	for i := 0; i < b.N; i++ {
		in, err := Open(cfg, repoOrFail(b), OpenOptions{Node: Options{Clock: func() int64 { return t0 }, RepoFS: features.DefaultFS()}})
		if err != nil {
			b.Fatal(err)
		}
		rec := in.Recovery()
		if rec.Snapshot == "" || rec.Replayed != uint64(tail/1000) {
			b.Fatalf("restored %q and replayed %d records, want a snapshot and %d", rec.Snapshot, rec.Replayed, tail/1000)
		}
		replayed = rec.Replayed
		load, replay = load+rec.Load, replay+rec.Replay
		b.StopTimer()
		cpu += cpuTime() - cpu0
		if err := in.Close(); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		cpu0 = cpuTime()
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu)/1e9/float64(b.N), "cpu-s/op")
	b.ReportMetric(float64(replayed*1000), "tail-events")
	b.ReportMetric(load.Seconds()/float64(b.N), "load-s")
	b.ReportMetric(replay.Seconds()/float64(b.N), "replay-s")
}

// BenchmarkRecovery10M: replaying the whole log of restart10MDir (10M
// events) into a fresh node, as a restart without a snapshot does.
// TALLY_BENCH_10M=1 runs it.
func BenchmarkRecovery10M(b *testing.B) {
	dir := restart10MDir(b, int(DefaultConfig().Durability.SnapshotEveryEvents))
	b.ResetTimer()
	cpu, cpu0 := int64(0), cpuTime()
	for i := 0; i < b.N; i++ {
		recoverLog(b, filepath.Join(dir, "wal"), 10_000)
		b.StopTimer()
		cpu += cpuTime() - cpu0
		runtime.GC()
		cpu0 = cpuTime()
		b.StartTimer()
	}
	b.ReportMetric(1e7*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(cpu)/1e9/float64(b.N), "cpu-s/op")
}

// BenchmarkSnapshot10M: what one snapshot of the node of restart10MDir
// costs (written into a directory of its own), which
// durability.snapshot_every_events trades against the restart's tail.
// TALLY_BENCH_10M=1 runs it.
func BenchmarkSnapshot10M(b *testing.B) {
	cfg := DefaultConfig()
	cfg.DataDir = restart10MDir(b, int(cfg.Durability.SnapshotEveryEvents))
	cfg.Durability.SnapshotEvery = 0
	in, err := Open(cfg, repoOrFail(b), OpenOptions{Node: Options{Clock: func() int64 { return t0 }, RepoFS: features.DefaultFS()}})
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	dir := b.TempDir()
	b.ResetTimer()
	cpu0 := cpuTime()
	var size int64
	for i := 0; i < b.N; i++ {
		if _, size, err = in.SnapshotInto(dir); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/1e9/float64(b.N), "cpu-s/op")
	b.ReportMetric(float64(size)/(1<<20), "MiB")
}
