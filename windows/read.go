package windows

import (
	"math"
	"math/bits"
	"slices"

	"github.com/tally-ml/tally/ring"
)

// Read appends one Value per spec aggregation, in order, for entity key as of
// time t (epoch ms) to dst and returns it. An entity never seen (or expired)
// reads as an empty window. Reads are exact for t >= newest - Lateness, where
// newest is the entity's newest event, and always for t >= watermark -
// Lateness (see package doc). Read is safe for concurrent use; it allocates
// nothing for scalar functions (last_n and last_distinct_n allocate their
// lists).
func (v *View) Read(key []byte, t int64, dst []Value) []Value {
	return v.ReadHashed(v.hash(key), key, t, dst)
}

// ReadHashed is Read for a caller that has the key's hash, h =
// ring.Hash(key): a lookup reads several views of one entity and hashes
// its key once.
func (v *View) ReadHashed(h uint64, key []byte, t int64, dst []Value) []Value {
	return v.ReadRange(h, key, t, 0, len(v.aggs), dst)
}

// ReadRange is ReadHashed for the aggregations [from, to) of the spec only:
// a view that holds several feature views of one entity (a store's group)
// is read one feature view at a time. It appends to-from Values; a range
// outside the spec's aggregations is a programming error (it panics).
func (v *View) ReadRange(h uint64, key []byte, t int64, from, to int, dst []Value) []Value {
	aggs := v.aggs[from:to]
	n := len(dst)
	dst = slices.Grow(dst, len(aggs))[:n+len(aggs)]
	out := dst[n:]
	// Clamping keeps every window identical while t-W cannot overflow.
	t = min(max(t, MinTime-1), MaxTime+2*MaxSpan)
	p := &v.parts[ring.Partition(h)]
	p.mu.Lock()
	slot, ok := p.find(h, key)
	if !ok {
		p.mu.Unlock()
		for i := range aggs {
			out[i] = emptyValue(aggs[i].fn)
		}
		return dst
	}
	e := &p.ents[slot]
	rc := &p.rc // its arrays hold the last read's entries, which nw and nm hide
	th := p.tl(slot)
	rc.tilesOnly, rc.tileEnd, rc.slot, rc.i1, rc.nw, rc.nm, rc.dcol = false, th.folded, slot, e.rawLen, 0, 0, 0
	if t < e.newest { // else every raw event is at or before t
		rc.i1 = p.rawSearch(v, e, t+1)
	}
	if v.grid != 0 && t >= e.newest && (e.rawLen == 0 || p.eager(v, th)) {
		// Every event is at or before t and every raw event a tiled
		// aggregation can count is in its tile: tiles alone answer those.
		rc.tilesOnly, rc.tileEnd = true, math.MaxInt64
	}
	for i := range aggs {
		p.read(v, e, &aggs[i], t, rc, &out[i])
	}
	p.mu.Unlock()
	return dst
}

func emptyValue(f Func) Value {
	switch f {
	case Count, Sum, DistinctCount, LastN, LastDistinctN:
		return Value{Present: true}
	}
	return Value{}
}

// rawSearch returns the first raw index of e whose ts is >= ts. It gallops
// from the end of the ring nearer ts in time (the ring's events lie in
// (newest - horizon, newest]), then bisects: a narrow window's start is a
// few events from the newest, a wide one's a few from the oldest, and
// either costs about log2 of that distance in probes, not of the events.
// Keys are compared as stored (a narrow view's offsets from the entity's
// base, a wide view's int64 bits with the sign flipped), so a probe is a
// load and a mask.
func (p *partition) rawSearch(v *View, e *entity, ts int64) uint32 {
	n := e.rawLen
	if n == 0 || ts > e.newest {
		return n
	}
	mask, flip, target := v.tsMask, uint64(0), uint64(0)
	if v.narrow {
		d := ts - v.base(e)
		if d <= 0 {
			return 0
		}
		if uint64(d) > mask {
			return n
		}
		target = uint64(d)
	} else {
		flip = 1 << 63
		target = uint64(ts) ^ flip
	}
	c, off, st, head := classCap[e.rawCls], int(e.rawOff), p.lay.stride, e.rawHead
	rw := p.rw
	key := func(m uint32) uint64 { // rawAt's, with its table load hoisted
		j := head + m
		if j >= c {
			j -= c
		}
		return word(rw, off+int(j)*st)&mask ^ flip
	}
	lo, hi := uint32(0), n
	if 2*ts > 2*e.newest-v.horizon { // nearer the newest
		for step := uint32(1); step < hi; step *= 2 {
			m := hi - step
			if key(m) < target {
				lo = m + 1
				break
			}
			hi = m
		}
	} else {
		for step := uint32(1); lo+step-1 < hi; step *= 2 {
			m := lo + step - 1
			if key(m) >= target {
				hi = m
				break
			}
			lo = m + 1
		}
	}
	for lo < hi {
		m := (lo + hi) / 2
		if key(m) < target {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// tileSearch returns the first tile index whose start is >= start of the
// entity whose tile header is th.
func (p *partition) tileSearch(v *View, th *tileHdr, start int64) uint32 {
	lo, hi := uint32(0), th.tileLen
	for lo < hi {
		m := (lo + hi) / 2
		if int64(p.words[v.tileAt(th, m)]) < start {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// moments is a window's count, compensated sum and Welford statistics.
type moments struct {
	n          float64
	hi, lo     float64
	mean, m2   float64
	min, max   float64
	haveMinMax bool
	// cents: hi is the exact sum of whole cents c, /100 (centSums): the
	// mean is c/(100n), rounded once.
	cents bool
	c     int64
}

func (m *moments) merge(n, mean, m2 float64) {
	if n == 0 {
		return
	}
	if m.n == 0 {
		m.n, m.mean, m.m2 = n, mean, m2
		return
	}
	tot := m.n + n
	d := mean - m.mean
	m.mean += d * n / tot
	m.m2 += m2 + d*d*m.n*n/tot
	m.n = tot
}

// readCache shares work between the aggregations of one Read: the raw
// events' bounds, and the first pass over a column's raw events (the same
// for sum, mean, min, max, stddev and variance of a window).
type readCache struct {
	// tilesOnly: tiled aggregations read tiles only (those starting before
	// tileEnd); else they read the raw events in the window and the tiles
	// starting before tileEnd (e.folded: the others duplicate raw events).
	tilesOnly bool
	tileEnd   int64
	slot      uint32 // the entity's, for its hot buckets
	i1        uint32 // first raw event after t
	nw        int
	from      [8]int64
	i0        [8]uint32
	nm        int
	mkey      [4]uint64 // column<<32 | i0
	mcnt      [4]float64
	mom       [4]moments
	// cents[k] holds entry k's exact sums when its column is whole cents
	// (isCents[k]): a wider window of the column ending at the same raw
	// event adds only the events the narrower one did not scan.
	cents   [4]centSums
	isCents [4]bool
	// The last raw distinct count's set, left in p.set (dcol: its column+1,
	// 0 for none): a wider window of the column inserts only the events
	// before di0.
	dcol  uint64
	di0   uint32
	dn    int
	dzero bool
	dsize int
	dbits bool // the set is p.bitset (rawIDBits), not p.set
}

// start returns the first raw event of e at or after from.
func (p *partition) start(v *View, e *entity, from int64, rc *readCache) uint32 {
	for k := range rc.nw {
		if rc.from[k] == from {
			return rc.i0[k]
		}
	}
	i0 := p.rawSearch(v, e, from)
	if rc.nw < len(rc.from) {
		rc.from[rc.nw], rc.i0[rc.nw] = from, i0
		rc.nw++
	}
	return i0
}

// read computes one aggregation of e as of t into *out, in place: a Value
// is 80 bytes, and returning it to be appended cost more than the read of
// a small window.
func (p *partition) read(v *View, e *entity, a *aggPlan, t int64, rc *readCache, out *Value) {
	// Raw events [from, to) are in the window.
	var from int64
	if a.g == 0 {
		from = t - a.w + 1
	} else {
		from = floorDiv(t-a.w, a.g)*a.g + a.g // first tile boundary after t-W
	}
	var i0, i1 uint32 // none if tiles alone answer
	tilesOnly := a.g != 0 && rc.tilesOnly
	if !tilesOnly {
		i0, i1 = p.start(v, e, from, rc), rc.i1
	}
	tileEnd := rc.tileEnd
	switch a.fn {
	case Last:
		for i := i1; i > i0; i-- {
			x := p.rawVal(a, p.rawAt(e, i-1))
			if !isNull(a, x) {
				*out = p.value(v, a, x)
				return
			}
		}
		if a.g != 0 {
			th := p.tl(rc.slot)
			for i := th.tileLen; i > 0; i-- {
				tl := p.words[v.tileAt(th, i-1):]
				if s := int64(tl[0]); s < from || s > t || s >= tileEnd {
					if s < from {
						break
					}
					continue
				}
				if tl[a.tc.cnt] > 0 {
					*out = p.value(v, a, tl[a.tc.last])
					return
				}
			}
		}
		*out = Value{}
		return
	case LastN, LastDistinctN:
		*out = p.lastN(v, e, a, i0, i1)
		return
	case DistinctCount:
		// A narrower window of the column, read just before, left its set:
		// this one inserts only its older events, if any (a.g == 0: no tiles
		// in it).
		if a.g == 0 && rc.dcol == uint64(a.col)+1 && rc.di0 >= i0 && rc.di0 <= i1 && rc.di0-i0 < hotMin {
			var n int
			if rc.dbits {
				n = p.rawIDBits(e, a, i0, rc.di0, rc.dn)
			} else {
				var set []uint64
				set, n, rc.dzero = p.rawDistinct(v, e, a, i0, rc.di0, p.set[:rc.dsize], rc.dn, rc.dzero)
				rc.dsize = len(set)
			}
			rc.di0, rc.dn = i0, n
			*out = Value{Present: true, Num: float64(n)}
			return
		}
		rc.dcol = 0 // p.set is about to change
		if a.g == 0 && i1-i0 >= hotMin && t >= e.newest {
			if n, ok := p.hotDistinct(v, e, rc, a, i0, from); ok {
				*out = Value{Present: true, Num: float64(n)}
				return
			}
		}
		if a.g == 0 && i1-i0 >= distinctSmall {
			var n int
			if f := &p.lay.cols[a.si]; f.kind == kID && f.bits <= idBitsMax {
				words := (1<<f.bits + 63) / 64
				if cap(p.bitset) < words {
					p.bitset = make([]uint64, words)
				}
				clear(p.bitset[:words])
				n = p.rawIDBits(e, a, i0, i1, 0)
				rc.dbits = true
			} else {
				var set []uint64
				set, n, rc.dzero = p.rawDistinct(v, e, a, i0, i1, p.distinctSet(distinctSize(int(i1-i0))), 0, false)
				rc.dsize, rc.dbits = len(set), false
			}
			rc.dcol, rc.di0, rc.dn = uint64(a.col)+1, i0, n
			*out = Value{Present: true, Num: float64(n)}
			return
		}
		s := p.rawValues(v, e, a, i0, i1, p.scratch[:0])
		if a.g != 0 {
			th := p.tl(rc.slot)
			for i := p.tileSearch(v, th, from); i < th.tileLen; i++ {
				tl := p.words[v.tileAt(th, i):]
				if s0 := int64(tl[0]); s0 > t || s0 >= tileEnd {
					break
				}
				s = p.appendDistinct(s, tl[a.tc.bm])
			}
		}
		n := p.countDistinct(s)
		p.scratch = s[:0]
		*out = Value{Present: true, Num: float64(n)}
		return
	}
	// Count, Sum, Mean, Min, Max, Stddev, Variance.
	var m moments
	var cnt float64
	var cs centSums // exact: the window's raw moments, its values all whole cents
	exact := false
	mk, k := uint64(a.col)<<32|uint64(i0), 0
	for k < rc.nm && rc.mkey[k] != mk {
		k++
	}
	switch {
	case tilesOnly:
	case (a.str || a.fn == Count) && e.rawNull == 0:
		cnt = float64(i1 - i0) // no null: every raw event counts
	case a.str || a.fn == Count:
		for _, sp := range p.rawSpans(e, i0, i1) {
			for at := sp[0]; at < sp[1]; at += p.lay.stride {
				if !isNull(a, p.rawVal(a, at)) {
					cnt++
				}
			}
		}
	case k < rc.nm && rc.isCents[k]:
		cs, exact = rc.cents[k], true
	case k < rc.nm:
		cnt, m = rc.mcnt[k], rc.mom[k]
	default:
		// A window whose values are all whole cents has exact moments
		// (centSums), whatever the encoding of its partition's column, so
		// that widening a column changes no read. The narrowest window of
		// the column read before that lies within this one (they end at the
		// same raw event, i1) lends its sums: only the older events are
		// scanned.
		ok := false
		n := -1
		for j := range rc.nm {
			if rc.isCents[j] && rc.mkey[j]>>32 == uint64(a.col) {
				if j0 := uint32(rc.mkey[j]); j0 > i0 && (n < 0 || j0 < uint32(rc.mkey[n])) {
					n = j
				}
			}
		}
		if j0 := uint32(rc.mkey[max(n, 0)]); n >= 0 && j0-i0 < hotMin {
			if d, all := p.rawCents(e, a, i0, j0); all {
				cs = rc.cents[n]
				cs.add(d)
				ok, exact = true, true
			}
		}
		if !ok && i1-i0 >= hotMin {
			var h hotMerge
			if h, ok = p.hotMoments(v, e, rc, a, i0, i1, from, t); ok {
				if exact = !h.float; exact {
					cs = h.cs
				} else {
					cnt, m = h.m.n, h.m
				}
			}
		}
		if !ok {
			cs, exact = p.rawCents(e, a, i0, i1)
			ok = exact
		}
		if !ok {
			cnt, m = p.rawMoments(v, e, a, i0, i1)
		}
		if rc.nm < len(rc.mkey) {
			rc.mkey[rc.nm], rc.isCents[rc.nm] = mk, exact
			if exact {
				rc.cents[rc.nm] = cs
			} else {
				rc.mcnt[rc.nm], rc.mom[rc.nm] = cnt, m
			}
			rc.nm++
		}
	}
	if exact {
		if a.g == 0 {
			*out = cs.value(a.fn)
			return
		}
		cnt, m = cs.moments()
	}
	if cnt > 0 && (a.fn == Stddev || a.fn == Variance) && m.n != cnt { // (hot moments come with m2)
		// Two passes over the raw events: the mean, then squared deviations
		// with the compensating term of the corrected two-pass algorithm.
		mean := (m.hi + m.lo) / cnt
		ss, c := p.rawDeviations(v, e, a, i0, i1, mean)
		m.n, m.mean, m.m2 = cnt, mean+c/cnt, ss-c*c/cnt
	}
	if a.g != 0 {
		tc := a.tc
		th := p.tl(rc.slot)
		for i := p.tileSearch(v, th, from); i < th.tileLen; i++ {
			tl := p.words[v.tileAt(th, i) : v.tileAt(th, i)+v.tileStride]
			if s0 := int64(tl[0]); s0 > t || s0 >= tileEnd {
				break
			}
			if tl[tc.cnt] == 0 {
				continue
			}
			n := float64(tl[tc.cnt])
			cnt += n
			m.cents = false
			switch a.fn {
			case Sum, Mean:
				m.hi, m.lo = twoSumAdd(m.hi, m.lo, math.Float64frombits(tl[tc.sumHi]))
				m.hi, m.lo = twoSumAdd(m.hi, m.lo, math.Float64frombits(tl[tc.sumLo]))
			case Min:
				if f := math.Float64frombits(tl[tc.min]); !m.haveMinMax || f < m.min {
					m.min = f
				}
				m.haveMinMax = true
			case Max:
				if f := math.Float64frombits(tl[tc.max]); !m.haveMinMax || f > m.max {
					m.max = f
				}
				m.haveMinMax = true
			case Stddev, Variance:
				m.merge(n, math.Float64frombits(tl[tc.wMean]), math.Float64frombits(tl[tc.wM2]))
			}
		}
	}
	switch a.fn {
	case Count:
		*out = Value{Present: true, Num: cnt}
		return
	case Sum:
		*out = Value{Present: true, Num: m.hi + m.lo}
		return
	}
	if cnt == 0 {
		*out = Value{}
		return
	}
	switch a.fn {
	case Mean:
		if m.cents {
			*out = Value{Present: true, Num: float64(m.c) / (100 * cnt)}
			return
		}
		*out = Value{Present: true, Num: (m.hi + m.lo) / cnt}
		return
	case Min:
		*out = Value{Present: true, Num: m.min}
		return
	case Max:
		*out = Value{Present: true, Num: m.max}
		return
	}
	variance := max(m.m2/m.n, 0)
	if a.fn == Stddev {
		*out = Value{Present: true, Num: math.Sqrt(variance)}
		return
	}
	*out = Value{Present: true, Num: variance}
}

func isNull(a *aggPlan, x uint64) bool { return x == a.null }

// rawMoments returns the count and moments (compensated sum, min, max) of
// the non-null values of a's column in e's raw events [i0, i1). Whole
// cents, most of a fraud stream's amounts, have a loop of their own that
// decodes in place: a load and two shifts per value.
func (p *partition) rawMoments(v *View, e *entity, a *aggPlan, i0, i1 uint32) (cnt float64, m moments) {
	hi, lo, lowest, highest := 0.0, 0.0, math.Inf(1), math.Inf(-1)
	add := func(f float64) {
		cnt++
		hi, lo = twoSumAdd(hi, lo, f)
		lowest, highest = min(lowest, f), max(highest, f)
	}
	f := p.lay.cols[a.si]
	st, rw := p.lay.stride, p.rw
	for _, sp := range p.rawSpans(e, i0, i1) {
		if f.kind != kCents {
			for at := sp[0]; at < sp[1]; at += st {
				if x := f.get(rw, at); !isNull(a, x) {
					add(math.Float64frombits(x))
				}
			}
			continue
		}
		lsh, rsh, null := 64-f.shift-f.bits, 64-f.bits, int64(-1)<<(f.bits-1)
		for at := sp[0] + f.off; at < sp[1]; at += st {
			if k := int64(word(rw, at)<<lsh) >> rsh; k != null {
				add(float64(k) / 100)
			}
		}
	}
	m.hi, m.lo = hi, lo
	if cnt > 0 {
		m.min, m.max, m.haveMinMax = lowest, highest, true
	}
	return cnt, m
}

// rawDeviations returns the sums of the squared deviations from mean, and
// of the deviations, of the non-null values of a's column in e's raw
// events [i0, i1): the second pass of the two-pass variance, with
// rawMoments' loops (a shared loop taking the step as a function value
// would make an indirect call per value).
func (p *partition) rawDeviations(v *View, e *entity, a *aggPlan, i0, i1 uint32, mean float64) (ss, c float64) {
	add := func(f float64) {
		d := f - mean
		ss += d * d
		c += d
	}
	f := p.lay.cols[a.si]
	st, rw := p.lay.stride, p.rw
	for _, sp := range p.rawSpans(e, i0, i1) {
		if f.kind != kCents {
			for at := sp[0]; at < sp[1]; at += st {
				if x := f.get(rw, at); !isNull(a, x) {
					add(math.Float64frombits(x))
				}
			}
			continue
		}
		lsh, rsh, null := 64-f.shift-f.bits, 64-f.bits, int64(-1)<<(f.bits-1)
		for at := sp[0] + f.off; at < sp[1]; at += st {
			if k := int64(word(rw, at)<<lsh) >> rsh; k != null {
				add(float64(k) / 100)
			}
		}
	}
	return ss, c
}

// rawValues appends to dst the non-null values of a's column in e's raw
// events [i0, i1). Dictionary ids, the usual distinct-counted column, have
// a loop of their own.
func (p *partition) rawValues(v *View, e *entity, a *aggPlan, i0, i1 uint32, dst []uint64) []uint64 {
	f := p.lay.cols[a.si]
	st, rw := p.lay.stride, p.rw
	dst = slices.Grow(dst, int(i1-i0))
	for _, sp := range p.rawSpans(e, i0, i1) {
		if f.kind != kID {
			for at := sp[0]; at < sp[1]; at += st {
				if x := f.get(rw, at); !isNull(a, x) {
					dst = append(dst, x)
				}
			}
			continue
		}
		sh, m := f.shift, f.mask()
		for at := sp[0] + f.off; at < sp[1]; at += st {
			if x := word(rw, at) >> sh & m; x != m {
				dst = append(dst, x)
			}
		}
	}
	return dst
}

// rawDistinct inserts the non-null values of a's column in e's raw events
// [i0, i1) into set, which holds n distinct values (zero: 0 among them), as
// distinctAdd does; dictionary ids go from the records into the set with
// no list between.
func (p *partition) rawDistinct(v *View, e *entity, a *aggPlan, i0, i1 uint32, set []uint64, n int, zero bool) ([]uint64, int, bool) {
	f := p.lay.cols[a.si]
	if f.kind != kID {
		s := p.rawValues(v, e, a, i0, i1, p.scratch[:0])
		set, n, zero = p.distinctAdd(set, s, n, zero)
		p.scratch = s[:0]
		return set, n, zero
	}
	st, rw := p.lay.stride, p.rw
	sh, m := f.shift, f.mask()
	for _, sp := range p.rawSpans(e, i0, i1) {
		for at := sp[0] + f.off; at < sp[1]; at += st {
			x := word(rw, at) >> sh & m
			switch {
			case x == m: // null
			case x == 0:
				if !zero {
					zero = true
					n++
				}
			case setInsert(set, x):
				if n++; 2*n > len(set) {
					set = p.regrow(set)
				}
			}
		}
	}
	return set, n, zero
}

// idBitsMax is the widest dictionary id field whose raw distinct counts use
// a bitmap (p.bitset, 1 KiB) instead of a hash set: clearing it costs about
// what a hash set of a hundred values does, and each value is a bit test.
var idBitsMax uint8 = 13

// rawIDBits adds to p.bitset, which holds n distinct ids, the non-null ids
// of a's column (a kID field of at most idBitsMax bits) in e's raw events
// [i0, i1), and returns the count.
func (p *partition) rawIDBits(e *entity, a *aggPlan, i0, i1 uint32, n int) int {
	f := p.lay.cols[a.si]
	st := p.lay.stride
	for _, sp := range p.rawSpans(e, i0, i1) {
		if sp[0] != sp[1] {
			n += idBitsRun(p.rw[:sp[1]-st+f.off+8], sp[0]+f.off, st, f.shift, f.mask(), p.bitset)
		}
	}
	return n
}

// idBitsRun sets in bm the bits of the id fields (shift bits up, mask the
// field's width, the null all ones) of the words at at, at+st, ... that rw
// holds (the last ends at its end), and returns how many were not set: a
// loop of its own, with few values live, as centsRun's.
//
//go:noinline
func idBitsRun(rw []byte, at, st int, shift uint8, mask uint64, bm []uint64) (n int) {
	for ; at <= len(rw)-8; at += st {
		if x := word(rw, at) >> (shift & 63) & mask; x != mask {
			w := &bm[x>>6]
			if *w&(1<<(x&63)) == 0 { // (a bit test and a set: no branch)
				n++
			}
			*w |= 1 << (x & 63)
		}
	}
	return n
}

// value decodes a raw word of a's column.
func (p *partition) value(v *View, a *aggPlan, x uint64) Value {
	if a.str {
		return Value{Present: true, Str: v.dicts[a.col].str(uint32(x))}
	}
	return Value{Present: true, Num: math.Float64frombits(x)}
}

// lastN collects the newest values (distinct ones for last_distinct_n) of raw
// events [i0, i1), newest first.
func (p *partition) lastN(v *View, e *entity, a *aggPlan, i0, i1 uint32) Value {
	out := Value{Present: true}
	seen := p.scratch[:0]
	for i := i1; i > i0 && len(seen) < a.n; i-- {
		x := p.rawVal(a, p.rawAt(e, i-1))
		if isNull(a, x) || (a.fn == LastDistinctN && slices.Contains(seen, x)) {
			continue
		}
		seen = append(seen, x)
	}
	p.scratch = seen[:0]
	if len(seen) == 0 {
		return out
	}
	if a.str {
		out.Strs = make([]string, len(seen))
		for i, x := range seen {
			out.Strs[i] = v.dicts[a.col].str(uint32(x))
		}
	} else {
		out.Nums = make([]float64, len(seen))
		for i, x := range seen {
			out.Nums[i] = math.Float64frombits(x)
		}
	}
	return out
}

// centSums are the exact moments of whole cents k: their count, sum, sum of
// squares (128 bits) and extremes. Cents are at most 32 bits and a ring
// holds fewer than 2^32 events, so nothing overflows.
type centSums struct {
	n          uint64
	sum        int64
	sqHi, sqLo uint64
	min, max   int64
}

func (c *centSums) add(o centSums) {
	if o.n == 0 {
		return
	}
	if c.n == 0 {
		*c = o
		return
	}
	var carry uint64
	c.sqLo, carry = bits.Add64(c.sqLo, o.sqLo, 0)
	c.sqHi += o.sqHi + carry
	c.n += o.n
	c.sum += o.sum
	c.min, c.max = min(c.min, o.min), max(c.max, o.max)
}

// moments returns c as a window's count and moments, in units (cents/100):
// the sum rounded once from the exact sum, and m2 from the exact n*sum(k^2)
// - sum(k)^2, so that the variance needs no second pass and loses nothing
// to cancellation.
func (c centSums) moments() (cnt float64, m moments) {
	if c.n == 0 {
		return 0, m
	}
	cnt = float64(c.n)
	m.hi, m.cents, m.c = float64(c.sum)/100, true, c.sum
	m.min, m.max, m.haveMinMax = float64(c.min)/100, float64(c.max)/100, true
	m.n, m.mean, m.m2 = cnt, m.hi/cnt, c.m2()
	return cnt, m
}

// m2 returns the sum of the squared deviations from the mean, in units^2:
// (n*sum(k^2) - sum(k)^2) / (n * 10^4), the difference exact.
func (c centSums) m2() float64 {
	// n*sum(k^2) < 2^32 * 2^94 and sum(k)^2 < 2^126: both fit 128 bits.
	ph, pl := bits.Mul64(c.sqLo, c.n)
	ph += c.sqHi * c.n
	s := uint64(c.sum)
	if c.sum < 0 {
		s = -s
	}
	qh, ql := bits.Mul64(s, s)
	dl, borrow := bits.Sub64(pl, ql, 0)
	dh, _ := bits.Sub64(ph, qh, borrow)
	return (float64(dh)*0x1p64 + float64(dl)) / (float64(c.n) * 1e4)
}

// value is fn (Sum, Mean, Min, Max, Stddev or Variance) of a window whose
// moments are c and which has no tiles, as the general path computes it
// from c.moments().
func (c centSums) value(fn Func) Value {
	if c.n == 0 {
		if fn == Sum {
			return Value{Present: true}
		}
		return Value{}
	}
	var f float64
	switch fn {
	case Sum:
		f = float64(c.sum) / 100
	case Mean:
		f = float64(c.sum) / (100 * float64(c.n))
	case Min:
		f = float64(c.min) / 100
	case Max:
		f = float64(c.max) / 100
	default: // Stddev, Variance
		f = max(c.m2()/float64(c.n), 0)
		if fn == Stddev {
			f = math.Sqrt(f)
		}
	}
	return Value{Present: true, Num: f}
}

// rawCents returns the exact moments of the non-null values of a's column in
// e's raw events [i0, i1), and whether every one is whole cents (else c is
// meaningless). A column held as cents costs a load, two shifts and integer
// adds per value; one held as float64s also tests each value.
func (p *partition) rawCents(e *entity, a *aggPlan, i0, i1 uint32) (c centSums, all bool) {
	f := p.lay.cols[a.si]
	st, rw := p.lay.stride, p.rw
	switch f.kind {
	case kCents:
	case kFloat: // (a widened partition's: rare, so no loop of its own)
		for _, sp := range p.rawSpans(e, i0, i1) {
			for at := sp[0]; at < sp[1]; at += st {
				x := f.get(rw, at)
				if isNull(a, x) {
					continue
				}
				if _, ok := centsBits(x); !ok {
					return c, false
				}
				k := cents(x)
				c.add(centSums{n: 1, sum: k, sqLo: uint64(k * k), min: k, max: k})
			}
		}
		return c, true
	default:
		return c, false
	}
	lsh, rsh, null := 64-f.shift-f.bits, 64-f.bits, int64(-1)<<(f.bits-1)
	spans := p.rawSpans(e, i0, i1)
	if f.bits <= 32 && uint64(i1-i0) < 1<<(66-2*uint(f.bits)) {
		// Each |k| < 2^(bits-1), so the squares of fewer than 2^(66-2*bits)
		// values sum below 2^64: no carry to track.
		return narrowCents(p.rw, spans, p.lay.stride, f.off, lsh, rsh, null), true
	}
	return wideCents(p.rw, spans, p.lay.stride, f.off, lsh, rsh, null), true
}

// wideCents returns the exact moments of the cents field (at bit lsh from
// the top of the word at off, rsh bits wide from the bottom, null its null)
// of the records of spans, of stride st: sums of squares in 128 bits.
func wideCents(rw []byte, spans [2][2]int, st, off int, lsh, rsh uint8, null int64) centSums {
	n, sum, sqHi, sqLo, lowest, highest := uint64(0), int64(0), uint64(0), uint64(0), int64(math.MaxInt64), int64(math.MinInt64)
	for _, sp := range spans {
		for at := sp[0] + off; at < sp[1]; at += st {
			if k := int64(word(rw, at)<<lsh) >> rsh; k != null {
				var carry uint64
				sqLo, carry = bits.Add64(sqLo, uint64(k*k), 0)
				sqHi += carry
				n++
				sum += k
				lowest, highest = min(lowest, k), max(highest, k)
			}
		}
	}
	return centSums{n: n, sum: sum, sqHi: sqHi, sqLo: sqLo, min: lowest, max: highest}
}

// countDistinct counts the distinct values of s in O(len(s)) with an
// open-addressing set in p.set (0 marks an empty slot; the value 0 is
// counted apart). The set is sized by the distinct values found, not by the
// events (it doubles at half full), so that a hot entity's day of events
// over a few thousand values probes a table that stays in cache. A hot
// entity's day of raw events made a sort the largest cost of a lookup.
func (p *partition) countDistinct(s []uint64) int {
	if len(s) < distinctSmall {
		n := 0
		for i, x := range s {
			if !slices.Contains(s[:i], x) {
				n++
			}
		}
		return n
	}
	_, n, _ := p.distinctAdd(p.distinctSet(distinctSize(len(s))), s, 0, false)
	return n
}

// distinctSmall is the most values countDistinct counts by comparing them
// with each other, without a set.
const distinctSmall = 16

// distinctSize is the set's starting size for n values.
func distinctSize(n int) int {
	size := 64
	for size < 2*n && size < 4096 {
		size <<= 1
	}
	return size
}

// distinctAdd inserts s into set, which holds n distinct values (zero: the
// value 0 among them), and returns the set (regrown, maybe), the count and
// zero.
func (p *partition) distinctAdd(set, s []uint64, n int, zero bool) ([]uint64, int, bool) {
	for _, x := range s {
		if x == 0 {
			if !zero {
				zero = true
				n++
			}
			continue
		}
		if setInsert(set, x) {
			if n++; 2*n > len(set) {
				set = p.regrow(set)
			}
		}
	}
	return set, n, zero
}

// distinctSet returns p.set cleared at size slots.
func (p *partition) distinctSet(size int) []uint64 {
	if cap(p.set) < size {
		p.set = make([]uint64, size)
	}
	set := p.set[:size]
	clear(set)
	return set
}

// regrow doubles set, reinserting its values.
func (p *partition) regrow(set []uint64) []uint64 {
	old := append(p.scratchSet[:0], set...)
	p.scratchSet = old
	set = p.distinctSet(2 * len(set))
	for _, x := range old {
		if x != 0 {
			setInsert(set, x)
		}
	}
	return set
}

// setInsert adds x (not 0) to set and reports whether it was new.
func setInsert(set []uint64, x uint64) bool {
	mask := uint64(len(set) - 1)
	for i := (x * 0x9e3779b97f4a7c15) >> 32 & mask; ; i = (i + 1) & mask {
		switch set[i] {
		case x:
			return false
		case 0:
			set[i] = x
			return true
		}
	}
}

// narrowCents is wideCents for records whose sum of squares fits 64 bits.
// Each span is summed by centsRun, whose loop keeps few enough values live
// for the compiler to hold them all in registers (wideCents' loop spills
// to the stack).
func narrowCents(rw []byte, spans [2][2]int, st, off int, lsh, rsh uint8, null int64) centSums {
	c := centSums{min: math.MaxInt64, max: math.MinInt64}
	for _, sp := range spans {
		if sp[0] == sp[1] {
			continue
		}
		nulls, sum, sq, lo, hi := centsRun(rw[:sp[1]-st+off+8], sp[0]+off, st, lsh, rsh, null)
		c.n += uint64((sp[1]-sp[0])/st) - nulls
		c.sum += sum
		c.sqLo += sq
		c.min, c.max = min(c.min, lo), max(c.max, hi)
	}
	return c
}

// centsRun sums the cents fields (see wideCents) of the words at at,
// at+st, ... that rw holds (the last ends at its end): their nulls, sum,
// sum of squares (modulo 2^64), minimum and maximum.
//
//go:noinline
func centsRun(rw []byte, at, st int, lsh, rsh uint8, null int64) (nulls uint64, sum int64, sq uint64, lo, hi int64) {
	lo, hi = math.MaxInt64, math.MinInt64
	for ; at <= len(rw)-8; at += st {
		k := int64(word(rw, at)<<(lsh&63)) >> (rsh & 63) // (&63: no test for shifts past 64)
		if k == null {
			nulls++
			continue
		}
		sum += k
		sq += uint64(k * k)
		lo, hi = min(lo, k), max(hi, k)
	}
	return nulls, sum, sq, lo, hi
}
