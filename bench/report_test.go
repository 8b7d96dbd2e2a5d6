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
