package windows

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"
)

// TestFieldRoundTrip puts random values into fields of every kind, width
// and bit position of a record among random bytes: each reads back as put,
// null as null, and no bit outside the field changes.
func TestFieldRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20_000 {
		var f field
		var x uint64
		switch k := kind(rng.IntN(4)); k {
		case kFlag:
			f = field{kind: kFlag, bits: 1}
			x = []uint64{0, nullID}[rng.IntN(2)]
		case kID:
			f = field{kind: kID, bits: uint8(1 + rng.IntN(maxBits))}
			x = rng.Uint64N(f.mask()) // below all ones
			if rng.IntN(8) == 0 {
				x = nullID
			}
		case kCents:
			f = field{kind: kCents, bits: uint8(2 + rng.IntN(maxBits-1))}
			lim := int64(1)<<(f.bits-1) - 1
			x = centsFloat(rng.Int64N(2*lim+1) - lim)
			if rng.IntN(8) == 0 {
				x = nullBits
			}
		case kFloat:
			f = field{kind: kFloat, bits: 64}
			x = math.Float64bits(rng.NormFloat64())
		}
		if !f.holds(x) {
			t.Fatalf("%+v does not hold %#x", f, x)
		}
		l := newLayout(rng.IntN(40), []field{f})
		f = l.cols[0]
		b := make([]byte, 2*l.stride+rawPad)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		before := bytes.Clone(b)
		at := l.stride * rng.IntN(2)
		f.put(b, at, x)
		if got := f.get(b, at); got != x {
			t.Fatalf("%+v: put %#x, got %#x", f, x, got)
		}
		if null := x == nullID || x == nullBits; f.isNull(b, at) != null {
			t.Fatalf("%+v: %#x: isNull %v", f, x, !null)
		}
		for i := range 8 * len(b) {
			in := i >= 8*(at+f.off)+int(f.shift) && i < 8*(at+f.off)+int(f.shift)+int(f.bits)
			if !in && (b[i/8]^before[i/8])>>(i%8)&1 != 0 {
				t.Fatalf("%+v at %d: bit %d outside the field changed", f, at, i)
			}
		}
		// Moved as stored into a field of the same kind, as narrow as the
		// value allows or wider (fit and relayout), it reads the same.
		g := f
		if f.kind == kID || f.kind == kCents {
			g = field{kind: f.kind, bits: 2}
			if !g.holds(x) {
				g = g.widerFor(x)
			}
			g.bits += uint8(rng.IntN(maxBits - int(g.bits) + 1))
		}
		if !g.holds(x) {
			t.Fatalf("%+v does not hold %#x", g, x)
		}
		gl := newLayout(rng.IntN(40), []field{g})
		g = gl.cols[0]
		c := make([]byte, gl.stride+rawPad)
		g.putBits(c, 0, f.recode(&g, f.bitsAt(b, at)))
		if got := g.get(c, 0); got != x {
			t.Fatalf("%+v recoded into %+v: %#x, want %#x", f, g, got, x)
		}
	}
}

// TestFieldWidens: a field widens to the fewest bits that hold a value it
// cannot, and cents past 32 bits, or not whole, to a float64.
func TestFieldWidens(t *testing.T) {
	for _, c := range []struct {
		f    field
		x    uint64
		want field
	}{
		{field{kind: kID, bits: 8}, 255, field{kind: kID, bits: 9}},
		{field{kind: kID, bits: 8}, 70_000, field{kind: kID, bits: 17}},
		{field{kind: kID, bits: 8}, math.MaxUint32 - 1, field{kind: kID, bits: 32}},
		{field{kind: kCents, bits: 16}, math.Float64bits(327.68), field{kind: kCents, bits: 17}},
		{field{kind: kCents, bits: 16}, math.Float64bits(-100_000), field{kind: kCents, bits: 25}},
		{field{kind: kCents, bits: 16}, math.Float64bits(21_474_836.47), field{kind: kCents, bits: 32}},
		{field{kind: kCents, bits: 16}, math.Float64bits(21_474_836.48), field{kind: kFloat, bits: 64}},
		{field{kind: kCents, bits: 16}, math.Float64bits(0.125), field{kind: kFloat, bits: 64}},
	} {
		if c.f.holds(c.x) {
			t.Fatalf("%+v holds %#x", c.f, c.x)
		}
		got := c.f.widerFor(c.x)
		if got.kind != c.want.kind || got.bits != c.want.bits {
			t.Fatalf("%+v widened for %#x: %+v, want %+v", c.f, c.x, got, c.want)
		}
		if !got.holds(c.x) {
			t.Fatalf("%+v does not hold %#x", got, c.x)
		}
	}
	if f := (field{kind: kCents, bits: 16}); !f.holds(math.Float64bits(327.67)) || !f.holds(math.Float64bits(-327.67)) || f.holds(math.Float64bits(-327.68)) {
		t.Fatal("16 bits of cents hold ±327.67 and not -327.68 (null)")
	}
}

// TestTsWidth: for horizons up to 2^31 ms, every ts offset fits the width
// (h + a <= 2^b), the base moves at most once in a quarter of the horizon
// (a >= h/4), and a is a power of two.
func TestTsWidth(t *testing.T) {
	const day = 86_400_000
	if b, a := tsWidth(day + 300_000); b != 27 || a != 1<<25 {
		t.Fatalf("a 1-day view (and 5 minutes): %d bits, bases aligned to %d ms; want 27, 2^25", b, a)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 100_000 {
		h := int64(1) + rng.Int64N(1<<31)
		if i < 64 {
			h = int64(1) << (i % 32)
		}
		b, a := tsWidth(h)
		if b > 32 || h+a > int64(1)<<b || a < h/4 || a&(a-1) != 0 {
			t.Fatalf("horizon %d: %d bits, bases aligned to %d", h, b, a)
		}
	}
}
