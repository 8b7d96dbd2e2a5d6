package store

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cespare/xxhash/v2"
)

// Requests: a write the client names (its Idempotency-Key) is applied
// once. Each log record of a named request carries the request's key
// inside its clock wrapper:
//
//	kind 5 = request: key:u64 record
//
// where key is RequestKey(id, part), part being the record's place among
// the request's records (a request of events of two sources is two
// records), and record is an events or a table record. The state keeps the
// keys of the last RequestWindowSize named records it applied; a record
// whose key it holds is skipped whole (counted in
// tally_requests_repeated_total) and answered as applied. The decision is
// made at apply, in log order, so a replay makes it the same way, and the
// window is by count, not time, so that a replay from any snapshot keeps
// the same keys. A crash may keep only some of a request's records (the
// log keeps a prefix of an append): its retry applies the others, which is
// why every record has its own key.
const recordRequest byte = 5

// RequestWindowSize is how many of the latest named records a state (a
// store, a cluster group) remembers: at 1,000 requests a second, a retry
// is recognised for about 4 minutes.
const RequestWindowSize = 1 << 18

// RequestKey is the key of part of the request named id: part 0's is the
// xxhash of id (what a cluster group remembers of a request), later parts'
// hash the part's number after id.
func RequestKey(id string, part int) uint64 {
	if part == 0 {
		return xxhash.Sum64String(id)
	}
	var d xxhash.Digest
	d.Reset()
	d.WriteString(id)
	var b [binary.MaxVarintLen64 + 1]byte
	d.Write(binary.AppendUvarint(b[:1], uint64(part)))
	return d.Sum64()
}

func appendRequestHeader(dst []byte, key uint64) []byte {
	return binary.LittleEndian.AppendUint64(append(dst, recordRequest), key)
}

// unwrapRequest returns the record inside a request record and its key;
// any other record is returned as it is, with ok false.
func unwrapRequest(rec []byte) (inner []byte, key uint64, ok bool, err error) {
	if len(rec) == 0 || rec[0] != recordRequest {
		return rec, 0, false, nil
	}
	if len(rec) < 10 || (rec[9] != recordEvents && rec[9] != recordTable) {
		return nil, 0, false, fmt.Errorf("%w: bad request record", errBadRecord)
	}
	return rec[9:], binary.LittleEndian.Uint64(rec[1:9]), true, nil
}

// RequestWindow is the set of the last keys added, at most its size, in
// the order they were added (a FIFO ring and a set). It grows as keys are
// added, so a state that never sees a named request holds none. Not safe
// for concurrent use.
type RequestWindow struct {
	size int
	ring []uint64
	next int // where the next key goes, once the ring is full
	set  map[uint64]struct{}
}

// NewRequestWindow returns an empty window of size keys.
func NewRequestWindow(size int) *RequestWindow {
	return &RequestWindow{size: size, set: map[uint64]struct{}{}}
}

// Has reports whether the window holds key.
func (w *RequestWindow) Has(key uint64) bool { _, ok := w.set[key]; return ok }

// Add adds key, dropping the oldest key when the window is full.
func (w *RequestWindow) Add(key uint64) {
	if len(w.ring) < w.size {
		w.ring = append(w.ring, key)
	} else {
		delete(w.set, w.ring[w.next])
		w.ring[w.next] = key
		if w.next++; w.next == w.size {
			w.next = 0
		}
	}
	w.set[key] = struct{}{}
}

// Len is the number of keys held.
func (w *RequestWindow) Len() int { return len(w.ring) }

// AppendKeys appends the keys held to dst, oldest first.
func (w *RequestWindow) AppendKeys(dst []uint64) []uint64 {
	dst = append(dst, w.ring[w.next:]...)
	return append(dst, w.ring[:w.next]...)
}

// writeRequests writes a window's keys (snapshot version 5):
// nkeys:u32 key:u64*, oldest first.
func writeRequests(dst []byte, w *RequestWindow) []byte {
	if w == nil {
		return binary.LittleEndian.AppendUint32(dst, 0)
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(w.Len()))
	for _, k := range w.AppendKeys(nil) {
		dst = binary.LittleEndian.AppendUint64(dst, k)
	}
	return dst
}

// readRequests reads what writeRequests wrote; nil when it holds no key.
func readRequests(r io.Reader) (*RequestWindow, error) {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:4]); err != nil {
		return nil, fmt.Errorf("snapshot request keys: %w", err)
	}
	cnt := binary.LittleEndian.Uint32(b[:4])
	if cnt > RequestWindowSize {
		return nil, fmt.Errorf("snapshot holds %d request keys, more than %d", cnt, RequestWindowSize)
	}
	if cnt == 0 {
		return nil, nil
	}
	w := NewRequestWindow(RequestWindowSize)
	for range cnt {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("snapshot request keys: %w", err)
		}
		w.Add(binary.LittleEndian.Uint64(b[:]))
	}
	return w, nil
}

// requestSeen reports, in apply order, whether the state already applied
// the named record key (then it is skipped, and counted). Called under the
// sequencer.
func (n *Store) requestSeen(key uint64) bool {
	if n.requests != nil && n.requests.Has(key) {
		n.metrics.repeats.Inc()
		return true
	}
	return false
}

// RequestApplied reports which of the parts log records of the request
// named id the state applied, as far as the window of keys it remembers
// tells: all of them when the request was applied whole (a retry of it is
// skipped whole), only the first ones when a crash kept only part of it
// (the log keeps a prefix of an append). A node answers a retry whose
// records it would now refuse (their windows passed) as the retry it is,
// or, when only some parts were applied, says which. Each part of a
// request applied whole counts as a repeat.
func (n *Store) RequestApplied(id string, parts int) []bool {
	n.seq.mu.Lock()
	defer n.seq.mu.Unlock()
	held := make([]bool, max(parts, 0))
	if n.requests == nil {
		return held
	}
	all := parts > 0
	for i := range held {
		held[i] = n.requests.Has(RequestKey(id, i))
		all = all && held[i]
	}
	if all {
		n.metrics.repeats.Add(parts)
	}
	return held
}

// requestApplied remembers that the named record key was applied. Called
// under the sequencer.
func (n *Store) requestApplied(key uint64) {
	if n.requests == nil {
		n.requests = NewRequestWindow(RequestWindowSize)
	}
	n.requests.Add(key)
}
