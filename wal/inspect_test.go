package wal

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// dirState is every file's name and size under dir.
func dirState(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			out[p] = fi.Size()
		}
		return nil
	})
	return out
}

// TestInspect: a RaftStore's directory is described as it is (several
// segments, the log's range, Raft's compacted start, the term), before and
// after a reopen, and inspecting writes nothing; an empty directory is
// empty, not an error.
func TestInspect(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenRaftStore(dir, Options{SegmentSize: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	s.KeepCompacted = true
	storeRange(t, s, 1, 200, 1)
	if err := s.DeleteRange(1, 150); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		before := dirState(t, dir)
		ri, err := InspectRaftStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		if ri.Log.First != 1 || ri.Log.Last != 200 || ri.RaftFirst != 151 || ri.Term != 7 || len(ri.Log.Segments) < 2 || ri.Log.Bytes == 0 {
			t.Fatalf("%s: %+v", when, ri)
		}
		if after := dirState(t, dir); !reflect.DeepEqual(before, after) {
			t.Fatalf("%s: inspect changed the directory:\n%v\n%v", when, before, after)
		}
	}
	check("open")
	s.Close()
	check("closed")
	if term, err := RaftTerm(dir); term != 7 || err != nil {
		t.Fatalf("RaftTerm: %d %v; want 7", term, err)
	}
	if term, err := RaftTerm(t.TempDir()); term != 0 || err != nil {
		t.Fatalf("RaftTerm of an empty directory: %d %v; want 0", term, err)
	}
	missing := filepath.Join(t.TempDir(), "gone")
	if _, err := RaftTerm(missing); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("RaftTerm of a missing directory: %v; want ErrNotExist", err)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Fatal("RaftTerm created the missing directory")
	}
	if di, err := Inspect(t.TempDir()); err != nil || di.First != 0 || len(di.Segments) != 0 {
		t.Fatalf("empty directory: %+v %v", di, err)
	}
}

// TestInspectClassifiesTheLiveSegmentAsOpen: inspect reads the newest
// segment the way Open (under SyncAlways) does. A bad frame with later
// committed writes after it is corruption of acknowledged records: Inspect
// returns Open's *CorruptionError (segment, byte offset, index) and counts
// only the records before it. A bad frame with nothing after it is a torn
// tail, as for Open. Inspect used to stop at the bad frame and report a
// torn tail either way, so the damage looked harmless.
func TestInspectClassifiesTheLiveSegmentAsOpen(t *testing.T) {
	src := t.TempDir()
	opts := Options{SegmentSize: 1 << 16}
	l := mustOpen(t, src, opts)
	appendN(t, l, 1, 40)
	l.Close()
	seg := filepath.Base(segmentFiles(t, src)[0])
	offs := frameOffsets(t, filepath.Join(src, seg))
	for _, tc := range []struct {
		name    string
		damage  func(data []byte)
		corrupt bool   // Open refuses
		last    uint64 // the last record counted
	}{
		{"bitflip in the middle", func(d []byte) { d[offs[5]+frameHdr+1] ^= 0x10 }, true, 5},
		{"bad header in the middle", func(d []byte) { d[offs[5]+5] ^= 0x01 }, true, 5},
		{"zeroed sector in the middle", func(d []byte) {
			for i := offs[5]; i < offs[5]+512; i++ {
				d[i] = 0
			}
		}, true, 5},
		{"bitflip in the last record", func(d []byte) { d[offs[39]+frameHdr+1] ^= 0x10 }, false, 39},
		{"undamaged", func([]byte) {}, false, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, src)
			path := filepath.Join(dir, seg)
			data, _ := os.ReadFile(path)
			tc.damage(data)
			os.WriteFile(path, data, 0o644)
			before := dirState(t, dir)
			di, err := Inspect(dir)
			var ce *CorruptionError
			if tc.corrupt {
				if !errors.As(err, &ce) || ce.Segment != seg || ce.Offset != offs[5] || ce.Index != 6 {
					t.Fatalf("inspect: %v (%+v), want the corruption of %s at offset %d (index 6)", err, di, seg, offs[5])
				}
			} else if err != nil {
				t.Fatalf("inspect: %v", err)
			}
			if di.First != 1 || di.Last != tc.last {
				t.Fatalf("inspect: records %d..%d, want 1..%d", di.First, di.Last, tc.last)
			}
			if after := dirState(t, dir); !reflect.DeepEqual(before, after) {
				t.Fatalf("inspect changed the directory:\n%v\n%v", before, after)
			}
			// Open agrees.
			l, oerr := Open(dir, opts)
			if tc.corrupt {
				var oce *CorruptionError
				if !errors.As(oerr, &oce) || *oce != *ce {
					t.Fatalf("open: %v, inspect: %v", oerr, err)
				}
				return
			}
			if oerr != nil {
				t.Fatalf("open: %v", oerr)
			}
			defer l.Close()
			if l.LastIndex() != tc.last {
				t.Fatalf("open: last index %d, inspect %d", l.LastIndex(), tc.last)
			}
		})
	}
}

// TestInspectBesideAWriter: inspecting a log while it is appended to never
// reports a write under way as corruption, and its count only grows.
func TestInspectBesideAWriter(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 1 << 20, Sync: SyncNever})
	defer l.Close()
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for i := uint64(1); ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if _, err := l.Append(record(i), record(i+1)); err != nil {
				done <- err
				return
			}
		}
	}()
	var last uint64
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		di, err := Inspect(dir)
		if err != nil {
			t.Fatalf("inspect beside a writer: %v", err)
		}
		if di.Last < last {
			t.Fatalf("inspect: last %d after %d", di.Last, last)
		}
		last = di.Last
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if last == 0 {
		t.Fatal("inspect saw no record")
	}
}

// TestNewestSegmentNeverWrittenIsNotCorrupt: a newest segment that holds
// only zeros (a crash while it was created) is created again by Open, and
// Inspect and Repair, which classify it with Open's code, see no corruption.
func TestNewestSegmentNeverWrittenIsNotCorrupt(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 1 << 16}
	l := mustOpen(t, dir, opts)
	appendN(t, l, 1, 10)
	l.Close()
	if err := os.WriteFile(filepath.Join(dir, segmentName(11)), make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	if di, err := Inspect(dir); err != nil || di.Last != 10 {
		t.Fatalf("inspect: %+v %v", di, err)
	}
	if rep, err := Repair(dir, 0, opts); err != nil || rep.Aside != "" || rep.Kept != 10 {
		t.Fatalf("repair kept %d, moved to %q: %v", rep.Kept, rep.Aside, err)
	}
	l = mustOpen(t, dir, opts)
	defer l.Close()
	if got := replayAll(t, l); len(got) != 10 {
		t.Fatalf("replayed %d, want 10", len(got))
	}
	appendN(t, l, 11, 12)
}
