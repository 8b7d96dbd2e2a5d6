package windows

import (
	"encoding/binary"
	"math"
	"slices"
)

// Raw records are bytes in a partition's raw arena: the ts (a uint32
// offset from the entity's base in a narrow view, else the int64), then
// each stored column in the narrowest encoding that has held every value
// the partition has accepted in it:
//
//   - a Float column only counted: a null flag, one byte;
//   - a String column: its dictionary id in two bytes while the ids fit
//     (below 0xffff: about 65,000 distinct values, spread over the
//     dictionary's shards), else four;
//   - a Float column: whole cents in three bytes (within ±83,886.07), else
//     whole cents in four (within ±21,474,836.47), else the float64 in
//     eight.
//
// Money amounts are most of a fraud stream's Float values, and they are
// whole numbers of cents: the float64 nearest k/100 for an integer k, which
// is what parsing "12.34" gives. A raw record holds such a value as k: the
// value read back is float64(k)/100, the same float64 bit for bit (division
// is correctly rounded, so float64(k)/100 is the float64 nearest k/100).
//
// A view starts with every column in its narrowest encoding; the first
// value a column's encoding cannot hold in a partition widens that column
// in that partition (partition.widen), to the narrowest encoding that holds
// it. A column widens at most twice per partition. Snapshots hold values,
// not layouts, so a section reads into a partition of any layout (widening
// it first if it must).

// enc is the encoding of a stored column in raw records.
type enc uint8

const (
	encFlag    enc = iota // 1 byte: 0 for a value, 0xff for null
	encID16               // 2 bytes: a dictionary id below 0xffff; 0xffff for null
	encID32               // 4 bytes: a dictionary id (nullID for null)
	encCents24            // 3 bytes: whole cents within ±(2^23 - 1); -2^23 for null
	encCents32            // 4 bytes: whole cents within ±(2^31 - 1); -2^31 for null
	encFloat              // 8 bytes: the float64's bits (nullBits for null)
)

// encSize is the bytes of each encoding.
var encSize = [...]int{encFlag: 1, encID16: 2, encID32: 4, encCents24: 3, encCents32: 4, encFloat: 8}

// narrowestEnc is the encoding a stored column starts with: str for a
// String column, wide for a Float column whose values are read (else it is
// only counted).
func narrowestEnc(str, wide bool) enc {
	switch {
	case str:
		return encID16
	case wide:
		return encCents24
	}
	return encFlag
}

// holds reports whether encoding e holds the logical value x.
func (e enc) holds(x uint64) bool {
	switch e {
	case encID16:
		return x == nullID || x < 0xffff
	case encCents24:
		return x == nullBits || fitsCents(x, 23)
	case encCents32:
		return x == nullBits || fitsCents(x, 31)
	}
	return true
}

// widerFor returns the narrowest encoding wider than e that holds x.
func (e enc) widerFor(x uint64) enc {
	for w := e + 1; ; w++ {
		if w.holds(x) {
			return w
		}
	}
}

// fitsCents reports whether the float64 of bits x, not null, is a whole
// number of cents k with |k| < 2^bits, read back as float64(k)/100 bit for
// bit.
func fitsCents(x uint64, bits uint) bool {
	f := math.Float64frombits(x)
	k := math.Round(f * 100)
	lim := float64(int64(1) << bits)
	if !(k > -lim && k < lim) { // also false for NaN
		return false
	}
	return math.Float64bits(float64(int32(k))/100) == x
}

// cents returns the whole cents of the float64 of bits x, which fitsCents
// accepted.
func cents(x uint64) int32 { return int32(math.Round(math.Float64frombits(x) * 100)) }

// centsFloat returns the float64 bits of k cents.
func centsFloat(k int32) uint64 { return math.Float64bits(float64(k) / 100) }

// get decodes the logical value encoded as e at the start of b.
func (e enc) get(b []byte) uint64 {
	switch e {
	case encFlag:
		if b[0] != 0 {
			return nullID
		}
		return 0
	case encID16:
		if w := binary.LittleEndian.Uint16(b); w != 0xffff {
			return uint64(w)
		}
		return nullID
	case encID32:
		return uint64(binary.LittleEndian.Uint32(b))
	case encCents24:
		return getCents24(b)
	case encCents32:
		w := binary.LittleEndian.Uint32(b)
		if w == 1<<31 {
			return nullBits
		}
		return centsFloat(int32(w))
	}
	return binary.LittleEndian.Uint64(b)
}

// getCents24 is get for encCents24, small enough to inline in the loops
// where whole cents are the usual case.
func getCents24(b []byte) uint64 {
	w := uint32(b[2])<<24 | uint32(b[1])<<16 | uint32(b[0])<<8
	if w == 1<<31 {
		return nullBits
	}
	return centsFloat(int32(w) >> 8)
}

// isNull reports whether the value encoded as e at the start of b is null,
// without decoding it.
func (e enc) isNull(b []byte) bool {
	switch e {
	case encFlag:
		return b[0] != 0
	case encID16:
		return binary.LittleEndian.Uint16(b) == 0xffff
	case encID32:
		return binary.LittleEndian.Uint32(b) == nullID
	case encCents24:
		_ = b[2]
		return b[0] == 0 && b[1] == 0 && b[2] == 0x80
	case encCents32:
		return binary.LittleEndian.Uint32(b) == 1<<31
	}
	return binary.LittleEndian.Uint64(b) == nullBits
}

// put encodes the logical value x, which e holds, at the start of b.
func (e enc) put(b []byte, x uint64) {
	switch e {
	case encFlag:
		b[0] = 0
		if x != 0 {
			b[0] = 0xff
		}
	case encID16:
		binary.LittleEndian.PutUint16(b, uint16(x)) // nullID: 0xffff
	case encID32:
		binary.LittleEndian.PutUint32(b, uint32(x))
	case encCents24:
		w := uint32(1 << 23)
		if x != nullBits {
			w = uint32(cents(x)) & (1<<24 - 1)
		}
		_ = b[2]
		b[0], b[1], b[2] = byte(w), byte(w>>8), byte(w>>16)
	case encCents32:
		w := uint32(1 << 31)
		if x != nullBits {
			w = uint32(cents(x))
		}
		binary.LittleEndian.PutUint32(b, w)
	default:
		binary.LittleEndian.PutUint64(b, x)
	}
}

// layout is a partition's raw record layout: the ts (four bytes in a
// narrow view, else eight), then each stored column in its encoding. It is
// immutable and shared: New gives every partition the view's narrowest
// layout, and a partition that meets a value its layout cannot hold
// widens to a new one of its own (partition.widen), so a widening
// rewrites one partition's raw records, about a thousandth of the view,
// while the others go on.
type layout struct {
	stride int   // bytes per raw record
	pos    []int // stored column i -> its position in a raw record, in bytes
	enc    []enc // stored column i -> its encoding
}

// newLayout places the stored columns of encodings encs after the ts.
func newLayout(narrow bool, encs []enc) *layout {
	l := &layout{stride: 8, pos: make([]int, len(encs)), enc: encs}
	if narrow {
		l.stride = 4
	}
	for i, e := range encs {
		l.pos[i] = l.stride
		l.stride += encSize[e]
	}
	return l
}

// misfit returns the first stored column whose encoding in l cannot hold
// its value in the logical record rec, or -1.
func (l *layout) misfit(rec []uint64) int {
	for i, e := range l.enc {
		if !e.holds(rec[1+i]) {
			return i
		}
	}
	return -1
}

// wider returns l with stored column i in the narrowest wider encoding
// that holds x.
func (l *layout) wider(narrow bool, i int, x uint64) *layout {
	encs := slices.Clone(l.enc)
	encs[i] = encs[i].widerFor(x)
	return newLayout(narrow, encs)
}

// widen gives p a layout in which stored column i holds x (the narrowest
// wider encoding that does) and rewrites p's raw records in it; the raw
// arena comes out compact. The caller holds p's lock and, for a view's
// partition, v.wmu (AddBatch's prefetch stages read layouts without
// partition locks). It happens at most twice per column of a partition,
// at the first value that needs it.
func (p *partition) widen(v *View, i int, x uint64) {
	old := p.lay
	p.lay = old.wider(v.narrow, i, x)
	rec := make([]uint64, v.recLen)
	n := 0
	for s := range p.ents {
		if e := &p.ents[s]; e.live && e.rawCls != noBlock {
			n += p.blockLen(v, rawKind, e.rawCls)
		}
	}
	rw := make([]byte, 0, n+n/8)
	for s := range p.ents {
		e := &p.ents[s]
		if !e.live || e.rawCls == noBlock {
			continue
		}
		off := len(rw)
		rw = rw[:off+p.blockLen(v, rawKind, e.rawCls)]
		c := classCap[e.rawCls]
		for j := range e.rawLen {
			src := (e.rawHead + j) % c
			at := int(e.rawOff) + int(src)*old.stride
			p.getCols(old, at, rec)
			// The ts bytes keep their encoding (and the entity its base).
			dst := off + int(j)*p.lay.stride
			copy(rw[dst:dst+p.lay.pos[0]], p.rw[at:at+old.pos[0]])
			p.putCols(rw[dst:dst+p.lay.stride], rec)
		}
		e.rawOff, e.rawHead = uint32(off), 0
	}
	p.rw, p.deadR = rw, 0
	for f := rawKind; f < len(p.free); f += 2 {
		p.free[f] = nil
	}
}
