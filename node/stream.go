package node

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/valyala/fastjson"

	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/tabular"
)

// Stream ingest: a consumer of a partitioned log (package kafkasource)
// decodes each record's value into a store.Batch with a StreamDecoder,
// then commits the batch together with the offsets it was read from
// (IngestStream), exactly once. Unlike an HTTP ingest, a bad record does
// not refuse its batch: it is left out, and the consumer counts it and
// dead-letters it, so one bad record never stops a partition.

// Reasons a stream record is rejected (the reason label of
// tally_kafka_records_rejected_total).
const (
	RejectNotJSON      = "not_json"
	RejectMissingKey   = "missing_key"
	RejectBadTimestamp = "bad_timestamp"
	RejectTooLate      = "too_late"
	RejectBadField     = "bad_field"
)

// StreamDecoder decodes the values of one source's stream records (JSON
// objects) into events. Fields the source does not declare are ignored (a
// topic's records carry more than one source needs). Not safe for
// concurrent use: one per consumer goroutine.
type StreamDecoder struct {
	n          *Node
	sp         *store.Source
	w          ingestWork
	paths      [][]string // per source column: its path in the value
	tsPath     []string
	recordTime bool
}

// NewStreamDecoder builds the decoder of source's records: fields maps a
// column (or the timestamp) to the value's field holding it, a dotted path
// ("payment.amount"); unmapped columns read the field of their own name.
// recordTime takes each event's timestamp from its record instead.
func (n *Node) NewStreamDecoder(source string, fields map[string]string, recordTime bool) (*StreamDecoder, error) {
	sp := n.SourceNamed([]byte(source))
	if sp == nil {
		return nil, fmt.Errorf("unknown source %q: this node's sources are %s", source, n.sourceNames())
	}
	path := func(name string) []string {
		if f, ok := fields[name]; ok {
			return strings.Split(f, ".")
		}
		return []string{name}
	}
	d := &StreamDecoder{n: n, sp: sp, tsPath: path(sp.TS), recordTime: recordTime}
	for _, c := range sp.Src.Columns {
		d.paths = append(d.paths, path(c.Name))
	}
	d.w.maxKey, d.w.maxValue = n.cfg.Limits.MaxKeyBytes, n.cfg.Limits.MaxValueBytes
	d.w.streamClock = 0
	return d, nil
}

// Source is the index of the decoder's source (for store.Batch.Reset).
func (d *StreamDecoder) Source() *store.Source { return d.sp }

// Decode appends the event value holds to b. recordTime is the record's
// timestamp (epoch ms), used when the decoder takes timestamps from
// records. It returns "" or the reject reason (a Reject constant) and a
// message; b is then unchanged.
func (d *StreamDecoder) Decode(b *store.Batch, value []byte, recordTime int64) (reason, msg string) {
	v, err := tabular.ParseJSON(&d.w.parser, value)
	if err != nil {
		return RejectNotJSON, "not valid JSON: " + err.Error()
	}
	if v.Type() != fastjson.TypeObject {
		return RejectNotJSON, "the value must be a JSON object, got " + v.Type().String()
	}
	ts := recordTime
	if !d.recordTime {
		tsv := v.Get(d.tsPath...)
		if tsv == nil || tsv.Type() == fastjson.TypeNull {
			return RejectBadTimestamp, fmt.Sprintf("missing timestamp field %q", strings.Join(d.tsPath, "."))
		}
		var why string
		if ts, why = parseTimestamp(tsv, &d.w.numBuf); why != "" {
			return RejectBadTimestamp, d.sp.TS + ": " + why
		}
	}
	if why := d.n.checkEventTime(d.sp, ts, d.n.now()); why != "" {
		return RejectTooLate, why
	}
	e := b.Grow(ts)
	for c, col := range d.sp.Src.Columns {
		f := v.Get(d.paths[c]...)
		if f == nil || f.Type() == fastjson.TypeNull {
			if d.sp.IsKey[c] {
				b.Truncate(e)
				return RejectMissingKey, fmt.Sprintf("missing join key %q", strings.Join(d.paths[c], "."))
			}
			continue
		}
		if why := setField(b, e, c, col, f, d.sp.IsKey[c], &d.w); why != "" {
			b.Truncate(e)
			return RejectBadField, col.Name + ": " + why
		}
	}
	return "", ""
}

// IngestStream commits b, the valid events read from the range pos of a
// stream, acknowledged at the node's clock (so historical features see
// them as served), exactly once (store.CommitStream): applied is false
// when the state already held offsets of the range, and the caller goes on
// from store.StreamOffset.
func (n *Node) IngestStream(b *store.Batch, pos store.StreamPos) (applied bool, err error) {
	applied, _, err = n.Store.CommitStream(b, n.now(), pos)
	return applied, err
}

// StreamClock is the acknowledgement clock a stream batch committed now
// carries (the node's clock), for a consumer that commits through a
// cluster (cluster.WriteStream) rather than IngestStream.
func (n *Node) StreamClock() int64 { return n.now() }

// ErrStreamLagging is why /readyz answers 503 while a stream consumer is
// further behind than its source's max_lag.
var ErrStreamLagging = errors.New("stream consumer lagging")

// readyChecks are the extra conditions of Ready (AddReadyCheck).
type readyChecks struct {
	mu     sync.Mutex
	checks []func() error
}

// AddReadyCheck makes Ready (and /readyz) fail while check returns an
// error (wrap ErrStreamLagging for a consumer behind its limit).
func (n *Node) AddReadyCheck(check func() error) {
	n.readyChecks.mu.Lock()
	defer n.readyChecks.mu.Unlock()
	n.readyChecks.checks = append(n.readyChecks.checks, check)
}

func (n *Node) extraReady() error {
	n.readyChecks.mu.Lock()
	defer n.readyChecks.mu.Unlock()
	for _, c := range n.readyChecks.checks {
		if err := c(); err != nil {
			return err
		}
	}
	return nil
}
