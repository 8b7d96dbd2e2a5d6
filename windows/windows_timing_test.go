package windows_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/tally-ml/tally/internal/cputime"
	"github.com/tally-ml/tally/ring"
	"github.com/tally-ml/tally/windows"
)

func benchKeys(n int) [][]byte {
	keys := make([][]byte, n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "user-%d", i)
	}
	return keys
}

// BenchmarkIngest adds events of 1M distinct users, in time order, to the
// default repo's amounts view (exact windows up to 1 day).
func BenchmarkIngest(b *testing.B) {
	for _, spec := range []windows.Spec{defaultUserSpecs()[1], defaultUserSpecs()[2], tiledSpec()} {
		b.Run(spec.Name, func(b *testing.B) {
			v, _ := windows.New(spec)
			keys := benchKeys(1 << 20)
			rng := rand.New(rand.NewPCG(1, 2))
			order := make([]uint32, 1<<20)
			for i := range order {
				order[i] = uint32(rng.IntN(len(keys)))
			}
			fields := []windows.Field{{Num: 12.5}, {Str: []byte("merchant-7")}, {Num: 1}}[:len(spec.Columns)]
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				_ = v.Add(keys[order[i&(1<<20-1)]], int64(i), fields)
			}
			reportIngest(b, cpu0)
		})
	}
}

// BenchmarkIngestWarm is BenchmarkIngest once every user holds a few
// events: the steady state, where no Add creates an entity.
func BenchmarkIngestWarm(b *testing.B) {
	for _, spec := range []windows.Spec{defaultUserSpecs()[1], defaultUserSpecs()[2], tiledSpec()} {
		b.Run(spec.Name, func(b *testing.B) {
			v, _ := windows.New(spec)
			keys := benchKeys(1 << 20)
			rng := rand.New(rand.NewPCG(1, 2))
			order := make([]uint32, 1<<22)
			for i := range order {
				order[i] = uint32(rng.IntN(len(keys)))
			}
			fields := []windows.Field{{Num: 12.5}, {Str: []byte("merchant-7")}, {Num: 1}}[:len(spec.Columns)]
			ts := int64(0)
			for _, k := range order { // about 4 events per user
				ts += 20
				_ = v.Add(keys[k], ts, fields)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				ts += 20
				_ = v.Add(keys[order[i&(1<<22-1)]], ts, fields)
			}
			reportIngest(b, cpu0)
		})
	}
}

// reportIngest reports events/s of wall time and the process's CPU time per
// event since cpu0 (cpu-ns/op: what a shared, loaded machine's wall time
// hides; run with GOMAXPROCS=1 so it is one core's).
func reportIngest(b *testing.B, cpu0 int64) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the process's CPU time in ns (cputime.Now).
var cpuTime = cputime.Now

// BenchmarkIngestParallel adds from GOMAXPROCS goroutines at once. Writers
// of a view take turns (View.wmu), so this measures Add under contention
// for the writer lock, not parallel speed-up: the store writes each view
// from one goroutine at a time, and spreads views, not events, over cores.
func BenchmarkIngestParallel(b *testing.B) {
	spec := defaultUserSpecs()[1]
	v, _ := windows.New(spec)
	keys := benchKeys(1 << 20)
	var clock atomic.Int64
	var seed atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(seed.Add(1), 7))
		fields := []windows.Field{{Num: 12.5}, {Str: []byte("merchant-7")}}
		for pb.Next() {
			_ = v.Add(keys[rng.IntN(len(keys))], clock.Add(1), fields)
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRead reads every aggregation of one view for a user with about
// 20 events in the last day.
func BenchmarkRead(b *testing.B) {
	for _, spec := range append(defaultUserSpecs(), tiledSpec(), userGroupSpec()) {
		b.Run(spec.Name, func(b *testing.B) {
			v, _ := windows.New(spec)
			keys := benchKeys(10_000)
			fields := []windows.Field{{Num: 12.5}, {Str: []byte("merchant-7")}, {Num: 1}}[:len(spec.Columns)]
			const day = 86_400_000
			for i := range 20 * len(keys) {
				fields[0].Num = float64(i % 97)
				_ = v.Add(keys[i%len(keys)], int64(i)*(day/20/int64(len(keys))), fields)
			}
			var dst []windows.Value
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				dst = v.Read(keys[i%len(keys)], day, dst[:0])
			}
		})
	}
}

// TestMemoryPerUser feeds the default repo's three user views with 100k
// users at about 20 events a day over a simulated day and reports the bytes
// held per active user: with each view alone, and with the three as one
// view (their columns and aggregations together), as the store holds them
// (store/group.go). The grouped views must hold at most 256 B per user by
// Stats (the target; the stream is seeded, so the figure is the same on
// every run of the same code).
func TestMemoryPerUser(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 100k users")
	}
	const users, perDay, day = 100_000, 20, 86_400_000
	keys := benchKeys(users)
	merch := make([][]byte, 5000)
	for i := range merch {
		merch[i] = fmt.Appendf(nil, "merchant-%d", i)
	}
	alone, grouped := defaultUserSpecs(), userGroupSpec()
	for _, layout := range []struct {
		name  string
		specs []windows.Spec
	}{{"alone", alone}, {"grouped", []windows.Spec{grouped}}} {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var views []*windows.View
		for _, s := range layout.specs {
			v, _ := windows.New(s)
			views = append(views, v)
		}
		rng := rand.New(rand.NewPCG(3, 4))
		fields := make([]windows.Field, 2)
		n := users * perDay
		for i := range n {
			ts := int64(i)*day/int64(n) - rng.Int64N(60_000)
			fields[0].Num = float64(rng.IntN(50000)) / 100
			fields[1].Str = merch[rng.IntN(len(merch))]
			k := keys[rng.IntN(users)]
			for _, v := range views {
				_ = v.Add(k, ts, fields)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		var statBytes, events, ents int64
		for _, v := range views {
			s := v.Stats()
			t.Logf("%s: %+v (%.0f B/entity) %s", v.Spec().Name, s, float64(s.Bytes)/float64(s.Entities), windows.MemoryBreakdown(v))
			statBytes += s.Bytes
			events += s.Events
			ents += s.Entities
		}
		heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
		t.Logf("%s: per active user, three views: %.0f B by HeapAlloc, %.0f B by Stats; %.1f raw events per entity held", layout.name, heap/users, float64(statBytes)/users, float64(events)/float64(ents))
		if per := statBytes / users; layout.name == "grouped" && per > 256 {
			t.Errorf("grouped: %d B per user by Stats, want at most 256", per)
		}
		runtime.KeepAlive(views)
	}
	runtime.KeepAlive(keys)
}

// BenchmarkWritePartition writes one partition of the amounts and distinct
// views holding 200k users at 20 events each (about 200 users a partition;
// 1M users would be five times as many).
func BenchmarkWritePartition(b *testing.B) {
	for _, spec := range defaultUserSpecs()[1:] {
		b.Run(spec.Name, func(b *testing.B) {
			v, _ := windows.New(spec)
			keys := benchKeys(200_000)
			rng := rand.New(rand.NewPCG(5, 6))
			fields := []windows.Field{{}, {}}
			merch := benchKeys(5000)
			const day = 86_400_000
			n := 20 * len(keys)
			for i := range n {
				fields[0].Num = float64(rng.IntN(50000)) / 100
				fields[1].Str = merch[rng.IntN(len(merch))]
				_ = v.Add(keys[rng.IntN(len(keys))], int64(i)*day/int64(n), fields)
			}
			var buf bytes.Buffer
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				buf.Reset()
				if err := v.WritePartition(&buf, uint32(i)%ring.Partitions); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(buf.Len()), "bytes/partition")
		})
	}
}

// hotSpecs are views like the default repo's country_amount_stats (mean over
// 365 days in 1-day tiles) and merchant_transaction_counts (exact counts over
// 5 minutes and 1 hour), both with the default 5-minute lateness.
func hotSpecs() []windows.Spec {
	const m, h, d = 60_000, 3_600_000, 86_400_000
	cols := []windows.Column{{Name: "amt", Kind: windows.Float}}
	return []windows.Spec{
		{Name: "country_amount_stats", Columns: cols, Lateness: 5 * m, Aggregations: []windows.Aggregation{
			{Column: 0, Func: windows.Mean, Window: 365 * d, Interval: d}}},
		{Name: "merchant_transaction_counts", Columns: cols, Lateness: 5 * m, Aggregations: []windows.Aggregation{
			{Column: 0, Func: windows.Count, Window: 5 * m}, {Column: 0, Func: windows.Count, Window: h}}},
		// Exact moments over a hot entity: bucket moments (see hot.go).
		{Name: "user_transaction_amounts", Columns: cols, Lateness: 5 * m, Aggregations: []windows.Aggregation{
			{Column: 0, Func: windows.Sum, Window: h}, {Column: 0, Func: windows.Mean, Window: h}, {Column: 0, Func: windows.Max, Window: h},
			{Column: 0, Func: windows.Sum, Window: d}, {Column: 0, Func: windows.Mean, Window: d}, {Column: 0, Func: windows.Stddev, Window: d}}},
	}
}

// BenchmarkReadHot reads a hot entity at its newest event: 30 earlier days
// of 1,000 events each, then 100,000 events at about one a second of event
// time in the current day (a big merchant, a country).
//
// TALLY_HOT_MIN=4294967295 turns the bucket moments off (every read scans).
func BenchmarkReadHot(b *testing.B) {
	if n, err := strconv.ParseUint(os.Getenv("TALLY_HOT_MIN"), 10, 32); err == nil {
		defer windows.SetHotMin(uint32(n))()
	}
	for _, spec := range hotSpecs() {
		b.Run(spec.Name, func(b *testing.B) {
			v, _ := windows.New(spec)
			key := []byte("US")
			rng := rand.New(rand.NewPCG(7, 8))
			fields := []windows.Field{{}}
			const d = 86_400_000
			day0 := int64(1000) * d
			ts := day0 - 30*d
			for range 30 * 1000 {
				ts += d / 1000
				fields[0].Num = float64(rng.IntN(50000)) / 100
				_ = v.Add(key, ts-rng.Int64N(60_000), fields)
			}
			ts = day0
			for range 100_000 {
				ts += 800 + rng.Int64N(400)
				fields[0].Num = float64(rng.IntN(50000)) / 100
				_ = v.Add(key, ts-rng.Int64N(60_000), fields)
			}
			var dst []windows.Value
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				dst = v.Read(key, ts, dst[:0])
			}
		})
	}
}

// BenchmarkIngestHot adds events of one hot entity, about one a second of
// event time, a few out of order: the ingest side of BenchmarkReadHot.
func BenchmarkIngestHot(b *testing.B) {
	for _, spec := range hotSpecs() {
		b.Run(spec.Name, func(b *testing.B) {
			v, _ := windows.New(spec)
			key := []byte("US")
			rng := rand.New(rand.NewPCG(7, 8))
			jitter := make([]int64, 1<<16)
			for i := range jitter {
				jitter[i] = 800 + rng.Int64N(400)
				if i%16 == 0 {
					jitter[i] = -rng.Int64N(60_000)
				}
			}
			fields := []windows.Field{{Num: 12.5}}
			ts := int64(1000) * 86_400_000
			add := func(i int) {
				ts += 1000
				fields[0].Num = float64(i % 997)
				_ = v.Add(key, ts+jitter[i&(1<<16-1)], fields)
			}
			for i := range 100_000 {
				add(i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				add(i)
			}
		})
	}
}

// BenchmarkWidenPartition measures the stall of a widening: a view holds a
// million card holders at 20 events each (the card-holder group, amounts
// of 12.34 as cents in 16 bits), then each op adds one amount of 100,000
// (25 bits of cents) for a card holder of a partition not yet widened, so that
// the Add rewrites that partition's raw records (partition.widen). Run it
// with -benchtime 100x: there are ring.Partitions partitions to widen.
func BenchmarkWidenPartition(b *testing.B) {
	if b.N > ring.Partitions {
		b.Fatalf("%d widenings asked of %d partitions: run with -benchtime 100x", b.N, ring.Partitions)
	}
	v, _ := windows.New(userGroupSpec())
	keys := benchKeys(1_000_000)
	f := []windows.Field{{Num: 12.34}, {Str: []byte("m1")}}
	const n = 20_000_000
	for i := range n {
		_ = v.Add(keys[i%len(keys)], int64(i)*4, f)
	}
	f[0].Num = 100_000
	widened := make([]bool, ring.Partitions)
	k := 0
	b.ResetTimer()
	for i := range b.N {
		for widened[ring.Partition(ring.Hash(keys[k]))] {
			k++
		}
		widened[ring.Partition(ring.Hash(keys[k]))] = true
		if err := v.Add(keys[k], n*4+int64(i), f); err != nil {
			b.Fatal(err)
		}
	}
}
