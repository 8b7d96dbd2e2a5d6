package wal

import (
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tally-ml/tally/wal/walfs"
)

// wantIOError fails unless err is the read error cause, naming segment,
// and not a *CorruptionError (which would send the operator to repair).
func wantIOError(t *testing.T, what string, err error, cause error, segment string) {
	t.Helper()
	var ce *CorruptionError
	if err == nil || errors.As(err, &ce) || !errors.Is(err, cause) || !strings.Contains(err.Error(), segment) {
		t.Errorf("%s with a failing disk: %v; want an error naming %s and %v, not corruption", what, err, segment, cause)
	}
}

// A read of the last segment that fails with an OS error is not a torn
// or corrupt tail: Open fails with the error, naming the segment, and
// changes nothing; once reads succeed, every acknowledged record is there.
func TestOpenReadErrorIsNotATornTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   int64 // the first byte that cannot be read
	}{
		{"header", 0},
		{"mid-segment", 2000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := walfs.NewMem()
			opts := Options{FS: mem, SegmentSize: 1 << 16, Sync: SyncAlways}
			l := mustOpen(t, "/wal", opts)
			appendN(t, l, 1, 50)
			l.Close()
			seg := filepath.Join("/wal", segmentName(1))
			before := mem.ReadFile(seg)
			mem.Set(func(m *walfs.Mem) { m.FailRead, m.FailReadAt, m.FailOnly = syscall.EIO, tc.at, seg })
			l, err := Open("/wal", opts)
			if err == nil {
				l.Close()
			}
			wantIOError(t, "open", err, syscall.EIO, segmentName(1))
			mem.Set(func(m *walfs.Mem) { m.FailRead, m.FailReadAt, m.FailOnly = nil, 0, "" })
			if string(mem.ReadFile(seg)) != string(before) {
				t.Fatalf("the segment changed although only its reads failed")
			}
			l = mustOpen(t, "/wal", opts)
			defer l.Close()
			if got := replayAll(t, l); len(got) != 50 {
				t.Fatalf("once reads succeed: %d records, want 50", len(got))
			}
		})
	}
}

// A sealed segment, plain or compressed, whose read fails with an OS error
// makes Replay fail with that error, not a *CorruptionError, and Repair
// refuses rather than move anything aside.
func TestReplayReadErrorIsNotCorruption(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "compressed"}[compress], func(t *testing.T) {
			mem := walfs.NewMem()
			opts := Options{FS: mem, SegmentSize: 4096, Compress: compress}
			l := mustOpen(t, "/wal", opts)
			appendN(t, l, 1, 200)
			l.Close()
			segs, err := listSegments(mem, "/wal")
			if err != nil || len(segs) < 3 || segs[0].compressed != compress {
				t.Fatalf("segments %+v, %v", segs, err)
			}
			seg := filepath.Join("/wal", segs[0].name)
			mem.Set(func(m *walfs.Mem) { m.FailRead, m.FailReadAt, m.FailOnly = syscall.EIO, 100, seg })
			l = mustOpen(t, "/wal", opts)
			err = l.Replay(1, func(uint64, []byte) error { return nil })
			l.Close()
			wantIOError(t, "replay", err, syscall.EIO, segs[0].name)
			rep, err := Repair("/wal", 0, opts)
			wantIOError(t, "repair", err, syscall.EIO, segs[0].name)
			if rep.Aside != "" {
				t.Fatalf("repair moved the log aside into %s", rep.Aside)
			}
			ents, _ := mem.ReadDir("/wal")
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), "corrupt-") {
					t.Fatalf("%s made although only reads failed", e.Name())
				}
			}
			mem.Set(func(m *walfs.Mem) { m.FailRead, m.FailReadAt, m.FailOnly = nil, 0, "" })
			l = mustOpen(t, "/wal", opts)
			defer l.Close()
			if got := replayAll(t, l); len(got) != 200 {
				t.Fatalf("once reads succeed: %d records, want 200", len(got))
			}
		})
	}
}

// The archive (history's reader beside the writer) takes a torn tail of
// the live segment for its end, but not a read that failed: a replay
// whose newest segment cannot be read fails with the error, naming the
// segment, instead of ending early and leaving out its records.
func TestArchiveReadErrorInTheLiveSegment(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   int64
	}{
		{"header", 0},
		{"mid-segment", 2000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := walfs.NewMem()
			l := mustOpen(t, "/wal", Options{FS: mem, SegmentSize: 1 << 16, Sync: SyncAlways})
			defer l.Close()
			appendN(t, l, 1, 50)
			a, err := OpenArchive(mem, "/wal")
			if err != nil {
				t.Fatal(err)
			}
			seg := filepath.Join("/wal", segmentName(1))
			mem.Set(func(m *walfs.Mem) { m.FailRead, m.FailReadAt, m.FailOnly = syscall.EIO, tc.at, seg })
			n := 0
			err = a.Replay(1, func(uint64, []byte) error { n++; return nil })
			wantIOError(t, "archive replay", err, syscall.EIO, segmentName(1))
			mem.Set(func(m *walfs.Mem) { m.FailRead, m.FailReadAt, m.FailOnly = nil, 0, "" })
			if got := archiveAll(t, a); got != 50 {
				t.Fatalf("once reads succeed: %d records, want 50", got)
			}
		})
	}
}
