package windows_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/tally-ml/tally/ring"
	"github.com/tally-ml/tally/windows"
)

// An aggregation answers the same whatever else its view holds: each
// aggregation of the "mixed" spec, read with ReadRange from the view of all
// of them, equals a view of that aggregation alone over its column alone,
// fed the same events (nulls in every column, out of order, some too late
// for the shorter windows), at every time a read is exact for; sums,
// means, variances and standard deviations up to floating-point rounding
// (a view that also holds longer exact windows keeps events raw longer, so
// a tiled one may sum them in another order). This is what lets package
// store hold the views of one entity in one View.
func TestReadRangeMatchesViewAlone(t *testing.T) {
	spec := testSpecs(1000)[0]
	all, err := windows.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	alone := make([]*windows.View, len(spec.Aggregations))
	for i, a := range spec.Aggregations {
		s := windows.Spec{Name: fmt.Sprintf("agg%d", i), Columns: []windows.Column{spec.Columns[a.Column]}, Lateness: spec.Lateness}
		a.Column = 0
		s.Aggregations = []windows.Aggregation{a}
		if alone[i], err = windows.New(s); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(11, 12))
	keys := benchKeys(40)
	now := int64(1_000_000)
	field := func(col int) windows.Field {
		if rng.IntN(6) == 0 {
			return windows.Field{Null: true}
		}
		if spec.Columns[col].Kind == windows.String {
			return windows.Field{Str: []byte(merchants[rng.IntN(len(merchants))])}
		}
		return windows.Field{Num: float64(rng.IntN(20000))/100 - 50}
	}
	checked, rounded := 0, 0
	for step := range 6000 {
		now += rng.Int64N(400)
		ts := now - rng.Int64N(8000)
		if rng.IntN(40) == 0 {
			ts = now - 700_000 // too late for the short windows only
		}
		fields := []windows.Field{field(0), field(1), field(2)}
		key := keys[rng.IntN(len(keys))]
		errAll := all.Add(key, ts, fields)
		for i, a := range spec.Aggregations {
			err := alone[i].Add(key, ts, fields[a.Column:a.Column+1])
			if err != nil && errAll == nil {
				continue // refused only by the shorter view: it cannot count it
			}
			if (err == nil) != (errAll == nil) {
				t.Fatalf("event %d: alone %v, all %v", step, err, errAll)
			}
		}
		if step%500 != 499 {
			continue
		}
		for _, k := range keys {
			for _, at := range []int64{now, now + 3000, now + 700_000} {
				for i := range spec.Aggregations {
					got := all.ReadRange(ring.Hash(k), k, at, i, i+1, nil)
					want := alone[i].Read(k, at, nil)
					same := reflect.DeepEqual(got, want)
					if !same {
						rounded++
					}
					if !same && !nearlyEqual(spec.Aggregations[i].Func, got[0], want[0]) {
						t.Fatalf("aggregation %d (%+v) of %s at %d: %+v in the view of all, %+v alone", i, spec.Aggregations[i], k, at, got, want)
					}
					checked++
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("nothing read")
	}
	t.Logf("%d reads, %d equal up to rounding only", checked, rounded)
}

// nearlyEqual: a and b are the same value of f up to rounding (float
// moments only; everything else must be equal).
func nearlyEqual(f windows.Func, a, b windows.Value) bool {
	switch f {
	case windows.Sum, windows.Mean, windows.Variance, windows.Stddev:
	default:
		return false
	}
	if a.Present != b.Present {
		return false
	}
	return math.Abs(a.Num-b.Num) <= 1e-9*max(1, math.Abs(a.Num), math.Abs(b.Num))
}
