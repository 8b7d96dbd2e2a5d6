package node

import (
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/tally-ml/tally/bench/workload"
	"github.com/tally-ml/tally/internal/cputime"
)

// BenchmarkGetFeaturesHeat is the in-process lookup of the whole
// fraud_detection vector for a cold card holder (5 events in the last day),
// for busier ones (1,000 over the day; 250 in the last 10 minutes, just
// below where hot buckets take over) and for hot ones (50,000 events in the
// window: spread over the last day, or in a burst over the last 10 minutes,
// as the demo's busiest card holders are), beside 10,000 other users. The
// cost of a read must be bounded by the tiles of its windows, not by the
// entity's events: hot/cold should stay near 1.
func BenchmarkGetFeaturesHeat(b *testing.B) {
	for _, c := range []struct {
		name   string
		events int
		span   int64 // ms before the clock the events are spread over
	}{
		{"cold", 5, 86_400_000},
		{"warm", 1_000, 86_400_000},
		{"busy", 250, 600_000}, // just under the raw events a hot read starts at
		{"hot_day", 50_000, 86_400_000},
		{"hot_burst", 50_000, 600_000},
	} {
		b.Run(c.name, func(b *testing.B) {
			n, _ := newTestNode(b, DefaultConfig())
			g := populate(b, n, 10_000, 5)
			hg := workload.New(workload.Config{Seed: 9, Users: 10, Merchants: 2000, FraudRate: 0.001})
			var body []byte
			for j := 0; j < c.events; j++ {
				ts := t0 - c.span + int64(j)*c.span/int64(c.events) - int64(j%7)*(c.span/86_400) + 1
				tx := hg.Next(ts)
				tx.UserID = "hot"
				body = tx.AppendJSON(body)
				body = append(body, '\n')
				if len(body) > 1<<20 || j == c.events-1 {
					if _, err := n.IngestNDJSON("transactions", body, false); err != nil {
						b.Fatal(err)
					}
					body = body[:0]
				}
			}
			if _, err := n.UploadTable("user_profile", CSV, []byte("user_id,home_lat,home_long\nhot,48.85,2.35\n"), false); err != nil {
				b.Fatal(err)
			}
			user := "hot"
			if c.name == "cold" {
				user = "user_" + strconv.Itoa(42)
			}
			tx := g.Next(t0)
			req := lookupBody(user, tx.Merchant, tx.Country, tx.Amt, tx.Lat, tx.Long)
			dst := make([]byte, 0, 4096)
			runtime.GC() // the setup's garbage is not the lookup's
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				out, err := n.GetFeatures(dst[:0], req)
				if err != nil {
					b.Fatal(err)
				}
				dst = out
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the process's CPU time in ns (cputime.Now).
var cpuTime = cputime.Now

// BenchmarkGetFeaturesSmall is BenchmarkGetFeatures over 2,000 users: small
// enough to run under callgrind, whose instruction counts repeat on a noisy
// machine where times do not (GOGC=off: the setup's garbage is not
// collected while they are counted):
//
//	go test -c -o /tmp/node.test ./node/ && GOGC=off GODEBUG=asyncpreemptoff=1 GOMAXPROCS=1 valgrind --tool=callgrind \
//	  --toggle-collect='github.com/tally-ml/tally/node.(*Node).GetFeatures' /tmp/node.test -test.run '^$' -test.bench GetFeaturesSmall -test.benchtime 5000x
func BenchmarkGetFeaturesSmall(b *testing.B) {
	n, _ := newTestNode(b, DefaultConfig())
	benchLookups(b, n, lookupBodies(populate(b, n, 2000, 20)))
}

// BenchmarkGetFeaturesSkewed is the lookup the load harness measures (bench:
// tally bench --scenarios lookup), in process: 10,000 card holders with a
// day of 300,000 transactions from the harness's workload, and lookups
// drawn from a second stream of the same skew, so that card holders are
// looked up as often as they transact. Most lookups are of busy card
// holders: where raw-event scans cost the most.
//
// Its first pass over the 4,096 bodies builds the hot buckets of each busy
// card holder on its first read (hot.go in windows), a cost paid once per
// entity and restart, which a benchmark of 80,000 lookups spreads over all
// of them (about 11% of the instructions at 80,000, 2.5% at 400,000); a
// long-running server has paid it. BenchmarkGetFeaturesSkewedWarm measures
// the lookup after that pass.
func BenchmarkGetFeaturesSkewed(b *testing.B) {
	n, bodies := skewedNode(b)
	benchLookups(b, n, bodies)
}

// BenchmarkGetFeaturesSkewedWarm is BenchmarkGetFeaturesSkewed after one
// untimed pass over its bodies: the steady lookup of a server whose busy
// card holders have been read before.
func BenchmarkGetFeaturesSkewedWarm(b *testing.B) {
	n, bodies := skewedNode(b)
	var dst []byte
	for _, body := range bodies {
		out, err := n.GetFeatures(dst[:0], body)
		if err != nil {
			b.Fatal(err)
		}
		dst = out
	}
	benchLookups(b, n, bodies)
}

// BenchmarkGetFeaturesSkewedParallel is BenchmarkGetFeaturesSkewed from
// GOMAXPROCS goroutines at once, as a server's connections look up: ns/op
// is wall time per lookup over all of them, so on 2 cores a lookup that
// shares nothing written (no lock or counter both cores write) measures
// about half the serial one's.
func BenchmarkGetFeaturesSkewedParallel(b *testing.B) {
	n, bodies := skewedNode(b)
	runtime.GC() // the setup's garbage is not the lookup's
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	var next atomic.Uint64
	b.RunParallel(func(pb *testing.PB) {
		dst := make([]byte, 0, 4096)
		for i := next.Add(1) * 7919; pb.Next(); i++ {
			out, err := n.GetFeatures(dst[:0], bodies[i%uint64(len(bodies))])
			if err != nil {
				b.Error(err)
				return
			}
			dst = out
		}
	})
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// skewedNode is the node and lookup bodies of BenchmarkGetFeaturesSkewed.
func skewedNode(b *testing.B) (*Node, [][]byte) {
	n, _ := newTestNode(b, DefaultConfig())
	cfg := workload.DefaultConfig()
	g := workload.New(cfg)
	uploadProfiles(b, n, g.Users())
	const total, day = 300_000, 86_400_000
	var body []byte
	for i := 0; i < total; i++ {
		tx := g.Next(t0 - day + int64(i)*day/total)
		body = tx.AppendJSON(body)
		body = append(body, '\n')
		if len(body) > 1<<20 || i == total-1 {
			if _, err := n.IngestNDJSON("transactions", body, false); err != nil {
				b.Fatal(err)
			}
			body = body[:0]
		}
	}
	lcfg := cfg
	lcfg.Seed += workload.LookupSeed // the harness's lookup stream
	return n, lookupBodies(workload.New(lcfg))
}
