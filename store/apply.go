package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/ring"
	"github.com/tally-ml/tally/windows"
)

// Apply applies the committed log record at index: the state machine's
// apply (StateMachine). index follows the last one applied; an index at or
// below it is skipped (a restored snapshot holds it). A record the store
// cannot decode is an error: recovery stops rather than serve a state that
// silently lacks acknowledged events.
func (n *Store) Apply(index uint64, rec []byte) error {
	n.seq.mu.Lock()
	defer n.seq.mu.Unlock()
	return n.applyLocked(index, rec, nil)
}

// ApplyCounted is Apply that also returns what the record's events did:
// the placements the windows refused as too late and, for a backfill, the
// events the visibility clock had already passed (CommitEvents' counts). A
// replicated state machine returns them to the proposer.
func (n *Store) ApplyCounted(index uint64, rec []byte) (tooLate, deferred int, err error) {
	n.seq.mu.Lock()
	defer n.seq.mu.Unlock()
	n.counted.tooLate, n.counted.deferred = 0, 0
	err = n.applyLocked(index, rec, nil)
	return n.counted.tooLate, n.counted.deferred, err
}

// ReplayTimed is Apply for a point-in-time join on a store built for it: it
// calls at(c) before the record's change becomes visible at clock c, so the
// caller can first read the state as it was before c. A record acknowledged
// live calls at once with its acknowledgement clock; a backfill calls at
// before each of its events whose timestamp is at or after the time the
// previous call returned (the caller's next point of interest), with the
// event's timestamp. Clocks are not monotonic (concurrent requests, imports
// after live data): the caller keeps their running maximum.
func (n *Store) ReplayTimed(index uint64, rec []byte, at func(clock int64) (next int64)) error {
	n.seq.mu.Lock()
	defer n.seq.mu.Unlock()
	return n.applyLocked(index, rec, at)
}

// AdvanceLiveClock raises the clock of the store's live changes (see
// ReplayTimed) to clock: a cluster's join replays a group's store beside
// the others, and a live change in one group took the whole cluster past
// its time.
func (n *Store) AdvanceLiveClock(clock int64) {
	n.seq.mu.Lock()
	defer n.seq.mu.Unlock()
	n.live = max(n.live, clock)
}

// applyLocked is Apply with the sequencer held.
func (n *Store) applyLocked(index uint64, rec []byte, at func(int64) int64) error {
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
	inner, key, named, err := unwrapRequest(inner)
	if err != nil {
		return fmt.Errorf("log record %d: %w", index, err)
	}
	if named && n.requestSeen(key) {
		n.seq.applied = index
		return nil // a repeat of a request applied before (request.go)
	}
	if !backfill {
		n.advanceClock(clock)
		n.live = max(n.live, clock)
		if at != nil {
			at(clock)
		}
	}
	inner, pos, isStream, err := unwrapStream(inner)
	if err != nil {
		return fmt.Errorf("log record %d: %w", index, err)
	}
	if isStream && !n.streamNew(pos) {
		n.seq.applied = index
		return nil // offsets already counted (stream.go)
	}
	switch inner[0] {
	case recordEvents:
		w := getApplyWork()
		defer applyPool.Put(w)
		b := &w.batch
		if _, err := n.decodeEventsRecord(inner, b); err != nil {
			if n.skipRemoved(err) {
				if isStream {
					n.streamAdvance(pos)
				}
				break
			}
			return fmt.Errorf("log record %d: %w", index, err)
		}
		if isStream {
			n.streamAdvance(pos)
		}
		var tooLate int
		if backfill {
			n.counted.deferred = n.advanceVisible(b)
		}
		switch {
		case at != nil && backfill:
			// Apply runs of events between the times at asks to be told.
			// An event becomes visible at its own timestamp, as if it had
			// streamed in then, except at the clock the import was
			// acknowledged at when that is earlier (an event stamped ahead
			// of the clock became visible then; it counts by its timestamp:
			// the live records after the import, acknowledged before that
			// timestamp, come before it) and when a live change had taken
			// the node to or past the event's time before the import (no
			// lookup before the import saw it: it is deferred to then).
			visibleAt := func(e int) int64 {
				if ts := b.ts[e]; clock != 0 && (clock < ts || ts <= n.live) {
					return clock
				}
				return b.ts[e]
			}
			next := int64(math.MinInt64)
			for i := 0; i < b.Len(); {
				if v := visibleAt(i); v >= next {
					next = at(v)
				}
				j := i + 1
				for j < b.Len() && visibleAt(j) < next {
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
		n.metrics.ingested(b.Len(), tooLate)
		n.counted.tooLate = tooLate
	case recordTable:
		name, rows, replace, err := n.decodeTableRecord(inner)
		if err != nil {
			if n.skipRemoved(err) {
				break
			}
			return fmt.Errorf("log record %d: %w", index, err)
		}
		if n.filter == nil || index > n.filter.tables {
			n.TableNamed(name).put(rows, replace, clock)
		}
	case recordLost:
		through, _ := binary.Uvarint(inner[1:])
		return fmt.Errorf("log record %d: %w (the log was cut back behind the snapshot at record %d); only that snapshot, or a later one, holds the state",
			index, ErrLostRecords, through)
	default:
		return fmt.Errorf("log record %d: unknown kind %d", index, inner[0])
	}
	if named {
		n.requestApplied(key)
	}
	n.seq.applied = index
	return nil
}

// applyFiltered is apply during recovery from a snapshot: a partition whose
// image already holds record index gets only its watermark advanced.
func (n *Store) applyFiltered(b *Batch, w *applyWork, index uint64) (tooLate int) {
	sp := n.sources[b.source]
	for ti := range sp.targets {
		tooLate += n.applyFilteredTarget(sp, ti, b, &w.fields, index)
	}
	return tooLate
}

// applyFilteredTarget is applyFiltered for the view of target ti.
func (n *Store) applyFilteredTarget(sp *Source, ti int, b *Batch, fields *[]windows.Field, index uint64) (tooLate int) {
	t := sp.targets[ti]
	v := n.views[t.group]
	for e := 0; e < b.Len(); e++ {
		if b.null[e*b.ncols+t.keyCol] {
			continue // logged before the view's key column existed
		}
		key := b.Str(e, t.keyCol)
		p := ring.Partition(ring.Hash(key))
		if n.owns != nil && !n.owns[p] || !n.filter.fresh[t.group] && index <= n.filter.part[p] {
			v.AdvanceWatermark(b.ts[e])
			continue
		}
		f := (*fields)[:0]
		for _, c := range t.cols {
			f = append(f, b.field(e, c))
		}
		*fields = f
		if err := v.Add(key, b.ts[e], f); errors.Is(err, windows.ErrTooLate) {
			tooLate++
		} else if err != nil {
			n.metrics.applyErrors.Inc()
		}
	}
	return tooLate
}

// TableNamed is the table view called name, or nil.
func (n *Store) TableNamed(name string) *Table {
	for _, t := range n.tables {
		if t.def.Name == name {
			return t
		}
	}
	return nil
}

// appendTableRecord encodes a table upload as a log record.
func appendTableRecord(dst []byte, t *Table, rows []TableRow, replace bool) []byte {
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
	for i := range rows {
		dst = appendName(dst, []byte(rows[i].Key))
		dst = appendRowValues(dst, t, &rows[i])
	}
	return dst
}

// appendRowValues appends a value per column of t: 0 null, 1 and a
// float64, or 2 and a string.
func appendRowValues(dst []byte, t *Table, r *TableRow) []byte {
	for c, col := range t.def.Columns {
		switch {
		case r.Null[c]:
			dst = append(dst, 0)
		case col.Type == features.String:
			dst = append(dst, 2)
			dst = appendName(dst, []byte(r.Strs[c]))
		default:
			dst = append(dst, 1)
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(r.Nums[c]))
		}
	}
	return dst
}

func (n *Store) decodeTableRecord(rec []byte) (string, []TableRow, bool, error) {
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
	t := n.TableNamed(name)
	if t == nil {
		return "", nil, false, fmt.Errorf("log record for table %q: %w%s", name, errRemoved, removedHint)
	}
	colMap := make([]int, ncols)
	for i := range colMap {
		colMap[i], _ = t.def.Column(string(r.name()))
	}
	nrows := r.uvarint(uint64(len(r.b)))
	if r.err != nil {
		return "", nil, false, r.err
	}
	rows := make([]TableRow, 0, nrows)
	for i := uint64(0); i < nrows && r.err == nil; i++ {
		row := NewRow(t.def)
		row.Key = string(r.name())
		if err := readRowValues(r, t, colMap, &row); err != nil {
			return "", nil, false, err
		}
		rows = append(rows, row)
	}
	if r.err != nil || len(r.b) != 0 {
		return "", nil, false, fmt.Errorf("%w: table record truncated or padded", errBadRecord)
	}
	return name, rows, replace, nil
}

// readRowValues reads what appendRowValues wrote, a value per column of
// colMap (the record's column -> t's, -1: one t no longer has), into row,
// whose columns start null.
func readRowValues(r *recordReader, t *Table, colMap []int, row *TableRow) error {
	for _, c := range colMap {
		kind, num, str := r.value()
		if c < 0 || kind == 0 {
			continue
		}
		if isText := t.def.Columns[c].Type == features.String; isText != (kind == 2) {
			return fmt.Errorf("table %s column %s holds %s, but the repo declares it %s: %w", t.def.Name, t.def.Columns[c].Name, kindName(kind), t.def.Columns[c].Type, ErrTypeChanged)
		}
		row.Null[c] = false
		if kind == 2 {
			row.Strs[c] = string(str)
		} else {
			row.Nums[c] = num
		}
	}
	return nil
}

// apply places every event of b in every view fed by its source and returns
// how many placements the windows refused as too late.
func (n *Store) apply(b *Batch, w *applyWork) (tooLate int) {
	return n.applyRange(b, w, 0, b.Len())
}

// advanceVisible moves the log's visibility clock over the events of a
// backfill batch and returns how many of them it had already passed (they
// become visible to historical features only from the clock, not from their
// own timestamps). Called in log order, under the sequencer.
func (n *Store) advanceVisible(b *Batch) (deferred int) {
	for _, ts := range b.ts {
		if ts < n.visible {
			deferred++
		} else {
			n.visible = ts
		}
	}
	return deferred
}

// applyRange is apply for the events [from, to) of b.
func (n *Store) applyRange(b *Batch, w *applyWork, from, to int) (tooLate int) {
	sp := n.sources[b.source]
	if n.workers > 1 && len(sp.targets) > 1 && to-from >= minParallelApply {
		return n.applyParallel(sp, b, from, to)
	}
	for t := range sp.targets {
		tooLate += n.applyTarget(sp, t, b, &w.fields, from, to)
	}
	return tooLate
}

// minParallelApply is the smallest batch worth a goroutine per view group.
const minParallelApply = 512

// applyParallel spreads the source's views over n.workers goroutines; each
// view still takes the events in batch order.
func (n *Store) applyParallel(sp *Source, b *Batch, from, to int) int {
	k := min(n.workers, len(sp.targets))
	late := make([]int, k)
	var wg sync.WaitGroup
	for g := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var fields []windows.Field
			for t := g; t < len(sp.targets); t += k {
				late[g] += n.applyTarget(sp, t, b, &fields, from, to)
			}
		}()
	}
	wg.Wait()
	sum := 0
	for _, l := range late {
		sum += l
	}
	return sum
}

// applyTarget places the events [from, to) of b in the view of target ti,
// applyChunk events to a windows.AddBatch call (which overlaps the cache
// misses of consecutive events).
func (n *Store) applyTarget(sp *Source, ti int, b *Batch, fields *[]windows.Field, from, to int) (tooLate int) {
	t := sp.targets[ti]
	v := n.views[t.group]
	var keys [applyChunk][]byte
	var hashes [applyChunk]uint64
	var ts [applyChunk]int64
	k, f := 0, (*fields)[:0]
	flush := func() {
		hs := hashes[:k]
		if n.owns == nil {
			hs = nil // AddBatch hashes
		}
		late, bad := v.AddBatch(keys[:k], hs, ts[:k], f)
		tooLate += late
		// Validation guarantees fields fit the view; anything else is a
		// bug worth seeing, not a reason to fail the acknowledged batch.
		n.metrics.applyErrors.Add(bad)
		k, f = 0, f[:0]
	}
	for e := from; e < to; e++ {
		if b.null[e*b.ncols+t.keyCol] {
			continue // logged before the view's key column existed
		}
		key := b.Str(e, t.keyCol)
		if n.owns != nil {
			h := ring.Hash(key)
			if !n.owns[ring.Partition(h)] {
				if k > 0 {
					flush() // the events before it first, in order
				}
				v.AdvanceWatermark(b.ts[e])
				continue // another replica group's key
			}
			hashes[k] = h
		}
		keys[k], ts[k] = key, b.ts[e]
		for _, c := range t.cols {
			f = append(f, b.field(e, c))
		}
		if k++; k == applyChunk {
			flush()
		}
	}
	if k > 0 {
		flush()
	}
	*fields = f
	return tooLate
}

// applyChunk is how many events applyTarget hands windows at a time.
const applyChunk = 128

// applyWork is the pooled scratch of applying: a batch to decode a record
// into, the fields of one event.
type applyWork struct {
	batch  Batch
	fields []windows.Field
}

var applyPool sync.Pool

func getApplyWork() *applyWork {
	w, _ := applyPool.Get().(*applyWork)
	if w == nil {
		w = &applyWork{}
	}
	return w
}
