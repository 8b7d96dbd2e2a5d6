package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/tally-ml/tally/wal/walfs"
)

// Repaired says what Repair did.
type Repaired struct {
	// Kept is the index of the last record the log keeps.
	Kept uint64
	// Aside is the directory Repair moved what it did not keep into; "" for
	// a log without corruption, which it left as it was.
	Aside string
	// Front, when not 0, is the index the log now starts at: the segments
	// before it, holding records the snapshot covers, corrupt ones among
	// them, were moved aside.
	Front uint64
	// Cut, when not 0, is the index of the corrupt record the log was cut
	// at: it and every record after it are only in Aside.
	Cut uint64
	// Missing, when not 0, is the record after the snapshot (covered+1)
	// that Repair looked for, after a corrupt record the snapshot covers in
	// a segment that also holds later records, and did not find intact:
	// the log was cut at the corruption (Cut), and the records after the
	// snapshot in that segment and the later ones are only in Aside.
	Missing uint64
}

// Repair makes a log with a corrupt record usable again without deleting
// anything. It reads every segment, finds the first record that does not
// validate (or a segment that ends before the next one begins), keeps every
// record before it, and moves the rest into dir/corrupt-<unix time>/: a copy
// of the corrupt segment as it was, and every later segment. A log without
// corruption is left as it is (a torn tail is Open's to cut, and is not
// counted in Kept). The log must not be open.
//
// covered is the index of the newest snapshot (0: none): the state holds
// every record up to it, and the records after it only the log holds. A
// corrupt record the snapshot covers is not cut with everything after it:
//
//   - A corrupt segment whose records are all covered is moved aside with
//     every segment before it (the log's front), as retention drops
//     segments; the rest is checked on.
//   - A corrupt segment that also holds records after covered keeps them:
//     Repair looks after the corruption for the frame of record covered+1
//     (at every 8-byte position: a frame's CRC covers its index, and the
//     frame after it must validate too, or the data end there), copies the
//     segment's bytes from that frame on, as they are, into a new segment
//     named covered+1 (temporary file, fsync, rename, fsync of dir), then
//     moves the corrupt segment and every one before it aside; the new
//     segment is checked on like the others. A compressed segment is
//     decompressed chunk by chunk first: a chunk that does not decompress
//     is lost (its plain bytes read as corrupt), the chunks after it are
//     read as they are, so the records after covered in them are kept as
//     a plain segment's are. If the frame is not found (the corruption
//     reached it, or a segment compressed as one stream, before chunks,
//     is broken before it), the segment is cut at the corruption as
//     below, and Missing says so.
//
// A corrupt record after covered is cut: nothing else holds it, and the
// records after it are moved aside, never deleted. A crash at any point of
// a repair leaves a log that loses nothing the log before it held (at
// worst the corrupt segment is still there, and a Repair again does the
// rest).
func Repair(dir string, covered uint64, opts Options) (Repaired, error) {
	return repair(dir, covered, opts, false)
}

// PlanRepair is what Repair(dir, covered, opts) would do, done without
// changing the log: Kept, Front, Cut and Missing as Repair would answer
// them, Aside "". A caller that must not cut records (Cut != 0) asks it
// first. It reads every segment, and checks the records after covered that
// Repair would copy out of a corrupt segment by writing that copy under a
// temporary name (<index>.plan.wal.tmp, removed before it returns; Open
// removes one a crash leaves).
func PlanRepair(dir string, covered uint64, opts Options) (Repaired, error) {
	return repair(dir, covered, opts, true)
}

func repair(dir string, covered uint64, opts Options, plan bool) (r Repaired, err error) {
	if opts.FS == nil {
		opts.FS = OS
	}
	fsys := opts.FS
	segs, err := listSegments(fsys, dir)
	if err != nil {
		return r, fmt.Errorf("wal repair: list %s: %w", dir, err)
	}
	front := 0 // segs[:front] were moved aside
	for i := 0; i < len(segs); i++ {
		s := segs[i]
		bad, res, err := findCorruption(fsys, dir, segs, i)
		if err != nil {
			return r, fmt.Errorf("wal repair: read %s: %w", s.name, err)
		}
		if bad == nil {
			r.Kept = res.commitIdx - 1
			continue
		}
		if r.Aside == "" && !plan {
			r.Aside = filepath.Join(dir, fmt.Sprintf("corrupt-%d", time.Now().Unix()))
		}
		if bad.Index <= covered {
			if i+1 < len(segs) && segs[i+1].first <= covered+1 {
				if !plan {
					if err := moveAside(fsys, dir, r.Aside, segs[front:i+1]); err != nil {
						return r, err
					}
				}
				front, r.Front = i+1, segs[i+1].first
				continue
			}
			end := uint64(0) // the index the segment must reach; 0 for the newest
			if i+1 < len(segs) {
				end = segs[i+1].first
			}
			name := segmentName(covered + 1)
			if plan {
				name = strings.TrimSuffix(name, ".wal") + ".plan.wal.tmp"
			}
			ok, err := keepAfter(fsys, dir, s, bad, covered+1, end, name, plan)
			if err != nil {
				return r, fmt.Errorf("wal repair: keep the records of %s after %d: %w", s.name, covered, err)
			}
			if ok {
				if plan {
					defer func() {
						if rerr := fsys.Remove(filepath.Join(dir, name)); err == nil && rerr != nil {
							err = fmt.Errorf("wal repair: remove the plan's copy: %w", rerr)
						}
					}()
				} else if err := moveAside(fsys, dir, r.Aside, segs[front:i+1]); err != nil {
					return r, err
				}
				ns := segmentInfo{first: covered + 1, name: name}
				segs = append(segs[:i+1], append([]segmentInfo{ns}, segs[i+1:]...)...)
				front, r.Front = i+1, ns.first
				continue
			}
			r.Missing = covered + 1
		}
		r.Kept, r.Cut = bad.Index-1, bad.Index
		if plan {
			return r, nil
		}
		return r, setAside(fsys, dir, r.Aside, segs, i, bad, res)
	}
	return r, nil
}

// keepAfter looks in segment s, after its corrupt frame bad, for the frame
// of record first, and if it finds it writes a new segment named first
// holding s's bytes from that frame on (so its frames, commit bits and
// what follows them are the ones the log wrote). end is the index the
// frames of s must reach (where the next segment begins), 0 when s is the
// newest. The segment is written as name; for a plan, it is only written
// and closed (no fsync, no rename). It reports whether it wrote the segment.
func keepAfter(fsys FS, dir string, s segmentInfo, bad *CorruptionError, first, end uint64, name string, plan bool) (bool, error) {
	f, size, done, err := plainBytes(fsys, dir, s)
	if err != nil {
		return false, err
	}
	defer done()
	// Every record from bad.Index to first-1 takes at least 8 bytes.
	from := max(bad.Offset, headerSize)
	if from >= size || first-bad.Index > uint64(size-from)/8 {
		return false, nil
	}
	from += int64(first-bad.Index) * 8
	at := int64(-1)
	var next []byte
	var rerr error
	err = framesAt(f, from, size, func(p int64, _, crc uint32, body []byte) bool {
		if frameCRC(first, body) != crc {
			return false
		}
		// One CRC-32 can match by chance; the frame after it must agree:
		// the next record, or the end of the data where the log goes on
		// from first+1.
		q := p + int64(frameSize(len(body)))
		var h [frameHdr]byte
		if q+frameHdr > size {
			if end == 0 || end == first+1 {
				at = p
			}
			return at >= 0
		}
		if _, err := f.ReadAt(h[:], q); err != nil {
			rerr = err
			return true
		}
		word, crc2 := binary.LittleEndian.Uint32(h[:4]), binary.LittleEndian.Uint32(h[4:])
		if word == 0 && crc2 == 0 {
			if end == 0 || end == first+1 {
				at = p
			}
			return at >= 0
		}
		n := int64(word &^ commitFlag)
		if n > maxRecord || q+int64(frameSize(int(n))) > size {
			return false
		}
		if int64(cap(next)) < n {
			next = make([]byte, n)
		}
		next = next[:n]
		if _, err := f.ReadAt(next, q+frameHdr); err != nil && n > 0 {
			rerr = err
			return true
		}
		if frameCRC(first+1, next) == crc2 {
			at = p
		}
		return at >= 0
	})
	if err == nil {
		err = rerr
	}
	if err != nil || at < 0 {
		return false, err
	}
	hdr := segmentHeader(first)
	var m [8]byte
	if _, err := f.ReadAt(m[:], 0); err == nil && string(m[:]) == magicV1 {
		copy(hdr, magicV1) // its frames have no commit bits
	}
	tmp := filepath.Join(dir, name+".tmp")
	if plan {
		tmp = filepath.Join(dir, name)
	}
	a, err := walfs.CreateAtomic(fsys, tmp)
	if err != nil {
		return false, err
	}
	if _, err := a.Write(hdr); err != nil {
		a.Abort()
		return false, err
	}
	if _, err := io.Copy(a, io.NewSectionReader(f, at, size-at)); err != nil {
		a.Abort()
		return false, err
	}
	if plan {
		if err := a.F.Close(); err != nil {
			fsys.Remove(tmp)
			return false, err
		}
		return true, nil
	}
	return true, a.Commit(filepath.Join(dir, name))
}

// plainBytes opens the bytes of segment s, as a plain file holds them: a
// compressed segment is decompressed into a temporary file (Open removes
// it if a crash leaves it) that done removes. A chunk of a compressed
// segment that does not decompress gives what does, then lostByte to its
// end (see readChunks); a segment compressed as one stream, before chunks,
// as far as its stream reads.
func plainBytes(fsys FS, dir string, s segmentInfo) (f File, size int64, done func(), err error) {
	in, err := fsys.OpenFile(filepath.Join(dir, s.name), os.O_RDONLY, 0)
	if err != nil {
		return nil, 0, nil, err
	}
	st, err := in.Stat()
	if err != nil {
		in.Close()
		return nil, 0, nil, err
	}
	if !s.compressed {
		return in, st.Size(), func() { in.Close() }, nil
	}
	defer in.Close()
	tmp := filepath.Join(dir, s.name+".tmp")
	out, err := fsys.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, 0, nil, err
	}
	done = func() { out.Close(); fsys.Remove(tmp) }
	size, chunked, err := readChunks(in, st.Size(), out)
	if err == nil && !chunked {
		size, err = readStream(in, out)
	}
	if err != nil {
		done()
		return nil, 0, nil, err
	}
	return out, size, done, nil
}

// lostByte fills the plain bytes of a chunk that could not be read: a
// frame header of 0xff bytes claims an impossible length, so no frame is
// read there and nothing there looks like the end of the data (zeros).
const lostByte = 0xff

// readChunks decompresses the chunks of a compressed segment (the zsize
// bytes of in) into out, each at its plain offset, and returns the end of
// the plain bytes. A chunk whose zstd frame does not decode (or is cut
// short) gives what its stream does decode, then lostByte to its end; a
// damaged index frame is passed by finding the next one that validates,
// and the plain bytes before it are lostByte; compressed bytes after the
// last index frame that validates are a lost chunk of unknown size, marked
// by 8 lostBytes. chunked is false when in holds no index frame at all (a
// segment compressed as one stream, before chunks): out is then as it was.
func readChunks(in File, zsize int64, out File) (end int64, chunked bool, err error) {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxChunk))
	if err != nil {
		return 0, false, err
	}
	defer dec.Close()
	var z, plain []byte
	for pos := int64(0); pos < zsize; {
		at, off, n, zlen, err := nextChunk(in, zsize, pos, end)
		if err != nil {
			return 0, false, err
		}
		if at < 0 {
			if chunked {
				err = fill(out, end, end+8)
				end += 8
			}
			return end, chunked, err
		}
		chunked = true
		if err := fill(out, end, off); err != nil {
			return 0, false, err
		}
		have := min(int64(zlen), zsize-at-chunkHdr)
		if int64(cap(z)) < have {
			z = make([]byte, have)
		}
		z = z[:have]
		if k, err := in.ReadAt(z, at+chunkHdr); k < len(z) {
			return 0, false, err
		}
		plain, err = dec.DecodeAll(z, plain[:0])
		if err != nil || have < int64(zlen) || len(plain) != n {
			plain = salvage(z, plain[:0], n)
		}
		if _, err := out.WriteAt(plain, off); err != nil {
			return 0, false, err
		}
		if err := fill(out, off+int64(len(plain)), off+int64(n)); err != nil {
			return 0, false, err
		}
		end, pos = off+int64(n), at+chunkHdr+int64(zlen)
	}
	return end, chunked, nil
}

// nextChunk finds the index frame at pos, or the first one after it that
// validates and follows on from plain offset end (the chunks between,
// lost, took at least chunkHdr bytes each and held at most maxChunk plain
// bytes each); at is -1 when there is none.
func nextChunk(in File, zsize, pos, end int64) (at, off int64, n, zlen int, err error) {
	const window = 1 << 20
	follows := func(at, off int64) bool {
		return off >= end && off-end <= (at-pos+chunkHdr-1)/chunkHdr*maxChunk
	}
	var h [chunkHdr]byte
	if k, _ := in.ReadAt(h[:], pos); k == chunkHdr {
		if off, n, zlen, ok := parseChunkHeader(h[:]); ok && follows(pos, off) {
			return pos, off, n, zlen, nil
		}
	}
	var buf []byte
	magic := binary.LittleEndian.AppendUint32(nil, chunkMagic)
	for base := pos; base+chunkHdr <= zsize; base += window {
		if buf == nil {
			buf = make([]byte, min(window+chunkHdr-1, zsize-base))
		}
		buf = buf[:min(int64(cap(buf)), zsize-base)]
		if k, err := in.ReadAt(buf, base); k < len(buf) {
			return -1, 0, 0, 0, err
		}
		for i := 0; i+chunkHdr <= len(buf); i++ {
			j := bytes.Index(buf[i:], magic)
			if j < 0 || i+j+chunkHdr > len(buf) {
				break
			}
			i += j
			if off, n, zlen, ok := parseChunkHeader(buf[i:]); ok && follows(base+int64(i), off) {
				return base + int64(i), off, n, zlen, nil
			}
		}
	}
	return -1, 0, 0, 0, nil
}

// salvage decodes what the damaged zstd frame z gives before it fails, at
// most n bytes.
func salvage(z, dst []byte, n int) []byte {
	dec, err := zstd.NewReader(bytes.NewReader(z), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxChunk))
	if err != nil {
		return dst
	}
	defer dec.Close()
	dst = append(dst, make([]byte, n)...)
	k, _ := io.ReadFull(dec, dst[len(dst)-n:])
	return dst[:len(dst)-n+k]
}

// fill writes lostByte over out's bytes [from, to).
func fill(out File, from, to int64) error {
	if to <= from {
		return nil
	}
	b := bytes.Repeat([]byte{lostByte}, int(min(to-from, 1<<16)))
	for p := from; p < to; p += int64(len(b)) {
		if _, err := out.WriteAt(b[:min(int64(len(b)), to-p)], p); err != nil {
			return err
		}
	}
	return nil
}

// readStream decompresses in, a segment compressed as one zstd stream, into
// out as far as its stream reads, and returns the plain size.
func readStream(in File, out File) (int64, error) {
	src := &walfs.ErrReader{R: in}
	dec, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<31))
	if err != nil {
		return 0, err
	}
	defer dec.Close()
	w := &walfs.Writer{F: out}
	buf := make([]byte, 1<<16)
	for {
		n, rerr := dec.Read(buf)
		if _, err = w.Write(buf[:n]); err != nil {
			return 0, err
		}
		if rerr != nil { // the end, or a broken stream: nothing more can be read
			break
		}
	}
	if src.Err != nil {
		return 0, src.Err
	}
	return w.Off, nil
}

// moveAside moves segments into the directory aside (created if need be),
// oldest first, so that what stays is always a whole log.
func moveAside(fsys FS, dir, aside string, segs []segmentInfo) error {
	if err := fsys.MkdirAll(aside, 0o755); err != nil {
		return fmt.Errorf("wal repair: %w", err)
	}
	if err := fsys.SyncDir(dir); err != nil { // the new directory's entry, before anything moves into it
		return fmt.Errorf("wal repair: %w", err)
	}
	for _, s := range segs {
		if err := fsys.Rename(filepath.Join(dir, s.name), filepath.Join(aside, s.name)); err != nil {
			return fmt.Errorf("wal repair: move %s aside: %w", s.name, err)
		}
	}
	if err := fsys.SyncDir(aside); err != nil {
		return fmt.Errorf("wal repair: %w", err)
	}
	return fsys.SyncDir(dir)
}

// findCorruption checks segment i the way Open and Replay would (the
// newest one with checkTail, as Open does under SyncAlways).
func findCorruption(fsys FS, dir string, segs []segmentInfo, i int) (*CorruptionError, scanResult, error) {
	s := segs[i]
	if i == len(segs)-1 {
		tc, err := checkTail(fsys, dir, s)
		return tc.bad, tc.res, err
	}
	res, err := scanSegment(fsys, dir, s)
	var bad *CorruptionError
	if errors.As(err, &bad) {
		return bad, res, nil
	}
	if err != nil {
		return nil, res, err
	}
	if errors.As(res.err, &bad) {
		return bad, res, nil
	}
	if res.next != segs[i+1].first {
		return endsEarly(s.name, res.end, res.next, segs[i+1].first), res, nil
	}
	res.commitEnd, res.commitIdx = res.end, res.next // sealed: all committed
	return nil, res, nil
}

// setAside keeps a copy of segment i, cuts it before the bad frame, and
// moves every later segment into the directory aside.
func setAside(fsys FS, dir, aside string, segs []segmentInfo, i int, bad *CorruptionError, res scanResult) error {
	s := segs[i]
	if err := fsys.MkdirAll(aside, 0o755); err != nil {
		return fmt.Errorf("wal repair: %w", err)
	}
	if err := copyFile(fsys, filepath.Join(dir, s.name), filepath.Join(aside, s.name)); err != nil {
		return fmt.Errorf("wal repair: keep a copy of %s: %w", s.name, err)
	}
	if err := fsys.SyncDir(aside); err != nil {
		return fmt.Errorf("wal repair: %w", err)
	}
	if err := fsys.SyncDir(dir); err != nil { // the new directory's entry: the cut relies on the copy
		return fmt.Errorf("wal repair: %w", err)
	}
	if err := cutSegment(fsys, dir, s, bad.Offset, res); err != nil {
		return fmt.Errorf("wal repair: cut %s at %d: %w", s.name, bad.Offset, err)
	}
	for _, later := range segs[i+1:] {
		if err := fsys.Rename(filepath.Join(dir, later.name), filepath.Join(aside, later.name)); err != nil {
			return fmt.Errorf("wal repair: move %s aside: %w", later.name, err)
		}
	}
	if err := fsys.SyncDir(aside); err != nil {
		return fmt.Errorf("wal repair: %w", err)
	}
	return fsys.SyncDir(dir)
}

// cutSegment makes s end at off, its last frame marked as ending a write.
// A compressed segment, or one whose header is bad, is rewritten plain (an
// empty segment still names the index the log continues from).
func cutSegment(fsys FS, dir string, s segmentInfo, off int64, res scanResult) error {
	if s.compressed || off < headerSize || len(res.offs) == 0 {
		var frames []byte
		if off > headerSize {
			var err error
			if frames, err = readPrefix(fsys, dir, s, off); err != nil {
				return err
			}
		}
		if err := writeSegmentAtomically(fsys, dir, s.first, frames); err != nil {
			return err
		}
		if s.compressed {
			if err := fsys.Remove(filepath.Join(dir, s.name)); err != nil {
				return err
			}
		}
		return fsys.SyncDir(dir)
	}
	f, err := fsys.OpenFile(filepath.Join(dir, s.name), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return cutPlain(f, off, int64(res.offs[len(res.offs)-1]), 0)
}

func copyFile(fsys FS, src, dst string) error {
	in, err := fsys.OpenFile(src, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := fsys.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	if _, err := io.Copy(&walfs.Writer{F: out}, io.NewSectionReader(in, 0, st.Size())); err != nil {
		return err
	}
	return out.Sync()
}
