package windows_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tally-ml/tally/windows"
)

// TestDistinctNested: exact distinct counts over nested windows of one
// column (the wider one extends the narrower one's set), for entities of up
// to a few hundred raw events with null values among them, equal a count by
// brute force, read at the newest event and an hour before it: of strings
// (dictionary ids: a bitmap, or a hash set past idBitsMax) and of numbers
// (a hash set).
func TestDistinctNested(t *testing.T) {
	for name, kind := range map[string]windows.Kind{"ids": windows.String, "numbers": windows.Float} {
		t.Run(name, func(t *testing.T) { testDistinctNested(t, kind) })
	}
	t.Run("ids in a hash set", func(t *testing.T) {
		defer windows.SetIDBitsMax(0)()
		testDistinctNested(t, windows.String)
	})
}

func testDistinctNested(t *testing.T, kind windows.Kind) {
	const m, h, d = 60_000, 3_600_000, 86_400_000
	cols := []windows.Column{{Name: "merchant", Kind: kind}}
	a := func(w int64) windows.Aggregation {
		return windows.Aggregation{Column: 0, Func: windows.DistinctCount, Window: w}
	}
	v := mustView(t, windows.Spec{Name: "distinct", Columns: cols, Lateness: 5 * m,
		Aggregations: []windows.Aggregation{a(10 * m), a(h), a(d)}})
	rng := rand.New(rand.NewPCG(5, 6))
	type ev struct {
		ts  int64
		val string // "" for null
	}
	now := int64(1_800_000_000_000)
	events := map[string][]ev{}
	for k := range 30 {
		key := fmt.Sprint("k", k)
		span := []int64{d, 3 * h, 30 * m}[k%3] // so that the narrower windows have sets to lend too
		for range rng.IntN(300) {
			e := ev{ts: now - rng.Int64N(span)}
			f := []windows.Field{{Null: true}}
			if rng.IntN(10) != 0 {
				j := rng.IntN(5 + k*3)
				e.val = fmt.Sprint("m", j)
				f = []windows.Field{{Str: []byte(e.val)}}
				if kind == windows.Float {
					f = []windows.Field{{Num: float64(j) / 4}}
				}
			}
			if err := v.Add([]byte(key), e.ts, f); err != nil {
				t.Fatal(err)
			}
			events[key] = append(events[key], e)
		}
	}
	for key, evs := range events {
		for _, at := range []int64{now, now - h} {
			got := v.Read([]byte(key), at, nil)
			for i, w := range []int64{10 * m, h, d} {
				seen := map[string]bool{}
				for _, e := range evs {
					if e.val != "" && e.ts > at-w && e.ts <= at {
						seen[e.val] = true
					}
				}
				if !got[i].Present || int(got[i].Num) != len(seen) {
					t.Fatalf("%s at now-%d: distinct over %d ms = %+v, want %d", key, now-at, w, got[i], len(seen))
				}
			}
		}
	}
}
