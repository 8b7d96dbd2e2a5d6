package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/tally-ml/tally/features"
)

// A log record is what the node writes to its write-ahead log for one
// acknowledged change, and replays on restart. Records name sources, tables
// and columns rather than numbering them, so a repo that gains a column or
// reorders its sources still replays an old log.
//
//	record  = kind:u8 body
//	kind 1  = events: name(source) ncols:uvarint name(column)* nevents:uvarint event*
//	event   = ts:zigzag-varint (delta from the previous event, the first from 0) value*
//	kind 2  = table rows: name(table) flags:u8 (1 = replace) ncols:uvarint name(column)* nrows:uvarint row*
//	row     = name(key) value*
//	value   = 0 (null) | 1 f64:8 bytes little-endian | 2 name(string)
//	name    = len:uvarint bytes
//	kind 3  = lost: through:uvarint
//	kind 4  = stream: offsets, then an events record (stream.go)
//	kind 5  = request: key:u64, then an events or a table record (request.go)
//
// A lost record fills an index whose change survived only in a snapshot
// (the log's tail was lost or repaired away while a snapshot covering it
// was kept): the log goes on after the snapshot's index, so no index a
// snapshot covers is ever reused. Recovery from that snapshot skips it;
// a replay from before it cannot rebuild the state and stops with
// ErrLostRecords (a point-in-time join answers ARCHIVE_INCOMPLETE).
//
// Since the historical-features release every record is wrapped with the
// node clock at which it was acknowledged, so a point-in-time join knows when
// each change became visible to lookups:
//
//	kind 16 = at: flags:u8 clock:zigzag-varint record
//	flags   = bit 0 backfill: each event became visible at its own timestamp
//	          (an import), or at clock if that is earlier (an event stamped
//	          ahead of the clock, which counts by its timestamp anyway);
//	          clock is 0 in logs written before that was recorded
//
// An unwrapped record (an older log) replays like a backfill.
const (
	recordEvents byte = 1
	recordTable  byte = 2
	recordLost   byte = 3
	recordAt     byte = 16

	atBackfill byte = 1
)

// appendAt writes the wrapper header; the record follows it.
func appendAt(dst []byte, clock int64, backfill bool) []byte {
	flags := byte(0)
	if backfill {
		flags = atBackfill
	}
	dst = append(dst, recordAt, flags)
	return binary.AppendVarint(dst, clock)
}

// unwrapAt returns the record inside a wrapper, the clock at which it became
// visible, and whether it is a backfill (events visible at their own times).
// A record without a wrapper is returned as it is, as a backfill.
func unwrapAt(rec []byte) (inner []byte, clock int64, backfill bool, err error) {
	if len(rec) == 0 || rec[0] != recordAt {
		return rec, 0, true, nil
	}
	r := &recordReader{b: rec[1:]}
	flags := r.byte()
	clock = r.varint()
	if r.err != nil || len(r.b) == 0 || flags&^atBackfill != 0 || r.b[0] == recordAt {
		return nil, 0, false, fmt.Errorf("%w: bad clock wrapper", errBadRecord)
	}
	return r.b, clock, flags&atBackfill != 0, nil
}

var errBadRecord = errors.New("bad log record")

// ErrLostRecords is returned by a replay that reaches log records lost
// before a snapshot (see recordLost): the changes they stood for are not in
// the log, and a state or a join built from the log alone would lack them.
var ErrLostRecords = errors.New("log records lost: the changes they held survive only in a snapshot")

// AppendLostRecord encodes a filler for an index whose change only the
// snapshot at through holds.
func AppendLostRecord(dst []byte, through uint64) []byte {
	return binary.AppendUvarint(append(dst, recordLost), through)
}

// IsLostRecord reports whether a log record is a filler for a lost change
// (a point-in-time join that allows partial history skips it).
func IsLostRecord(rec []byte) bool { return len(rec) > 0 && rec[0] == recordLost }

func appendName(dst []byte, s []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// appendEventsRecord encodes b (of source src) as a log record.
func appendEventsRecord(dst []byte, sp *Source, b *Batch) []byte {
	dst = append(dst, recordEvents)
	dst = appendName(dst, []byte(sp.Src.Name))
	dst = binary.AppendUvarint(dst, uint64(b.ncols))
	for _, c := range sp.Src.Columns {
		dst = appendName(dst, []byte(c.Name))
	}
	dst = binary.AppendUvarint(dst, uint64(b.Len()))
	prev := int64(0)
	for e := 0; e < b.Len(); e++ {
		dst = binary.AppendVarint(dst, b.ts[e]-prev)
		prev = b.ts[e]
		for c := 0; c < b.ncols; c++ {
			k := e*b.ncols + c
			switch {
			case b.null[k]:
				dst = append(dst, 0)
			case sp.StrCol[c]:
				dst = append(dst, 2)
				dst = appendName(dst, b.Str(e, c))
			default:
				dst = append(dst, 1)
				dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(b.nums[k]))
			}
		}
	}
	return dst
}

// recordReader decodes a record; every read is bounds-checked, so a corrupt
// record yields errBadRecord, never a panic or a huge allocation.
type recordReader struct {
	b   []byte
	err error
}

func (r *recordReader) byte() byte {
	if r.err != nil || len(r.b) < 1 {
		r.err = errBadRecord
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *recordReader) uvarint(limit uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > limit {
		r.err = errBadRecord
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recordReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errBadRecord
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recordReader) name() []byte {
	n := r.uvarint(math.MaxUint32)
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = errBadRecord
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

func (r *recordReader) f64() float64 {
	if r.err != nil || len(r.b) < 8 {
		r.err = errBadRecord
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return v
}

// value reads one value: kind 0 null, 1 number, 2 string.
func (r *recordReader) value() (kind byte, num float64, str []byte) {
	switch kind = r.byte(); kind {
	case 0:
	case 1:
		num = r.f64()
	case 2:
		str = r.name()
	default:
		r.err = errBadRecord
	}
	return
}

// decodeEventsRecord decodes a kind-1 record body into b for the store's
// current schema: columns the repo no longer has are dropped, new ones are
// null. It returns the source plan, or an error for a corrupt record or a
// source the repo no longer has.
func (n *Store) decodeEventsRecord(rec []byte, b *Batch) (*Source, error) {
	r := &recordReader{b: rec}
	if r.byte() != recordEvents {
		return nil, fmt.Errorf("%w: not an events record", errBadRecord)
	}
	srcName := r.name()
	ncols := r.uvarint(uint64(len(r.b)))
	if r.err != nil {
		return nil, r.err
	}
	sp := n.SourceNamed(srcName)
	if sp == nil {
		return nil, fmt.Errorf("log record for source %q: %w%s", srcName, errRemoved, removedHint)
	}
	colMap := make([]int, ncols) // record column -> source column, -1 dropped
	inRecord := make([]bool, len(sp.Src.Columns))
	for i := range colMap {
		c, ok := sp.ColIndex[string(r.name())]
		if !ok {
			c = -1
		} else {
			inRecord[c] = true
		}
		colMap[i] = c
	}
	nev := r.uvarint(uint64(len(r.b)))
	if r.err != nil {
		return nil, r.err
	}
	b.Reset(sp.Index, len(sp.Src.Columns))
	prev := int64(0)
	for i := uint64(0); i < nev && r.err == nil; i++ {
		prev += r.varint()
		e := b.Grow(prev)
		for _, c := range colMap {
			kind, num, str := r.value()
			if c < 0 || kind == 0 {
				continue
			}
			if err := setLogged(b, e, c, sp, kind, num, str); err != nil {
				return nil, err
			}
		}
	}
	if r.err != nil || len(r.b) != 0 {
		return nil, fmt.Errorf("%w: events record truncated or padded", errBadRecord)
	}
	for _, t := range sp.targets {
		if !inRecord[t.keyCol] {
			// Written before the view's key column existed: the view skips
			// these events (counted for the recovery log).
			if n.keyless == nil {
				n.keyless = make([]int, len(n.views))
			}
			n.keyless[t.group] += b.Len()
			continue
		}
		for e := 0; e < b.Len(); e++ {
			if b.null[e*b.ncols+t.keyCol] {
				return nil, fmt.Errorf("%w: event without join key", errBadRecord)
			}
		}
	}
	return sp, nil
}

// setLogged stores a logged value of source column c. The value's kind
// (number or text) must fit the column's declared type: a column whose type
// changed is refused, never read as a silent zero. An integer column that
// became or stopped being a join key (held as its decimal text) converts.
func setLogged(b *Batch, e, c int, sp *Source, kind byte, num float64, str []byte) error {
	col := sp.Src.Columns[c]
	switch {
	case kind == 2 && sp.StrCol[c]:
		b.SetStr(e, c, str)
	case kind == 1 && !sp.StrCol[c] && col.Type != features.String:
		b.SetNum(e, c, num)
	case kind == 1 && col.Type == features.Int && num == math.Trunc(num) && math.Abs(num) < 1<<63:
		b.SetStr(e, c, strconv.AppendInt(nil, int64(num), 10))
	case kind == 2 && col.Type == features.Int:
		x, err := strconv.ParseInt(string(str), 10, 64)
		if err != nil {
			return fmt.Errorf("log record: source %s column %s holds %q, not an integer: %w", sp.Src.Name, col.Name, str, ErrTypeChanged)
		}
		b.SetNum(e, c, float64(x))
	default:
		return fmt.Errorf("log record: source %s column %s holds %s, but the repo declares it %s: %w", sp.Src.Name, col.Name, kindName(kind), col.Type, ErrTypeChanged)
	}
	return nil
}

// ErrTypeChanged: a stored value does not fit its column's declared type.
var ErrTypeChanged = errors.New("the column's type changed since it was stored; revert the type, or rename the column, or move the data directory aside")

func kindName(kind byte) string {
	if kind == 2 {
		return "text"
	}
	return "a number"
}

// RecordClock returns the clock a log record was acknowledged at and
// whether it is a backfill (whose events are each visible at their own
// timestamp): the order in which a cluster's group logs are merged for a
// point-in-time join.
func RecordClock(rec []byte) (clock int64, backfill bool, err error) {
	_, clock, backfill, err = unwrapAt(rec)
	return clock, backfill, err
}
