package windows

import (
	"math"
	"math/bits"
	"slices"
	"sync/atomic"
)

// A hot entity (one with thousands of raw events in an exact window, such as
// a busy merchant, or a card holder of a skewed stream) would make every
// exact sum, mean, min, max, stddev or variance scan all of them. Instead,
// the first read that would scan at least hotMin events builds, for the
// entity, moments per time bucket of each Float column those aggregations
// read, at three levels (a bucket of a level holds hotFan of the level
// below); every later raw event of the entity updates its buckets. A read at
// or after the entity's newest event then merges at most 2*(hotFan-1)
// buckets of each lower level and the top-level buckets in its window (about
// 32 over the longest exact window), and scans only the raw events of the one
// partial fine bucket at its tail edge (1/2048 of the longest exact window):
// its cost is bounded by buckets, not by the entity's events.
//
// The buckets are derived from the raw events, so snapshots need not hold
// them (a restored partition starts without). A bucket counts only if it
// starts after the entity's oldest raw event: raw events leave from the
// oldest, so such a bucket holds exactly the raw events in its span. A
// bucket's moments are exact integer sums while its values are whole cents
// (bucket), so that merged results equal a scan's exactly for money amounts;
// other values' equal a scan's up to floating-point rounding (the order of
// additions differs). Either way they are the same online, in a replay, in
// a history join and after a restore, which build the buckets at other
// moments: a bucket's moments are those of its raw events added in time
// order (hotAdd), whatever order late events arrived in.
var hotMin uint32 = 256

// hotFan is how many buckets of a level make one of the level above, and
// hotLevels the number of levels.
const (
	hotFan    = 8
	hotLevels = 3
	hotAlign  = hotFan * hotFan // first fine bucket kept: a multiple of this
)

// hotSums are an entity's bucket moments: cols[c][l][k] for bucket
// (first>>(3l))+k of level l (fine bucket first+k at level 0) of the column
// of v.hotAggs[c]; and for each column of v.hotDistAggs, the newest time
// each value was seen and, per bucket and level, how many values were seen
// last in it.
type hotSums struct {
	first int64   // fine bucket index, a multiple of hotAlign
	evs   []int32 // evs[k]: raw events added to fine bucket first+k
	cols  [][hotLevels][]bucket
	dist  []hotLast
}

// whole returns the first bucket that holds exactly the raw events in its
// span: raw events leave from the oldest, so every bucket after the oldest
// raw event's does, and that one does too while none of the events added to
// it has left (its count of added events equals the raw events before its
// end: one binary search, no scan).
func (p *partition) whole(v *View, e *entity, hs *hotSums) int64 {
	ko := floorDiv(p.rawTs(v, e, p.rawAt(e, 0)), v.hotSpan)
	if ko < hs.first {
		return hs.first
	}
	if i := ko - hs.first; i < int64(len(hs.evs)) && int64(hs.evs[i]) == int64(p.rawSearch(v, e, (ko+1)*v.hotSpan)) {
		return ko
	}
	return ko + 1
}

// hotLast answers an exact distinct count over a hot entity read at or
// after its newest event: the values seen in [from, t] are those whose
// newest time is at or after from, so whole buckets count their values and
// only the partial bucket at from is scanned.
type hotLast struct {
	last   map[uint64]int64
	counts [hotLevels][]int32
}

// bucket holds the moments of the non-null values of its events: exact
// (centSums) while every value is whole cents, as reads of raw events are;
// float64 moments from the first value that is not (w then holds hi, lo,
// mean, m2, min, max as float64 bits). 56 bytes either way.
type bucket struct {
	n     uint32
	float bool
	dirty bool      // (levels above the fine) to be merged again from the level below
	w     [6]uint64 // cents: sum, sqHi, sqLo, min, max
}

// cents returns b's exact moments; b is not float.
func (b *bucket) cents() centSums {
	return centSums{n: uint64(b.n), sum: int64(b.w[0]), sqHi: b.w[1], sqLo: b.w[2], min: int64(b.w[3]), max: int64(b.w[4])}
}

// floats returns b's float64 moments: n, hi, lo, mean, m2, min, max.
func (b *bucket) floats() (n, hi, lo, mean, m2, lowest, highest float64) {
	if !b.float {
		_, m := b.cents().moments()
		return m.n, m.hi, m.lo, m.mean, m.m2, m.min, m.max
	}
	f := func(i int) float64 { return math.Float64frombits(b.w[i]) }
	return float64(b.n), f(0), f(1), f(2), f(3), f(4), f(5)
}

// addCents adds the value of k whole cents.
func (b *bucket) addCents(k int64) {
	if b.float {
		b.add(centsFloat(k))
		return
	}
	if b.n == 0 {
		b.w[3], b.w[4] = uint64(k), uint64(k)
	}
	var carry uint64
	b.w[2], carry = bits.Add64(b.w[2], uint64(k*k), 0)
	b.w[1] += carry
	b.w[0] = uint64(int64(b.w[0]) + k)
	b.w[3], b.w[4] = uint64(min(int64(b.w[3]), k)), uint64(max(int64(b.w[4]), k))
	b.n++
}

// addAt adds the value of a's column (field f) in the raw record at offset
// at of rw, unless it is null.
func (b *bucket) addAt(f *field, a *aggPlan, rw []byte, at int) {
	if f.kind == kCents {
		if k, ok := f.cents(rw, at); ok {
			b.addCents(k)
		}
	} else if x := f.get(rw, at); !isNull(a, x) {
		b.add(x)
	}
}

// add adds the value of float64 bits x (not null).
func (b *bucket) add(x uint64) {
	if !b.float {
		if _, ok := centsBits(x); ok {
			b.addCents(cents(x))
			return
		}
		// The first value that is not whole cents: on in float64s.
		_, hi, lo, mean, m2, lowest, highest := b.floats()
		b.float = true
		b.setFloats(hi, lo, mean, m2, lowest, highest)
	}
	n, hi, lo, mean, m2, lowest, highest := b.floats()
	x0 := math.Float64frombits(x)
	if n == 0 || x0 < lowest {
		lowest = x0
	}
	if n == 0 || x0 > highest {
		highest = x0
	}
	n++
	hi, lo = twoSumAdd(hi, lo, x0)
	d := x0 - mean
	mean += d / n
	m2 += d * (x0 - mean)
	b.n++
	b.setFloats(hi, lo, mean, m2, lowest, highest)
}

func (b *bucket) setFloats(hi, lo, mean, m2, lowest, highest float64) {
	b.w = [6]uint64{math.Float64bits(hi), math.Float64bits(lo), math.Float64bits(mean), math.Float64bits(m2), math.Float64bits(lowest), math.Float64bits(highest)}
}

// hotAggPlans returns one aggregation per column read by an exact moment
// aggregation (sum, mean, min, max, stddev, variance of a Float column).
func hotAggPlans(aggs []aggPlan) []*aggPlan {
	return firstPerColumn(aggs, func(a *aggPlan) bool {
		switch a.fn {
		case Sum, Mean, Min, Max, Stddev, Variance:
			return a.g == 0 && !a.str
		}
		return false
	})
}

// hotDistPlans returns one exact distinct_count aggregation per column.
func hotDistPlans(aggs []aggPlan) []*aggPlan {
	return firstPerColumn(aggs, func(a *aggPlan) bool { return a.g == 0 && a.fn == DistinctCount })
}

// firstPerColumn returns the first aggregation of each column that keep
// accepts.
func firstPerColumn(aggs []aggPlan, keep func(*aggPlan) bool) []*aggPlan {
	var out []*aggPlan
	for i := range aggs {
		a := &aggs[i]
		if keep(a) && !slices.ContainsFunc(out, func(b *aggPlan) bool { return b.col == a.col }) {
			out = append(out, a)
		}
	}
	return out
}

// hotSpan is the fine bucket span of a view: about 2048 fine buckets (256
// middle, 32 top) over its longest exact window, and at least 100 ms.
func hotSpan(exactHorizon int64) int64 { return max(100, exactHorizon/2048) }

// levelShift is log2(hotFan) * l: fine bucket offset k is k>>levelShift(l)
// at level l.
func levelShift(l int) uint { return uint(3 * l) }

// hotBuild builds e's buckets from its raw events.
func (p *partition) hotBuild(v *View, slot uint32, e *entity) *hotSums {
	hs := &hotSums{first: floorDiv(floorDiv(p.rawTs(v, e, p.rawAt(e, 0)), v.hotSpan), hotAlign) * hotAlign, cols: make([][hotLevels][]bucket, len(v.hotAggs)),
		dist: make([]hotLast, len(v.hotDistAggs))}
	for c := range hs.dist {
		hs.dist[c].last = map[uint64]int64{}
	}
	for i := range e.rawLen {
		p.hotAdd(v, hs, e, i, math.MaxInt64) // in time order: each newest in its bucket
	}
	if p.hot == nil {
		p.hot = map[uint32]*hotSums{}
	}
	p.hot[slot] = hs
	return hs
}

// hotAdd adds raw event pos to its buckets; next is the ts of the raw event
// after it (math.MaxInt64: none, or a build in time order).
//
// A bucket's float64 moments depend on the order of their additions (and a
// bucket turns float64 at its first value that is not whole cents), so that
// they are the same whenever and however the buckets were built (online,
// in a replay or a history join that reads at other moments, after a
// restore that builds them anew), a fine bucket holds its raw events added
// in time order: one that is float64 after a late event (one before a raw
// event already in the bucket) is summed again from its raw events. The
// levels above are merges of the level below in order, redone on read
// (hotSums.clean) once a change made them dirty; while a bucket and the one
// above are whole cents, the one above is added to at once (exact sums are
// the same in any order).
func (p *partition) hotAdd(v *View, hs *hotSums, e *entity, pos uint32, next int64) {
	at := p.rawAt(e, pos)
	k := floorDiv(p.rawTs(v, e, at), v.hotSpan)
	if k < hs.first {
		return // older than every bucket kept: counts in no complete one
	}
	// Buckets that end at or before the horizon can never be read again.
	if old := (floorDiv(e.newest-v.horizon, v.hotSpan) - hs.first) / hotAlign * hotAlign; old > 0 {
		for l := range hotLevels {
			o := int(old >> levelShift(l))
			for c := range hs.cols {
				n := min(o, len(hs.cols[c][l]))
				hs.cols[c][l] = append(hs.cols[c][l][:0], hs.cols[c][l][n:]...)
			}
			for c := range hs.dist {
				n := min(o, len(hs.dist[c].counts[l]))
				hs.dist[c].counts[l] = append(hs.dist[c].counts[l][:0], hs.dist[c].counts[l][n:]...)
			}
		}
		n := min(int(old), len(hs.evs))
		hs.evs = append(hs.evs[:0], hs.evs[n:]...)
		hs.first += old
		if k < hs.first {
			return
		}
	}
	i := int(k - hs.first)
	ts := p.rawTs(v, e, at)
	for len(hs.evs) <= i {
		hs.evs = append(hs.evs, 0)
	}
	hs.evs[i]++
	for c, a := range v.hotDistAggs {
		x := p.rawVal(a, at)
		if isNull(a, x) {
			continue
		}
		d := &hs.dist[c]
		prev, seen := d.last[x]
		if seen && prev >= ts {
			continue
		}
		if seen {
			if j := floorDiv(prev, v.hotSpan) - hs.first; j >= 0 && j < int64(len(d.counts[0])) {
				for l := range hotLevels {
					d.counts[l][j>>levelShift(l)]--
				}
			}
		}
		d.last[x] = ts
		for l := range hotLevels {
			j := i >> levelShift(l)
			for len(d.counts[l]) <= j {
				d.counts[l] = append(d.counts[l], 0)
			}
			d.counts[l][j]++
		}
	}
	late := next < (hs.first+int64(i)+1)*v.hotSpan // a newer raw event is in its fine bucket
	for c, a := range v.hotAggs {
		f := &p.lay.cols[a.si]
		k, x := int64(0), uint64(0)
		if f.kind == kCents {
			var ok bool
			if k, ok = f.cents(p.rw, at); !ok {
				continue
			}
		} else if x = f.get(p.rw, at); isNull(a, x) {
			continue
		}
		for l := range hotLevels {
			for j := i >> levelShift(l); len(hs.cols[c][l]) <= j; {
				hs.cols[c][l] = append(hs.cols[c][l], bucket{})
			}
		}
		b := &hs.cols[c][0][i]
		if f.kind == kCents {
			b.addCents(k)
		} else {
			b.add(x)
		}
		if late && b.float {
			*b = p.hotSum(v, e, a, hs.first+int64(i))
		}
		exact := !b.float // the bucket above can take the value as it is
		for l := 1; l < hotLevels; l++ {
			u := &hs.cols[c][l][i>>levelShift(l)]
			if exact && !u.float && !u.dirty {
				if f.kind == kCents {
					u.addCents(k)
				} else {
					u.add(x)
				}
				continue
			}
			exact, u.dirty = false, true
		}
	}
}

// hotSum sums the raw events of e in fine bucket k (absolute index) in time
// order: the bucket as a build from its raw events gives it.
func (p *partition) hotSum(v *View, e *entity, a *aggPlan, k int64) (b bucket) {
	f := &p.lay.cols[a.si]
	end := (k + 1) * v.hotSpan
	for n := p.rawSearch(v, e, k*v.hotSpan); n < e.rawLen; n++ {
		at := p.rawAt(e, n)
		if p.rawTs(v, e, at) >= end {
			break
		}
		b.addAt(f, a, p.rw, at)
	}
	return b
}

// clean returns bucket k of level l of column c, merged again from the
// level below in order if a change made it dirty (see hotAdd).
func (hs *hotSums) clean(c, l int, k int64) *bucket {
	b := &hs.cols[c][l][k]
	if b.dirty {
		hs.remerge(c, l, k)
	}
	return b
}

// remerge merges bucket k of level l (> 0) of column c again from the level
// below, in order.
func (hs *hotSums) remerge(c, l int, k int64) {
	b := &hs.cols[c][l][k]
	var h hotMerge
	below := hs.cols[c][l-1]
	for j := k * hotFan; j < min((k+1)*hotFan, int64(len(below))); j++ {
		h.add(hs.clean(c, l-1, j))
	}
	*b = bucket{}
	if !h.float {
		cs := h.cs
		b.n, b.w = uint32(cs.n), [6]uint64{uint64(cs.sum), cs.sqHi, cs.sqLo, uint64(cs.min), uint64(cs.max)}
	} else {
		b.n, b.float = uint32(h.m.n), true
		b.setFloats(h.m.hi, h.m.lo, h.m.mean, h.m.m2, h.m.min, h.m.max)
	}
}

// hotMoments computes the moments of a's column over e's raw events [i0,
// i1), which lie in [from, t] (exact if every value is whole cents, else
// float64 moments with n, mean and m2), from the buckets inside
// that span and the raw events at its edges. ok is false when the buckets
// cannot answer (none wholly inside the window): the caller scans.
func (p *partition) hotMoments(v *View, e *entity, rc *readCache, a *aggPlan, i0, i1 uint32, from, t int64) (h hotMerge, ok bool) {
	c := 0
	for c < len(v.hotAggs) && v.hotAggs[c].col != a.col {
		c++
	}
	if c == len(v.hotAggs) {
		return h, false
	}
	hs := p.hot[rc.slot]
	if hs == nil {
		hs = p.hotBuild(v, rc.slot, e)
	}
	span := v.hotSpan
	// The first whole bucket at or after from; when the window reaches back
	// past the oldest raw event, the oldest raw event's bucket if it is whole
	// (then no raw event is scanned at the tail edge).
	kw := p.whole(v, e, hs)
	kb := max(floorDiv(from+span-1, span), kw)
	if from <= p.rawTs(v, e, p.rawAt(e, 0)) {
		kb = kw
	}
	// The last bucket: the newest when the read is at or after the entity's
	// newest event (every event of it is at or before t), else the last that
	// ends at or before t.
	last := hs.first + int64(len(hs.cols[c][0])) - 1
	ke := min(floorDiv(t+1, span)-1, last)
	if t >= e.newest {
		ke = last
	}
	if kb > ke {
		return h, false
	}
	// The edges: raw events before the first whole bucket, walking forward
	// from i0, and after the last, walking back from i1 (each at most a
	// bucket's worth; no binary search over the whole ring).
	var edge bucket
	f := &p.lay.cols[a.si] // rawVal's, hoisted: 1230 vs 1258 ns in BenchmarkReadHot/user_transaction_amounts
	for i, lo := i0, kb*span; i < i1; i++ {
		at := p.rawAt(e, i)
		if p.rawTs(v, e, at) >= lo {
			break
		}
		edge.addAt(f, a, p.rw, at)
	}
	for i, hi := i1, (ke+1)*span; i > i0; i-- {
		at := p.rawAt(e, i-1)
		if p.rawTs(v, e, at) < hi {
			break
		}
		edge.addAt(f, a, p.rw, at)
	}
	h.add(&edge)
	// Fine buckets [lo, hi): the partial middle ones at each end, then the
	// top ones between.
	lo, hi := kb-hs.first, ke-hs.first+1
	for l := range hotLevels {
		b := hs.cols[c][l] // (a dirty bucket is merged again first: hotSums.clean)
		if l < hotLevels-1 {
			for ; lo < hi && lo%hotFan != 0; lo++ {
				if b[lo].dirty {
					hs.remerge(c, l, lo)
				}
				h.add(&b[lo])
			}
			for ; lo < hi && hi%hotFan != 0; hi-- {
				if b[hi-1].dirty {
					hs.remerge(c, l, hi-1)
				}
				h.add(&b[hi-1])
			}
			lo, hi = lo/hotFan, hi/hotFan
			continue
		}
		for k := lo; k < hi; k++ {
			if b[k].dirty {
				hs.remerge(c, l, k)
			}
			h.add(&b[k])
		}
	}
	if countHotReads {
		hotReads.Add(1)
	}
	return h, true
}

// hotDistinct counts the distinct values of a's column among e's raw events
// [i0, end) at or after from, for a read at or after e's newest event, from
// the counts of the buckets that start at or after from and the raw events
// of the partial bucket before them. ok is false when its buckets are gone.
func (p *partition) hotDistinct(v *View, e *entity, rc *readCache, a *aggPlan, i0 uint32, from int64) (n int, ok bool) {
	c := 0
	for c < len(v.hotDistAggs) && v.hotDistAggs[c].col != a.col {
		c++
	}
	if c == len(v.hotDistAggs) {
		return 0, false
	}
	// A window reaching past the oldest raw event counts what raw holds:
	// the values seen since it (an older value's newest time is older).
	hs := p.hot[rc.slot]
	if hs == nil {
		hs = p.hotBuild(v, rc.slot, e)
	}
	span := v.hotSpan
	kb := floorDiv(from+span-1, span)
	if oldest := p.rawTs(v, e, p.rawAt(e, 0)); from <= oldest {
		// Every raw event is in the window: from the oldest's bucket if it
		// is whole (its values were all seen in raw events still held), with
		// no scan.
		from = oldest
		if kw := p.whole(v, e, hs); kw <= floorDiv(oldest, span) {
			kb = kw
		} else {
			kb = floorDiv(from+span-1, span)
		}
	}
	if kb < hs.first {
		return 0, false
	}
	d := &hs.dist[c]
	// Fine buckets from kb to the end, level by level.
	lo := kb - hs.first
	for l := range hotLevels {
		cs := d.counts[l]
		if l < hotLevels-1 {
			for ; lo < int64(len(cs)) && lo%hotFan != 0; lo++ {
				n += int(cs[lo])
			}
			lo = (lo + hotFan - 1) / hotFan
			continue
		}
		for _, k := range cs[min(lo, int64(len(cs))):] {
			n += int(k)
		}
	}
	// Values last seen in [from, kb*span): scan that partial bucket.
	edge := kb * span
	s := p.scratch[:0]
	for i := i0; i < e.rawLen; i++ {
		at := p.rawAt(e, i)
		if p.rawTs(v, e, at) >= edge {
			break
		}
		if x := p.rawVal(a, at); !isNull(a, x) && d.last[x] < edge {
			s = append(s, x)
		}
	}
	n += p.countDistinct(s)
	p.scratch = s[:0]
	if countHotReads {
		hotReads.Add(1)
	}
	return n, true
}

// hotMerge accumulates buckets: exactly (cs) while each is whole cents, in
// float64 moments (m) from the first that is not.
type hotMerge struct {
	cs    centSums
	float bool
	m     moments
}

func (h *hotMerge) add(b *bucket) {
	if b.float || h.float {
		h.addFloat(b)
		return
	}
	c := &h.cs
	if c.n == 0 {
		c.min, c.max = int64(b.w[3]), int64(b.w[4])
	} else if b.n > 0 {
		c.min, c.max = min(c.min, int64(b.w[3])), max(c.max, int64(b.w[4]))
	}
	var carry uint64
	c.sqLo, carry = bits.Add64(c.sqLo, b.w[2], 0)
	c.sqHi += b.w[1] + carry
	c.sum += int64(b.w[0])
	c.n += uint64(b.n)
}

// addFloat is add once a bucket that is not whole cents was met.
func (h *hotMerge) addFloat(b *bucket) {
	if b.n == 0 {
		return
	}
	if !h.float {
		h.float = true
		if h.cs.n > 0 {
			_, h.m = h.cs.moments()
			h.m.cents = false
		}
	}
	n, hi, lo, mean, m2, lowest, highest := b.floats()
	m := &h.m
	m.hi, m.lo = twoSumAdd(m.hi, m.lo, hi)
	m.hi, m.lo = twoSumAdd(m.hi, m.lo, lo)
	if !m.haveMinMax || lowest < m.min {
		m.min = lowest
	}
	if !m.haveMinMax || highest > m.max {
		m.max = highest
	}
	m.haveMinMax = true
	m.merge(n, mean, m2)
}

// hotReads counts the reads answered from buckets, when countHotReads is
// set: the package's tests set it, to check that the path runs. A server
// leaves it off: one counter written by every core's hot reads would move
// its cache line between the cores on each.
var (
	hotReads      atomic.Int64
	countHotReads bool
)
