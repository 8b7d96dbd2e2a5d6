package windows

import (
	"math/rand/v2"
	"testing"
)

// TestNarrowCentsIsWideCents: the two-accumulator loop of a window whose
// sum of squares fits 64 bits gives the moments the 128-bit loop does
// (count, sum, sum of squares, min, max), for fields of several widths and
// offsets, values of both signs up to the field's limit, nulls, records in
// two spans (a ring that wraps) of odd and even lengths, and none.
func TestNarrowCentsIsWideCents(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for round := range 400 {
		width := []uint8{2, 8, 17, 24, 31, 32}[round%6]
		shift := uint8(rng.IntN(64 - int(width) + 1))
		st := 8 + 4*rng.IntN(3)
		n := rng.IntN(300)
		if lim := 66 - 2*int(width); lim < 62 && n >= 1<<lim {
			n = 1<<lim - 1 // what rawCents sends narrowCents
		}
		rw := make([]byte, n*st+rawPad)
		null := int64(-1) << (width - 1)
		for i := range n {
			k := rng.Int64N(1<<(width-1)) * (1 - 2*rng.Int64N(2)) // |k| < 2^(width-1)
			if rng.IntN(8) == 0 {
				k = null
			}
			w := word(rw, i*st) &^ ((1<<width - 1) << shift)
			putWord(rw, i*st, w|(uint64(k)&(1<<width-1))<<shift)
		}
		cut := 0
		if n > 0 {
			cut = rng.IntN(n + 1)
		}
		spans := [2][2]int{{cut * st, n * st}, {0, cut * st}}
		lsh, rsh := 64-shift-width, 64-width
		want := wideCents(rw, spans, st, 0, lsh, rsh, null)
		if want.sqHi != 0 {
			t.Fatalf("round %d: the sum of squares needs 128 bits: a test of the narrow loop must not", round)
		}
		if got := narrowCents(rw, spans, st, 0, lsh, rsh, null); got != want {
			t.Fatalf("round %d (%d bits at %d, stride %d, %d records cut at %d): narrow %+v, wide %+v", round, width, shift, st, n, cut, got, want)
		}
	}
}
