package node

import (
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tally-ml/tally/bench/workload"
)

// uploadProfiles loads users' homes into the user_profile table.
func uploadProfiles(b testing.TB, n *Node, users []workload.User) {
	b.Helper()
	csv := []byte("user_id,home_lat,home_long\n")
	for _, u := range users {
		csv = fmt.Appendf(csv, "%s,%g,%g\n", u.ID, u.HomeLat, u.HomeLong)
	}
	if _, err := n.UploadTable("user_profile", CSV, csv, false); err != nil {
		b.Fatal(err)
	}
}

// populate ingests `perUser` events a day for `users` users over the day
// before the clock, through the bulk path, and loads their profiles.
func populate(b testing.TB, n *Node, users, perUser int) *workload.Generator {
	b.Helper()
	g := workload.New(workload.Config{Seed: 7, Users: users, Merchants: 2000, FraudRate: 0.001})
	uploadProfiles(b, n, g.Users())
	total := users * perUser
	const batch = 10_000
	var body []byte
	for i := 0; i < total; i += batch {
		body = body[:0]
		for j := i; j < min(total, i+batch); j++ {
			// Spread over the last day, oldest first, with small disorder.
			ts := t0 - 86_400_000 + int64(j)*86_400_000/int64(total) - int64(j%7)*1000
			tx := g.Next(ts)
			tx.UserID = "user_" + strconv.Itoa(j%users) // every user gets perUser events
			body = tx.AppendJSON(body)
			body = append(body, '\n')
		}
		if _, err := n.IngestNDJSON("transactions", body, false); err != nil {
			b.Fatal(err)
		}
	}
	return g
}

// BenchmarkGetFeatures is the in-process lookup of the whole fraud_detection
// vector (18 features over 5 views, a table and 2 expressions), including
// JSON parsing and response encoding.
func BenchmarkGetFeatures(b *testing.B) {
	n, _ := newTestNode(b, DefaultConfig())
	const users = 100_000
	benchLookups(b, n, lookupBodies(populate(b, n, users, 20)))
}

// lookupBodies returns 4096 get-features bodies: the keys and request
// context of g's next transactions.
func lookupBodies(g *workload.Generator) [][]byte {
	bodies := make([][]byte, 4096)
	for i := range bodies {
		tx := g.Next(t0)
		bodies[i] = lookupBody(tx.UserID, tx.Merchant, tx.Country, tx.Amt, tx.Lat, tx.Long)
	}
	return bodies
}

// benchLookups runs b.N lookups of bodies in turn, and reports the CPU time
// of each (cpu-ns/op) beside its wall time.
func benchLookups(b *testing.B, n *Node, bodies [][]byte) {
	dst := make([]byte, 0, 4096)
	runtime.GC() // the setup's garbage is not the lookup's
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out, err := n.GetFeatures(dst[:0], bodies[i%len(bodies)])
		if err != nil {
			b.Fatal(err)
		}
		dst = out
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkIngestBulk is the bulk NDJSON path in process (parse, validate,
// apply to the five views), without a log.
func BenchmarkIngestBulk(b *testing.B) {
	n, clk := newTestNode(b, DefaultConfig())
	g := workload.New(workload.Config{Seed: 3, Users: 1_000_000, Merchants: 5000, FraudRate: 0.001})
	const batch = 1000
	// Event time advances 1 ms per event, as a stream at 1000 events/s; each
	// request's body is built before the timer runs.
	bodies := make([][]byte, b.N)
	ts := t0
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
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clk.set(t0 + int64(i+1)*batch)
		if _, err := n.IngestNDJSON("transactions", bodies[i], false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkMemoryPerUser reports the heap held per active user by the default
// repo's state (all views and the profile table) at 20 events a day.
func BenchmarkMemoryPerUser(b *testing.B) {
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		n, _ := newTestNode(b, DefaultConfig())
		const users = 100_000
		populate(b, n, users, 20)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/users, "bytes/user")
		runtime.KeepAlive(n)
	}
}

// BenchmarkHTTPGetFeatures measures lookups over loopback HTTP from a Go
// fasthttp client with 16 connections, closed loop, and reports latency
// percentiles. The load generator shares the 2 cores with the server.
func BenchmarkHTTPGetFeatures(b *testing.B) {
	benchmarkHTTP(b, "/api/v1/feature-service/get-features")
}

// BenchmarkHTTPPredict is BenchmarkHTTPGetFeatures through the predict
// endpoint: the same vector plus the embedded RandomForest's score.
func BenchmarkHTTPPredict(b *testing.B) {
	benchmarkHTTP(b, "/api/v1/feature-service/predict")
}

func benchmarkHTTP(b *testing.B, path string) {
	n, _ := newTestNode(b, DefaultConfig())
	g := populate(b, n, 100_000, 20)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := NewServer(n)
	go srv.Serve(ln)
	defer srv.Shutdown()
	client := &fasthttp.HostClient{Addr: ln.Addr().String(), MaxConns: 64}
	bodies := make([][]byte, 4096)
	for i := range bodies {
		tx := g.Next(t0)
		bodies[i] = lookupBody(tx.UserID, tx.Merchant, tx.Country, tx.Amt, tx.Lat, tx.Long)
	}
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://" + ln.Addr().String() + path)
		req.Header.SetMethod("POST")
		rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
		var mine []time.Duration
		for pb.Next() {
			req.SetBody(bodies[rng.IntN(len(bodies))])
			start := time.Now()
			if err := client.Do(req, resp); err != nil || resp.StatusCode() != 200 {
				b.Errorf("lookup: %v %d", err, resp.StatusCode())
				return
			}
			mine = append(mine, time.Since(start))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
		b.ReportMetric(float64(len(lat))/b.Elapsed().Seconds(), "req/s")
	}
}
