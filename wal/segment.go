package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
)

const (
	magic      = "TALLYWAL"
	headerSize = 16
	frameHdr   = 8
	// maxRecord bounds one record: a corrupt length can never make a reader
	// allocate more.
	maxRecord = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func frameCRC(index uint64, payload []byte) uint32 {
	// The index is folded in byte by byte: a slice of a local array would
	// escape to the heap on every record.
	c := ^uint32(0)
	for i := 0; i < 8; i++ {
		c = castagnoli[byte(c)^byte(index>>(8*i))] ^ (c >> 8)
	}
	return crc32.Update(^c, castagnoli, payload)
}

func pad8(n int) int { return (n + 7) &^ 7 }

// frameSize is the bytes a record of n bytes takes.
func frameSize(n int) int { return frameHdr + pad8(n) }

// appendFrame encodes one record.
func appendFrame(dst []byte, index uint64, rec []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(rec)))
	dst = binary.LittleEndian.AppendUint32(dst, frameCRC(index, rec))
	dst = append(dst, rec...)
	for i := len(rec); i < pad8(len(rec)); i++ {
		dst = append(dst, 0)
	}
	return dst
}

func segmentName(first uint64) string { return fmt.Sprintf("%020d.wal", first) }

// segmentInfo is one segment file found in the directory.
type segmentInfo struct {
	first      uint64
	name       string // file name, .wal or .wal.zst
	compressed bool
}

func listSegments(fsys FS, dir string) ([]segmentInfo, error) {
	ents, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	byFirst := map[uint64]segmentInfo{}
	for _, e := range ents {
		name := e.Name()
		base, compressed := strings.CutSuffix(name, ".wal.zst")
		if !compressed {
			var ok bool
			if base, ok = strings.CutSuffix(name, ".wal"); !ok {
				continue
			}
		}
		first, err := strconv.ParseUint(base, 10, 64)
		if err != nil || len(base) != 20 || first == 0 {
			continue
		}
		if prev, ok := byFirst[first]; ok && !prev.compressed {
			continue // the plain file is complete; its .zst may not be
		}
		byFirst[first] = segmentInfo{first: first, name: name, compressed: compressed}
	}
	segs := make([]segmentInfo, 0, len(byFirst))
	for _, s := range byFirst {
		segs = append(segs, s)
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].first < segs[j].first })
	return segs, nil
}

// segmentReader streams a segment's frames.
type segmentReader struct {
	r      *bufio.Reader
	closer func()
	name   string
	off    int64  // offset of the next frame
	next   uint64 // index of the next frame
	buf    []byte
	limit  int64 // bytes of the file (frames beyond are not read)
}

func openSegmentReader(fsys FS, dir string, s segmentInfo) (*segmentReader, error) {
	f, err := fsys.OpenFile(filepath.Join(dir, s.name), os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	sr := &segmentReader{name: s.name, next: s.first, limit: 1 << 62}
	if s.compressed {
		dec, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<31))
		if err != nil {
			f.Close()
			return nil, err
		}
		sr.r = bufio.NewReaderSize(dec, 1<<16)
		sr.closer = func() { dec.Close(); f.Close() }
	} else {
		if st, err := f.Stat(); err == nil {
			sr.limit = st.Size()
		}
		sr.r = bufio.NewReaderSize(f, 1<<16)
		sr.closer = func() { f.Close() }
	}
	var h [headerSize]byte
	if _, err := io.ReadFull(sr.r, h[:]); err != nil {
		sr.close()
		return nil, &CorruptionError{Segment: s.name, Offset: 0, Reason: "short segment header"}
	}
	if string(h[:8]) != magic || binary.LittleEndian.Uint64(h[8:]) != s.first {
		sr.close()
		return nil, &CorruptionError{Segment: s.name, Offset: 0, Reason: "bad segment header"}
	}
	sr.off = headerSize
	return sr, nil
}

func (sr *segmentReader) close() {
	if sr.closer != nil {
		sr.closer()
		sr.closer = nil
	}
}

// errEnd is the normal end of a segment's frames.
var errEnd = errors.New("end of segment")

// frame reads the next frame. It returns errEnd at a zero header or the end
// of the file, and a *CorruptionError for a frame that does not validate.
// The returned record is valid until the next call.
func (sr *segmentReader) frame() ([]byte, error) {
	var h [frameHdr]byte
	if _, err := io.ReadFull(sr.r, h[:]); err != nil {
		if err == io.EOF {
			return nil, errEnd
		}
		return nil, sr.corrupt("short frame header")
	}
	n := binary.LittleEndian.Uint32(h[:4])
	crc := binary.LittleEndian.Uint32(h[4:])
	if n == 0 && crc == 0 {
		return nil, errEnd
	}
	if n > maxRecord || sr.off+int64(frameSize(int(n))) > sr.limit {
		return nil, sr.corrupt(fmt.Sprintf("impossible record length %d", n))
	}
	size := pad8(int(n))
	if cap(sr.buf) < size {
		sr.buf = make([]byte, size)
	}
	body := sr.buf[:size]
	if _, err := io.ReadFull(sr.r, body); err != nil {
		return nil, sr.corrupt("record cut short")
	}
	rec := body[:n]
	if frameCRC(sr.next, rec) != crc {
		return nil, sr.corrupt("checksum mismatch")
	}
	sr.off += int64(frameHdr + size)
	sr.next++
	return rec, nil
}

func (sr *segmentReader) corrupt(reason string) error {
	return &CorruptionError{Segment: sr.name, Offset: sr.off, Index: sr.next, Reason: reason}
}

// CorruptionError is a record that does not validate where the log holds
// acknowledged data. See the package doc and Repair.
type CorruptionError struct {
	Segment string
	Offset  int64  // byte offset of the bad frame in the segment
	Index   uint64 // index the bad frame would have had
	Reason  string
}

func (e *CorruptionError) Error() string {
	return fmt.Sprintf("wal: corrupt record at %s offset %d (index %d): %s; run `tally admin wal repair` to keep the records before it", e.Segment, e.Offset, e.Index, e.Reason)
}
