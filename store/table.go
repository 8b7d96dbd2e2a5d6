package store

import (
	"math"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/ring"
)

// Table is a bulk-loaded table view: the latest row per entity key, and
// the rows a read at a recent past time still needs (tableversions.go).
//
// Its rows are records in one pointer-free arena of words: the row's
// number and its key's length, a null bit per column, a number per column,
// then the key's bytes. An open-addressing index by ring.Hash of the key
// (an entry is the hash's low 32 bits << 32 | the record's offset + 1;
// linear probing; a replace rebuilds it, nothing else removes) finds the
// record, whose key is compared: a row is read from two places, its index
// slot and its record, where a Go map's row was read from five (the map's
// group, the key's bytes, then the numbers, strings and null flags). The
// values of string columns are kept apart, row-major; a number column has
// none. The default repo's profile table holds 65 B less per card holder
// this way (BenchmarkMemoryPerUser: 927 vs 992 B for the whole repo).
type Table struct {
	def    *features.Table
	mu     sync.RWMutex
	idx    []uint64 // length a power of two, at most 3/4 full
	recs   []uint64
	strs   []string // per row, the string columns' values
	rows   int
	strCol []int // column -> its place among the string columns; -1: a number
	nstr   int
	owns   *[ring.Partitions]bool

	// Versions (tableversions.go). horizon is how far back a read may ask
	// for (the repo's longest lateness, which bounds a lookup's as_of);
	// newest is the latest time any upload applied is valid from, clock
	// the latest clock of the log the store has applied (MinInt64: none).
	horizon, newest, clock int64
	// recent holds the versions of the keys whose row changed after the
	// cut; queue the changes in the order they were recorded, so that
	// their keys are looked at once the cut passes them; expires is when
	// the first of them may be dropped (MaxInt64: none).
	recent  map[string][]version
	queue   []pending
	head    int // queue[:head] are done
	expires atomic.Int64
}

// newTable makes the empty table of def that keeps, for reads at a past
// time, the rows replaced within horizon ms of its newest upload.
func newTable(def *features.Table, owns *[ring.Partitions]bool, horizon int64) *Table {
	t := &Table{def: def, owns: owns, horizon: max(horizon, 0), newest: math.MinInt64, clock: math.MinInt64, recent: map[string][]version{}}
	t.expires.Store(math.MaxInt64)
	for _, c := range def.Columns {
		if c.Type == features.String {
			t.strCol = append(t.strCol, t.nstr)
			t.nstr++
		} else {
			t.strCol = append(t.strCol, -1)
		}
	}
	return t
}

// TableRow is one parsed row ready to be stored: a value per column of
// the table (NewRow makes one with every column null).
type TableRow struct {
	Key  string
	Nums []float64
	Strs []string
	Null []bool
}

// A record's words, from its offset: the header, nullWords(nc) words of
// null bits, nc numbers, then keyWords(len(key)) words of key bytes.
func nullWords(nc int) int     { return (nc + 63) / 64 }
func keyWords(n int) int       { return (n + 7) / 8 }
func header(row, n int) uint64 { return uint64(row)<<32 | uint64(n) }

// key returns the key of the record at o (memory of t.recs: valid while
// t.mu is held and the arena is not grown).
func (t *Table) key(o int) string {
	nc := len(t.def.Columns)
	n := int(uint32(t.recs[o]))
	if n == 0 {
		return ""
	}
	return unsafe.String((*byte)(unsafe.Pointer(&t.recs[o+1+nullWords(nc)+nc])), n)
}

// find returns the offset of key's record; h = ring.Hash(key).
func (t *Table) find(h uint64, key string) (int, bool) {
	if len(t.idx) == 0 {
		return 0, false
	}
	mask := uint64(len(t.idx) - 1)
	fp := h << 32
	for i := h & mask; ; i = (i + 1) & mask {
		x := t.idx[i]
		if x == 0 {
			return 0, false
		}
		if x&^(1<<32-1) == fp {
			if o := int(uint32(x) - 1); t.key(o) == key {
				return o, true
			}
		}
	}
}

// insert adds the index entry of the record at o, whose key hash is h.
func (t *Table) insert(h uint64, o int) {
	if (t.rows+1)*4 > len(t.idx)*3 {
		old := t.idx
		t.idx = make([]uint64, max(8, 2*len(old)))
		for _, e := range old {
			if e != 0 {
				t.place(e)
			}
		}
	}
	t.place(h<<32 | uint64(o) + 1)
	t.rows++
}

func (t *Table) place(e uint64) {
	mask := uint64(len(t.idx) - 1)
	i := e >> 32 & mask
	for t.idx[i] != 0 {
		i = (i + 1) & mask
	}
	t.idx[i] = e
}

// put stores rows valid from from, replacing the table first when replace
// is set, and keeps the rows they replace or remove for as long as a read
// at a past time may ask for them (tableversions.go). It is atomic with
// respect to lookups.
func (t *Table) put(rows []TableRow, replace bool, from int64) {
	nc := len(t.def.Columns)
	nw := nullWords(nc)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.newest = max(t.newest, from)
	versioned := from > t.cut() // else this upload hides every older version
	queued := len(t.queue) - t.head
	switch {
	case versioned && replace:
		t.replaced(rows, from)
	case replace:
		clear(t.recent) // (the queue's entries find nothing)
	}
	if replace {
		t.idx, t.recs, t.strs, t.rows = nil, t.recs[:0], t.strs[:0], 0
	}
	for i := range rows {
		r := &rows[i]
		h := ring.HashString(r.Key)
		if t.owns != nil && !t.owns[ring.Partition(h)] {
			continue
		}
		o, ok := t.find(h, r.Key)
		switch {
		case versioned && !replace:
			t.change(r.Key, from, o, ok, r)
		case !versioned && len(t.recent) > 0:
			delete(t.recent, r.Key)
		}
		if !ok {
			if uint64(len(t.recs)) >= math.MaxUint32-1 {
				panic("store: a table's rows exceed 2^32 words")
			}
			o = len(t.recs)
			kw := keyWords(len(r.Key))
			t.recs = append(t.recs, make([]uint64, 1+nw+nc+kw)...)
			t.recs[o] = header(t.rows, len(r.Key))
			if kw > 0 {
				copy(unsafe.Slice((*byte)(unsafe.Pointer(&t.recs[o+1+nw+nc])), 8*kw), r.Key)
			}
			t.strs = append(t.strs, make([]string, t.nstr)...)
			t.insert(h, o)
		}
		row := int(t.recs[o] >> 32)
		t.writeWords(t.recs[o+1:o+1+nw+nc], t.strs[row*t.nstr:(row+1)*t.nstr], r)
	}
	t.expire(expireBatch + max(0, len(t.queue)-t.head-queued)) // (keeps up with its own changes)
}

// Get copies key's current row into nums, strs and present (one per
// column) and reports whether the key has a row; without one, present is
// all false and nums and strs are unchanged.
func (t *Table) Get(key []byte, nums []float64, strs []string, present []bool) bool {
	return t.GetAt(key, math.MaxInt64, nums, strs, present)
}

// GetAt is Get of the row valid at time at: the row of the last upload
// applied (in log order) that is valid from at or before at, or no row if
// that upload left the key out (a replace) or there is none. It is exact
// back to the horizon before the newest upload's valid-from time
// (newTable), as far as a lookup's as_of reaches on a node whose clock is
// not behind that time; a read further back may get a later row, or none.
// A read at or after the newest upload's valid-from time (any lookup at
// the node's clock, and any as_of after the newest upload) costs one
// comparison more than Get did before tables kept versions; an earlier one
// looks the key up in the versions too.
func (t *Table) GetAt(key []byte, at int64, nums []float64, strs []string, present []bool) bool {
	h := ring.Hash(key)
	k := unsafe.String(unsafe.SliceData(key), len(key)) // (find and recent keep no reference)
	t.mu.RLock()
	o, ok := t.find(h, k)
	if at < t.newest && len(t.recent) > 0 {
		ok = t.readAt(k, at, o, ok, nums, strs, present)
	} else if ok {
		t.readRecord(o, nums, strs, present)
	}
	t.mu.RUnlock()
	if !ok {
		clear(present[:len(t.def.Columns)])
	}
	return ok
}

// readRecord copies the row of the record at o; the caller holds t.mu.
func (t *Table) readRecord(o int, nums []float64, strs []string, present []bool) {
	nc := len(t.def.Columns)
	row := int(t.recs[o] >> 32)
	t.readWords(t.recs[o+1:o+1+nullWords(nc)+nc], t.strs[row*t.nstr:(row+1)*t.nstr], nums, strs, present)
}

// writeWords writes r as a record holds it (readWords) into words and
// vals.
func (t *Table) writeWords(words []uint64, vals []string, r *TableRow) {
	nw := nullWords(len(t.def.Columns))
	clear(words[:nw])
	for c := range t.def.Columns {
		if r.Null[c] {
			words[c/64] |= 1 << (c % 64)
		}
		words[nw+c] = math.Float64bits(r.Nums[c])
		if s := t.strCol[c]; s >= 0 {
			vals[s] = r.Strs[c]
		}
	}
}

// readWords copies a row held as a record holds it (words: the null bits,
// then the numbers; vals: the string columns' values).
func (t *Table) readWords(words []uint64, vals []string, nums []float64, strs []string, present []bool) {
	nw := nullWords(len(t.def.Columns))
	for c := range t.def.Columns {
		present[c] = words[c/64]>>(c%64)&1 == 0
		nums[c] = math.Float64frombits(words[nw+c])
		if s := t.strCol[c]; s >= 0 {
			strs[c] = vals[s]
		} else {
			strs[c] = ""
		}
	}
}

// Len is the number of rows.
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.rows
}

// offsets returns the offsets of the records, in the order they were
// first stored. The caller holds t.mu.
func (t *Table) offsets() []int {
	nc := len(t.def.Columns)
	out := make([]int, 0, t.rows)
	for o := 0; o < len(t.recs); o += 1 + nullWords(nc) + nc + keyWords(int(uint32(t.recs[o]))) {
		out = append(out, o)
	}
	return out
}

// rowAt sets r, whose slices have a place per column, to the row of the
// record at o; r.Key points into the arena. The caller holds t.mu for as
// long as it reads r.
func (t *Table) rowAt(o int, r *TableRow) {
	nc := len(t.def.Columns)
	nw := nullWords(nc)
	row := int(t.recs[o] >> 32)
	r.Key = t.key(o)
	for c := range nc {
		r.Null[c] = t.recs[o+1+c/64]>>(c%64)&1 != 0
		r.Nums[c] = math.Float64frombits(t.recs[o+1+nw+c])
		r.Strs[c] = ""
		if s := t.strCol[c]; s >= 0 {
			r.Strs[c] = t.strs[row*t.nstr+s]
		}
	}
}

// rowsView returns every row, in the order they were first stored, their
// values in three shared arrays (not three allocations per row: a
// snapshot reads every row while writes wait) and their keys pointing
// into the arena. The caller holds t.mu for as long as it reads them.
func (t *Table) rowsView() []TableRow {
	nc := len(t.def.Columns)
	nums, strs, null := make([]float64, t.rows*nc), make([]string, t.rows*nc), make([]bool, t.rows*nc)
	out := make([]TableRow, t.rows)
	for i, o := range t.offsets() {
		j := i * nc
		out[i] = TableRow{Nums: nums[j : j+nc : j+nc], Strs: strs[j : j+nc : j+nc], Null: null[j : j+nc : j+nc]}
		t.rowAt(o, &out[i])
	}
	return out
}
