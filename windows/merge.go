package windows

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// ErrMerge reports views whose state cannot be merged into one view
// exactly (Merge): the merged state would differ from the one the merged
// view would hold had it been fed the same events. Nothing was changed.
var ErrMerge = errors.New("views cannot be merged exactly")

// A Merge moves the state of views that were fed the same events, each
// alone, into one view whose spec holds their columns and aggregations
// (package store's group), so that the merged view is the state it would
// hold had it been fed those events itself: the same entities in the same
// slots, the same raw events, expiry state, watermark and refused count,
// and so the same reads (of every member's aggregations, at any time) and
// the same snapshot sections.
//
// That state can be rebuilt only from a member whose horizon is the merged
// view's (it kept every event the merged view keeps: the same refusals,
// drops and sweeps) and, for each column, from a member of that horizon
// that keeps the column (as a value, when the merged view keeps it as one,
// not only as a null flag). Tiled aggregations cannot be merged: a view
// folds into tiles the raw events no exact window of its own still needs,
// and the merged view, whose exact windows may be longer, would have to
// hold some of them raw, their times and values gone. NewMerge refuses
// both with ErrMerge.
type Merge struct {
	g       *View
	members []*View
	base    int      // a member of g's horizon: entities, slots, times and expiry state
	src     []colSrc // per stored column of g
}

// colSrc is where a stored column of the merged view comes from: member m's
// stored column j.
type colSrc struct{ m, j int }

// NewMerge prepares the merge of members into g, a view that has applied
// nothing; cols[i][c] is g's spec column of member i's spec column c. The
// members' specs must be the views alone of g's aggregations, fed the same
// events; NewMerge sets g's watermark and refused count from them, and
// Partition then moves each partition.
func NewMerge(g *View, members []*View, cols [][]int) (*Merge, error) {
	m := &Merge{g: g, members: members, base: -1}
	if len(cols) != len(members) {
		return nil, fmt.Errorf("%w: %d column maps for %d views", ErrMerge, len(cols), len(members))
	}
	wm := members[0].watermark.Load()
	for i, v := range members {
		switch {
		case v.grid != 0 || g.grid != 0:
			return nil, fmt.Errorf("%w: %s has tiled aggregations (their folded events cannot be held raw again)", ErrMerge, v.spec.Name)
		case v.spec.Lateness != g.spec.Lateness:
			return nil, fmt.Errorf("%w: %s has lateness %d, the merged view %d", ErrMerge, v.spec.Name, v.spec.Lateness, g.spec.Lateness)
		case v.watermark.Load() != wm:
			return nil, fmt.Errorf("%w: %s has watermark %d, %s %d: they were not fed the same events", ErrMerge, v.spec.Name, v.watermark.Load(), members[0].spec.Name, wm)
		case len(cols[i]) != len(v.spec.Columns):
			return nil, fmt.Errorf("%w: %s: %d column map entries for %d columns", ErrMerge, v.spec.Name, len(cols[i]), len(v.spec.Columns))
		case v.horizon > g.horizon:
			return nil, fmt.Errorf("%w: %s has horizon %d, the merged view %d", ErrMerge, v.spec.Name, v.horizon, g.horizon)
		case v.horizon == g.horizon && m.base < 0:
			m.base = i
		}
	}
	if m.base < 0 {
		return nil, fmt.Errorf("%w: no view has the merged view's horizon (%d ms)", ErrMerge, g.horizon)
	}
	for gj, gc := range g.stored {
		s := colSrc{-1, -1}
		for i, v := range members {
			if v.horizon != g.horizon {
				continue
			}
			for j, c := range v.stored {
				if cols[i][c] == gc && (v.colWide[j] || !g.colWide[gj]) && (v.dicts[c] == nil) == (g.dicts[gc] == nil) {
					s = colSrc{i, j}
				}
			}
		}
		if s.m < 0 {
			return nil, fmt.Errorf("%w: no view of the merged view's horizon (%d ms) keeps column %s", ErrMerge, g.horizon, g.spec.Columns[gc].Name)
		}
		m.src = append(m.src, s)
	}
	g.watermark.Store(wm)
	g.tooLate.Store(members[m.base].tooLate.Load())
	return m, nil
}

// Partition merges the members' partition p into g's: it writes the
// section the merged view would write and reads it (ReadPartition), so
// that g holds nothing ReadPartition would refuse. An entity whose events
// differ between the members the merge reads (they were not fed the same
// events) is refused with ErrMerge, and g's partition is unchanged. The
// caller must not Add to the members or g meanwhile; partitions may be
// merged concurrently.
func (m *Merge) Partition(p uint32) error {
	g := m.g
	parts := make([]*partition, len(m.members))
	for i, v := range m.members {
		parts[i] = &v.parts[p]
		parts[i].mu.Lock()
	}
	body, err := m.encode(parts)
	for _, part := range parts {
		part.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("merge partition %d: %w", p, err)
	}
	h := append([]byte(magicPart), make([]byte, partHeaderLen-len(magicPart))...)
	binary.LittleEndian.PutUint16(h[4:], snapVersion)
	binary.LittleEndian.PutUint64(h[6:], g.fp)
	binary.LittleEndian.PutUint32(h[14:], p)
	binary.LittleEndian.PutUint64(h[18:], uint64(len(body)))
	return g.ReadPartition(io.MultiReader(bytes.NewReader(h), bytes.NewReader(body)), p)
}

// encode returns the body of the merged partition's section (format in
// snapshot.go), its string table first.
func (m *Merge) encode(parts []*partition) ([]byte, error) {
	g := m.g
	bp := parts[m.base]
	var strs, b []byte
	nstr := uint64(0)
	// A column's values come from one member's dictionary: its ids
	// name them.
	local := map[uint64]uint64{} // column<<32 | member's id -> string table reference
	ref := func(gc int, d *dict, id uint32) uint64 {
		k := uint64(gc)<<32 | uint64(id)
		if r, ok := local[k]; ok {
			return r
		}
		val := d.str(id)
		strs = binary.AppendUvarint(strs, uint64(gc))
		strs = binary.AppendUvarint(strs, uint64(len(val)))
		strs = append(strs, val...)
		nstr++
		local[k] = nstr
		return nstr
	}
	b = binary.AppendUvarint(b, uint64(len(bp.ents)))
	b = binary.AppendUvarint(b, uint64(bp.cursor))
	b = binary.AppendUvarint(b, uint64(bp.ticks))
	b = binary.AppendUvarint(b, uint64(bp.expired))
	// The members the columns come from hold the base's entities, and only
	// those (the same horizon, the same events).
	for i, part := range parts {
		if i != m.base && part.live != bp.live && m.reads(i) {
			return nil, fmt.Errorf("%w: %s holds %d entities, %s %d", ErrMerge, m.members[i].spec.Name, part.live, m.members[m.base].spec.Name, bp.live)
		}
	}
	recs := make([][]uint64, len(parts))
	for i, v := range m.members {
		recs[i] = make([]uint64, v.recLen)
	}
	ents := make([]*entity, len(parts))
	for slot := range bp.ents {
		e := &bp.ents[slot]
		if !e.live {
			b = append(b, 0)
			continue
		}
		key := bp.keys[e.keyOff : e.keyOff+e.keyLen]
		for i, part := range parts {
			ents[i] = nil
			if !m.reads(i) {
				continue
			}
			s, ok := part.find(m.members[i].hash(key), key)
			if !ok {
				return nil, fmt.Errorf("%w: %s holds key %q, %s does not", ErrMerge, m.members[m.base].spec.Name, key, m.members[i].spec.Name)
			}
			if x := &part.ents[s]; x.newest != e.newest || x.rawLen != e.rawLen {
				return nil, fmt.Errorf("%w: key %q: %s holds %d events to %d, %s %d to %d", ErrMerge, key,
					m.members[m.base].spec.Name, e.rawLen, e.newest, m.members[i].spec.Name, x.rawLen, x.newest)
			}
			ents[i] = &part.ents[s]
		}
		b = append(b, 1)
		b = binary.AppendUvarint(b, uint64(len(key)))
		b = append(b, key...)
		b = binary.AppendVarint(b, e.newest)
		b = binary.AppendVarint(b, math.MinInt64) // folded: no tiles
		b = binary.AppendUvarint(b, uint64(e.rawLen))
		prev := int64(0)
		for k := range e.rawLen {
			for i, part := range parts {
				if ents[i] != nil {
					part.getRaw(m.members[i], ents[i], part.rawAt(ents[i], k), recs[i])
				}
			}
			ts := int64(recs[m.base][0])
			for i := range parts {
				if ents[i] != nil && int64(recs[i][0]) != ts {
					return nil, fmt.Errorf("%w: key %q: event %d at %d in %s, at %d in %s", ErrMerge, key, k, ts,
						m.members[m.base].spec.Name, int64(recs[i][0]), m.members[i].spec.Name)
				}
			}
			if k == 0 {
				b = binary.AppendVarint(b, ts)
			} else {
				b = binary.AppendUvarint(b, uint64(ts-prev))
			}
			prev = ts
			for gj, gc := range g.stored {
				s := m.src[gj]
				v := m.members[s.m]
				x := recs[s.m][1+s.j]
				switch {
				case g.dicts[gc] != nil && x == nullID:
					b = append(b, 0)
				case g.dicts[gc] != nil:
					b = binary.AppendUvarint(b, ref(gc, v.dicts[v.stored[s.j]], uint32(x)))
				case v.colWide[s.j] && (g.colWide[gj] || x == nullBits):
					b = binary.LittleEndian.AppendUint64(b, x)
				case v.colWide[s.j], x == 0:
					b = binary.LittleEndian.AppendUint64(b, 0) // counted only: any non-null value
				default:
					b = binary.LittleEndian.AppendUint64(b, nullBits)
				}
			}
		}
		b = append(b, 0) // no tiles
	}
	b = binary.AppendUvarint(b, uint64(len(bp.freeEnt)))
	for _, slot := range bp.freeEnt {
		b = binary.AppendUvarint(b, uint64(slot))
	}
	out := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(strs)+len(b)), nstr)
	out = append(out, strs...)
	return append(out, b...), nil
}

// reads says whether the merge reads member i: the base and the members
// that columns come from.
func (m *Merge) reads(i int) bool {
	if i == m.base {
		return true
	}
	for _, s := range m.src {
		if s.m == i {
			return true
		}
	}
	return false
}
