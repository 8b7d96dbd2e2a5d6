package windows_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tally-ml/tally/windows"
)

// TestHotFloatBucketsIgnoreArrivalOrder: a hot entity's float64 moments
// (values that are not whole cents, arriving out of order) are the same
// bit for bit whether its buckets were built before or after the late
// events arrived: in a view restored from a snapshot (which rebuilds them
// from the raw events) and in a view fed the same events but never read
// meanwhile (a replay, which reads at other times).
func TestHotFloatBucketsIgnoreArrivalOrder(t *testing.T) {
	defer windows.SetHotMin(4)()
	cols := []windows.Column{{Name: "amt", Kind: windows.Float}}
	a := func(f windows.Func, w int64) windows.Aggregation {
		return windows.Aggregation{Column: 0, Func: f, Window: w}
	}
	spec := windows.Spec{Name: "hot", Columns: cols, Lateness: 60_000, Aggregations: []windows.Aggregation{
		a(windows.Sum, 3_600_000), a(windows.Mean, 3_600_000), a(windows.Variance, 3_600_000), a(windows.Stddev, 3_600_000),
		a(windows.Sum, 600_000)}}
	key := []byte("k")
	for seed := range 20 {
		r := rand.New(rand.NewPCG(uint64(seed), 9))
		read, unread := mustView(t, spec), mustView(t, spec)
		now := int64(1_800_000_000_000)
		add := func(n int) {
			for range n {
				now += r.Int64N(300)         // about 12 events a fine bucket (1757 ms)
				ts := now - r.Int64N(50_000) // out of order within the lateness
				f := []windows.Field{{Num: r.Float64()*1000 + 1e6*float64(r.IntN(3))}}
				if r.IntN(4) == 0 {
					f[0].Num = float64(r.IntN(100_000)) / 100 // some whole cents
				}
				for _, v := range []*windows.View{read, unread} {
					if err := v.Add(key, ts, f); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		add(300)
		read.Read(key, now, nil) // builds read's buckets
		add(300)
		restored := restore(t, spec, snapshot(t, read))
		for _, at := range []int64{now, now + 1000, now + 100_000} {
			want := read.Read(key, at, nil)
			for name, v := range map[string]*windows.View{"restored": restored, "never read": unread} {
				if got := v.Read(key, at, nil); !sameValues(got, want) {
					t.Fatalf("seed %d: Read at now%+d: %s %v, original %v", seed, at-now, name, fmt.Sprint(got), fmt.Sprint(want))
				}
			}
		}
	}
}
