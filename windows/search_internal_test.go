package windows

import (
	"math/rand/v2"
	"testing"

	"github.com/tally-ml/tally/ring"
)

// TestRawSearchIsTheFirstAtOrAfter: rawSearch gives the first raw event at
// or after ts, as a scan of the ring finds it, over
// entities of 1 to 2,000 events whose times are even, bursty, repeated or
// late (inserted behind newer ones), in rings that have wrapped (old
// events dropped as the entity's newest time moves on), in views whose
// raw ts are offsets from a base (a day's window) and in views that keep
// them whole (40 days: past 2^31 ms of horizon).
func TestRawSearchIsTheFirstAtOrAfter(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	const day = 86_400_000
	var wrapped, long, wide int
	for trial := range 300 {
		w := []int64{day, 40 * day}[trial/3%2]
		v, err := New(Spec{Name: "search", Columns: []Column{{Name: "amt", Kind: Float}}, Lateness: day / 4,
			Aggregations: []Aggregation{{Column: 0, Func: Count, Window: w}}})
		if err != nil {
			t.Fatal(err)
		}
		key := []byte("k")
		n := 1 + rng.IntN([]int{20, 200, 2000}[trial%3])
		ts := int64(10 * day)
		for range n {
			switch rng.IntN(8) {
			case 0: // a burst: the same or the next ms
				ts += rng.Int64N(2)
			case 1: // a late event, behind newer ones
				if err := v.Add(key, ts-rng.Int64N(day/8), []Field{{Num: 1}}); err != nil {
					t.Fatal(err)
				}
				continue
			case 2: // a gap
				ts += rng.Int64N(day / 2)
			default:
				ts += rng.Int64N(3 * day / int64(n+1))
			}
			if err := v.Add(key, ts, []Field{{Num: 1}}); err != nil {
				t.Fatal(err)
			}
		}
		h := v.hash(key)
		p := &v.parts[ring.Partition(h)]
		slot, ok := p.find(h, key)
		if !ok {
			t.Fatal("the key is not held")
		}
		e := &p.ents[slot]
		if e.rawHead != 0 {
			wrapped++
		}
		if e.rawLen > 16 {
			long++
		}
		if !v.narrow {
			wide++
		}
		times := make([]int64, e.rawLen)
		for i := range times {
			times[i] = p.rawTs(v, e, p.rawAt(e, uint32(i)))
			if i > 0 && times[i] < times[i-1] {
				t.Fatalf("trial %d: raw events out of order at %d", trial, i)
			}
		}
		probe := func(q int64) {
			want := uint32(0)
			for want < uint32(len(times)) && times[want] < q {
				want++
			}
			if got := p.rawSearch(v, e, q); got != want {
				t.Fatalf("trial %d (%d events, head %d): rawSearch(%d) = %d, want %d", trial, len(times), e.rawHead, q, got, want)
			}
		}
		for _, x := range times {
			probe(x - 1)
			probe(x)
			probe(x + 1)
		}
		for range 200 {
			probe(times[0] - day + rng.Int64N(times[len(times)-1]-times[0]+2*day))
		}
	}
	if wrapped < 30 || long < 50 || wide < 100 {
		t.Fatalf("%d of the rings wrapped, %d had more than 16 events and %d were in wide views: the cases are not covered", wrapped, long, wide)
	}
}
