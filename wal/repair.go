package wal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/tally-ml/tally/wal/walfs"
)

// Repair makes a log with a corrupt record usable again without deleting
// anything. It reads every segment, finds the first record that does not
// validate (or a segment that ends before the next one begins), keeps every
// record before it, and moves the rest into dir/corrupt-<unix time>/: a copy
// of the corrupt segment as it was, and every later segment. It returns the
// index of the last record kept and the directory it moved the rest into. A
// log without corruption is left as it is and aside is "" (a torn tail is
// Open's to cut, and is not counted in kept). The log must not be open.
//
// covered is the index of the newest snapshot (0: none): the state holds
// every record up to it. A corrupt segment whose records are all covered is
// not cut: it and every segment before it (the log's front) are moved aside
// instead, as retention drops segments, so that the records after the
// snapshot, which only the log holds, stay; the rest is checked on.
func Repair(dir string, covered uint64, opts Options) (kept uint64, aside string, err error) {
	if opts.FS == nil {
		opts.FS = OS
	}
	fsys := opts.FS
	segs, err := listSegments(fsys, dir)
	if err != nil {
		return 0, "", fmt.Errorf("wal repair: list %s: %w", dir, err)
	}
	front := 0 // segs[:front] were moved aside
	for i, s := range segs {
		bad, res, err := findCorruption(fsys, dir, segs, i)
		if err != nil {
			return kept, aside, fmt.Errorf("wal repair: read %s: %w", s.name, err)
		}
		if bad == nil {
			kept = res.commitIdx - 1
			continue
		}
		if aside == "" {
			aside = filepath.Join(dir, fmt.Sprintf("corrupt-%d", time.Now().Unix()))
		}
		if i+1 < len(segs) && segs[i+1].first <= covered+1 {
			if err := moveAside(fsys, dir, aside, segs[front:i+1]); err != nil {
				return kept, aside, err
			}
			front = i + 1
			continue
		}
		kept = bad.Index - 1
		return kept, aside, setAside(fsys, dir, aside, segs, i, bad, res)
	}
	return kept, aside, nil
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
		return &CorruptionError{Segment: s.name, Offset: res.end, Index: res.next,
			Reason: fmt.Sprintf("segment ends before index %d, where the next one begins", segs[i+1].first)}, res, nil
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
