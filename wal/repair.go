package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Repair makes a log with a corrupt record usable again without deleting
// anything: it finds the first record that does not validate, keeps every
// record before it, and moves the rest — a copy of the corrupt segment as
// it was, and every later segment — into dir/corrupt-<unix time>/. It
// returns the index of the last record kept (0 if none). A log without
// corruption is left as it is.
func Repair(dir string, opts Options) (kept uint64, err error) {
	if opts.FS == nil {
		opts.FS = OS
	}
	fsys := opts.FS
	segs, err := listSegments(fsys, dir)
	if err != nil {
		return 0, err
	}
	for i, s := range segs {
		sr, err := openSegmentReader(fsys, dir, s)
		var bad *CorruptionError
		if err == nil {
			for {
				_, err = sr.frame()
				if err != nil {
					break
				}
			}
			kept = sr.next - 1
			sr.close()
			if err == errEnd {
				err = checkEnd(fsys, dir, segs, i, sr)
				if err == nil {
					continue
				}
			}
		}
		if !errors.As(err, &bad) {
			return kept, err
		}
		if bad.Offset == 0 {
			kept = s.first - 1
		}
		aside := filepath.Join(dir, fmt.Sprintf("corrupt-%d", time.Now().Unix()))
		if err := fsys.MkdirAll(aside, 0o755); err != nil {
			return kept, err
		}
		// Keep the corrupt segment's original, then cut it at the bad frame.
		if err := copyFile(fsys, filepath.Join(dir, s.name), filepath.Join(aside, s.name)); err != nil {
			return kept, fmt.Errorf("wal repair: keep a copy of %s: %w", s.name, err)
		}
		if err := cutSegment(fsys, dir, s, bad.Offset); err != nil {
			return kept, err
		}
		for _, later := range segs[i+1:] {
			if err := fsys.Rename(filepath.Join(dir, later.name), filepath.Join(aside, later.name)); err != nil {
				return kept, fmt.Errorf("wal repair: move %s aside: %w", later.name, err)
			}
		}
		return kept, fsys.SyncDir(dir)
	}
	return kept, nil
}

// cutSegment makes s end at off: a plain segment is truncated there; a
// compressed one is rewritten as a plain segment holding its valid prefix.
func cutSegment(fsys FS, dir string, s segmentInfo, off int64) error {
	if off <= headerSize {
		return fsys.Remove(filepath.Join(dir, s.name))
	}
	if s.compressed {
		sr, err := openSegmentReader(fsys, dir, s)
		if err != nil {
			return err
		}
		defer sr.close()
		out, err := fsys.OpenFile(filepath.Join(dir, segmentName(s.first)), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		defer out.Close()
		var buf []byte
		idx := s.first
		for sr.off < off {
			rec, err := sr.frame()
			if err != nil {
				break
			}
			buf = appendFrame(buf, idx, rec)
			idx++
		}
		hdr := make([]byte, headerSize)
		copy(hdr, magic)
		putU64(hdr[8:], s.first)
		if _, err := out.WriteAt(append(hdr, buf...), 0); err != nil {
			return err
		}
		if err := out.Sync(); err != nil {
			return err
		}
		return fsys.Remove(filepath.Join(dir, s.name))
	}
	f, err := fsys.OpenFile(filepath.Join(dir, s.name), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(off); err != nil {
		return err
	}
	return f.Sync()
}

func putU64(b []byte, v uint64) {
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (8 * i))
	}
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
	buf := make([]byte, st.Size())
	if _, err := in.ReadAt(buf, 0); err != nil && int64(len(buf)) != st.Size() {
		return err
	}
	out, err := fsys.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	if _, err := out.WriteAt(buf, 0); err != nil {
		return err
	}
	return out.Sync()
}

// checkEnd says whether a segment whose frames ended at sr.off really ends
// there: a sealed segment must reach the next one's first index, and the
// last must have no valid frame after its end (a zeroed region mid-log).
func checkEnd(fsys FS, dir string, segs []segmentInfo, i int, sr *segmentReader) error {
	bad := &CorruptionError{Segment: sr.name, Offset: sr.off, Index: sr.next, Reason: "records missing before the end of the segment"}
	if i+1 < len(segs) {
		if sr.next != segs[i+1].first {
			return bad
		}
		return nil
	}
	if segs[i].compressed {
		return nil
	}
	f, err := fsys.OpenFile(filepath.Join(dir, segs[i].name), os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	later, err := validFrameAfter(f, sr.off, sr.next)
	if err != nil {
		return err
	}
	if later {
		return bad
	}
	return nil
}
