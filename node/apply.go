package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/ring"
	"github.com/tally-ml/tally/windows"
)

// Apply applies the committed log record at index: the state machine's
// apply (StateMachine). index follows the last one applied; an index at or
// below it is skipped (a restored snapshot holds it). A record the node
// cannot decode is an error: recovery stops rather than serve a state that
// silently lacks acknowledged events.
func (n *Node) Apply(index uint64, rec []byte) error {
	n.seq.mu.Lock()
	defer n.seq.mu.Unlock()
	return n.applyLocked(index, rec, nil)
}

// ReplayTimed is Apply for a point-in-time join on a node built for it: it
// calls at(c) before the record's change becomes visible at clock c, so the
// caller can first read the state as it was before c. A record acknowledged
// live calls at once with its acknowledgement clock; a backfill calls at
// before each of its events whose timestamp is at or after the time the
// previous call returned (the caller's next point of interest), with the
// event's timestamp. Clocks are not monotonic (concurrent requests, imports
// after live data): the caller keeps their running maximum.
func (n *Node) ReplayTimed(index uint64, rec []byte, at func(clock int64) (next int64)) error {
	n.seq.mu.Lock()
	defer n.seq.mu.Unlock()
	return n.applyLocked(index, rec, at)
}

// applyLocked is Apply with the sequencer held.
func (n *Node) applyLocked(index uint64, rec []byte, at func(int64) int64) error {
	inner, clock, backfill, err := unwrapAt(rec)
	if err != nil {
		return fmt.Errorf("log record %d: %w", index, err)
	}
	if len(inner) == 0 {
		return fmt.Errorf("log record %d: empty", index)
	}
	if index <= n.seq.applied {
		return nil // already in the snapshot
	}
	if !backfill {
		n.visible = max(n.visible, clock)
		if at != nil {
			at(clock)
		}
	}
	switch inner[0] {
	case recordEvents:
		w := n.getIngestWork()
		defer ingestPool.Put(w)
		b := w.batches[0]
		if _, err := n.decodeEventsRecord(inner, b); err != nil {
			if n.skipRemoved(err) {
				break
			}
			return fmt.Errorf("log record %d: %w", index, err)
		}
		var tooLate int
		if backfill {
			n.advanceVisible(b)
		}
		switch {
		case at != nil && backfill:
			// Apply runs of events between the times at asks to be told.
			next := int64(math.MinInt64)
			for i := 0; i < b.len(); {
				if b.ts[i] >= next {
					next = at(b.ts[i])
				}
				j := i + 1
				for j < b.len() && b.ts[j] < next {
					j++
				}
				tooLate += n.applyRange(b, w, i, j)
				i = j
			}
		case n.filter != nil && index <= n.filter.max:
			tooLate = n.applyFiltered(b, w, index)
		default:
			tooLate = n.apply(b, w)
		}
		n.metrics.ingested(b.len(), tooLate)
	case recordTable:
		name, rows, replace, err := n.decodeTableRecord(inner)
		if err != nil {
			if n.skipRemoved(err) {
				break
			}
			return fmt.Errorf("log record %d: %w", index, err)
		}
		if n.filter == nil || index > n.filter.tables {
			n.tableByName(name).put(rows, replace)
		}
	case recordLost:
		through, _ := binary.Uvarint(inner[1:])
		return fmt.Errorf("log record %d: %w (the log was cut back behind the snapshot at record %d); only that snapshot, or a later one, holds the state",
			index, ErrLostRecords, through)
	default:
		return fmt.Errorf("log record %d: unknown kind %d", index, inner[0])
	}
	n.seq.applied = index
	return nil
}

// applyFiltered is apply during recovery from a snapshot: a partition whose
// image already holds record index gets only its watermark advanced.
func (n *Node) applyFiltered(b *eventBatch, w *ingestWork, index uint64) (tooLate int) {
	sp := n.sources[b.source]
	for _, t := range sp.targets {
		v := n.views[t.view]
		for e := 0; e < b.len(); e++ {
			if b.null[e*b.ncols+t.keyCol] {
				continue // logged before the view's key column existed
			}
			key := b.str(e, t.keyCol)
			if !n.filter.fresh[t.view] && index <= n.filter.part[ring.Partition(ring.Hash(key))] {
				v.AdvanceWatermark(b.ts[e])
				continue
			}
			w.fields = w.fields[:0]
			for _, c := range t.cols {
				w.fields = append(w.fields, b.field(e, c))
			}
			if err := v.Add(key, b.ts[e], w.fields); errors.Is(err, windows.ErrTooLate) {
				tooLate++
			} else if err != nil {
				n.metrics.applyErrors.Inc()
			}
		}
	}
	return tooLate
}

func (n *Node) tableByName(name string) *table {
	for _, t := range n.tables {
		if t.def.Name == name {
			return t
		}
	}
	return nil
}

// appendTableRecord encodes a table upload as a log record.
func appendTableRecord(dst []byte, t *table, rows []tableRow, replace bool) []byte {
	dst = append(dst, recordTable)
	dst = appendName(dst, []byte(t.def.Name))
	flags := byte(0)
	if replace {
		flags = 1
	}
	dst = append(dst, flags)
	dst = binary.AppendUvarint(dst, uint64(len(t.def.Columns)))
	for _, c := range t.def.Columns {
		dst = appendName(dst, []byte(c.Name))
	}
	dst = binary.AppendUvarint(dst, uint64(len(rows)))
	for _, r := range rows {
		dst = appendName(dst, []byte(r.key))
		for c, col := range t.def.Columns {
			switch {
			case r.null[c]:
				dst = append(dst, 0)
			case col.Type == features.String:
				dst = append(dst, 2)
				dst = appendName(dst, []byte(r.strs[c]))
			default:
				dst = append(dst, 1)
				dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(r.nums[c]))
			}
		}
	}
	return dst
}

func (n *Node) decodeTableRecord(rec []byte) (string, []tableRow, bool, error) {
	r := &recordReader{b: rec}
	if r.byte() != recordTable {
		return "", nil, false, fmt.Errorf("%w: not a table record", errBadRecord)
	}
	name := string(r.name())
	replace := r.byte() == 1
	ncols := r.uvarint(uint64(len(r.b)))
	if r.err != nil {
		return "", nil, false, r.err
	}
	t := n.tableByName(name)
	if t == nil {
		return "", nil, false, fmt.Errorf("log record for table %q: %w%s", name, errRemoved, removedHint)
	}
	colMap := make([]int, ncols)
	for i := range colMap {
		colMap[i] = columnIndex(t.def.Columns, string(r.name()))
	}
	nrows := r.uvarint(uint64(len(r.b)))
	if r.err != nil {
		return "", nil, false, r.err
	}
	rows := make([]tableRow, 0, nrows)
	for i := uint64(0); i < nrows && r.err == nil; i++ {
		row := newRow(t.def)
		row.key = string(r.name())
		for _, c := range colMap {
			kind, num, str := r.value()
			if c < 0 || kind == 0 {
				continue
			}
			if isText := t.def.Columns[c].Type == features.String; isText != (kind == 2) {
				return "", nil, false, fmt.Errorf("table %s column %s holds %s, but the repo declares it %s: %w", name, t.def.Columns[c].Name, kindName(kind), t.def.Columns[c].Type, errTypeChanged)
			}
			row.null[c] = false
			if kind == 2 {
				row.strs[c] = string(str)
			} else {
				row.nums[c] = num
			}
		}
		rows = append(rows, row)
	}
	if r.err != nil || len(r.b) != 0 {
		return "", nil, false, fmt.Errorf("%w: table record truncated or padded", errBadRecord)
	}
	return name, rows, replace, nil
}
