package windows

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestRawSpansWalkRawAt: the two runs rawSpans gives for every range of
// every entity's raw events are the offsets rawAt gives, in order, also
// where a ring wraps (expiry moves its head, so after hours of events most
// do).
func TestRawSpansWalkRawAt(t *testing.T) {
	v, err := New(Spec{Name: "s", Columns: []Column{{Name: "amt", Kind: Float}},
		Aggregations: []Aggregation{{Column: 0, Func: Sum, Window: 600_000}}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	now := int64(1_000_000)
	for range 20_000 {
		now += rng.Int64N(2_000)
		key := []byte(fmt.Sprintf("u%d", rng.IntN(30)))
		if err := v.Add(key, now, []Field{{Num: float64(rng.IntN(1000))}}); err != nil {
			t.Fatal(err)
		}
	}
	wrapped, checked := 0, 0
	for pi := range v.parts {
		p := &v.parts[pi]
		for ei := range p.ents {
			e := &p.ents[ei]
			if !e.live || e.rawLen == 0 {
				continue
			}
			if e.rawHead+e.rawLen > classCap[e.rawCls] {
				wrapped++
			}
			for i0 := uint32(0); i0 <= e.rawLen; i0++ {
				for i1 := i0; i1 <= e.rawLen; i1++ {
					var got []int
					for _, sp := range p.rawSpans(e, i0, i1) {
						for at := sp[0]; at < sp[1]; at += p.lay.stride {
							got = append(got, at)
						}
					}
					if len(got) != int(i1-i0) {
						t.Fatalf("[%d, %d) of %d: %d offsets", i0, i1, e.rawLen, len(got))
					}
					for k, at := range got {
						if want := p.rawAt(e, i0+uint32(k)); at != want {
							t.Fatalf("[%d, %d): offset %d is %d, rawAt says %d", i0, i1, k, at, want)
						}
					}
					checked++
				}
			}
		}
	}
	if wrapped == 0 || checked == 0 {
		t.Fatalf("%d ranges checked, %d wrapped rings: the test needs both", checked, wrapped)
	}
	t.Logf("%d ranges, %d wrapped rings", checked, wrapped)
}
