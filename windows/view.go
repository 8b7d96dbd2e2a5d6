package windows

import (
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/tally-ml/tally/ring"
)

// Event times and windows are bounded so that no time arithmetic overflows.
const (
	// MinTime and MaxTime bound event timestamps (epoch ms, about ±36 million
	// years); Add refuses others with ErrBadEvent.
	MinTime int64 = -1 << 60
	MaxTime int64 = 1 << 60
	// MaxSpan bounds Aggregation.Window and Spec.Lateness (ms, about 35,000 years).
	MaxSpan int64 = 1 << 50
)

const (
	// foldAt is how many raw events an entity keeps before old ones are folded
	// into tiles: a quiet entity keeps its few events, a hot one its tiles.
	foldAt = 8
	// nullID is the raw-record encoding of a null String field.
	nullID = math.MaxUint32
	// nullBits is the raw-record encoding of a null Float field: a NaN
	// payload, free because Add refuses NaN.
	nullBits uint64 = 0x7ff4_dead_beef_0001
	// noBlock marks an entity without a raw or tile block.
	noBlock = math.MaxUint8
	// Every sweepEvery-th Add of a partition inspects the next sweepSlots
	// entity slots for expiry: two per Add, in runs that share cache lines.
	sweepEvery = 8
	sweepSlots = 16
)

// Stats describes a view's state.
type Stats struct {
	Entities int64 // entities held
	Events   int64 // raw events held
	Tiles    int64 // tiles held
	Values   int64 // distinct string values in the view's dictionaries
	Bytes    int64 // approximate bytes of state (arenas, indexes, keys, dictionaries, bitmaps)
	TooLate  int64 // events refused with ErrTooLate since New
	Expired  int64 // idle entities dropped since New
}

// tileCol locates one column's statistics in a tile record (word offsets
// from the tile's start word; 0 means not kept).
type tileCol struct {
	cnt, sumHi, sumLo, wMean, wM2, min, max, lastTs, last, bm int
}

type aggPlan struct {
	fn   Func
	col  int
	w, g int64
	n    int
	str  bool
	si   int    // the column's index among the stored ones (its place in a layout)
	null uint64 // the column's null value
	tc   *tileCol
}

// View holds the state of one feature view: every entity's recent events and
// tiles. It is safe for concurrent use.
type View struct {
	spec         Spec
	aggs         []aggPlan
	maxW         int64
	horizon      int64      // maxW + Lateness
	exactHorizon int64      // longest exact window + Lateness (Lateness if none)
	hotAggs      []*aggPlan // one per column of exact moment aggregations (see hot.go)
	hotDistAggs  []*aggPlan // one per column of exact distinct counts
	hotSpan      int64      // their bucket span
	grid         int64      // tile size: gcd of the tiled intervals; 0 if none
	stored       []int      // spec columns kept in raw records, in record order
	colWord      []int      // spec column -> index in a logical record (0: not kept)
	colWide      []bool     // stored column i is a float64 (else a dictionary id or null flag)
	narrowest    *layout    // the layout every partition starts with (see layout.go)
	colNull      []uint64   // spec column -> its null value in a logical record
	narrow       bool       // raw ts are offsets from the entity's base (View.base)
	tsBits       int        // bits of a raw record's ts: see tsWidth in a narrow view, else 64
	tsMask       uint64     // those bits
	align        int64      // of the bases, in a narrow view
	recLen       int        // words per logical record: ts + stored columns
	tileStride   int        // words per tile record: start + tiled statistics
	tcols        []tileCol
	dicts        []*dict // per spec column; nil for Float columns
	hash         func([]byte) uint64
	ownHash      bool   // hash is not ring.Hash (a test's): AddBatch ignores given hashes
	fp           uint64 // spec fingerprint, for snapshots

	// wmu orders the view's writers (Add, AddBatch): one at a time, while
	// reads go on beside them under the partition locks. Only writers
	// change a partition's index, entity headers, keys and arenas (a read
	// changes its own caches), so under wmu AddBatch's prefetch stages read
	// those without taking the partition's lock: one lock per event, not
	// four. The store writes each view from one goroutine at a time anyway.
	wmu sync.Mutex

	watermark atomic.Int64
	tooLate   atomic.Int64
	parts     []partition
}

// New validates spec and returns an empty view.
func New(spec Spec) (*View, error) {
	if err := validate(spec); err != nil {
		return nil, err
	}
	v := &View{spec: cloneSpec(spec), hash: ring.Hash, parts: make([]partition, ring.Partitions)}
	spec = v.spec
	nc := len(spec.Columns)
	v.colWord = make([]int, nc)
	v.tcols = make([]tileCol, nc)
	v.dicts = make([]*dict, nc)
	maxExact := int64(0)
	for _, a := range spec.Aggregations {
		v.maxW = max(v.maxW, a.Window)
		if a.Interval == 0 {
			maxExact = max(maxExact, a.Window)
		} else {
			v.grid = gcd(v.grid, a.Interval)
		}
		if v.colWord[a.Column] == 0 {
			v.stored = append(v.stored, a.Column)
			v.colWord[a.Column] = len(v.stored)
		}
	}
	v.recLen = 1 + len(v.stored)
	v.horizon = v.maxW + spec.Lateness
	v.exactHorizon = spec.Lateness
	if maxExact > 0 {
		v.exactHorizon = maxExact + spec.Lateness
	}
	for c, col := range spec.Columns {
		if col.Kind == String && v.colWord[c] != 0 {
			v.dicts[c] = new(dict)
		}
	}
	// Raw record layout (see layout.go): the ts (an offset from the
	// entity's base when the horizon fits, see View.base), then each kept
	// column: a dictionary id, a float64 (as cents while it can), or, for a
	// Float column only counted, a null flag.
	v.narrow = v.horizon <= 1<<31
	v.tsBits, v.tsMask = 64, math.MaxUint64
	if v.narrow {
		v.tsBits, v.align = tsWidth(v.horizon)
		v.tsMask = 1<<v.tsBits - 1
	}
	v.colNull = make([]uint64, nc)
	var cols []field
	for _, c := range v.stored {
		countOnly := true
		for _, a := range spec.Aggregations {
			countOnly = countOnly && (a.Column != c || a.Func == Count)
		}
		wide := spec.Columns[c].Kind == Float && !countOnly
		v.colWide = append(v.colWide, wide)
		cols = append(cols, narrowestField(v.dicts[c] != nil, wide))
		v.colNull[c] = nullID
		if wide {
			v.colNull[c] = nullBits
		}
	}
	v.narrowest = newLayout(v.tsBits, cols)
	for k := range v.parts {
		v.parts[k].lay = v.narrowest
	}
	// Tile layout: word 0 is the tile's start, then each column's statistics.
	w := 1
	take := func(p *int, n int) {
		if *p == 0 {
			*p = w
			w += n
		}
	}
	for _, a := range spec.Aggregations {
		if a.Interval == 0 {
			continue
		}
		tc := &v.tcols[a.Column]
		take(&tc.cnt, 1)
		switch a.Func {
		case Sum, Mean:
			take(&tc.sumHi, 1)
			take(&tc.sumLo, 1)
		case Min:
			take(&tc.min, 1)
		case Max:
			take(&tc.max, 1)
		case Last:
			take(&tc.lastTs, 1)
			take(&tc.last, 1)
		case DistinctCount:
			take(&tc.bm, 1)
		case Stddev, Variance:
			take(&tc.wMean, 1)
			take(&tc.wM2, 1)
		}
	}
	v.tileStride = w
	for _, a := range spec.Aggregations {
		v.aggs = append(v.aggs, aggPlan{fn: a.Func, col: a.Column, w: a.Window, g: a.Interval, n: a.N,
			str: spec.Columns[a.Column].Kind == String, null: v.colNull[a.Column], si: v.colWord[a.Column] - 1, tc: &v.tcols[a.Column]})
	}
	v.hotAggs, v.hotDistAggs, v.hotSpan = hotAggPlans(v.aggs), hotDistPlans(v.aggs), hotSpan(v.exactHorizon)
	v.fp = v.fingerprint()
	v.watermark.Store(math.MinInt64 / 2)
	return v, nil
}

func validate(spec Spec) error {
	name := spec.Name
	if name == "" {
		name = "(unnamed)"
	}
	if len(spec.Columns) == 0 {
		return fmt.Errorf("view %s: no columns", name)
	}
	if len(spec.Aggregations) == 0 {
		return fmt.Errorf("view %s: no aggregations", name)
	}
	if spec.Lateness < 0 || spec.Lateness > MaxSpan {
		return fmt.Errorf("view %s: lateness %d ms out of range [0, %d]", name, spec.Lateness, MaxSpan)
	}
	for i, c := range spec.Columns {
		if c.Kind != Float && c.Kind != String {
			return fmt.Errorf("view %s: column %d (%s): unknown kind %d", name, i, c.Name, c.Kind)
		}
	}
	for i, a := range spec.Aggregations {
		if a.Column < 0 || a.Column >= len(spec.Columns) {
			return fmt.Errorf("view %s: aggregation %d: column index %d out of range", name, i, a.Column)
		}
		col := spec.Columns[a.Column]
		where := fmt.Sprintf("view %s: aggregation %d (%s of %s)", name, i, a.Func, col.Name)
		if a.Func == 0 || int(a.Func) >= len(funcNames) {
			return fmt.Errorf("%s: unknown function", where)
		}
		if a.Window <= 0 || a.Window > MaxSpan {
			return fmt.Errorf("%s: window %d ms out of range (0, %d]", where, a.Window, MaxSpan)
		}
		if a.Interval < 0 || (a.Interval > 0 && a.Window%a.Interval != 0) {
			return fmt.Errorf("%s: interval %d ms must be 0 (exact) or divide the window (%d ms)", where, a.Interval, a.Window)
		}
		switch a.Func {
		case LastN, LastDistinctN:
			if a.N < 1 || a.N > 1<<16 {
				return fmt.Errorf("%s: N must be in [1, 65536], got %d", where, a.N)
			}
			if a.Interval != 0 {
				return fmt.Errorf("%s: %s is exact only: set interval 0", where, a.Func)
			}
		}
		if col.Kind == String {
			switch a.Func {
			case Count, Last, LastN, LastDistinctN, DistinctCount:
			default:
				return fmt.Errorf("%s: %s needs a float column; string columns support count, last, last_n, last_distinct_n, distinct_count", where, a.Func)
			}
		} else if a.Func == DistinctCount && a.Interval != 0 {
			return fmt.Errorf("%s: distinct_count of a float column is exact only: set interval 0", where)
		}
	}
	return nil
}

func cloneSpec(s Spec) Spec {
	s.Columns = append([]Column(nil), s.Columns...)
	s.Aggregations = append([]Aggregation(nil), s.Aggregations...)
	return s
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// floorDiv rounds toward minus infinity.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// Spec returns the view's spec. The caller must not modify its slices.
func (v *View) Spec() Spec { return v.spec }

// Add places one event of entity key at event time ts (epoch ms). fields
// has one Field per spec column, in order; Str bytes are copied if kept.
//
// It returns ErrTooLate if ts <= watermark - (longest window + Lateness),
// where the watermark is the greatest ts the view has accepted (such an
// event could only count in reads the view does not answer), and
// ErrBadEvent if len(fields) differs from the spec's columns, ts is outside
// [MinTime, MaxTime], or a kept Float field is NaN or infinite. On error
// nothing changes. Add is safe for concurrent use (writers of one view take
// turns; reads run beside them); for an existing entity in steady state it
// allocates nothing (a new entity or a new string value allocates).
func (v *View) Add(key []byte, ts int64, fields []Field) error {
	h := v.hash(key)
	v.wmu.Lock()
	wm := v.watermark.Load()
	err := v.add(key, h, ts, fields, wm)
	v.wmu.Unlock()
	if err != nil {
		return err
	}
	v.publish(wm, ts)
	return nil
}

// publish raises the watermark to ts; wm is the caller's last load of it.
func (v *View) publish(wm, ts int64) {
	for ts > wm && !v.watermark.CompareAndSwap(wm, ts) {
		wm = v.watermark.Load()
	}
}

// add is Add for a key whose hash is h, given the watermark wm the caller
// observed; it does not raise the watermark.
func (v *View) add(key []byte, h uint64, ts int64, fields []Field, wm int64) error {
	if len(fields) != len(v.spec.Columns) || ts < MinTime || ts > MaxTime {
		return ErrBadEvent
	}
	var buf [16]uint64
	var rec []uint64
	if v.recLen <= len(buf) {
		rec = buf[:v.recLen]
	} else {
		rec = make([]uint64, v.recLen)
	}
	rec[0] = uint64(ts)
	for i, c := range v.stored {
		f := &fields[c]
		switch {
		case v.dicts[c] != nil:
			rec[1+i] = nullID // encoded below, once the event is accepted
		case f.Null:
			rec[1+i] = v.colNull[c]
		case math.IsNaN(f.Num) || math.IsInf(f.Num, 0):
			return ErrBadEvent
		case !v.colWide[i]:
			rec[1+i] = 0 // only counted: non-null is all that matters
		default:
			x := f.Num
			if x == 0 {
				x = 0 // one zero: -0 and 0 are the same value
			}
			rec[1+i] = math.Float64bits(x)
		}
	}
	if ts <= wm-v.horizon {
		v.tooLate.Add(1)
		return ErrTooLate
	}
	for i, c := range v.stored {
		if d := v.dicts[c]; d != nil && !fields[c].Null {
			id, ok := d.id(fields[c].Str)
			if !ok {
				return fmt.Errorf("column %s: dictionary full: %w", v.spec.Columns[c].Name, ErrBadEvent)
			}
			rec[1+i] = uint64(id)
		}
	}
	p := &v.parts[ring.Partition(h)]
	p.mu.Lock()
	for i := p.lay.misfit(rec); i >= 0; i = p.lay.misfit(rec) {
		p.widen(v, i, rec[1+i])
	}
	slot, ok := p.find(h, key)
	if !ok {
		slot = p.insert(v, h, key)
		p.floors.lower(ts)
	}
	e, t := &p.ents[slot], p.tl(slot)
	if ts > e.newest {
		p.advance(v, e, ts)
	}
	switch {
	case ts < t.folded:
		p.addToTile(v, t, rec)
	case ts > e.newest-v.horizon: // else maintain would drop it at once
		p.insertRaw(v, slot, e, rec)
		if v.grid != 0 && p.eager(v, t) && floorDiv(ts, v.grid)*v.grid > e.newest-v.horizon {
			p.addToTile(v, t, rec)
		}
	}
	p.maintain(v, e, t)
	if p.ticks++; p.ticks%sweepEvery == 0 && len(p.ents) > 1 {
		p.sweep(v, max(wm, ts))
	}
	if (p.deadR > 1024 && p.deadR > len(p.rw)/8) || (p.deadW > 512 && p.deadW > len(p.words)/4) {
		p.compact(v)
	}
	p.mu.Unlock()
	return nil
}

// Stats returns the view's statistics. It locks each partition in turn.
func (v *View) Stats() Stats {
	s := Stats{TooLate: v.tooLate.Load()}
	for i := range v.parts {
		p := &v.parts[i]
		p.mu.Lock()
		s.Entities += int64(p.live)
		s.Events += int64(p.raw)
		s.Tiles += int64(p.tiles)
		s.Expired += p.expired
		s.Bytes += p.bytes()
		p.mu.Unlock()
	}
	for _, d := range v.dicts {
		if d != nil {
			n, b := d.size()
			s.Values += n
			s.Bytes += b
		}
	}
	return s
}

// entity is one entity's header, 32 bytes. It holds no pointers: its
// events live in the partition's raw arena. In a view with tiled
// aggregations the rest of its header is a tileHdr (partition.tls).
type entity struct {
	newest  int64  // greatest ts seen
	keyOff  uint32 // key bytes in partition.keys
	keyLen  uint32
	rawOff  uint32 // raw ring block in partition.rw (bytes)
	rawHead uint32
	rawLen  uint32
	rawCls  uint8 // size class of the raw block; noBlock if none
	live    bool
	// rawNull counts the raw events with a null kept field, saturating at
	// maxRawNull (then sticky until the entity holds no raw event). While it
	// is 0 a raw count is a difference of positions.
	rawNull uint8
}

// tileHdr is the part of an entity's header about its tiles, held
// (partition.tls, by slot) only in a view with tiled aggregations: the
// card-holder views have none, and their header is 32 bytes, not 48
// (TestMemoryPerUser).
type tileHdr struct {
	folded  int64  // events with ts < folded are in tiles, the others raw
	tileOff uint32 // tile block (sorted by start) in partition.words
	tileLen uint32
	tileCls uint8 // size class of the tile block; noBlock if none
}

// noTiles is the tile header of every entity of a view without tiled
// aggregations. It is never written.
var noTiles = tileHdr{folded: math.MinInt64, tileCls: noBlock}

// tl returns the tile header of slot: noTiles in a view without tiled
// aggregations, which the caller must not write.
func (p *partition) tl(slot uint32) *tileHdr {
	if p.tls == nil {
		return &noTiles
	}
	return &p.tls[slot]
}

const maxRawNull = math.MaxUint8

// partition is one ring partition's share of a view, under its own lock.
type partition struct {
	mu sync.Mutex
	partState
	_ [64]byte
}

// partState is a partition's state: everything a snapshot restores.
type partState struct {
	index      index
	ents       []entity
	tls        []tileHdr // by slot, in a view with tiled aggregations; else nil
	freeEnt    []uint32
	keys       []byte
	deadKey    int
	lay        *layout           // of the raw records (see layout.go)
	rw         []byte            // arena of raw blocks
	words      []uint64          // arena of tile blocks
	free       [][]uint32        // free blocks by 2*class+kind
	deadR      int               // bytes in free raw blocks
	deadW      int               // uint64s in free tile blocks
	bms        []*roaring.Bitmap // distinct sets of tiles, by id
	freeBms    []uint32
	scratch    []uint64
	set        []uint64            // countDistinct's hash set
	scratchSet []uint64            // countDistinct's regrow
	bitset     []uint64            // a raw distinct count's set of small dictionary ids (rawIDBits)
	rc         readCache           // ReadRange's, reused: zeroing its arrays per read cost more than a small window's sum
	hot        map[uint32]*hotSums // by entity slot: see hot.go
	cursor     uint32
	ticks      uint32 // Adds, modulo 2^32: when to sweep
	floors     sweepFloors
	live       int
	raw        int
	tiles      int
	expired    int64
}

// Size classes of arena blocks, in records: 1, 2, 4, 8, then eight per
// doubling (9, 10, ..., 16, 18, 20, ..., 32, 36, ...), so that a block of
// more than 8 records wastes at most an eighth of them, and a small
// entity's ring moves at most three times on its way to 8 (each move is an
// allocation, a copy and a free block: the largest cost of an Add after the
// cache misses). At four per doubling the ring slack was 12 of a card
// holder's 305 B, at eight 4 B (TestMemoryPerUser), for no measurable cost
// in BenchmarkIngestBatch/user_group (306 vs 313 cpu-ns per event, its warm
// variant 301 vs 286, medians of 4 alternating).
var classCap = func() []uint32 {
	c := []uint32{1, 2, 4, 8, 9, 10, 11, 12, 13, 14, 15}
	for c[len(c)-1] < 1<<28 {
		c = append(c, c[len(c)-8]*2)
	}
	return c
}()

const (
	rawKind  = 0
	tileKind = 1
)

// find returns the slot of key, whose hash is h.
func (p *partition) find(h uint64, key []byte) (uint32, bool) {
	t := p.index.tab
	if len(t) == 0 {
		return 0, false
	}
	mask := uint64(len(t) - 1)
	fp := h << 32
	for i := h & mask; ; i = (i + 1) & mask {
		x := t[i]
		if x == 0 {
			return 0, false
		}
		if x&^slotMask == fp {
			s := uint32(x) - 1
			e := &p.ents[s]
			if string(p.keys[e.keyOff:e.keyOff+e.keyLen]) == string(key) {
				return s, true
			}
		}
	}
}

func (p *partition) insert(v *View, h uint64, key []byte) uint32 {
	var slot uint32
	if n := len(p.freeEnt); n > 0 {
		slot = p.freeEnt[n-1]
		p.freeEnt = p.freeEnt[:n-1]
	} else {
		slot = uint32(len(p.ents))
		p.ents = growBy(p.ents, 1)[:slot+1]
		if v.grid != 0 {
			p.tls = growBy(p.tls, 1)[:slot+1]
		}
	}
	p.place(slot, h, key)
	return slot
}

// place makes slot a new empty entity of key and indexes it.
func (p *partition) place(slot uint32, h uint64, key []byte) {
	p.ents[slot] = entity{newest: math.MinInt64,
		keyOff: uint32(len(p.keys)), keyLen: uint32(len(key)), rawCls: noBlock, live: true}
	if p.tls != nil {
		p.tls[slot] = noTiles
	}
	p.keys = append(growBy(p.keys, len(key)), key...)
	p.index.insert(h, slot)
	p.live++
}

// growBy returns s with room for n more elements. It grows the capacity by
// an eighth, not by append's doubling, so that a partition's arrays (its
// entities, keys and arenas, about a quarter of a quiet entity's bytes)
// waste about a sixteenth on average rather than a quarter; each element is
// then copied about eight times as the array grows. The room past len(s)
// is zeroed.
func growBy[S ~[]E, E any](s S, n int) S {
	if cap(s)-len(s) >= n {
		clear(s[len(s) : len(s)+n])
		return s
	}
	c := len(s) + n
	c += max(c/8, 16)
	ns := make(S, len(s), c)
	copy(ns, s)
	return ns
}

// remove drops an entity and frees its blocks.
func (p *partition) remove(v *View, slot uint32) {
	e := &p.ents[slot]
	p.index.remove(v.hash(p.keys[e.keyOff:e.keyOff+e.keyLen]), slot)
	t := p.tl(slot)
	p.freeTiles(v, t, 0, t.tileLen)
	if e.rawCls != noBlock {
		p.freeBlock(v, rawKind, e.rawCls, e.rawOff)
	}
	if t.tileCls != noBlock {
		p.freeBlock(v, tileKind, t.tileCls, t.tileOff)
	}
	p.raw -= int(e.rawLen)
	p.tiles -= int(t.tileLen)
	delete(p.hot, slot)
	p.deadKey += int(e.keyLen)
	*e = entity{}
	if p.tls != nil {
		p.tls[slot] = tileHdr{}
	}
	p.freeEnt = append(p.freeEnt, slot)
	p.live--
	if p.deadKey > 1024 && p.deadKey > len(p.keys)/4 {
		p.compactKeys()
	}
}

func (p *partition) compactKeys() {
	keys := make([]byte, 0, len(p.keys)-p.deadKey)
	for i := range p.ents {
		e := &p.ents[i]
		if e.live {
			off := uint32(len(keys))
			keys = append(keys, p.keys[e.keyOff:e.keyOff+e.keyLen]...)
			e.keyOff = off
		}
	}
	p.keys, p.deadKey = keys, 0
}

// sweepFloors lets a sweep skip a partition none of whose entities can be
// idle yet. floor, once known, is at most the newest ts of every live
// entity: a full pass of the cursor learns the least it saw (each entity's
// newest only grows), and every new entity lowers it to its first ts. While
// floor > wm - horizon no entity is idle and a sweep only moves the cursor,
// as a sweep that drops nothing would: a view restored from a snapshot
// (which does not hold the floor) sweeps those slots and drops nothing
// either, so both stay in step. It is derived state, zero in a restored
// partition (not known). In a steady state where entities go idle the floor
// trails the watermark and sweeps look at every slot; a young partition, or
// a view whose horizon is long (a year of daily tiles), skips them.
type sweepFloors struct {
	floor   int64
	known   bool  // floor holds (a full pass has completed)
	inPass  bool  // the cursor wrapped since the partition was new or restored: the pass is full
	passMin int64 // least newest seen in this pass, or given to a new entity
}

// lower records a new entity whose newest ts is ts.
func (f *sweepFloors) lower(ts int64) {
	f.passMin = min(f.passMin, ts)
	f.floor = min(f.floor, ts)
}

// sweep inspects a few slots and drops entities idle for longer than the
// horizon before the watermark wm.
func (p *partition) sweep(v *View, wm int64) {
	f := &p.floors
	idle := wm - v.horizon // an entity whose newest is at or before it is idle
	skip := f.known && f.floor > idle
	for range sweepSlots {
		p.cursor++
		if p.cursor >= uint32(len(p.ents)) {
			p.cursor = 0
			if f.inPass {
				f.floor, f.known = f.passMin, true
				skip = f.floor > idle
			}
			f.inPass, f.passMin = true, math.MaxInt64
		}
		if skip {
			f.passMin = min(f.passMin, f.floor) // every entity's newest is at least the floor
			continue
		}
		if e := &p.ents[p.cursor]; e.live {
			if e.newest <= idle {
				p.remove(v, p.cursor)
				p.expired++
			} else {
				f.passMin = min(f.passMin, e.newest)
			}
		}
	}
}

// blockLen is the length of a block of kind and class, in its arena's
// units (bytes for raw blocks, uint64s for tile blocks).
func (p *partition) blockLen(v *View, kind int, cls uint8) int {
	if kind == rawKind {
		return int(classCap[cls]) * p.lay.stride
	}
	return int(classCap[cls]) * v.tileStride
}

func (p *partition) allocBlock(v *View, kind int, cls uint8) uint32 {
	n := p.blockLen(v, kind, cls)
	fi := 2*int(cls) + kind
	if fi < len(p.free) {
		if l := p.free[fi]; len(l) > 0 {
			p.free[fi] = l[:len(l)-1]
			if kind == rawKind {
				p.deadR -= n
			} else {
				p.deadW -= n
			}
			return l[len(l)-1]
		}
	}
	var off int
	if kind == rawKind {
		// The new block starts where the arena's pad did (see rawPad).
		off = max(len(p.rw)-rawPad, 0)
		p.rw = growBy(p.rw, off+n+rawPad-len(p.rw))[:off+n+rawPad]
	} else {
		off = len(p.words)
		p.words = growBy(p.words, n)[:off+n]
	}
	if off > math.MaxUint32-n {
		panic("windows: partition arena exceeds 2^32 units")
	}
	return uint32(off)
}

// freeBlock returns a block to its free list.
func (p *partition) freeBlock(v *View, kind int, cls uint8, off uint32) {
	fi := 2*int(cls) + kind
	for len(p.free) <= fi {
		p.free = append(p.free, nil)
	}
	p.free[fi] = append(p.free[fi], off)
	if kind == rawKind {
		p.deadR += p.blockLen(v, kind, cls)
	} else {
		p.deadW += p.blockLen(v, kind, cls)
	}
}

// compact rewrites the arenas with only the live blocks, once an eighth of
// the raw arena or a quarter of the tile arena is free blocks (so each
// freed raw unit costs at most seven copied, a tile unit three). Raw blocks
// are most of a quiet entity's bytes: at a quarter, free blocks were 49 of
// its 428 B (TestMemoryPerUser), at an eighth 23 of 399 B, for about 3% more
// CPU per event in BenchmarkIngestBatch (5% in its warm variant). A
// partition compacts its raw arena only past 1 KiB of free blocks: at 4 KiB
// that floor, not the eighth, bound a partition of 100 card holders (free
// blocks 23 of 313 B, then 15 of 305). The free lists are released, not
// emptied: the capacity they kept from the busiest moment between
// compactions was 11 of 332 B per card holder.
func (p *partition) compact(v *View) {
	nr, nw := 0, 0
	for i := range p.ents {
		if e := &p.ents[i]; e.live {
			if e.rawCls != noBlock {
				nr += p.blockLen(v, rawKind, e.rawCls)
			}
			if t := p.tl(uint32(i)); t.tileCls != noBlock {
				nw += p.blockLen(v, tileKind, t.tileCls)
			}
		}
	}
	rw := make([]byte, 0, nr+nr/8+rawPad)
	words := make([]uint64, 0, nw+nw/8)
	for i := range p.ents {
		e := &p.ents[i]
		if !e.live {
			continue
		}
		if e.rawCls != noBlock {
			off := len(rw)
			rw = append(rw, p.rw[e.rawOff:int(e.rawOff)+p.blockLen(v, rawKind, e.rawCls)]...)
			e.rawOff = uint32(off)
		}
		if t := p.tl(uint32(i)); t.tileCls != noBlock {
			off := len(words)
			words = append(words, p.words[t.tileOff:int(t.tileOff)+p.blockLen(v, tileKind, t.tileCls)]...)
			t.tileOff = uint32(off)
		}
	}
	p.rw, p.words, p.deadR, p.deadW = append(rw, make([]byte, rawPad)...), words, 0, 0
	for i := range p.free {
		p.free[i] = nil
	}
}

// rawAt returns the offset in p.rw of raw record i (in ts order) of e.
func (p *partition) rawAt(e *entity, i uint32) int {
	j := e.rawHead + i
	if c := classCap[e.rawCls]; j >= c {
		j -= c
	}
	return int(e.rawOff) + int(j)*p.lay.stride
}

// rawSpans returns the offsets of e's raw events [i0, i1) as the ring's two
// contiguous runs, [s[0][0], s[0][1]) then [s[1][0], s[1][1]), in steps of
// p's stride (either may be empty): a loop over a window walks them without
// wrapping each index as rawAt does.
func (p *partition) rawSpans(e *entity, i0, i1 uint32) (s [2][2]int) {
	if i0 >= i1 {
		return s
	}
	c := classCap[e.rawCls]
	j := e.rawHead + i0
	if j >= c {
		j -= c
	}
	n := i1 - i0
	first := min(n, c-j)
	off := int(e.rawOff)
	st := p.lay.stride
	s[0] = [2]int{off + int(j)*st, off + int(j+first)*st}
	s[1] = [2]int{off, off + int(n-first)*st}
	return s
}

// rawTs returns the ts of the raw record at offset at of e.
func (p *partition) rawTs(v *View, e *entity, at int) int64 {
	if v.narrow {
		return v.base(e) + int64(word(p.rw, at)&v.tsMask)
	}
	return int64(word(p.rw, at))
}

// rawVal returns the value of a's column in the raw record at offset at.
func (p *partition) rawVal(a *aggPlan, at int) uint64 {
	return p.lay.cols[a.si].get(p.rw, at)
}

// getRaw decodes the raw record at offset at of e into logical record rec.
func (p *partition) getRaw(v *View, e *entity, at int, rec []uint64) {
	rec[0] = uint64(p.rawTs(v, e, at))
	p.getCols(p.lay, at, rec)
}

// getCols decodes the columns of the raw record at offset at, laid out by
// l, into rec[1:].
func (p *partition) getCols(l *layout, at int, rec []uint64) {
	for i := range l.cols {
		rec[1+i] = l.cols[i].get(p.rw, at)
	}
}

// putRaw encodes logical record rec at offset at of e; its ts must lie in
// (e.newest - horizon, e.newest], and each column's field must hold its
// value (see misfit).
func (p *partition) putRaw(v *View, e *entity, at int, rec []uint64) {
	ts := rec[0]
	if v.narrow {
		ts = uint64(int64(ts) - v.base(e))
	}
	v.putTsBits(p.rw, at, ts)
	p.putCols(p.rw, at, rec)
}

// putCols encodes the columns of logical record rec into the raw record at
// offset at of b in p's layout.
func (p *partition) putCols(b []byte, at int, rec []uint64) {
	l := p.lay
	for i := range l.cols {
		l.cols[i].put(b, at, rec[1+i])
	}
}

// base returns the ts the raw ts offsets of e count from in a narrow view:
// newest - horizon aligned down to v.align, so that every raw ts the entity
// can hold, (newest - horizon, newest], is an offset from it below
// 2^v.tsBits (see tsWidth). It is derived from newest, so the entity header
// does not hold it; it moves once in v.align of the entity's time
// (advance).
func (v *View) base(e *entity) int64 { return (e.newest - v.horizon) &^ (v.align - 1) }

// advance makes ts, greater than e.newest, e's newest ts. In a narrow view
// where that moves the base, the raw events at or before ts - horizon are
// dropped first (maintain would drop them anyway) and the others' offsets
// re-encoded from the new base.
func (p *partition) advance(v *View, e *entity, ts int64) {
	if v.narrow && e.rawLen > 0 {
		old, nb := v.base(e), (ts-v.horizon)&^(v.align-1)
		if nb != old {
			for e.rawLen > 0 && p.rawTs(v, e, p.rawAt(e, 0)) <= ts-v.horizon {
				p.popRaw(v, e)
			}
			// Every kept ts is in (ts - horizon, old newest]: at or after nb,
			// and less than 2^tsBits after old, so nb - old fits too.
			d := uint64(nb - old)
			for i := range e.rawLen {
				at := p.rawAt(e, i)
				v.putTsBits(p.rw, at, v.tsBits64(p.rw, at)-d)
			}
		}
	}
	e.newest = ts
}

// insertRaw places logical record rec among e's raw events in (ts, arrival)
// order. Its ts is in (e.newest - horizon, e.newest].
func (p *partition) insertRaw(v *View, slot uint32, e *entity, rec []uint64) {
	if e.rawCls == noBlock || e.rawLen == classCap[e.rawCls] {
		p.growRaw(v, e)
	}
	ts := int64(rec[0])
	pos := e.rawLen
	for pos > 0 && p.rawTs(v, e, p.rawAt(e, pos-1)) > ts {
		pos--
	}
	for i := e.rawLen; i > pos; i-- {
		dst, src := p.rawAt(e, i), p.rawAt(e, i-1)
		copy(p.rw[dst:dst+p.lay.stride], p.rw[src:src+p.lay.stride])
	}
	p.putRaw(v, e, p.rawAt(e, pos), rec)
	e.rawLen++
	p.raw++
	if e.rawNull < maxRawNull && v.recHasNull(rec) {
		e.rawNull++
	}
	if hs := p.hot[slot]; hs != nil {
		next := int64(math.MaxInt64)
		if pos+1 < e.rawLen {
			next = p.rawTs(v, e, p.rawAt(e, pos+1))
		}
		p.hotAdd(v, hs, e, pos, next)
	}
}

// recHasNull reports whether logical record rec has a null kept field.
func (v *View) recHasNull(rec []uint64) bool {
	for i, c := range v.stored {
		if rec[1+i] == v.colNull[c] {
			return true
		}
	}
	return false
}

// rawHasNull reports whether the raw record at offset at has a null kept field.
func (p *partition) rawHasNull(v *View, at int) bool {
	l := p.lay
	for i := range l.cols {
		if l.cols[i].isNull(p.rw, at) {
			return true
		}
	}
	return false
}

// eager reports whether e's tiles also summarize its raw events: then every
// raw event whose tile starts after newest - horizon (the only ones a tiled
// aggregation can count) is also in its tile, and the tiles at or after
// t.folded hold exactly those events. Otherwise no tile starts at or after
// t.folded. An entity turns eager once it holds more than foldAt raw events
// (see maintain); it is derived from the state, so snapshots keep it.
func (p *partition) eager(v *View, t *tileHdr) bool {
	return t.tileLen > 0 && int64(p.words[v.tileAt(t, t.tileLen-1)]) >= t.folded
}

func (p *partition) growRaw(v *View, e *entity) {
	cls := uint8(0)
	if e.rawCls != noBlock {
		cls = e.rawCls + 1
	}
	off := p.allocBlock(v, rawKind, cls)
	if e.rawCls != noBlock {
		for i := uint32(0); i < e.rawLen; i++ {
			src := p.rawAt(e, i)
			dst := int(off) + int(i)*p.lay.stride
			copy(p.rw[dst:dst+p.lay.stride], p.rw[src:src+p.lay.stride])
		}
		p.freeBlock(v, rawKind, e.rawCls, e.rawOff)
	}
	e.rawOff, e.rawCls, e.rawHead = off, cls, 0
}

// popRaw drops e's oldest raw event.
func (p *partition) popRaw(v *View, e *entity) {
	if e.rawNull > 0 && e.rawNull < maxRawNull && p.rawHasNull(v, p.rawAt(e, 0)) {
		e.rawNull--
	}
	e.rawHead++
	if e.rawHead == classCap[e.rawCls] {
		e.rawHead = 0
	}
	e.rawLen--
	p.raw--
	if e.rawLen == 0 {
		e.rawNull = 0
	}
}

// maintain drops what no answerable read needs and folds old raw events
// into tiles; t is e's tile header.
func (p *partition) maintain(v *View, e *entity, t *tileHdr) {
	cut := e.newest - v.horizon // events at or before cut count in no answerable read
	for e.rawLen > 0 && p.rawTs(v, e, p.rawAt(e, 0)) <= cut {
		p.popRaw(v, e)
	}
	if v.grid == 0 {
		return
	}
	if t.tileLen > 0 {
		n := uint32(0)
		for n < t.tileLen && int64(p.words[int(t.tileOff)+int(n)*v.tileStride]) <= cut {
			n++
		}
		if n > 0 {
			p.freeTiles(v, t, 0, n)
			base := int(t.tileOff)
			copy(p.words[base:base+int(t.tileLen-n)*v.tileStride], p.words[base+int(n)*v.tileStride:base+int(t.tileLen)*v.tileStride])
			t.tileLen -= n
			p.tiles -= int(n)
		}
	}
	if e.rawLen <= foldAt {
		return
	}
	var buf [16]uint64
	rec := buf[:]
	if v.recLen > len(buf) {
		rec = make([]uint64, v.recLen)
	}
	rec = rec[:v.recLen]
	if !p.eager(v, t) {
		// The entity turns eager: its raw events enter their tiles too (from
		// now on as they arrive, see Add), so that a read at or after its
		// newest event answers tiled aggregations from tiles alone. Events
		// whose tile starts at or before cut count in no answerable tiled
		// read and stay out.
		for i := range e.rawLen {
			at := p.rawAt(e, i)
			if floorDiv(p.rawTs(v, e, at), v.grid)*v.grid > cut {
				p.getRaw(v, e, at, rec)
				p.addToTile(v, t, rec)
			}
		}
	}
	// Fold events that exact windows no longer need and whose tile is
	// complete for every answerable read (ends at or before newest - Lateness).
	// The entity is eager (or holds no event a tiled read can count), so
	// they are already in their tiles: folding drops them from the raw ring.
	f := (floorDiv(e.newest-v.exactHorizon+1, v.grid)) * v.grid
	if f <= t.folded {
		return
	}
	t.folded = f
	for e.rawLen > 0 && p.rawTs(v, e, p.rawAt(e, 0)) < f {
		p.popRaw(v, e)
	}
}

// freeTiles releases the distinct sets of tiles [from, to) of the entity
// whose tile header is t.
func (p *partition) freeTiles(v *View, t *tileHdr, from, to uint32) {
	for c := range v.tcols {
		bm := v.tcols[c].bm
		if bm == 0 {
			continue
		}
		for i := from; i < to; i++ {
			if w := p.words[v.tileAt(t, i)+bm]; w&bmFlag != 0 {
				id := uint32(w)
				p.bms[id].Clear()
				p.freeBms = append(p.freeBms, id)
			}
		}
	}
}

// tileAt returns the word offset of tile i of the entity whose tile header
// is th.
func (v *View) tileAt(th *tileHdr, i uint32) int { return int(th.tileOff) + int(i)*v.tileStride }

// addToTile folds raw record rec into its tile, creating the tile if needed,
// in the entity whose tile header is th.
func (p *partition) addToTile(v *View, th *tileHdr, rec []uint64) {
	ts := int64(rec[0])
	start := floorDiv(ts, v.grid) * v.grid
	lo, hi := uint32(0), th.tileLen
	if hi > 0 && int64(p.words[v.tileAt(th, hi-1)]) <= start {
		lo = hi - 1 // the newest tile or after: the common case
	}
	for lo < hi {
		m := (lo + hi) / 2
		if int64(p.words[v.tileAt(th, m)]) < start {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == th.tileLen || int64(p.words[v.tileAt(th, lo)]) != start {
		p.newTile(v, th, lo, start)
	}
	t := p.words[v.tileAt(th, lo) : v.tileAt(th, lo)+v.tileStride]
	for c := range v.tcols {
		tc := &v.tcols[c]
		if tc.cnt == 0 {
			continue
		}
		x := rec[v.colWord[c]]
		if x == v.colNull[c] {
			continue
		}
		t[tc.cnt]++
		n := t[tc.cnt]
		f := math.Float64frombits(x)
		if tc.sumHi != 0 {
			hi, lo := twoSumAdd(math.Float64frombits(t[tc.sumHi]), math.Float64frombits(t[tc.sumLo]), f)
			t[tc.sumHi], t[tc.sumLo] = math.Float64bits(hi), math.Float64bits(lo)
		}
		if tc.wMean != 0 {
			mean, m2 := math.Float64frombits(t[tc.wMean]), math.Float64frombits(t[tc.wM2])
			d := f - mean
			mean += d / float64(n)
			m2 += d * (f - mean)
			t[tc.wMean], t[tc.wM2] = math.Float64bits(mean), math.Float64bits(m2)
		}
		if tc.min != 0 && (n == 1 || f < math.Float64frombits(t[tc.min])) {
			t[tc.min] = x
		}
		if tc.max != 0 && (n == 1 || f > math.Float64frombits(t[tc.max])) {
			t[tc.max] = x
		}
		if tc.last != 0 && (n == 1 || ts >= int64(t[tc.lastTs])) {
			t[tc.lastTs], t[tc.last] = uint64(ts), x
		}
		if tc.bm != 0 {
			p.addDistinct(&t[tc.bm], uint32(x))
		}
	}
}

// newTile inserts an empty tile at index i of the entity whose tile header
// is th.
func (p *partition) newTile(v *View, th *tileHdr, i uint32, start int64) {
	if th.tileCls == noBlock || th.tileLen == classCap[th.tileCls] {
		cls := uint8(0)
		if th.tileCls != noBlock {
			cls = th.tileCls + 1
		}
		off := p.allocBlock(v, tileKind, cls)
		if th.tileCls != noBlock {
			copy(p.words[off:int(off)+int(th.tileLen)*v.tileStride], p.words[th.tileOff:int(th.tileOff)+int(th.tileLen)*v.tileStride])
			p.freeBlock(v, tileKind, th.tileCls, th.tileOff)
		}
		th.tileOff, th.tileCls = off, cls
	}
	at := v.tileAt(th, i)
	end := v.tileAt(th, th.tileLen)
	copy(p.words[at+v.tileStride:end+v.tileStride], p.words[at:end])
	t := p.words[at : at+v.tileStride]
	clear(t)
	t[0] = uint64(start)
	th.tileLen++
	p.tiles++
}

// A tile's distinct set is one word: 0 when empty, id+1 while it holds a
// single id (most tiles of most entities: no bitmap to allocate), else
// bmFlag|index of a roaring bitmap in partition.bms.
const bmFlag = 1 << 63

func (p *partition) addDistinct(w *uint64, id uint32) {
	switch {
	case *w == 0:
		*w = uint64(id) + 1
	case *w&bmFlag != 0:
		p.bms[uint32(*w)].Add(id)
	case *w != uint64(id)+1:
		b := p.newBitmap()
		p.bms[b].Add(uint32(*w - 1))
		p.bms[b].Add(id)
		*w = bmFlag | uint64(b)
	}
}

// appendDistinct appends the ids of distinct set word w to s.
func (p *partition) appendDistinct(s []uint64, w uint64) []uint64 {
	switch {
	case w == 0:
	case w&bmFlag == 0:
		s = append(s, w-1)
	default:
		p.bms[uint32(w)].Iterate(func(x uint32) bool {
			s = append(s, uint64(x))
			return true
		})
	}
	return s
}

func (p *partition) newBitmap() uint32 {
	if n := len(p.freeBms); n > 0 {
		id := p.freeBms[n-1]
		p.freeBms = p.freeBms[:n-1]
		return id
	}
	p.bms = append(p.bms, roaring.New())
	return uint32(len(p.bms) - 1)
}

// twoSumAdd adds x to the compensated sum hi+lo (Neumaier).
func twoSumAdd(hi, lo, x float64) (float64, float64) {
	t := hi + x
	if math.Abs(hi) >= math.Abs(x) {
		lo += (hi - t) + x
	} else {
		lo += (x - t) + hi
	}
	return t, lo
}

// bytes estimates the partition's memory.
func (p *partition) bytes() int64 {
	b := int64(cap(p.rw)) + int64(cap(p.words))*8 + int64(cap(p.ents))*int64(unsafe.Sizeof(entity{})) +
		int64(cap(p.tls))*int64(unsafe.Sizeof(tileHdr{})) + int64(cap(p.keys)) +
		p.index.bytes() + int64(cap(p.freeEnt))*4
	for _, l := range p.free {
		b += int64(cap(l)) * 4
	}
	for _, bm := range p.bms {
		b += int64(bm.GetSizeInBytes()) + 48
	}
	return b
}
