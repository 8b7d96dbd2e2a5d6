package node

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/ring"
	"github.com/tally-ml/tally/wal"
	"github.com/tally-ml/tally/windows"
)

// Log is where the node writes every change before applying it. The
// write-ahead log (wal.Log) satisfies it. Append must return only once the
// records are as durable as the log's policy promises, and must assign
// consecutive indexes in the order it makes records durable. Err says why
// the log refuses appends now (nil when it accepts them): /readyz reports
// it, and readiness returns when it is nil again.
type Log interface {
	Append(recs ...[]byte) (last uint64, err error)
	Err() error
}

// ErrLogFailed wraps a write-ahead log failure: the change was not
// acknowledged and nothing of it was applied.
var ErrLogFailed = errors.New("write-ahead log failed")

// sequencer applies changes in log order, so that the state after a replay
// of the log is exactly the state that was served: the windows' tie-breaks,
// lateness refusals and expiry depend on the order events arrive in.
type sequencer struct {
	mu      sync.Mutex
	cond    *sync.Cond
	applied uint64 // index of the last record applied
}

func newSequencer() *sequencer {
	s := &sequencer{}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// begin blocks until every record before first has been applied and returns
// holding the sequencer; end releases it.
func (s *sequencer) begin(first uint64) {
	s.mu.Lock()
	for s.applied+1 < first {
		s.cond.Wait()
	}
}

func (s *sequencer) end(last uint64) {
	s.applied = last
	s.cond.Broadcast()
	s.mu.Unlock()
}

// commit writes recs to the log (when there is one) and then runs apply in
// log order. Without a log, changes are applied in arrival order.
func (n *Node) commit(recs [][]byte, apply func()) error {
	if n.log == nil {
		n.seq.mu.Lock()
		apply()
		n.seq.applied += uint64(len(recs))
		n.seq.mu.Unlock()
		return nil
	}
	last, err := n.log.Append(recs...)
	if err != nil {
		if n.logFailing.CompareAndSwap(false, true) {
			n.logger.Error("write-ahead log failed: changes are refused (503 NOT_DURABLE) and /readyz answers 503 until it recovers; "+
				"it retries a failed segment roll by itself, a failed write or fsync needs a restart",
				"kind", wal.ErrorKind(err), "err", err)
		}
		return fmt.Errorf("%w: %v (the change was not acknowledged)", ErrLogFailed, err)
	}
	if n.logFailing.Load() && n.logFailing.CompareAndSwap(true, false) {
		n.logger.Info("write-ahead log recovered: changes are acknowledged again")
	}
	n.seq.begin(last - uint64(len(recs)) + 1)
	apply()
	n.seq.end(last)
	return nil
}

// AppliedIndex returns the log index of the last change applied.
func (n *Node) AppliedIndex() uint64 {
	n.seq.mu.Lock()
	defer n.seq.mu.Unlock()
	return n.seq.applied
}

// Replay applies one log record during recovery; index must follow the
// previous one. A record the node cannot decode is an error: recovery stops
// rather than serve a state that silently lacks acknowledged events.
func (n *Node) Replay(index uint64, rec []byte) error { return n.replay(index, rec, nil) }

// ReplayTimed is Replay for a point-in-time join on a node built for it: it
// calls at(c) before the record's change becomes visible at clock c, so the
// caller can first read the state as it was before c. A record acknowledged
// live calls at once with its acknowledgement clock; a backfill calls at
// before each of its events whose timestamp is at or after the time the
// previous call returned (the caller's next point of interest), with the
// event's timestamp. Clocks are not monotonic (concurrent requests, imports
// after live data): the caller keeps their running maximum.
func (n *Node) ReplayTimed(index uint64, rec []byte, at func(clock int64) (next int64)) error {
	return n.replay(index, rec, at)
}

func (n *Node) replay(index uint64, rec []byte, at func(int64) int64) error {
	inner, clock, backfill, err := unwrapAt(rec)
	if err != nil {
		return fmt.Errorf("log record %d: %w", index, err)
	}
	if len(inner) == 0 {
		return fmt.Errorf("log record %d: empty", index)
	}
	n.seq.mu.Lock()
	defer n.seq.mu.Unlock()
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
