package windows_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tally-ml/tally/windows"
	"github.com/tally-ml/tally/windows/windowstest"
)

// testSpecs are the views the randomized tests drive, in units of u ms so
// that one simulated run crosses many windows and tiles.
func testSpecs(u int64) []windows.Spec {
	cols := []windows.Column{{Name: "amt", Kind: windows.Float}, {Name: "merchant", Kind: windows.String}, {Name: "score", Kind: windows.Float}}
	agg := func(col int, f windows.Func, w, g int64, n int) windows.Aggregation {
		return windows.Aggregation{Column: col, Func: f, Window: w * u, Interval: g * u, N: n}
	}
	return []windows.Spec{
		{Name: "mixed", Columns: cols, Lateness: 5 * u, Aggregations: []windows.Aggregation{
			agg(0, windows.Count, 10, 0, 0), agg(0, windows.Count, 50, 0, 0), agg(0, windows.Count, 600, 10, 0),
			agg(0, windows.Sum, 60, 0, 0), agg(0, windows.Sum, 1200, 60, 0), agg(0, windows.Mean, 600, 50, 0),
			agg(0, windows.Min, 600, 100, 0), agg(0, windows.Max, 60, 0, 0), agg(0, windows.Max, 1200, 60, 0),
			agg(0, windows.Last, 50, 0, 0), agg(0, windows.Last, 600, 10, 0), agg(1, windows.Last, 600, 50, 0),
			agg(0, windows.LastN, 100, 0, 3), agg(1, windows.LastN, 60, 0, 5), agg(1, windows.LastDistinctN, 60, 0, 3),
			agg(1, windows.DistinctCount, 60, 0, 0), agg(1, windows.DistinctCount, 1200, 60, 0), agg(0, windows.DistinctCount, 60, 0, 0),
			agg(0, windows.Stddev, 60, 0, 0), agg(0, windows.Variance, 1200, 120, 0), agg(2, windows.Stddev, 1200, 60, 0),
			agg(1, windows.Count, 10, 0, 0), agg(2, windows.Count, 600, 30, 0), agg(2, windows.Last, 40, 0, 0),
			agg(2, windows.Mean, 30, 0, 0), agg(2, windows.Min, 30, 0, 0), agg(0, windows.Variance, 30, 0, 0),
		}},
		{Name: "tiled", Columns: cols, Lateness: 0, Aggregations: []windows.Aggregation{
			agg(0, windows.Count, 600, 10, 0), agg(0, windows.Mean, 1200, 60, 0), agg(1, windows.DistinctCount, 1200, 60, 0),
			agg(0, windows.Last, 600, 10, 0), agg(1, windows.Last, 600, 10, 0), agg(0, windows.Stddev, 1200, 60, 0),
			agg(0, windows.Min, 1200, 60, 0), agg(0, windows.Max, 600, 10, 0), agg(0, windows.Sum, 600, 10, 0),
		}},
		{Name: "exact", Columns: cols, Lateness: 20 * u, Aggregations: []windows.Aggregation{
			agg(0, windows.Count, 10, 0, 0), agg(0, windows.Mean, 60, 0, 0), agg(1, windows.DistinctCount, 60, 0, 0),
			agg(0, windows.Sum, 600, 0, 0), agg(0, windows.Mean, 600, 0, 0), agg(0, windows.Stddev, 600, 0, 0),
			agg(1, windows.DistinctCount, 600, 0, 0), agg(1, windows.LastDistinctN, 600, 0, 4),
		}},
	}
}

var (
	merchants = []string{"m0", "m1", "m2", "café", "日本の店", "😀", "m6", "m7", "m8", "m9", "ß", ""}
	scales    = []float64{1e-9, 1, 1e6, 1e15}
)

type checker struct {
	t    testing.TB
	spec windows.Spec
	v    *windows.View
	ref  *windowstest.Reference
	got  []windows.Value
	n    int
}

func newChecker(t testing.TB, spec windows.Spec) *checker {
	v, err := windows.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	return &checker{t: t, spec: spec, v: v, ref: windowstest.NewReference(spec)}
}

func (c *checker) add(key []byte, ts int64, f []windows.Field) error {
	c.t.Helper()
	err, want := c.v.Add(key, ts, f), c.ref.Add(key, ts, f)
	if !errors.Is(err, want) || (err == nil) != (want == nil) {
		c.t.Fatalf("%s: Add(%q, %d, %+v) = %v, reference %v", c.spec.Name, key, ts, f, err, want)
	}
	return err
}

func (c *checker) read(key []byte, t int64) {
	c.t.Helper()
	if !c.ref.Answerable(key, t) {
		return
	}
	c.n++
	c.got = c.v.Read(key, t, c.got[:0])
	want, scales := c.ref.ReadScale(key, t)
	if err := windowstest.Compare(c.spec, c.got, want, scales); err != nil {
		nw, _ := c.ref.Newest(key)
		wm, _ := c.ref.Watermark()
		c.t.Fatalf("%s: Read(%q, %d) (entity newest %d, watermark %d): %v", c.spec.Name, key, t, nw, wm, err)
	}
}

// run drives every test spec with the same random stream of events and
// reads, comparing each answerable read with the reference.
func run(t *testing.T, seed uint64, entities, events int, hash func([]byte) uint64) {
	const u = 1000
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var cs []*checker
	for _, s := range testSpecs(u) {
		c := newChecker(t, s)
		if hash != nil {
			windows.SetHash(c.v, hash)
		}
		cs = append(cs, c)
	}
	keys := make([][]byte, entities)
	scale := make([]float64, entities)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "user-%d", i)
		if i%7 == 0 {
			keys[i] = fmt.Appendf(nil, "ユーザー-%d-ß", i)
		}
		scale[i] = scales[rng.IntN(len(scales))]
	}
	pick := func() int {
		switch r := rng.IntN(100); {
		case r < 15:
			return 0 // the hot entity: forces folding
		case r < 50:
			return 1 + rng.IntN(min(20, entities-1))
		default:
			return rng.IntN(entities)
		}
	}
	now := int64(-50 * u) // negative times work too
	type past struct {
		key int
		ts  int64
	}
	var recent []past
	fields := make([]windows.Field, 3)
	tooLate := 0
	for n := 0; n < events; n++ {
		now += rng.Int64N(u / 4)
		k := pick()
		ts := now - rng.Int64N(u/2)
		switch r := rng.IntN(100); {
		case r < 10:
			ts = now - rng.Int64N(25*u) // out of order, often within lateness
		case r < 12:
			ts = now - 1200*u - rng.Int64N(100*u) // too late for every view
		case r == 12:
			ts = now + rng.Int64N(10*u) // ahead
		case r < 25:
			ts = floorDiv(ts, 10*u)*10*u - int64(rng.IntN(2)) // on a tile edge, or just before
		}
		x := scale[k] * (rng.Float64()*200 - 50)
		if rng.IntN(10) == 0 {
			x = scales[rng.IntN(len(scales))] * (rng.Float64() - 0.5) // mixed magnitudes
		}
		fields[0] = windows.Field{Num: x, Null: rng.IntN(20) == 0}
		fields[1] = windows.Field{Str: []byte(merchants[rng.IntN(len(merchants))]), Null: rng.IntN(20) == 0}
		fields[2] = windows.Field{Num: float64(rng.IntN(5)), Null: rng.IntN(3) == 0}
		for _, c := range cs {
			if errors.Is(c.add(keys[k], ts, fields), windows.ErrTooLate) && c == cs[0] {
				tooLate++
			}
		}
		recent = append(recent, past{k, ts})
		if len(recent) > 500 {
			recent = recent[250:]
		}
		if rng.IntN(4) != 0 {
			continue
		}
		// Read: now, around a window or tile edge of a recent event, or a never-seen key.
		k = pick()
		rt := now + rng.Int64N(3*u) - u
		switch r := rng.IntN(10); {
		case r < 5:
			p := recent[rng.IntN(len(recent))]
			k = p.key
			ws := []int64{10, 30, 40, 50, 60, 100, 600, 1200, 120, 5}
			rt = p.ts + ws[rng.IntN(len(ws))]*u - int64(rng.IntN(2))
		case r == 5:
			// The window's tail exactly on a tile edge, or one ms either side.
			w := []int64{600, 1200, 50, 60}[rng.IntN(4)] * u
			rt = floorDiv(now-w+rng.Int64N(2*u), 10*u)*10*u + w + int64(rng.IntN(3)) - 1
		case r == 6:
			k = -1
		}
		key := []byte("never-seen")
		if k >= 0 {
			key = keys[k]
		}
		for _, c := range cs {
			c.read(key, rt)
		}
	}
	// A final pass over every entity at the end.
	for k := range keys {
		for _, c := range cs {
			c.read(keys[k], now)
			c.read(keys[k], now+100*u)
		}
	}
	if tooLate == 0 {
		t.Fatal("no event was refused as too late")
	}
	for _, c := range cs {
		st := c.v.Stats()
		t.Logf("%s: %d reads compared, stats %+v", c.spec.Name, c.n, st)
		if st.TooLate == 0 || c.n < events/10 {
			t.Fatalf("%s: too few reads (%d) or refusals (%d)", c.spec.Name, c.n, st.TooLate)
		}
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func TestMatchesReference(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			events := 100_000
			if testing.Short() {
				events = 20_000
			}
			run(t, seed, 2000, events, nil)
		})
	}
}

// TestHotBucketsMatchReference: the same stream with reads over more than 16
// raw events answered from bucket moments plus the edges (see hot.go), so
// that every entity with a busy window goes that way: still the reference's
// answers (within its floating-point tolerance).
func TestHotBucketsMatchReference(t *testing.T) {
	defer windows.SetHotMin(16)()
	events := 60_000
	if testing.Short() {
		events = 15_000
	}
	before := windows.HotReads()
	run(t, 7, 300, events, nil)
	if n := windows.HotReads() - before; n < int64(events/20) {
		t.Fatalf("only %d reads went through the hot buckets", n)
	}
}

func TestHashCollisions(t *testing.T) {
	// Every key hashes alike: entities must stay apart by their key bytes.
	run(t, 99, 50, 10_000, func([]byte) uint64 { return 42 })
	// Two hash values for many keys: collisions plus index reuse after expiry.
	run(t, 98, 200, 10_000, func(b []byte) uint64 { return uint64(len(b) & 1) })
}

// TestLongTimes drives views whose horizon is just within and just beyond
// 2^31 ms (raw times stored as offsets in at most 32 bits, or whole) over 2^36 ms, from
// near MinTime to near MaxTime, so that entities' offset bases move many
// times while they hold events.
func TestLongTimes(t *testing.T) {
	cols := []windows.Column{{Name: "amt", Kind: windows.Float}, {Name: "merchant", Kind: windows.String}, {Name: "score", Kind: windows.Float}}
	for _, horizon := range []int64{1 << 31, 1<<31 + 1} {
		const late = 1 << 28
		w := horizon - late
		spec := windows.Spec{Name: fmt.Sprint("horizon ", horizon), Columns: cols, Lateness: late, Aggregations: []windows.Aggregation{
			{Column: 0, Func: windows.Sum, Window: w}, {Column: 0, Func: windows.Count, Window: w / 3},
			{Column: 1, Func: windows.LastN, Window: w, N: 4}, {Column: 1, Func: windows.DistinctCount, Window: w},
			{Column: 2, Func: windows.Count, Window: w}, {Column: 0, Func: windows.Max, Window: w / 2},
		}}
		for _, start := range []int64{windows.MinTime, 0, windows.MaxTime - 1<<36} {
			c := newChecker(t, spec)
			rng := rand.New(rand.NewPCG(uint64(horizon), uint64(start)))
			keys := [][]byte{[]byte("a"), []byte("b"), []byte("c")}
			fields := make([]windows.Field, 3)
			type past struct {
				key []byte
				ts  int64
			}
			recent := []past{{keys[0], start}}
			now := start
			for now < start+1<<36 {
				now += rng.Int64N(1 << 26)
				k := keys[rng.IntN(len(keys))]
				ts := now - rng.Int64N(1<<29)
				if rng.IntN(50) == 0 {
					now += rng.Int64N(1 << 33) // a long silence
				}
				ts = max(ts, windows.MinTime)
				fields[0] = windows.Field{Num: float64(rng.IntN(1000)), Null: rng.IntN(10) == 0}
				fields[1] = windows.Field{Str: []byte(merchants[rng.IntN(len(merchants))]), Null: rng.IntN(10) == 0}
				fields[2] = windows.Field{Num: 1, Null: rng.IntN(3) == 0}
				if c.add(k, ts, fields) == nil {
					recent = append(recent[max(0, len(recent)-30):], past{k, ts})
				}
				p := recent[rng.IntN(len(recent))] // window edges at a recent event
				for _, at := range []int64{p.ts - 1, p.ts, p.ts + w/3 - 1, p.ts + w/3, p.ts + w/2 - 1, p.ts + w/2, p.ts + w - 1, p.ts + w} {
					c.read(p.key, at)
				}
				for _, k := range keys {
					c.read(k, now-rng.Int64N(late))
					c.read(k, now+rng.Int64N(w))
				}
			}
			if c.n < 1000 {
				t.Fatalf("%s: only %d reads compared", spec.Name, c.n)
			}
		}
	}
}

// TestHotBurstMatchesReference: one entity receives bursts of thousands of
// events a few milliseconds apart (several on the same millisecond, some out
// of order, some null) between quiet stretches, so that its reads at and
// after its newest event go through whole buckets at every level (see
// hot.go): still the reference's answers, and the hot path ran.
func TestHotBurstMatchesReference(t *testing.T) {
	const u = 1000
	rng := rand.New(rand.NewPCG(11, 12))
	key := []byte("busy")
	var cs []*checker
	// Without lateness, events leave the raw ring from a bucket the window
	// still starts in: that bucket must not be read whole.
	cols := []windows.Column{{Name: "amt", Kind: windows.Float}, {Name: "merchant", Kind: windows.String}, {Name: "score", Kind: windows.Float}}
	noLate := windows.Spec{Name: "exact-no-lateness", Columns: cols, Aggregations: []windows.Aggregation{
		{Column: 0, Func: windows.Sum, Window: 60 * u}, {Column: 0, Func: windows.Max, Window: 60 * u},
		{Column: 0, Func: windows.Stddev, Window: 60 * u}, {Column: 1, Func: windows.DistinctCount, Window: 60 * u}}}
	for _, s := range append(testSpecs(u), noLate) {
		cs = append(cs, newChecker(t, s))
	}
	before := windows.HotReads()
	fields := make([]windows.Field, 3)
	now := int64(0)
	for burst := range 5 {
		for i := range 2000 {
			now += rng.Int64N(3) + int64(i%2)*rng.Int64N(80) // 2,000 events over ~40 s
			ts := now
			if i%10 == 0 {
				ts -= rng.Int64N(15 * u) // within the exact view's lateness
			}
			fields[0] = windows.Field{Num: rng.Float64() * 100, Null: rng.IntN(30) == 0}
			fields[1] = windows.Field{Str: []byte(merchants[rng.IntN(len(merchants))]), Null: rng.IntN(30) == 0}
			fields[2] = windows.Field{Num: float64(rng.IntN(5)), Null: rng.IntN(3) == 0}
			for _, c := range cs {
				_ = c.add(key, ts, fields)
			}
			if i%97 == 0 {
				for _, c := range cs {
					c.read(key, now)
					c.read(key, now+rng.Int64N(700*u))
				}
			}
		}
		now += int64(burst+1) * 200 * u // quiet: the windows slide over the burst
		for _, c := range cs {
			c.read(key, now)
		}
	}
	if n := windows.HotReads() - before; n < 100 {
		t.Fatalf("only %d reads went through the hot buckets", n)
	}
}
