package windows

import (
	"math"
)

// Money amounts are most of a fraud stream's Float values, and they are
// whole numbers of cents: the float64 nearest k/100 for an integer k, which
// is what parsing "12.34" gives. A raw record holds such a column in one
// uint32 (k, as an int32) instead of two: the value read back is
// float64(k)/100, the same float64 bit for bit (division is correctly
// rounded, so float64(k)/100 is the float64 nearest k/100). A view starts
// with every kept Float column so held (colCents); the first value of a
// column that is not a whole number of cents within ±2^31 widens that
// column for the whole view (widen), once. Snapshots hold values, not this
// layout, so a section reads into a view of either layout.

// centsNull is the cents encoding of a null value.
const centsNull = 1 << 31

// fitsCents reports whether the float64 of bits x, not null, is held
// exactly as cents in a uint32.
func fitsCents(x uint64) bool {
	f := math.Float64frombits(x)
	k := math.Round(f * 100)
	if !(k > math.MinInt32 && k <= math.MaxInt32) { // also false for NaN
		return false
	}
	return math.Float64bits(float64(int32(k))/100) == x
}

// centsOf encodes x (null, or a value fitsCents accepts) as cents.
func centsOf(x uint64) uint32 {
	if x == nullBits {
		return centsNull
	}
	return uint32(int32(math.Round(math.Float64frombits(x) * 100)))
}

// centsBits decodes a cents word to the value's float64 bits (nullBits for
// null).
func centsBits(w uint32) uint64 {
	if w == centsNull {
		return nullBits
	}
	return math.Float64bits(float64(int32(w)) / 100)
}

// uncents returns the first stored column held as cents whose value in the
// logical record rec does not fit, or -1. The caller holds a partition lock.
func (v *View) uncents(rec []uint64) int {
	for i, c := range v.colCents {
		if c && rec[1+i] != nullBits && !fitsCents(rec[1+i]) {
			return i
		}
	}
	return -1
}

// setLayout places the stored columns in a raw record by their kinds: the
// ts (one uint32 in a narrow view, else two), then each column: two uint32s
// for a float64, one for cents, a dictionary id or a null flag. It updates
// the aggregations' plans.
func (v *View) setLayout() {
	v.stride = 2
	if v.narrow {
		v.stride = 1
	}
	for i := range v.stored {
		v.colPos[i] = v.stride
		v.stride++
		if v.colWide[i] && !v.colCents[i] {
			v.stride++
		}
	}
	for k := range v.aggs {
		a := &v.aggs[k]
		i := v.colWord[a.col] - 1
		a.pos, a.wide, a.cents = v.colPos[i], v.colWide[i], v.colCents[i]
	}
}

// widen holds stored column i as a float64 from now on: it rewrites every
// partition's raw records in the new layout, with every partition locked
// (reads of the layout happen under a partition lock) and v.layout held
// (ReadPartition decodes with the layout outside partition locks). It
// happens at most once per column of a view, at the first value that needs
// it; the raw arenas come out compact.
func (v *View) widen(i int) {
	v.layout.Lock()
	defer v.layout.Unlock()
	for k := range v.parts {
		v.parts[k].mu.Lock()
	}
	defer func() {
		for k := range v.parts {
			v.parts[k].mu.Unlock()
		}
	}()
	if !v.colCents[i] {
		return // another Add widened it first
	}
	oldPos := append([]int(nil), v.colPos...)
	oldCents := append([]bool(nil), v.colCents...)
	oldStride := v.stride
	v.colCents[i] = false
	v.setLayout()
	rec := make([]uint64, v.recLen)
	for k := range v.parts {
		p := &v.parts[k]
		n := 0
		for s := range p.ents {
			if e := &p.ents[s]; e.live && e.rawCls != noBlock {
				n += blockLen(v, rawKind, e.rawCls)
			}
		}
		rw := make([]uint32, 0, n+n/8)
		for s := range p.ents {
			e := &p.ents[s]
			if !e.live || e.rawCls == noBlock {
				continue
			}
			off := len(rw)
			rw = rw[:off+blockLen(v, rawKind, e.rawCls)]
			c := classCap[e.rawCls]
			for j := range e.rawLen {
				src := (e.rawHead + j) % c
				at := int(e.rawOff) + int(src)*oldStride
				p.getCols(oldPos, v.colWide, oldCents, at, rec)
				// The ts words keep their encoding (and the entity its base).
				dst := off + int(j)*v.stride
				copy(rw[dst:dst+v.colPos[0]], p.rw[at:at+oldPos[0]])
				p.putCols(v, rw[dst:dst+v.stride], rec)
			}
			e.rawOff, e.rawHead = uint32(off), 0
		}
		p.rw, p.deadR = rw, 0
		for f := rawKind; f < len(p.free); f += 2 {
			p.free[f] = p.free[f][:0]
		}
	}
}
