package store

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"sort"
)

// Streams: events consumed from a partitioned log (a Kafka topic) are
// committed exactly once by writing the offsets they were read at into the
// same log record as the events (one record per fetched batch per
// partition), and keeping, in the state, the next offset of every
// (source, topic, partition). A restart resumes from the state's offsets,
// never from a consumer group's: whatever the log holds was counted, and
// nothing else was.
//
//	kind 4 = stream: name(source) name(topic) partition:uvarint first:uvarint next:uvarint record
//
// where record is the events record (kind 1) of the events read from the
// offsets [first, next) that were valid (it may hold none: a batch of
// rejected records still moves the offset). The record is applied only if
// first is at or after the partition's next offset (a new partition, or a
// gap, such as a topic recreated or a retention that deleted unread
// records, is taken as it comes); a record that starts before it holds
// offsets already counted and is skipped whole, counted in
// tally_stream_batches_skipped_total. The decision is made at apply, in log
// order, so a replay (recovery, a replica, a point-in-time join) makes it
// the same way.
const recordStream byte = 4

// StreamPos is the range of one partition a committed batch was read from:
// the records at offsets [First, Next) of Topic's Partition, for Source.
// In a cluster it is the batch's request id.
type StreamPos struct {
	Source    string
	Topic     string
	Partition int32
	First     int64
	Next      int64
}

type streamKey struct {
	source, topic string
	partition     int32
}

func appendStreamHeader(dst []byte, pos StreamPos) []byte {
	dst = append(dst, recordStream)
	dst = appendName(dst, []byte(pos.Source))
	dst = appendName(dst, []byte(pos.Topic))
	dst = binary.AppendUvarint(dst, uint64(pos.Partition))
	dst = binary.AppendUvarint(dst, uint64(pos.First))
	return binary.AppendUvarint(dst, uint64(pos.Next))
}

// unwrapStream returns the events record inside a stream record and its
// position; any other record is returned as it is, with ok false.
func unwrapStream(rec []byte) (inner []byte, pos StreamPos, ok bool, err error) {
	if len(rec) == 0 || rec[0] != recordStream {
		return rec, StreamPos{}, false, nil
	}
	r := &recordReader{b: rec[1:]}
	pos.Source = string(r.name())
	pos.Topic = string(r.name())
	pos.Partition = int32(r.uvarint(math.MaxInt32))
	pos.First = int64(r.uvarint(math.MaxInt64))
	pos.Next = int64(r.uvarint(math.MaxInt64))
	if r.err != nil || pos.Next < pos.First || len(r.b) == 0 || r.b[0] != recordEvents {
		return nil, StreamPos{}, false, fmt.Errorf("%w: bad stream record", errBadRecord)
	}
	return r.b, pos, true, nil
}

// streamNew decides, in apply order, whether a batch read at pos is new or
// was counted already; streamAdvance moves the partition's offset past a
// new one, once its record decoded (a record that fails to apply moves
// nothing, so that its retry is not skipped). Called under the sequencer.
func (n *Store) streamNew(pos StreamPos) bool {
	if next, ok := n.streams[streamKey{pos.Source, pos.Topic, pos.Partition}]; ok && pos.First < next {
		n.metrics.streamSkipped.Inc()
		return false
	}
	return true
}

// streamTake is streamNew and, for a new batch, streamAdvance: for a batch
// in hand, decoded already.
func (n *Store) streamTake(pos StreamPos) bool {
	if !n.streamNew(pos) {
		return false
	}
	n.streamAdvance(pos)
	return true
}

func (n *Store) streamAdvance(pos StreamPos) {
	if n.streams == nil {
		n.streams = map[streamKey]int64{}
	}
	n.streams[streamKey{pos.Source, pos.Topic, pos.Partition}] = pos.Next
}

// StreamOffset returns the next offset to read of a partition for source:
// the end of the last batch the state holds, and whether it holds any.
func (n *Store) StreamOffset(source, topic string, partition int32) (next int64, ok bool) {
	n.seq.mu.Lock()
	defer n.seq.mu.Unlock()
	next, ok = n.streams[streamKey{source, topic, partition}]
	return next, ok
}

// StreamOffsets returns the next offset of every partition of topic the
// state holds batches of for source.
func (n *Store) StreamOffsets(source, topic string) map[int32]int64 {
	n.seq.mu.Lock()
	defer n.seq.mu.Unlock()
	out := map[int32]int64{}
	for k, v := range n.streams {
		if k.source == source && k.topic == topic {
			out[k.partition] = v
		}
	}
	return out
}

// CommitStream commits the valid events b read from the range pos of a
// stream (b may be empty: the range held only rejected records), as one log
// record acknowledged at clock, and returns once it is applied. applied is
// false when the state already held offsets of the range (another consumer,
// or a retry, committed them first): nothing of b was counted, and the
// caller goes on from StreamOffset. tooLate counts the placements the
// windows refused. On error nothing was applied.
func (n *Store) CommitStream(b *Batch, clock int64, pos StreamPos) (applied bool, tooLate int, err error) {
	if pos.Next < pos.First || pos.First < 0 {
		return false, 0, fmt.Errorf("stream range [%d, %d) of %s/%d is empty or negative", pos.First, pos.Next, pos.Topic, pos.Partition)
	}
	sp := n.sources[b.source]
	rec := appendAt(nil, clock, false)
	rec = appendStreamHeader(rec, pos)
	rec = appendEventsRecord(rec, sp, b)
	decoded := true
	err = n.commit([][]byte{rec}, func() {
		decoded = false
		if applied = n.streamTake(pos); applied {
			w := getApplyWork()
			tooLate = n.apply(b, w)
			applyPool.Put(w)
			n.metrics.ingested(b.Len(), tooLate)
		}
		n.advanceClock(clock)
	})
	if err != nil {
		return false, 0, err
	}
	if decoded {
		// A replicated Committer applied the record by decoding it: ask the
		// state whether this range is the one it holds.
		next, _ := n.StreamOffset(pos.Source, pos.Topic, pos.Partition)
		applied = next == pos.Next
	}
	return applied, tooLate, nil
}

// writeStreams writes the stream offsets (snapshot version 3):
// nstreams:u32, per stream: name(source) name(topic) partition:u32 next:u64,
// sorted.
func writeStreams(dst []byte, streams map[streamKey]int64) []byte {
	keys := make([]streamKey, 0, len(streams))
	for k := range streams {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.source != b.source {
			return a.source < b.source
		}
		if a.topic != b.topic {
			return a.topic < b.topic
		}
		return a.partition < b.partition
	})
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(keys)))
	for _, k := range keys {
		dst = appendName(dst, []byte(k.source))
		dst = appendName(dst, []byte(k.topic))
		dst = binary.LittleEndian.AppendUint32(dst, uint32(k.partition))
		dst = binary.LittleEndian.AppendUint64(dst, uint64(streams[k]))
	}
	return dst
}

type byteReader interface {
	io.Reader
	io.ByteReader
}

func readStreams(r byteReader) (map[streamKey]int64, error) {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:4]); err != nil {
		return nil, fmt.Errorf("snapshot stream offsets: %w", err)
	}
	cnt := binary.LittleEndian.Uint32(b[:4])
	if cnt > 1<<24 {
		return nil, fmt.Errorf("snapshot has %d stream offsets", cnt)
	}
	out := make(map[streamKey]int64, cnt)
	for range cnt {
		var k streamKey
		for _, s := range []*string{&k.source, &k.topic} {
			l, err := binary.ReadUvarint(r)
			if err != nil || l > 1<<16 {
				return nil, fmt.Errorf("snapshot stream offsets: bad name")
			}
			name := make([]byte, l)
			if _, err := io.ReadFull(r, name); err != nil {
				return nil, fmt.Errorf("snapshot stream offsets: %w", err)
			}
			*s = string(name)
		}
		if _, err := io.ReadFull(r, b[:4]); err != nil {
			return nil, fmt.Errorf("snapshot stream offsets: %w", err)
		}
		k.partition = int32(binary.LittleEndian.Uint32(b[:4]))
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, fmt.Errorf("snapshot stream offsets: %w", err)
		}
		out[k] = int64(binary.LittleEndian.Uint64(b[:]))
	}
	return out, nil
}

// AppendStreamRecord appends to dst the log record CommitStream commits:
// the valid events b read from the range pos, acknowledged at clock. A
// replicated state machine applies it as CommitStream's own (applied only
// if pos.First is at or after the partition's next offset).
func (n *Store) AppendStreamRecord(dst []byte, b *Batch, clock int64, pos StreamPos) []byte {
	dst = appendAt(dst, clock, false)
	dst = appendStreamHeader(dst, pos)
	return appendEventsRecord(dst, n.sources[b.source], b)
}

// StreamRecordPos returns the range a stream log record (AppendStreamRecord,
// CommitStream) was read from; ok is false for any other record.
func StreamRecordPos(rec []byte) (pos StreamPos, ok bool) {
	inner, _, _, err := unwrapAt(rec)
	if err != nil {
		return StreamPos{}, false
	}
	_, pos, ok, err = unwrapStream(inner)
	return pos, ok && err == nil
}
