package windows

import (
	"encoding/binary"
	"math"
	"math/bits"
	"slices"
)

// Raw records are bit strings in a partition's raw arena, a whole number of
// bytes each: the ts (in a narrow view an offset from the entity's base in
// View.tsBits bits, else the int64), then each stored column in the fewest
// bits that have held every value the partition has accepted in it:
//
//   - a Float column only counted: a null flag, one bit;
//   - a String column: its dictionary id, in as many bits as the greatest
//     id needs (all ones is null);
//   - a Float column: whole cents, signed, in as many bits as the greatest
//     magnitude needs, up to 32 (the least value, -2^(bits-1), is null);
//     else the float64, in 64 bits at a byte boundary.
//
// A card holder's event of the default repo (a ts in a 1-day view, an amount
// under $655.36, one of a few thousand merchants) is 27 + 17 + 13 = 57 bits:
// 8 bytes.
//
// Money amounts are most of a fraud stream's Float values, and they are
// whole numbers of cents: the float64 nearest k/100 for an integer k, which
// is what parsing "12.34" gives. A raw record holds such a value as k: the
// value read back is float64(k)/100, the same float64 bit for bit (division
// is correctly rounded, so float64(k)/100 is the float64 nearest k/100).
//
// A view starts with every column in its narrowest field; the first value
// a column's field cannot hold in a partition widens that column in that
// partition (partition.widen) to the fewest bits that hold it. A column
// widens at most 32 times per partition, and in practice a few times
// early on: ids and amounts grow with the values seen, each new bit twice
// as rare as the last. Snapshots hold values, not layouts: a section's raw
// events decode as logical records, then encode in the narrowest layout
// that holds them all (encodeRaws).

// kind is the encoding of a stored column's field.
type kind uint8

const (
	kFlag  kind = iota // 1 bit: 0 for a value, 1 for null
	kID                // a dictionary id; all ones for null
	kCents             // whole cents, two's complement; -2^(bits-1) for null
	kFloat             // the float64's bits (nullBits for null), byte-aligned
)

// Starting widths, in bits.
const (
	startIDBits    = 8
	startCentsBits = 16
	maxBits        = 32 // of an id or of cents
)

// field is a stored column's encoding and place in a raw record: bits wide,
// from bit shift of the little-endian uint64 at byte off of the record.
type field struct {
	kind  kind
	bits  uint8
	shift uint8
	off   int
}

// narrowestField is the field a stored column starts with: str for a String
// column, wide for a Float column whose values are read (else it is only
// counted).
func narrowestField(str, wide bool) field {
	switch {
	case str:
		return field{kind: kID, bits: startIDBits}
	case wide:
		return field{kind: kCents, bits: startCentsBits}
	}
	return field{kind: kFlag, bits: 1}
}

// mask is the field's bits, at the bottom of a uint64 (kFloat: all of it).
func (f *field) mask() uint64 { return 1<<f.bits - 1 }

// holds reports whether f holds the logical value x.
func (f *field) holds(x uint64) bool {
	switch f.kind {
	case kID:
		return x == nullID || x < f.mask()
	case kCents:
		b, ok := centsBits(x)
		return ok && b <= int(f.bits)
	}
	return true
}

// widerFor returns the narrowest field wider than f that holds x.
func (f field) widerFor(x uint64) field {
	switch f.kind {
	case kID:
		f.bits = uint8(max(int(f.bits)+1, bits.Len64(x+1)))
	case kCents:
		if b, ok := centsBits(x); ok && b <= maxBits {
			f.bits = uint8(max(int(f.bits)+1, b))
		} else {
			f = field{kind: kFloat, bits: 64}
		}
	}
	return f
}

// centsBits returns the bits of the narrowest kCents field that holds x: ok
// is false if the float64 of bits x is not a whole number of cents k with
// |k| < 2^31 read back as float64(k)/100 bit for bit. A null needs none.
func centsBits(x uint64) (int, bool) {
	if x == nullBits {
		return 1, true
	}
	f := math.Float64frombits(x)
	k := math.Round(f * 100)
	if !(k > -(1<<31) && k < 1<<31) { // also false for NaN
		return 0, false
	}
	if math.Float64bits(float64(int32(k))/100) != x {
		return 0, false
	}
	m := int32(k)
	if m < 0 {
		m = -m
	}
	// -2^(b-1) < k < 2^(b-1): the least value stays free for null.
	return bits.Len32(uint32(m)) + 1, true
}

// cents returns the whole cents of the float64 of bits x, which centsBits
// accepted.
func cents(x uint64) int64 { return int64(math.Round(math.Float64frombits(x) * 100)) }

// centsFloat returns the float64 bits of k cents.
func centsFloat(k int64) uint64 { return math.Float64bits(float64(k) / 100) }

// rawPad is the bytes a raw arena holds after its last block, so that a
// field anywhere in a record loads as the uint64 at its first byte (word):
// the bytes after the field, up to 7, are its record's, the next record's
// or the pad's. Every raw arena that holds a block ends with the pad
// (allocBlock, compact, widen).
const rawPad = 7

// word returns the little-endian uint64 at b[i:] (see rawPad).
func word(b []byte, i int) uint64 { return binary.LittleEndian.Uint64(b[i:]) }

// putWord stores w as the little-endian uint64 at b[i:] (see rawPad).
func putWord(b []byte, i int, w uint64) { binary.LittleEndian.PutUint64(b[i:], w) }

// get decodes the logical value of f in the raw record at offset at of b.
func (f *field) get(b []byte, at int) uint64 {
	w := word(b, at+f.off)
	switch f.kind {
	case kFlag:
		if w>>f.shift&1 != 0 {
			return nullID
		}
		return 0
	case kID:
		if x := w >> f.shift & f.mask(); x != f.mask() {
			return x
		}
		return nullID
	case kCents:
		k := int64(w<<(64-f.shift-f.bits)) >> (64 - f.bits)
		if k == -1<<(f.bits-1) {
			return nullBits
		}
		return centsFloat(k)
	}
	return w
}

// cents returns the whole cents of the value of f, a kCents field, in the
// raw record at offset at of b; ok is false for null.
func (f *field) cents(b []byte, at int) (k int64, ok bool) {
	k = int64(word(b, at+f.off)<<(64-f.shift-f.bits)) >> (64 - f.bits)
	return k, k != -1<<(f.bits-1)
}

// isNull reports whether f is null in the raw record at offset at of b.
func (f *field) isNull(b []byte, at int) bool {
	w := word(b, at+f.off)
	switch f.kind {
	case kFlag:
		return w>>f.shift&1 != 0
	case kID:
		return w>>f.shift&f.mask() == f.mask()
	case kCents:
		return w>>f.shift&f.mask() == 1<<(f.bits-1)
	}
	return w == nullBits
}

// put encodes the logical value x, which f holds, into the raw record at
// offset at of b. The bits outside f do not change.
func (f *field) put(b []byte, at int, x uint64) {
	i := at + f.off
	if f.kind == kFloat {
		putWord(b, i, x)
		return
	}
	var u uint64
	switch f.kind {
	case kFlag:
		if x != 0 {
			u = 1
		}
	case kID:
		u = x & f.mask() // nullID: all ones
	case kCents:
		k := int64(-1) << (f.bits - 1)
		if x != nullBits {
			k = cents(x)
		}
		u = uint64(k) & f.mask()
	}
	f.putBits(b, at, u)
}

// bitsAt returns f's bits in the raw record at offset at of b.
func (f *field) bitsAt(b []byte, at int) uint64 { return word(b, at+f.off) >> f.shift & f.mask() }

// putBits stores u, at most f.bits wide, as f's bits in the raw record at
// offset at of b. The bits outside f do not change.
func (f *field) putBits(b []byte, at int, u uint64) {
	i := at + f.off
	if f.kind == kFloat {
		putWord(b, i, u)
		return
	}
	putWord(b, i, word(b, i)&^(f.mask()<<f.shift)|u<<f.shift)
}

// recode returns the bits in field g of the value whose bits in field f,
// of the same kind, are u (g holds the value): for ids and cents the same
// number (null for null) without decoding it to a logical value.
func (f *field) recode(g *field, u uint64) uint64 {
	switch f.kind {
	case kID:
		if u == f.mask() {
			return g.mask()
		}
	case kCents:
		k := int64(u<<(64-f.bits)) >> (64 - f.bits)
		if k == -1<<(f.bits-1) {
			return 1 << (g.bits - 1)
		}
		return uint64(k) & g.mask()
	}
	return u
}

// layout is a partition's raw record layout: the ts (View.tsBits bits in a
// narrow view, else 64), then each stored column's field. It is immutable
// and shared: New gives every partition the view's narrowest layout, and a
// partition that meets a value its layout cannot hold widens to a new one
// of its own (partition.widen), so a widening rewrites one partition's raw
// records, about a thousandth of the view, while the others go on.
type layout struct {
	stride int     // bytes per raw record
	cols   []field // stored column i -> its field
}

// newLayout places fields cols after a ts of tsBits bits: each at the next
// bit, a kFloat at the next byte.
func newLayout(tsBits int, cols []field) *layout {
	l := &layout{cols: cols}
	pos := tsBits
	for i := range cols {
		f := &cols[i]
		if f.kind == kFloat {
			pos = (pos + 7) &^ 7
			f.bits = 64
		}
		f.off, f.shift = pos>>3, uint8(pos&7)
		pos += int(f.bits)
	}
	l.stride = (pos + 7) >> 3
	return l
}

// misfit returns the first stored column whose field in l cannot hold its
// value in the logical record rec, or -1.
func (l *layout) misfit(rec []uint64) int {
	for i := range l.cols {
		if !l.cols[i].holds(rec[1+i]) {
			return i
		}
	}
	return -1
}

// wider returns l with stored column i in the narrowest wider field that
// holds x.
func (l *layout) wider(tsBits, i int, x uint64) *layout {
	cols := slices.Clone(l.cols)
	cols[i] = cols[i].widerFor(x)
	return newLayout(tsBits, cols)
}

// widen gives p a layout in which stored column i holds x (the narrowest
// wider field that does) and rewrites p's raw records in it. The caller
// holds p's lock and, for a view's partition, v.wmu (AddBatch's prefetch
// stages read layouts without partition locks).
func (p *partition) widen(v *View, i int, x uint64) {
	p.relayout(v, p.lay.wider(v.tsBits, i, x))
}

// relayout rewrites p's raw records in layout l, which holds their values,
// and makes it p's; the raw arena comes out compact. A column whose field
// keeps its kind moves as stored (see recode). The caller holds what
// widen's does.
func (p *partition) relayout(v *View, l *layout) {
	old := p.lay
	p.lay = l
	same := true // every column keeps its kind
	for i := range l.cols {
		same = same && l.cols[i].kind == old.cols[i].kind
	}
	rec := make([]uint64, v.recLen)
	n := 0
	for s := range p.ents {
		if e := &p.ents[s]; e.live && e.rawCls != noBlock {
			n += p.blockLen(v, rawKind, e.rawCls)
		}
	}
	rw := make([]byte, n+rawPad, n+n/8+rawPad)
	off := 0
	for s := range p.ents {
		e := &p.ents[s]
		if !e.live || e.rawCls == noBlock {
			continue
		}
		c := classCap[e.rawCls]
		for j := range e.rawLen {
			src := (e.rawHead + j) % c
			at := int(e.rawOff) + int(src)*old.stride
			// The ts keeps its encoding (and the entity its base).
			dst := off + int(j)*l.stride
			v.putTsBits(rw, dst, v.tsBits64(p.rw, at))
			if same {
				for i := range l.cols {
					f, g := &old.cols[i], &l.cols[i]
					g.putBits(rw, dst, f.recode(g, f.bitsAt(p.rw, at)))
				}
				continue
			}
			p.getCols(old, at, rec)
			p.putCols(rw, dst, rec)
		}
		e.rawOff, e.rawHead = uint32(off), 0
		off += p.blockLen(v, rawKind, e.rawCls)
	}
	p.rw, p.deadR = rw, 0
	for f := rawKind; f < len(p.free); f += 2 {
		p.free[f] = nil
	}
}

// tsBits64 returns the ts field of the raw record at offset at of b as it
// is stored: an offset from the entity's base in a narrow view, else the
// int64's bits.
func (v *View) tsBits64(b []byte, at int) uint64 {
	return word(b, at) & v.tsMask
}

// putTsBits stores x as the ts field of the raw record at offset at of b.
func (v *View) putTsBits(b []byte, at int, x uint64) {
	if v.tsMask == math.MaxUint64 {
		putWord(b, at, x)
		return
	}
	putWord(b, at, word(b, at)&^v.tsMask|x)
}

// tsWidth returns the bits of a narrow view's ts offsets and the alignment
// of their bases (View.base) for a horizon h <= 2^31 ms: the fewest bits b
// such that some power of two a >= h/4 has h + a <= 2^b. Every raw ts in
// (newest - h, newest] is then an offset below 2^b from newest - h aligned
// down to a; the base moves, and the offsets are re-encoded (advance), at
// most once in a of the entity's time, so at most 4 times per event held
// over its life. A 1-day view (with 5 minutes of lateness) has 27 bits and
// a = 2^25 ms (9.3 hours).
func tsWidth(h int64) (b int, a int64) {
	for b = bits.Len64(uint64(h)); ; b++ {
		spare := int64(1)<<b - h
		a = int64(1) << (bits.Len64(uint64(spare)) - 1)
		if a >= h/4 || b >= 32 {
			return b, a
		}
	}
}
