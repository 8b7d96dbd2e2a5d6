package windows_test

import (
	"fmt"
	"testing"

	"github.com/tally-ml/tally/windows"
)

// defaultUserSpecs are the user views of the default feature repo.
func defaultUserSpecs() []windows.Spec {
	const m, h, d = 60_000, 3_600_000, 86_400_000
	cols := []windows.Column{{Name: "amt", Kind: windows.Float}, {Name: "merchant", Kind: windows.String}}
	a := func(col int, f windows.Func, w int64) windows.Aggregation {
		return windows.Aggregation{Column: col, Func: f, Window: w}
	}
	return []windows.Spec{
		{Name: "user_transaction_counts", Columns: cols, Lateness: 5 * m, Aggregations: []windows.Aggregation{
			a(0, windows.Count, m), a(0, windows.Count, 5*m), a(0, windows.Count, h)}},
		{Name: "user_transaction_amounts", Columns: cols, Lateness: 5 * m, Aggregations: []windows.Aggregation{
			a(0, windows.Sum, h), a(0, windows.Mean, h), a(0, windows.Max, h), a(0, windows.Sum, d), a(0, windows.Mean, d), a(0, windows.Stddev, d)}},
		{Name: "user_distinct_merchants", Columns: cols, Lateness: 5 * m, Aggregations: []windows.Aggregation{
			a(1, windows.DistinctCount, h), a(1, windows.DistinctCount, d)}},
	}
}

// userGroupSpec is the three views of defaultUserSpecs as one view, as
// package store holds them (a group: their columns and aggregations).
func userGroupSpec() windows.Spec {
	alone := defaultUserSpecs()
	g := windows.Spec{Name: "user_group", Columns: alone[0].Columns, Lateness: alone[0].Lateness}
	for _, s := range alone {
		g.Aggregations = append(g.Aggregations, s.Aggregations...)
	}
	return g
}

// tiledSpec exercises tiles: every scalar function, 10 s tiles.
func tiledSpec() windows.Spec { return testSpecs(1000)[1] }

func TestAllocs(t *testing.T) {
	specs := append(defaultUserSpecs(), tiledSpec(), testSpecs(1000)[0])
	for _, spec := range specs {
		t.Run(spec.Name, func(t *testing.T) {
			v, err := windows.New(spec)
			if err != nil {
				t.Fatal(err)
			}
			keys := make([][]byte, 100)
			for i := range keys {
				keys[i] = fmt.Appendf(nil, "user-%d", i)
			}
			fields := []windows.Field{{Num: 12.5}, {Str: []byte("merchant-1")}, {Num: 1}}[:len(spec.Columns)]
			ts := int64(0)
			add := func() {
				for _, k := range keys {
					ts += 1000
					if err := v.Add(k, ts, fields); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Warm up past the longest window so entities reach their steady size.
			maxW := int64(0)
			for _, a := range spec.Aggregations {
				maxW = max(maxW, a.Window)
			}
			for ts < 3*(maxW+spec.Lateness) {
				add()
			}
			if n := testing.AllocsPerRun(50, add); n != 0 {
				t.Errorf("Add: %v allocs per %d events", n, len(keys))
			}
			var dst []windows.Value
			scalar := true
			for _, a := range spec.Aggregations {
				scalar = scalar && a.Func != windows.LastN && a.Func != windows.LastDistinctN
			}
			dst = v.Read(keys[0], ts, dst)
			if n := testing.AllocsPerRun(100, func() { dst = v.Read(keys[1], ts, dst[:0]) }); scalar && n != 0 {
				t.Errorf("Read: %v allocs", n)
			}
		})
	}
}
