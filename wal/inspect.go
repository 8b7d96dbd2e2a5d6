package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// SegmentFile is one segment file of a log directory.
type SegmentFile struct {
	Name  string `json:"name"`
	First uint64 `json:"first"` // the index of its first record
	Bytes int64  `json:"bytes"` // its size on disk (compressed, for .wal.zst)
}

// DirInfo describes a log directory as Inspect found it.
type DirInfo struct {
	Segments []SegmentFile `json:"segments"`
	First    uint64        `json:"first"` // the oldest record's index (0: no segment)
	// Last is the newest committed record's index: the newest segment's
	// last complete write (a torn tail is not counted).
	Last  uint64 `json:"last"`
	Bytes int64  `json:"bytes"` // every segment's size
}

// Inspect describes the log in dir without changing anything: it reads
// the directory and the newest segment only, takes no lock, and is safe
// beside the process that owns the log (the answer is then a moment's).
// A directory without segments is an empty DirInfo, not an error.
//
// The newest segment is classified as Open classifies it under SyncAlways
// (the same code): a torn tail is not counted, and corruption of
// acknowledged records (a bad frame with complete writes after it) is
// returned as Open's *CorruptionError, with the DirInfo counting the
// records before it. Open under another policy cuts the log there
// instead (see TailCut).
func Inspect(dir string) (DirInfo, error) {
	var di DirInfo
	segs, err := listSegments(OS, dir)
	if err != nil {
		return di, fmt.Errorf("wal: list %s: %w", dir, err)
	}
	for _, s := range segs {
		sf := SegmentFile{Name: s.name, First: s.first}
		if fi, err := os.Stat(filepath.Join(dir, s.name)); err == nil {
			sf.Bytes = fi.Size()
		}
		di.Segments = append(di.Segments, sf)
		di.Bytes += sf.Bytes
	}
	if len(segs) == 0 {
		return di, nil
	}
	di.First = segs[0].first
	newest := segs[len(segs)-1]
	di.Last = newest.first - 1
	// Beside a running log, the end of the written data, read before a
	// write that followed, looks like a bad frame with a later write after
	// it. A frame once written stays, so damage is reported only when two
	// readings in a row find it at the same place; readings that each
	// found a later one saw the log move (a torn tail, as the last says).
	var tc tailCheck
	var prev *CorruptionError
	for range 5 {
		tc, err = checkTail(OS, dir, newest)
		if errors.Is(err, os.ErrNotExist) && !newest.compressed {
			// Compressed since it was listed: the .zst replaced the plain file.
			newest.name, newest.compressed = newest.name+".zst", true
			tc, err = checkTail(OS, dir, newest)
		}
		if errors.Is(err, os.ErrNotExist) {
			return di, nil // removed since it was listed (Reset)
		}
		if err != nil {
			return di, fmt.Errorf("wal: read %s: %w", filepath.Join(dir, newest.name), err)
		}
		if tc.bad == nil || (prev != nil && *prev == *tc.bad) {
			break
		}
		prev, tc.bad = tc.bad, nil
	}
	di.Last = tc.res.commitIdx - 1
	if tc.bad != nil {
		return di, tc.bad
	}
	return di, nil
}

// RaftDirInfo describes a RaftStore's directory as InspectRaftStore found it.
type RaftDirInfo struct {
	Log DirInfo `json:"log"`
	// RaftFirst is the first entry Raft still reads (its compacted view:
	// the segments before it stay as the archive); 0 when Raft compacted
	// nothing.
	RaftFirst uint64 `json:"raftFirst,omitempty"`
	Term      uint64 `json:"term"` // Raft's current term, from the stable file
}

// InspectRaftStore describes the RaftStore in dir without changing
// anything (see Inspect).
func InspectRaftStore(dir string) (RaftDirInfo, error) {
	var ri RaftDirInfo
	st, err := readStable(dir)
	if err != nil {
		return ri, err
	}
	if v, ok := st.get(keyFirst); ok && len(v) == 8 {
		ri.RaftFirst = binary.LittleEndian.Uint64(v)
	}
	ri.Term = termOf(st)
	ri.Log, err = Inspect(filepath.Join(dir, "log"))
	return ri, err
}

// RaftTerm is Raft's current term as recorded in the stable file of the
// RaftStore in dir: 0 when the store never recorded one (no stable file,
// or a replica Raft never started, bootstrapped or heard from). Unlike
// InspectRaftStore it reads the stable file only, so it costs one small
// read; it changes nothing, and a missing dir is an error (fs.ErrNotExist).
// A stable file that does not validate is ErrCorruptStable.
func RaftTerm(dir string) (uint64, error) {
	st, err := readStable(dir)
	if err != nil {
		return 0, err
	}
	return termOf(st), nil
}

// readStable reads the stable file of the RaftStore in dir without
// creating dir (openStable would).
func readStable(dir string) (*stableFile, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	return openStable(OS, dir)
}

func termOf(st *stableFile) uint64 {
	if v, ok := st.get("CurrentTerm"); ok && len(v) == 8 {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}
