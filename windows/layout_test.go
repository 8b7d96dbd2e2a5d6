package windows_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/tally-ml/tally/ring"
	"github.com/tally-ml/tally/windows"
)

// TestCentsMatchWide feeds one view amounts in whole cents (held in 24
// bits) and another the same events with every Float column widened from
// the start; then a value that is not whole cents widens the first view
// mid-stream. Before and after, the snapshots are byte for byte the same,
// and every read bit for bit; the cents view's state is smaller while it
// lasts. Snapshots of each restore into fresh views (a wide snapshot into a
// cents view widens it) that answer the same.
func TestCentsMatchWide(t *testing.T) {
	for i, spec := range append(testSpecs(1000), defaultUserSpecs()...) {
		t.Run(spec.Name, func(t *testing.T) {
			u := int64(1000)
			if i >= 3 {
				u = 100_000
			}
			a, _ := windows.New(spec)
			b, _ := windows.New(spec)
			windows.Widen(b)
			s := newStream(uint64(20+i), 300, u)
			rng := rand.New(rand.NewPCG(uint64(i), 11))
			nc := len(spec.Columns)
			feed := func(n int, cents bool) {
				for range n {
					k, ts, f := s.next()
					f = f[:nc]
					f[0].Num = float64(rng.IntN(2_000_000)-500_000) / 100
					if rng.IntN(50) == 0 {
						f[0].Num = float64(rng.Int64N(1<<40)) / 100 // beyond 32 bits of cents: refused, so widens
					}
					if !cents && rng.IntN(3) == 0 {
						f[0].Num = rng.Float64() * 1e3
					}
					if cents && !fitsCentsTest(f[0].Num) {
						f[0].Num = 0.25
					}
					ea, eb := a.Add(k, ts, f), b.Add(k, ts, f)
					if ea != eb {
						t.Fatalf("Add: %v on cents, %v on wide", ea, eb)
					}
				}
			}
			same := func(when string) {
				t.Helper()
				sa, sb := snapshot(t, a), snapshot(t, b)
				if !bytes.Equal(sa, sb) {
					t.Fatalf("%s: snapshots differ", when)
				}
				sameStats(t, a, b)
				sameReads(t, a, b, s.keys, s.now, s.u)
				for _, src := range []*windows.View{a, b} {
					r := restore(t, spec, snapshot(t, src))
					sameReads(t, a, r, s.keys, s.now, s.u)
				}
			}
			feed(10_000, true)
			countOnly := spec.Name == "user_transaction_counts" || spec.Name == "user_distinct_merchants"
			before := windows.RawStride(a)
			if sa, sb := windows.RawStride(a), windows.RawStride(b); (sa >= sb) != countOnly {
				t.Fatalf("raw records of %d bytes with cents, %d wide", sa, sb)
			}
			same("cents")
			feed(10_000, false)
			same("widened")
			if sa := windows.RawStride(a); (sa == before) != countOnly {
				t.Fatalf("raw records of %d bytes after widening, %d before", sa, before)
			}
		})
	}
}

// fitsCentsTest mirrors fitsCents for the test's values: small whole cents.
func fitsCentsTest(x float64) bool {
	k := int64(x * 100)
	for _, d := range []int64{-1, 0, 1} {
		if float64(k+d)/100 == x && k+d > -1<<31 && k+d < 1<<31 {
			return true
		}
	}
	return false
}

// TestWidenWhileReading widens a view while other goroutines add and read
// (run with -race): every read before and after answers, and reads at the
// end equal a view fed the same events one by one.
func TestWidenWhileReading(t *testing.T) {
	spec := defaultUserSpecs()[1]
	v, _ := windows.New(spec)
	ref, _ := windows.New(spec)
	keys := benchKeys(200)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var dst []windows.Value
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				dst = v.Read(keys[(i+g)%len(keys)], 1<<40, dst[:0])
				if len(dst) != len(spec.Aggregations) {
					t.Errorf("read %d values", len(dst))
					return
				}
			}
		}()
	}
	f := []windows.Field{{}, {Str: []byte("m")}}
	for i := range 20_000 {
		f[0].Num = float64(i%1000) / 100
		if i == 10_000 {
			f[0].Num = 1.0 / 3
		}
		k := keys[i%len(keys)]
		if err := v.Add(k, int64(i)*1000, f); err != nil {
			t.Fatal(err)
		}
		_ = ref.Add(k, int64(i)*1000, f)
	}
	close(stop)
	wg.Wait()
	windows.Widen(ref)
	if !bytes.Equal(snapshot(t, v), snapshot(t, ref)) {
		t.Fatal("snapshots differ")
	}
	sameReads(t, v, ref, keys, 20_000*1000, 1000)
}

// TestIDsWiden feeds one view a stream of few merchants (dictionary ids in
// a few bits) and another the same events with every String column widened
// from the start (32 bits); then a burst of 70,000 new merchants takes the
// ids past 2^16, and the first view widens, to fewer bits than 32. Before
// and after, the snapshots are byte for byte the same, and every read bit
// for bit; a snapshot taken after the burst widens the fresh view it
// restores into as far (the ids it interns pass 2^16 there too), which
// then answers the same.
func TestIDsWiden(t *testing.T) {
	for i, spec := range []windows.Spec{testSpecs(1000)[0], defaultUserSpecs()[2]} {
		t.Run(spec.Name, func(t *testing.T) {
			a, _ := windows.New(spec)
			b, _ := windows.New(spec)
			windows.WidenIDs(b)
			s := newStream(uint64(40+i), 300, 1000)
			nc := len(spec.Columns)
			add := func(k []byte, ts int64, f []windows.Field) {
				t.Helper()
				if ea, eb := a.Add(k, ts, f[:nc]), b.Add(k, ts, f[:nc]); ea != eb {
					t.Fatalf("Add: %v with narrow ids, %v with 32-bit", ea, eb)
				}
			}
			same := func(when string) *windows.View {
				t.Helper()
				sa := snapshot(t, a)
				if !bytes.Equal(sa, snapshot(t, b)) {
					t.Fatalf("%s: snapshots differ", when)
				}
				sameStats(t, a, b)
				sameReads(t, a, b, s.keys, s.now, s.u)
				r := restore(t, spec, sa)
				sameReads(t, a, r, s.keys, s.now, s.u)
				return r
			}
			for range 10_000 {
				add(s.next())
			}
			narrow, wide := windows.RawStride(a), windows.RawStride(b)
			if narrow >= wide {
				t.Fatalf("raw records of %d bytes with narrow ids, %d with 32-bit", narrow, wide)
			}
			if r := same("narrow ids"); windows.RawStride(r) != narrow {
				t.Fatalf("restored with few values: raw records of %d bytes, want %d", windows.RawStride(r), narrow)
			}
			f := make([]windows.Field, nc)
			for j := range 70_000 {
				f[1] = windows.Field{Str: fmt.Appendf(nil, "new-merchant-%d", j)}
				add(s.keys[j%len(s.keys)], s.now+int64(j/100), f)
			}
			widened := windows.RawStride(a)
			if widened <= narrow || widened >= wide {
				t.Fatalf("after 70,000 new values: raw records of %d bytes, want more than %d and less than %d", widened, narrow, wide)
			}
			if r := same("widened"); windows.RawStride(r) != widened {
				t.Fatalf("restored after the burst: raw records of %d bytes, want %d", windows.RawStride(r), widened)
			}
			for range 5_000 {
				add(s.next())
			}
			same("after")
		})
	}
}

// TestWidenOnePartition: an amount beyond 16 bits of cents widens the raw
// records of its own partition only (a widening stalls a thousandth of the
// view, not all of it); the view still answers as one widened everywhere
// from the start, and its snapshot is the same byte for byte.
func TestWidenOnePartition(t *testing.T) {
	spec := defaultUserSpecs()[1]
	a, _ := windows.New(spec)
	b, _ := windows.New(spec)
	windows.Widen(b)
	keys := benchKeys(5000)
	f := []windows.Field{{}, {Str: []byte("m")}}
	for i := range 50_000 {
		f[0].Num = float64(i%5000) / 100
		if i == 40_000 {
			f[0].Num = 100_000 // 25 bits of cents
		}
		k := keys[i%len(keys)]
		if ea, eb := a.Add(k, int64(i)*1000, f), b.Add(k, int64(i)*1000, f); ea != nil || eb != nil {
			t.Fatal(ea, eb)
		}
	}
	// A ts of 27 bits (a 1-day horizon), then the amount: cents in 16 bits
	// (6 bytes), in 25 (7), or a float64 at the next byte (12).
	if got := windows.Strides(a); len(got) != 2 || got[6] != ring.Partitions-1 || got[7] != 1 {
		t.Fatalf("partitions by bytes per raw record: %v, want %d at 6 and 1 at 7", got, ring.Partitions-1)
	}
	if got := windows.Strides(b); len(got) != 1 || got[12] != ring.Partitions {
		t.Fatalf("widened everywhere: partitions by bytes per raw record %v", got)
	}
	if !bytes.Equal(snapshot(t, a), snapshot(t, b)) {
		t.Fatal("snapshots differ")
	}
	sameReads(t, a, b, keys, 50_000*1000, 1000)
}
