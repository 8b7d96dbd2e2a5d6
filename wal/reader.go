package wal

import (
	"errors"
	"fmt"
	"os"
)

// Archive is a read-only view of a log directory: the event archive that
// `tally export` reads, safe beside the process that owns the log, or on a
// copy of its directory. It never writes, truncates or repairs anything.
type Archive struct {
	fs  FS
	dir string
}

// OpenArchive opens the log in dir for reading (fsys nil: the OS). It fails
// when dir holds no segment.
func OpenArchive(fsys FS, dir string) (*Archive, error) {
	if fsys == nil {
		fsys = OS
	}
	segs, err := listSegments(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("wal: list %s: %w", dir, err)
	}
	if len(segs) == 0 {
		return nil, fmt.Errorf("wal: %s holds no log segments", dir)
	}
	return &Archive{fs: fsys, dir: dir}, nil
}

// FirstIndex is the index of the oldest record the directory holds now.
func (a *Archive) FirstIndex() uint64 {
	segs, err := listSegments(a.fs, a.dir)
	if err != nil || len(segs) == 0 {
		return 1
	}
	return segs[0].first
}

// Replay calls fn for every record from index from on, in order: every
// sealed segment whole (a corrupt one is a *CorruptionError), and the newest
// segment up to its last complete write. The newest segment may be being
// written meanwhile: a record it has not finished, or a torn tail, ends the
// replay without an error, and a write that is only partly visible is not
// replayed at all. rec is valid only during fn.
func (a *Archive) Replay(from uint64, fn func(index uint64, rec []byte) error) error {
	segs, err := listSegments(a.fs, a.dir)
	if err != nil {
		return fmt.Errorf("wal: list %s: %w", a.dir, err)
	}
	for i, s := range segs {
		if i+1 < len(segs) && segs[i+1].first <= from {
			continue
		}
		last := i+1 == len(segs)
		end := uint64(0)
		if !last {
			end = segs[i+1].first
		}
		if err := a.replaySegment(s, from, end, last, fn); err != nil {
			return err
		}
	}
	return nil
}

// replaySegment replays s's records in [from, end), or, for the newest
// segment (last), up to its last committed write: there a torn tail (a
// write under way) ends it, a read that failed does not (tornTail).
func (a *Archive) replaySegment(s segmentInfo, from, end uint64, last bool, fn func(uint64, []byte) error) error {
	sr, err := openSegmentReader(a.fs, a.dir, s)
	if errors.Is(err, os.ErrNotExist) && !s.compressed {
		// Compressed since it was listed: the .zst replaced the plain file.
		s.name, s.compressed = s.name+".zst", true
		sr, err = openSegmentReader(a.fs, a.dir, s)
	}
	if err != nil {
		if last && tornTail(err) {
			return nil // a segment created but not yet written
		}
		return err
	}
	defer sr.close()
	// Records of a write not yet seen whole wait here (copied).
	var pend [][]byte
	var pendFirst uint64
	for last || sr.next < end {
		idx := sr.next
		rec, err := sr.frame()
		if last && err != nil && tornTail(err) {
			return nil // the write under way, or the end
		}
		if err == errEnd {
			return endsEarly(sr.name, sr.off, idx, end)
		}
		if err != nil {
			return err
		}
		if !last {
			if idx >= from {
				if err := fn(idx, rec); err != nil {
					return err
				}
			}
			continue
		}
		if len(pend) == 0 {
			pendFirst = idx
		}
		pend = append(pend, append([]byte(nil), rec...))
		if !sr.commit {
			continue
		}
		for k, r := range pend {
			if i := pendFirst + uint64(k); i >= from {
				if err := fn(i, r); err != nil {
					return err
				}
			}
		}
		pend = pend[:0]
	}
	return nil
}

// tornTail reports whether err, met reading the live segment, is what a
// write under way leaves (its end, bytes not yet written, a segment not
// yet created) rather than a read that failed, which says nothing of the
// records after it.
func tornTail(err error) bool {
	var ce *CorruptionError
	return err == errEnd || errors.As(err, &ce) || errors.Is(err, os.ErrNotExist)
}
