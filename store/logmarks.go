package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"path/filepath"
)

// A single node's snapshot is the state of its own log's records up to the
// snapshot's index, and a restart replays that log after it. A snapshot
// copied in from another node or data dir (same repo, so it verifies and
// restores) would be served with this log's records after its index, and
// this node's records before it silently gone. So a single node's snapshot
// ends with log marks: the checksum of a few of the log's records as they
// were when it was written (the one at its index, and the log's first), and
// a start compares them with the records the log holds at those indexes.
//
//	marks = "TALLYLOG" n:u32 (index:u64 crc32c:u32)*
//
// The section is optional and last: the builds before it stop reading
// before it, and a snapshot without it (theirs, a cluster group's) is not
// checked. A mark whose record the log no longer holds (trimmed, cut), or
// holds as a lost-record filler (continueAfter), or cannot read, checks
// nothing.
const logMarksMagic = "TALLYLOG"

// LogMark is the checksum (CRC-32C) of the log's record at Index.
type LogMark struct {
	Index uint64
	Sum   uint32
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// markOf is the mark of record rec at index.
func markOf(index uint64, rec []byte) LogMark {
	return LogMark{Index: index, Sum: crc32.Checksum(rec, castagnoli)}
}

func appendLogMarks(dst []byte, marks []LogMark) []byte {
	if len(marks) == 0 {
		return dst
	}
	dst = append(dst, logMarksMagic...)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(marks)))
	for _, m := range marks {
		dst = binary.LittleEndian.AppendUint64(dst, m.Index)
		dst = binary.LittleEndian.AppendUint32(dst, m.Sum)
	}
	return dst
}

// readLogMarks reads a snapshot's marks section, if it has one.
func readLogMarks(br *bufio.Reader) ([]LogMark, error) {
	if b, _ := br.Peek(len(logMarksMagic)); string(b) != logMarksMagic {
		return nil, nil
	}
	var hdr [len(logMarksMagic) + 4]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return nil, fmt.Errorf("snapshot log marks: %w", err)
	}
	n := binary.LittleEndian.Uint32(hdr[len(logMarksMagic):])
	if n > 64 {
		return nil, fmt.Errorf("snapshot log marks: %d of them", n)
	}
	marks := make([]LogMark, n)
	var b [12]byte
	for i := range marks {
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return nil, fmt.Errorf("snapshot log marks: %w", err)
		}
		marks[i] = LogMark{Index: binary.LittleEndian.Uint64(b[:]), Sum: binary.LittleEndian.Uint32(b[8:])}
	}
	return marks, nil
}

// markAt is the mark of the log's record at index; ok is false when the
// log does not hold it, holds a lost-record filler there, or cannot read
// it. It streams the record's segment up to it (Replay), rather than load
// the whole segment into the log's Get cache, which would hold a
// compressed segment's plain bytes.
func (in *Instance) markAt(index uint64) (m LogMark, ok bool) {
	if index < in.wal.FirstIndex() || index > in.wal.LastIndex() {
		return LogMark{}, false
	}
	in.wal.Replay(index, func(i uint64, rec []byte) error {
		if i == index && !IsLostRecord(rec) {
			m, ok = markOf(index, rec), true
		}
		return errStopReplay
	})
	return m, ok
}

// logMarks are the marks of a snapshot whose index is start: the log's
// record at start and its first record (kept in in.firstMark while the log
// starts there, so that a snapshot does not decompress the oldest segment
// each time).
func (in *Instance) logMarks(start uint64) []LogMark {
	var marks []LogMark
	if start == 0 {
		return nil
	}
	if m, ok := in.markAt(start); ok {
		marks = append(marks, m)
	}
	if first := in.wal.FirstIndex(); in.firstMark.Index != first {
		in.firstMark, _ = in.markAt(first)
	}
	if in.firstMark.Index != 0 && in.firstMark.Index < start {
		marks = append(marks, in.firstMark)
	}
	return marks
}

// ErrForeignSnapshot refuses a start whose newest snapshot was not written
// from this data dir's log.
var ErrForeignSnapshot = errors.New("the snapshot was not written from this data dir's log")

// checkLogMarks compares the marks of the snapshot restored (path) with the
// log's records.
func (in *Instance) checkLogMarks(path string, marks []LogMark) error {
	for _, m := range marks {
		if got, ok := in.markAt(m.Index); ok && got.Sum != m.Sum {
			return fmt.Errorf("%w: snapshot %s holds a state whose record %d differs from this log's (a snapshot copied from another node "+
				"or data dir?); restored, it would serve that state with this log's records after it, and this node's changes before them lost. "+
				"To start, move it out of %s (the older snapshots and the log rebuild this node's state; a start says if they cannot), "+
				"or, to serve the state it holds, start it with the data dir it came from",
				ErrForeignSnapshot, path, m.Index, filepath.Dir(path))
		}
	}
	return nil
}
