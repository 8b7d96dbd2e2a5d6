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

	"github.com/tally-ml/tally/wal/walfs"
)

const (
	magic      = "TALLYWL2" // frames carry the commit flag
	magicV1    = "TALLYWAL" // no commit flag: every frame counts as committed
	headerSize = 16
	frameHdr   = 8
	// commitFlag, the top bit of a frame's length word, marks the last frame
	// of one write (one group commit).
	commitFlag = 1 << 31
	// maxRecord bounds one record: a corrupt length can never make a reader
	// allocate more.
	maxRecord = 1 << 30
	// maxSegmentSize keeps frame offsets in a uint32.
	maxSegmentSize = 1 << 32
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

// setCommit marks the frame at off in buf as the last of its write.
func setCommit(buf []byte, off int) {
	binary.LittleEndian.PutUint32(buf[off:], binary.LittleEndian.Uint32(buf[off:])|commitFlag)
}

func segmentHeader(first uint64) []byte {
	h := make([]byte, headerSize)
	copy(h, magic)
	binary.LittleEndian.PutUint64(h[8:], first)
	return h
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
			continue // the plain file is authoritative: see compress and cutSegment
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
	src    *walfs.ErrReader // the file, under r: its read errors
	closer func()
	name   string
	off    int64  // offset of the next frame
	next   uint64 // index of the next frame
	buf    []byte
	limit  int64 // bytes of the file: no frame may claim more
	sized  bool  // limit is the real size (a plain file)
	v1     bool
	commit bool // the last frame read ended a write
	hdr    [frameHdr]byte
}

func openSegmentReader(fsys FS, dir string, s segmentInfo) (*segmentReader, error) {
	f, err := fsys.OpenFile(filepath.Join(dir, s.name), os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	sr := &segmentReader{name: s.name, next: s.first, limit: 1 << 62, src: &walfs.ErrReader{R: f}}
	if s.compressed {
		dec, err := zstd.NewReader(sr.src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<31))
		if err != nil {
			f.Close()
			return nil, err
		}
		sr.r = bufio.NewReaderSize(dec, 1<<16)
		sr.closer = func() { dec.Close(); f.Close() }
	} else {
		if st, err := f.Stat(); err == nil {
			sr.limit, sr.sized = st.Size(), true
		}
		sr.r = bufio.NewReaderSize(sr.src, 1<<16)
		sr.closer = func() { f.Close() }
	}
	var h [headerSize]byte
	if _, err := io.ReadFull(sr.r, h[:]); err != nil {
		sr.close()
		if sr.src.Err != nil {
			return nil, sr.readError()
		}
		return nil, &CorruptionError{Segment: s.name, Offset: 0, Index: s.first, Reason: "short segment header"}
	}
	m := string(h[:8])
	if (m != magic && m != magicV1) || binary.LittleEndian.Uint64(h[8:]) != s.first {
		sr.close()
		return nil, &CorruptionError{Segment: s.name, Offset: 0, Index: s.first, Reason: "bad segment header"}
	}
	sr.v1 = m == magicV1
	sr.off = headerSize
	sr.commit = true
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
// of the file, a *CorruptionError for a frame that does not validate, and
// another error (see readError) when the file cannot be read: that says
// nothing of its bytes. The returned record is valid until the next call.
func (sr *segmentReader) frame() ([]byte, error) {
	h := sr.hdr[:]
	if _, err := io.ReadFull(sr.r, h); err != nil {
		if sr.src.Err != nil {
			return nil, sr.readError()
		}
		if err == io.EOF {
			return nil, errEnd
		}
		return nil, sr.corrupt("short frame header")
	}
	word := binary.LittleEndian.Uint32(h[:4])
	crc := binary.LittleEndian.Uint32(h[4:])
	if word == 0 && crc == 0 {
		return nil, errEnd
	}
	n := int64(word &^ commitFlag)
	if n > maxRecord || sr.off+int64(frameSize(int(n))) > sr.limit {
		return nil, sr.corrupt(fmt.Sprintf("impossible record length %d", n))
	}
	body, err := sr.readBody(pad8(int(n)))
	if err != nil {
		if sr.src.Err != nil {
			return nil, sr.readError()
		}
		return nil, sr.corrupt("record cut short")
	}
	rec := body[:n]
	if frameCRC(sr.next, rec) != crc {
		return nil, sr.corrupt("checksum mismatch")
	}
	sr.off += int64(frameHdr + len(body))
	sr.next++
	sr.commit = sr.v1 || word&commitFlag != 0
	return rec, nil
}

// readBody reads size bytes into sr.buf. Large bodies grow the buffer as
// bytes actually arrive, so a corrupt length in a compressed segment (whose
// size is unknown) allocates no more than the data that is there.
func (sr *segmentReader) readBody(size int) ([]byte, error) {
	const step = 1 << 20
	if size <= step || sr.sized {
		if cap(sr.buf) < size {
			sr.buf = make([]byte, size)
		}
		_, err := io.ReadFull(sr.r, sr.buf[:size])
		return sr.buf[:size], err
	}
	buf := sr.buf[:0]
	for len(buf) < size {
		chunk := min(step, size-len(buf))
		buf = append(buf, make([]byte, chunk)...)
		if _, err := io.ReadFull(sr.r, buf[len(buf)-chunk:]); err != nil {
			return nil, err
		}
	}
	sr.buf = buf
	return buf, nil
}

func (sr *segmentReader) corrupt(reason string) error {
	return &CorruptionError{Segment: sr.name, Offset: sr.off, Index: sr.next, Reason: reason}
}

// readError is the error of a read of the file that failed (an OS error:
// a disk error, no memory, a permission), not a *CorruptionError.
func (sr *segmentReader) readError() error {
	return fmt.Errorf("wal: read %s at offset %d: %w", sr.name, sr.off, sr.src.Err)
}

// scanSegment reads every frame of s, returning the offsets of its frames,
// the offset where data ends, the offset just past the last frame that
// ended a write, and the error that stopped it (errEnd at a clean end).
// An error reading the file is its error: the result then says nothing.
type scanResult struct {
	offs      []uint32
	end       int64  // offset after the last valid frame
	next      uint64 // index after the last valid frame
	commitEnd int64  // offset after the last frame that ended a write
	commitIdx uint64 // index after that frame
	err       error  // errEnd or a *CorruptionError
}

func scanSegment(fsys FS, dir string, s segmentInfo) (scanResult, error) {
	sr, err := openSegmentReader(fsys, dir, s)
	if err != nil {
		return scanResult{}, err
	}
	defer sr.close()
	res := scanResult{commitEnd: sr.off, commitIdx: sr.next}
	for {
		off := sr.off
		_, err := sr.frame()
		if ce := (*CorruptionError)(nil); err != nil && err != errEnd && !errors.As(err, &ce) {
			return scanResult{}, err
		}
		if err != nil {
			res.end, res.next, res.err = sr.off, sr.next, err
			return res, nil
		}
		res.offs = append(res.offs, uint32(off))
		if sr.commit {
			res.commitEnd, res.commitIdx = sr.off, sr.next
		}
	}
}

// laterWrite reports whether, somewhere after off in a plain segment, a
// frame that ends a write is followed by another valid frame. Writes are
// sequential and, under SyncAlways, each is fsynced before the next starts,
// so such a pair proves that the write covering off completed and was
// acknowledged: a bad frame at off is then corruption, not a torn tail.
// Frames are found by trying every 8-byte position and every index the
// position allows (one frame per 8 bytes at most).
func laterWrite(f File, off int64, next uint64) (bool, error) {
	st, err := f.Stat()
	if err != nil {
		return false, err
	}
	commitEnd := int64(-1)
	found := false
	err = framesAt(f, off+8, st.Size(), func(p int64, word, crc uint32, body []byte) bool {
		maxK := min(uint64(p-off)/8, 1<<16)
		for k := uint64(1); k <= maxK; k++ {
			if frameCRC(next+k, body) != crc {
				continue
			}
			if commitEnd >= 0 && p >= commitEnd {
				found = true
				return true
			}
			if word&commitFlag != 0 && commitEnd < 0 {
				commitEnd = p + int64(frameSize(len(body)))
			}
			break
		}
		return false
	})
	return found, err
}

// framesAt calls fn, in order, for every 8-byte position p from from on in
// the plain segment bytes f (size of them) whose header could start a
// frame: not zero, a length no larger than a record, a frame that ends by
// size. body is the frame's record (whatever its CRC says), valid only
// during fn; fn returns true to stop. An error is a read of f that failed.
func framesAt(f File, from, size int64, fn func(p int64, word, crc uint32, body []byte) bool) error {
	const chunk = 1 << 20
	var hdrs []byte
	var body []byte
	base := int64(-1)
	for p := from; p+frameHdr <= size; p += 8 {
		if base < 0 || p+frameHdr > base+int64(len(hdrs)) {
			base = p
			hdrs = make([]byte, min(chunk, size-p))
			if n, err := f.ReadAt(hdrs, p); n < len(hdrs) {
				if err == nil {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		h := hdrs[p-base:]
		word := binary.LittleEndian.Uint32(h)
		crc := binary.LittleEndian.Uint32(h[4:])
		n := int64(word &^ commitFlag)
		if word == 0 || n > maxRecord || p+int64(frameSize(int(n))) > size {
			continue
		}
		if int64(cap(body)) < n {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := f.ReadAt(body, p+frameHdr); err != nil && n > 0 {
			if err != io.EOF {
				return err
			}
			continue
		}
		if fn(p, word, crc, body) {
			return nil
		}
	}
	return nil
}

// writeSegmentAtomically replaces the plain segment of s with a header and
// frames (written to a temporary file, fsynced, renamed, directory fsynced).
// A plain file wins over a .zst of the same segment, so the caller may
// then remove the .zst.
func writeSegmentAtomically(fsys FS, dir string, first uint64, frames []byte) error {
	return walfs.WriteFile(fsys, filepath.Join(dir, segmentName(first)), append(segmentHeader(first), frames...))
}

// readPrefix decodes the frames of s before offset end (or all, end < 0)
// and re-encodes them, every one marked committed.
func readPrefix(fsys FS, dir string, s segmentInfo, end int64) ([]byte, error) {
	sr, err := openSegmentReader(fsys, dir, s)
	if err != nil {
		return nil, err
	}
	defer sr.close()
	var out []byte
	for end < 0 || sr.off < end {
		idx := sr.next
		rec, err := sr.frame()
		if err == errEnd {
			break
		}
		if err != nil {
			return nil, err
		}
		at := len(out)
		out = appendFrame(out, idx, rec)
		setCommit(out, at)
	}
	return out, nil
}

// CorruptionError is a record that does not validate where the log holds
// acknowledged data. See the package doc and Repair. Its message says what
// is wrong, not what to do: that depends on whose log it is, which the
// caller knows (a single node's is repaired, keeping the records before
// it; a cluster replica's must not be, see package cluster).
type CorruptionError struct {
	Segment string
	Offset  int64  // byte offset of the bad frame in the segment
	Index   uint64 // index the bad frame would have had
	Reason  string
	// Next, when set, is where the log goes on after a segment that ends
	// cleanly before it (at Index): records Index to Next-1 are in no
	// segment. A sealed segment ends where the next one begins, so the
	// likely cause is a segment file removed by hand (named by Index:
	// MissingSegment), not a damaged record.
	Next uint64
}

// endsEarly is the error of segment seg, which ends cleanly at off before
// index idx while the log goes on at next.
func endsEarly(seg string, off int64, idx, next uint64) *CorruptionError {
	return &CorruptionError{Segment: seg, Offset: off, Index: idx, Next: next,
		Reason: fmt.Sprintf("segment ends before index %d, where the log continues", next)}
}

// MissingSegment is the name of the segment file that would hold the
// records a segment ending early lacks ("" for other corruption).
func (e *CorruptionError) MissingSegment() string {
	if e.Next == 0 {
		return ""
	}
	return segmentName(e.Index) + ".zst"
}

func (e *CorruptionError) Error() string {
	if e.Next > e.Index {
		return fmt.Sprintf("wal: records %d to %d are in no segment: %s ends after record %d (offset %d) and the log goes on at %d; "+
			"a segment file beginning at %d (%s) was removed, or %s was cut short",
			e.Index, e.Next-1, e.Segment, e.Index-1, e.Offset, e.Next, e.Index, e.MissingSegment(), e.Segment)
	}
	return fmt.Sprintf("wal: corrupt record at %s offset %d (index %d): %s", e.Segment, e.Offset, e.Index, e.Reason)
}
