package bench

import (
	"strings"
	"testing"
)

// TestNoopRatios: the table says each system's closed-loop maximum as a
// fraction of the no-op server's, and how the lookup keys were drawn, and
// its p99 at half the no-op server's maximum as a multiple of the no-op
// server's there.
func TestNoopRatios(t *testing.T) {
	r := &Report{Sweeps: []Sweep{{System: "tally", MaxClosed: 40_000}, {System: "noop", MaxClosed: 80_000}, {System: "redis", MaxClosed: 0}}}
	got := r.noopRatios()
	if len(got) != 1 || !strings.Contains(got[0], "= 0.50x the no-op server's 80000/s") || !strings.Contains(got[0], "skew") {
		t.Fatalf("ratios %q", got)
	}
	r.UniformLookups = true
	if got := r.noopRatios(); len(got) != 1 || !strings.Contains(got[0], "uniformly") {
		t.Fatalf("ratios %q", got)
	}
	if got := (&Report{Sweeps: []Sweep{{System: "tally", MaxClosed: 1}}}).noopRatios(); got != nil {
		t.Fatalf("without a no-op sweep: %q", got)
	}
	r = &Report{Sweeps: []Sweep{{System: "noop", MaxClosed: 80_000, HalfNoopRate: 40_000, HalfNoopP99: 800},
		{System: "tally", MaxClosed: 60_000, HalfNoopRate: 40_000, HalfNoopP99: 1_200}}}
	if got := r.noopRatios(); len(got) != 2 || !strings.Contains(got[1], "p99 at 40000/s (half the no-op server's max) 1.20ms = 1.50x the no-op server's 800us") {
		t.Fatalf("p99 ratios %q", got)
	}
	// A system that could not serve the rate has no p99 ratio: its p99
	// there is its queue's length.
	r.Sweeps = append(r.Sweeps, Sweep{System: "redis", MaxClosed: 1_400, HalfNoopRate: 40_000, HalfNoopP99: 12_900_000, HalfNoopOverloaded: true})
	if got := r.noopRatios(); len(got) != 4 || !strings.Contains(got[3], "redis    open-loop at 40000/s (half the no-op server's max): overloaded, no p99 to compare") ||
		strings.Contains(strings.Join(got, "\n"), "16125") {
		t.Fatalf("an overloaded system's ratios %q", got)
	}
	r.Sweeps = r.Sweeps[:2]
	// Paired rounds replace the suites' single comparison with their
	// medians.
	r.Paired = []Paired{{System: "tally", Rate: 40_000, Rounds: []PairedRound{
		{NoopMax: 80_000, Max: 60_000, NoopP99: 800, P99: 1_600},
		{NoopMax: 70_000, Max: 63_000, NoopP99: 1_000, P99: 1_200},
		{NoopMax: 90_000, Max: 72_000, NoopP99: 900, P99: 2_700}}}}
	r.Paired[0].MaxRatio, r.Paired[0].P99Ratio = 0.8, 2
	got = r.noopRatios()
	if len(got) != 2 || !strings.Contains(got[0], "closed-loop max = 0.80x the no-op server's, median of 3 rounds side by side (60000/80000, 63000/70000, 72000/90000 lookups/s") ||
		!strings.Contains(got[1], "p99 at 40000/s (half the no-op server's max) = 2.00x the no-op server's, median of 3 rounds") {
		t.Fatalf("paired ratios %q", got)
	}
}

// TestMedian: the middle value, or the mean of the middle two.
func TestMedian(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{0.9, 0.75, 0.8}, 0.8}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.xs); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.xs, got, c.want)
		}
	}
}

// TestUniformLookups: by default lookup keys have the events' skew (the
// busiest user is drawn far more often than 1/users); UniformLookups draws
// them uniformly.
func TestUniformLookups(t *testing.T) {
	top := func(uniform bool) int {
		f := newFixture(Options{Seed: 1, Users: 10_000, Preload: 10, UniformLookups: uniform})
		n := map[string]int{}
		best := 0
		for _, k := range f.lookups {
			n[k.User]++
			best = max(best, n[k.User])
		}
		return best
	}
	skewed, uniform := top(false), top(true)
	if skewed < 200 || uniform > 20 {
		t.Fatalf("busiest user drawn %d times skewed, %d uniformly, of 20,000 lookups over 10,000 users", skewed, uniform)
	}
}

// TestStreamTimeNeverAhead: the ingest scenarios' event times increase
// with the events' order and never pass the wall clock, however fast the
// node takes them (a node refuses events more than 5 minutes ahead).
func TestStreamTimeNeverAhead(t *testing.T) {
	const start, wall = 1_000_000, 1_060_000 // a stream started a minute ago
	prev := int64(0)
	for _, seq := range []int64{0, 1, 15, 16, 17, 959_999, 960_000, 960_001, 100_000_000} {
		ts := streamTime(start, seq, wall)
		if ts < prev || ts > wall || ts < start {
			t.Fatalf("event %d at %d: want in [%d, %d], not before %d", seq, ts, start, wall, prev)
		}
		prev = ts
	}
	if streamTime(start, 16, wall) != start+1 || streamTime(start, 100_000_000, wall) != wall {
		t.Fatal("16 events per millisecond until the clock, then the clock")
	}
}
