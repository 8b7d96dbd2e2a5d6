package wal

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
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
	if di, err := Inspect(t.TempDir()); err != nil || di.First != 0 || len(di.Segments) != 0 {
		t.Fatalf("empty directory: %+v %v", di, err)
	}
}
