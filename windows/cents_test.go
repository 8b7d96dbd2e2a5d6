package windows_test

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/tally-ml/tally/windows"
)

// TestCentsMomentsExact: the sum, mean, variance and stddev of a window of
// whole-cent amounts are the float64s nearest the exact values (the sum
// and mean correctly rounded, the variance and stddev within one ulp),
// checked against math/big, for amounts up to 2^31 cents with a tiny spread
// around a large mean (where a float two-pass loses bits), in nested
// windows (the wider one extends the narrower one's sums), and the same
// whether the partition holds its column as cents or widened to float64s,
// and whether the window is scanned or read from a hot entity's buckets.
func TestCentsMomentsExact(t *testing.T) {
	const h, d = 3_600_000, 86_400_000
	cols := []windows.Column{{Name: "amt", Kind: windows.Float}}
	a := func(f windows.Func, w int64) windows.Aggregation {
		return windows.Aggregation{Column: 0, Func: f, Window: w}
	}
	spec := windows.Spec{Name: "cents", Columns: cols, Lateness: 60_000, Aggregations: []windows.Aggregation{
		a(windows.Sum, h), a(windows.Mean, h), a(windows.Variance, h),
		a(windows.Sum, d), a(windows.Mean, d), a(windows.Variance, d), a(windows.Stddev, d)}}
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 40 {
		narrow, wide := mustView(t, spec), mustView(t, spec)
		windows.Widen(wide)
		now := int64(1_800_000_000_000)
		base := rng.Int64N(1<<31-2_000_000) - (1<<30 - 1_000_000) // a large mean, either sign
		spread := []int64{3, 1000, 1 << 20}[round%3]
		n := 1 + rng.IntN(800) // past hotMin (256): then the day is read from buckets
		var all, lastHour []int64
		for range n {
			k := max(-(1<<31)+1, min(1<<31-1, base+rng.Int64N(2*spread+1)-spread))
			ts := now - rng.Int64N(d-1)
			f := []windows.Field{{Num: float64(k) / 100}}
			if err := narrow.Add([]byte("k"), ts, f); err != nil {
				t.Fatal(err)
			}
			if err := wide.Add([]byte("k"), ts, f); err != nil {
				t.Fatal(err)
			}
			all = append(all, k)
			if ts > now-h {
				lastHour = append(lastHour, k)
			}
		}
		got := narrow.Read([]byte("k"), now, nil)
		if w := wide.Read([]byte("k"), now, nil); !sameValues(got, w) {
			t.Fatalf("round %d: cents read %+v, widened %+v", round, got, w)
		}
		check := func(what string, ks []int64, sum, mean, variance windows.Value, stddev *windows.Value) {
			t.Helper()
			es, em, ev := exactMoments(ks)
			if f, _ := es.Float64(); sum.Num != f {
				t.Fatalf("round %d %s: sum %v, exact %v", round, what, sum.Num, es.Text('g', 30))
			}
			if len(ks) == 0 {
				return
			}
			if f, _ := em.Float64(); mean.Num != f {
				t.Fatalf("round %d %s: mean %v, exact %v", round, what, mean.Num, em.Text('g', 30))
			}
			if f, _ := ev.Float64(); !withinULP(variance.Num, f) {
				t.Fatalf("round %d %s: variance %v, exact %v", round, what, variance.Num, ev.Text('g', 30))
			}
			if stddev != nil {
				sd := new(big.Float).SetPrec(300).Sqrt(ev)
				if f, _ := sd.Float64(); !withinULP(stddev.Num, f) {
					t.Fatalf("round %d %s: stddev %v, exact %v", round, what, stddev.Num, sd.Text('g', 30))
				}
			}
		}
		check("1h", lastHour, got[0], got[1], got[2], nil)
		check("1d", all, got[3], got[4], got[5], &got[6])
	}
}

// exactMoments returns the sum, mean and population variance of k/100 for
// k in ks, to 300 bits.
func exactMoments(ks []int64) (sum, mean, variance *big.Float) {
	s, sq := new(big.Int), new(big.Int)
	for _, k := range ks {
		b := big.NewInt(k)
		s.Add(s, b)
		sq.Add(sq, new(big.Int).Mul(b, b))
	}
	f := func(x *big.Int) *big.Float { return new(big.Float).SetPrec(300).SetInt(x) }
	sum = new(big.Float).SetPrec(300).Quo(f(s), f(big.NewInt(100)))
	if len(ks) == 0 {
		return sum, nil, nil
	}
	n := big.NewInt(int64(len(ks)))
	mean = new(big.Float).SetPrec(300).Quo(sum, f(n))
	num := new(big.Int).Sub(new(big.Int).Mul(n, sq), new(big.Int).Mul(s, s))
	variance = new(big.Float).SetPrec(300).Quo(f(num), f(new(big.Int).Mul(new(big.Int).Mul(n, n), big.NewInt(10_000))))
	return sum, mean, variance
}

func withinULP(got, want float64) bool {
	return got == want || got == math.Nextafter(want, math.Inf(1)) || got == math.Nextafter(want, math.Inf(-1))
}

func mustView(t *testing.T, spec windows.Spec) *windows.View {
	t.Helper()
	v, err := windows.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
