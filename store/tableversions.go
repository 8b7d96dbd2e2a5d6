package store

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/tally-ml/tally/ring"
)

// A table answers a read at time at (GetAt) with the row valid then: that
// of the last upload, in log order, valid from at or before at. An upload
// is valid from the clock it was acknowledged at, or from the earlier time
// a backfill names; so a backfill applied after a newer upload hides it, as
// it does for a read at the node's clock. A lookup's as_of reaches back at
// most the longest lateness of the repo (the horizon) before the node's
// clock, which is at or after every upload's valid-from time and every
// change's acknowledgement clock; so a row replaced, or removed by a
// replace, at a time more than the horizon before the latest of those (the
// cut) is never read again.
//
// The arena holds each key's current row. recent holds, for each key
// whose row changed after the cut, its versions in log order, their from
// times increasing (a change valid from no later than an earlier one hides
// it): the rows it replaced within the horizon as copies, then its current
// state, the arena's row or no row. A read before a key's first version
// finds no row. A change is recorded only when the row differs from the
// one it replaces, so a daily upload of a whole table keeps copies of the
// rows that changed, not of the table. Each change recorded is queued; as
// the cut passes it (an upload, or any change of the log, moves the cut:
// advance), its key's versions no read needs are dropped, and the key once
// only its current state is left. So recent and the queue hold the changes
// of the last horizon (a copy of each row replaced, a key and a time per
// change), and those that wait for their turn: a change queued behind one
// valid from later (a backfill's), or beyond the few an advance looks at.
// So memory is bounded by the recent changes, not by the table's size or
// history.
//
// A snapshot keeps newest and recent (appendVersions), so a restart within
// the horizon reads the same rows. A snapshot written before versions were
// kept restores none: until the horizon has passed, a read before the
// restart then gets the current row, as it did before versions were kept.

// version is one state of a key's row, valid from from on until the next.
type version struct {
	from int64
	kind byte     // verRow, verCurrent, verGone
	row  []uint64 // verRow: the row's words as a record holds them (null bits, numbers)
	strs []string // verRow: its string columns' values
}

const (
	verRow     byte = iota // a replaced row, copied
	verCurrent             // the key's current row, the arena's
	verGone                // no row: a replace left the key out
)

// pending is a change recorded in recent, queued until the cut passes it:
// key's row changed, valid from from.
type pending struct {
	from int64
	key  string
}

// cut is the time before which no read needs a replaced row: the horizon
// before the latest of newest and the log's clock. The caller holds t.mu.
func (t *Table) cut() int64 {
	now := max(t.newest, t.clock)
	if now < math.MinInt64+t.horizon {
		return math.MinInt64
	}
	return now - t.horizon
}

// change records in key's versions that its row changes at from to r (nil:
// no row), before the arena does; had says whether the key has a row, at
// o. key is kept: it must not point into the arena. The caller holds t.mu
// for writing.
func (t *Table) change(key string, from int64, o int, had bool, r *TableRow) {
	vs, tracked := t.recent[key]
	if !tracked {
		if had && r != nil && t.sameAsRecord(o, r) {
			return // unchanged since before the cut
		}
		if had {
			vs = append(vs, version{from: math.MinInt64, kind: verCurrent})
		}
	}
	for len(vs) > 0 && vs[len(vs)-1].from >= from {
		vs[len(vs)-1] = version{} // hidden: valid from no earlier than this change
		vs = vs[:len(vs)-1]
	}
	if n := len(vs); n > 0 && vs[n-1].kind == verCurrent {
		if r != nil && t.sameAsRecord(o, r) {
			t.record(key, from, vs)
			return
		}
		vs[n-1].row, vs[n-1].strs = t.copyRecord(o)
		vs[n-1].kind = verRow
	}
	n := len(vs)
	switch {
	case r == nil && (n == 0 || vs[n-1].kind == verGone):
	case r == nil:
		vs = append(vs, version{from: from, kind: verGone})
	case n > 0 && vs[n-1].kind == verRow && t.sameAsWords(vs[n-1].row, vs[n-1].strs, r):
		vs[n-1] = version{from: vs[n-1].from, kind: verCurrent} // back to the row it had
	default:
		vs = append(vs, version{from: from, kind: verCurrent})
	}
	for len(vs) > 0 && vs[0].kind == verGone {
		vs = vs[1:] // no row before the first version anyway
	}
	if len(vs) == 0 {
		delete(t.recent, key)
		return
	}
	t.record(key, from, vs)
}

// record sets key's versions after a change valid from from, and queues
// the key to be looked at once the cut passes from.
func (t *Table) record(key string, from int64, vs []version) {
	t.recent[key] = vs
	t.queue = append(t.queue, pending{from: from, key: key})
}

// replaced records the changes of a replace by rows at from, before the
// arena is reset: each row's key changes to its row, and every other key
// to no row (those of the arena, and those recent knows without one). The
// caller holds t.mu for writing.
func (t *Table) replaced(rows []TableRow, from int64) {
	kept := make([]bool, t.rows) // by row number
	for i := range rows {
		r := &rows[i]
		h := ring.HashString(r.Key)
		if t.owns != nil && !t.owns[ring.Partition(h)] {
			continue
		}
		o, ok := t.find(h, r.Key)
		if ok {
			kept[t.recs[o]>>32] = true
		}
		t.change(r.Key, from, o, ok, r)
	}
	for _, o := range t.offsets() {
		if !kept[t.recs[o]>>32] {
			t.change(strings.Clone(t.key(o)), from, o, true, nil)
		}
	}
	for k, vs := range t.recent {
		if vs[len(vs)-1].kind == verGone {
			// No row now, but maybe one, hidden now, between from and the
			// change that removed it.
			t.change(k, from, 0, false, nil)
		}
	}
}

// readAt is GetAt's read of key (its record at o, if ok) at a time before
// the newest upload; the caller holds t.mu.
func (t *Table) readAt(key string, at int64, o int, ok bool, nums []float64, strs []string, present []bool) bool {
	vs, tracked := t.recent[key]
	if !tracked {
		if ok {
			t.readRecord(o, nums, strs, present)
		}
		return ok
	}
	i := len(vs) - 1
	for i >= 0 && vs[i].from > at {
		i--
	}
	switch {
	case i < 0 || vs[i].kind == verGone:
		return false
	case vs[i].kind == verCurrent:
		t.readRecord(o, nums, strs, present)
	default:
		t.readWords(vs[i].row, vs[i].strs, nums, strs, present)
	}
	return true
}

// advance tells the table that the store applied a change of the log at
// clock (the node's clock when it was acknowledged), so that it drops the
// versions no read needs any more as time passes, not only when uploads
// come. The store calls it when clock reaches expires.
func (t *Table) advance(clock int64) {
	t.mu.Lock()
	t.clock = max(t.clock, clock)
	t.expire(expireBatch)
	t.mu.Unlock()
}

// expireBatch bounds the changes one advance looks at, so that lookups of
// the table wait for it for tens of microseconds at most: the next change
// of the log goes on.
const expireBatch = 1024

// expire looks at the keys of up to limit changes recorded valid from at
// or before the cut, in the order they were recorded, and drops their
// versions no read needs any more (prune). The caller holds t.mu for
// writing.
func (t *Table) expire(limit int) {
	cut := t.cut()
	for ; limit > 0 && t.head < len(t.queue) && t.queue[t.head].from <= cut; limit-- {
		t.prune(t.queue[t.head].key, cut)
		t.queue[t.head] = pending{}
		t.head++
	}
	if t.head > len(t.queue)/2 {
		n := copy(t.queue, t.queue[t.head:])
		clear(t.queue[n:])
		t.queue, t.head = t.queue[:n], 0
	}
	e := int64(math.MaxInt64)
	if t.head < len(t.queue) && t.queue[t.head].from < math.MaxInt64-t.horizon {
		e = t.queue[t.head].from + t.horizon
	}
	t.expires.Store(e)
}

// prune drops key's versions no read needs any more: those followed by one
// valid from at or before cut, and the key itself when only its current
// state from before cut is left.
func (t *Table) prune(key string, cut int64) {
	vs, ok := t.recent[key]
	if !ok {
		return
	}
	i := 0
	for i+1 < len(vs) && vs[i+1].from <= cut {
		i++
	}
	if i == len(vs)-1 && vs[i].from <= cut {
		delete(t.recent, key)
		return
	}
	if i > 0 {
		n := copy(vs, vs[i:])
		clear(vs[n:]) // the dropped copies are garbage
		t.recent[key] = vs[:n]
	}
}

// copyRecord copies the row of the record at o.
func (t *Table) copyRecord(o int) ([]uint64, []string) {
	nc := len(t.def.Columns)
	row := int(t.recs[o] >> 32)
	var strs []string
	if t.nstr > 0 {
		strs = slices.Clone(t.strs[row*t.nstr : (row+1)*t.nstr])
	}
	return slices.Clone(t.recs[o+1 : o+1+nullWords(nc)+nc]), strs
}

// sameAsRecord reports whether r's values are those of the record at o.
func (t *Table) sameAsRecord(o int, r *TableRow) bool {
	nc := len(t.def.Columns)
	row := int(t.recs[o] >> 32)
	return t.sameAsWords(t.recs[o+1:o+1+nullWords(nc)+nc], t.strs[row*t.nstr:(row+1)*t.nstr], r)
}

// sameAsWords reports whether r's values are those of a row held as a
// record holds it (readWords): the same nulls, and the same number (bit
// for bit) or string in every other column.
func (t *Table) sameAsWords(words []uint64, vals []string, r *TableRow) bool {
	nw := nullWords(len(t.def.Columns))
	for c := range t.def.Columns {
		null := words[c/64]>>(c%64)&1 != 0
		switch {
		case null != r.Null[c]:
			return false
		case null:
		case t.strCol[c] >= 0:
			if vals[t.strCol[c]] != r.Strs[c] {
				return false
			}
		case words[nw+c] != math.Float64bits(r.Nums[c]):
			return false
		}
	}
	return true
}

// appendVersions appends the table's versions, for a snapshot (snapshot.go):
//
//	name ncols:uvarint ncols x name newest:varint nkeys:uvarint
//	per key: key nversions:uvarint, per version: from:varint kind:u8
//	kind 0: a replaced row, then a value per column as in a table record
//	kind 1: the key's current row (the snapshot's table record holds it)
//	kind 2: no row
//
// The caller holds t.mu.
func (t *Table) appendVersions(dst []byte) []byte {
	dst = appendName(dst, []byte(t.def.Name))
	dst = binary.AppendUvarint(dst, uint64(len(t.def.Columns)))
	for _, c := range t.def.Columns {
		dst = appendName(dst, []byte(c.Name))
	}
	dst = binary.AppendVarint(dst, t.newest)
	dst = binary.AppendUvarint(dst, uint64(len(t.recent)))
	nc := len(t.def.Columns)
	r := TableRow{Nums: make([]float64, nc), Strs: make([]string, nc), Null: make([]bool, nc)}
	for k, vs := range t.recent {
		dst = appendName(dst, []byte(k))
		dst = binary.AppendUvarint(dst, uint64(len(vs)))
		for _, v := range vs {
			dst = binary.AppendVarint(dst, v.from)
			dst = append(dst, v.kind)
			if v.kind == verRow {
				t.readWords(v.row, v.strs, r.Nums, r.Strs, r.Null)
				for c := range r.Null {
					r.Null[c] = !r.Null[c] // readWords wrote present
				}
				dst = appendRowValues(dst, t, &r)
			}
		}
	}
	return dst
}

// restoreVersions restores what appendVersions wrote, read from r, into
// the table it names, which holds the snapshot's rows (put from
// MinInt64); those of a table the repo no longer has are skipped, as its
// rows were.
func (n *Store) restoreVersions(r *recordReader) error {
	name := string(r.name())
	ncols := r.uvarint(uint64(len(r.b)))
	if r.err != nil {
		return r.err
	}
	t := n.TableNamed(name) // nil: removed, its rows skipped (or refused) before
	colMap := make([]int, ncols)
	for i := range colMap {
		colMap[i] = -1
		if c := r.name(); t != nil {
			colMap[i], _ = t.def.Column(string(c))
		}
	}
	newest := r.varint()
	nkeys := r.uvarint(uint64(len(r.b)))
	recent := map[string][]version{}
	for range nkeys {
		if r.err != nil {
			break
		}
		key := string(r.name())
		nv := r.uvarint(uint64(len(r.b)))
		var vs []version
		for range nv {
			v := version{from: r.varint(), kind: r.byte()}
			if r.err != nil {
				break
			}
			switch v.kind {
			case verRow:
				if t == nil {
					for range colMap {
						r.value()
					}
					continue
				}
				row := NewRow(t.def)
				if err := readRowValues(r, t, colMap, &row); err != nil {
					return fmt.Errorf("snapshot versions of table %s: %w", name, err)
				}
				v.row, v.strs = t.rowWords(&row)
			case verCurrent, verGone:
			default:
				return fmt.Errorf("%w: snapshot versions of table %s: kind %d", errBadRecord, name, v.kind)
			}
			vs = append(vs, v)
		}
		if len(vs) > 0 {
			recent[key] = vs
		}
	}
	if r.err != nil {
		return fmt.Errorf("snapshot versions of table %s: %w", name, r.err)
	}
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.newest = max(t.newest, newest)
	var queue []pending
	for key, vs := range recent {
		h := ring.HashString(key)
		if t.owns != nil && !t.owns[ring.Partition(h)] {
			continue
		}
		_, ok := t.find(h, key)
		if ok != (vs[len(vs)-1].kind == verCurrent) {
			return fmt.Errorf("%w: snapshot versions of table %s: key %q's current state is not the snapshot's row", errBadRecord, name, key)
		}
		t.recent[key] = vs
		queue = append(queue, pending{from: vs[len(vs)-1].from, key: key})
	}
	slices.SortFunc(queue, func(a, b pending) int { return cmp.Compare(a.from, b.from) })
	t.queue = append(t.queue, queue...)
	t.expire(expireBatch)
	return nil
}

// rowWords returns r as a record holds it (writeWords), in slices of its
// own.
func (t *Table) rowWords(r *TableRow) ([]uint64, []string) {
	nc := len(t.def.Columns)
	words := make([]uint64, nullWords(nc)+nc)
	var vals []string
	if t.nstr > 0 {
		vals = make([]string, t.nstr)
	}
	t.writeWords(words, vals, r)
	return words, vals
}
