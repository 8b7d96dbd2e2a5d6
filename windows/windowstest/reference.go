package windowstest

import (
	"fmt"
	"math"
	"slices"

	"github.com/tally-ml/tally/windows"
)

// Reference is the brute-force model of a windows.View.
type Reference struct {
	spec    windows.Spec
	maxW    int64
	horizon int64
	wm      int64
	seen    bool
	kept    []bool // columns read by some aggregation
	ents    map[string]*entity
}

type event struct {
	ts     int64
	fields []windows.Field
}

type entity struct {
	events []event // sorted by (ts, arrival)
	newest int64
}

// NewReference returns an empty reference for spec. It panics if spec is
// invalid (windows.New is the judge).
func NewReference(spec windows.Spec) *Reference {
	if _, err := windows.New(spec); err != nil {
		panic(err)
	}
	r := &Reference{spec: spec, ents: map[string]*entity{}, kept: make([]bool, len(spec.Columns))}
	for _, a := range spec.Aggregations {
		r.maxW = max(r.maxW, a.Window)
		r.kept[a.Column] = true
	}
	r.horizon = r.maxW + spec.Lateness
	return r
}

// Add applies the windows.View.Add contract.
func (r *Reference) Add(key []byte, ts int64, fields []windows.Field) error {
	if len(fields) != len(r.spec.Columns) || ts < windows.MinTime || ts > windows.MaxTime {
		return windows.ErrBadEvent
	}
	for c, f := range fields {
		if r.kept[c] && r.spec.Columns[c].Kind == windows.Float && !f.Null && (math.IsNaN(f.Num) || math.IsInf(f.Num, 0)) {
			return windows.ErrBadEvent
		}
	}
	if r.seen && ts <= r.wm-r.horizon {
		return windows.ErrTooLate
	}
	cp := make([]windows.Field, len(fields))
	for c, f := range fields {
		cp[c] = windows.Field{Null: f.Null, Num: f.Num, Str: slices.Clone(f.Str)}
		if cp[c].Num == 0 {
			cp[c].Num = 0
		}
	}
	e := r.ents[string(key)]
	if e == nil {
		e = &entity{newest: ts}
		r.ents[string(key)] = e
	}
	e.newest = max(e.newest, ts)
	i := len(e.events)
	for i > 0 && e.events[i-1].ts > ts {
		i--
	}
	e.events = slices.Insert(e.events, i, event{ts, cp})
	// Events at or before newest - horizon count in no answerable read.
	drop := 0
	for drop < len(e.events) && e.events[drop].ts <= e.newest-r.horizon {
		drop++
	}
	e.events = e.events[drop:]
	if !r.seen || ts > r.wm {
		r.wm, r.seen = ts, true
	}
	return nil
}

// Answerable reports whether the contract guarantees an exact read of key at
// t: t >= newest - Lateness for an entity not yet idle past the horizon, and
// t >= watermark - Lateness always.
func (r *Reference) Answerable(key []byte, t int64) bool {
	e := r.ents[string(key)]
	if e == nil || !r.seen || t >= r.wm-r.spec.Lateness {
		return true
	}
	return t >= e.newest-r.spec.Lateness && e.newest > r.wm-r.horizon
}

// Newest returns the greatest accepted ts of key.
func (r *Reference) Newest(key []byte) (int64, bool) {
	e := r.ents[string(key)]
	if e == nil {
		return 0, false
	}
	return e.newest, true
}

// Watermark returns the greatest accepted ts of the view.
func (r *Reference) Watermark() (int64, bool) { return r.wm, r.seen }

// Read returns one Value per aggregation of key as of t.
func (r *Reference) Read(key []byte, t int64) []windows.Value {
	vals, _ := r.ReadScale(key, t)
	return vals
}

// ReadScale is Read plus, per aggregation, the largest magnitude among the
// values it aggregated: the scale that floating-point tolerances refer to.
func (r *Reference) ReadScale(key []byte, t int64) ([]windows.Value, []float64) {
	t = min(max(t, windows.MinTime-1), windows.MaxTime+2*windows.MaxSpan)
	e := r.ents[string(key)]
	out := make([]windows.Value, len(r.spec.Aggregations))
	scales := make([]float64, len(r.spec.Aggregations))
	for i, a := range r.spec.Aggregations {
		var in []windows.Field // counted non-null fields, oldest first
		if e != nil {
			for _, ev := range e.events {
				f := ev.fields[a.Column]
				if f.Null || ev.ts > t {
					continue
				}
				if a.Interval == 0 && ev.ts <= t-a.Window {
					continue
				}
				if a.Interval > 0 && floorDiv(ev.ts, a.Interval)*a.Interval <= t-a.Window {
					continue
				}
				in = append(in, f)
				scales[i] = max(scales[i], math.Abs(f.Num))
			}
		}
		out[i] = compute(a, r.spec.Columns[a.Column].Kind == windows.String, in)
	}
	return out, scales
}

func compute(a windows.Aggregation, str bool, in []windows.Field) windows.Value {
	nums := make([]float64, len(in))
	for i, f := range in {
		nums[i] = f.Num
	}
	n := float64(len(in))
	switch a.Func {
	case windows.Count:
		return windows.Value{Present: true, Num: n}
	case windows.Sum:
		return windows.Value{Present: true, Num: fsum(nums)}
	case windows.DistinctCount:
		set := map[string]bool{}
		for _, f := range in {
			if str {
				set[string(f.Str)] = true
			} else {
				set[fmt.Sprint(math.Float64bits(f.Num))] = true
			}
		}
		return windows.Value{Present: true, Num: float64(len(set))}
	case windows.LastN, windows.LastDistinctN:
		v := windows.Value{Present: true}
		seen := map[string]bool{}
		for i := len(in) - 1; i >= 0 && len(seen) < a.N; i-- {
			k := string(in[i].Str)
			if !str {
				k = fmt.Sprint(math.Float64bits(in[i].Num))
			}
			if a.Func == windows.LastN {
				k = fmt.Sprint(i)
			}
			if seen[k] {
				continue
			}
			seen[k] = true
			if str {
				v.Strs = append(v.Strs, string(in[i].Str))
			} else {
				v.Nums = append(v.Nums, in[i].Num)
			}
		}
		return v
	}
	if len(in) == 0 {
		return windows.Value{}
	}
	switch a.Func {
	case windows.Mean:
		return windows.Value{Present: true, Num: fsum(nums) / n}
	case windows.Min:
		return windows.Value{Present: true, Num: slices.Min(nums)}
	case windows.Max:
		return windows.Value{Present: true, Num: slices.Max(nums)}
	case windows.Last:
		l := in[len(in)-1]
		if str {
			return windows.Value{Present: true, Str: string(l.Str)}
		}
		return windows.Value{Present: true, Num: l.Num}
	case windows.Stddev, windows.Variance:
		mean := fsum(nums) / n
		dev := make([]float64, len(nums))
		for i, x := range nums {
			dev[i] = (x - mean) * (x - mean)
		}
		variance := max(fsum(dev)/n, 0)
		if a.Func == windows.Stddev {
			return windows.Value{Present: true, Num: math.Sqrt(variance)}
		}
		return windows.Value{Present: true, Num: variance}
	}
	panic("windowstest: unknown function " + a.Func.String())
}

// fsum is the exactly rounded sum of xs (Shewchuk's algorithm, as in
// Python's math.fsum, without its final half-way correction).
func fsum(xs []float64) float64 {
	var partials []float64
	for _, x := range xs {
		i := 0
		for _, y := range partials {
			if math.Abs(x) < math.Abs(y) {
				x, y = y, x
			}
			hi := x + y
			lo := y - (hi - x)
			if lo != 0 {
				partials[i] = lo
				i++
			}
			x = hi
		}
		partials = append(partials[:i], x)
	}
	s := 0.0
	for i := len(partials) - 1; i >= 0; i-- {
		s += partials[i]
	}
	return s
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Compare checks got against want (from ReadScale, with its scales):
// counts, distinct counts, min, max, last and lists exactly; sum and mean to
// 1e-9 relative (plus 1e-13 of the scale); variance and stddev likewise on
// the variance (1e-13 of the scale squared). It returns the first mismatch.
func Compare(spec windows.Spec, got, want []windows.Value, scales []float64) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d values, want %d", len(got), len(want))
	}
	for i, a := range spec.Aggregations {
		g, w := got[i], want[i]
		name := fmt.Sprintf("aggregation %d (%s of %s, window %d, interval %d)", i, a.Func, spec.Columns[a.Column].Name, a.Window, a.Interval)
		bad := func() error { return fmt.Errorf("%s: got %+v, want %+v", name, g, w) }
		if g.Present != w.Present || g.Str != w.Str || !slices.Equal(g.Strs, w.Strs) || len(g.Nums) != len(w.Nums) {
			return bad()
		}
		for j := range g.Nums {
			if math.Float64bits(g.Nums[j]) != math.Float64bits(w.Nums[j]) {
				return bad()
			}
		}
		s := scales[i]
		switch a.Func {
		case windows.Sum, windows.Mean:
			if math.Abs(g.Num-w.Num) > 1e-9*math.Abs(w.Num)+1e-13*s {
				return bad()
			}
		case windows.Variance:
			if math.Abs(g.Num-w.Num) > 1e-9*math.Abs(w.Num)+1e-13*s*s {
				return bad()
			}
		case windows.Stddev:
			if math.Abs(g.Num*g.Num-w.Num*w.Num) > 1e-9*w.Num*w.Num+1e-13*s*s {
				return bad()
			}
		default:
			if g.Num != w.Num {
				return bad()
			}
		}
	}
	return nil
}
