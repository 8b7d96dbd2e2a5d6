package wal

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/tally-ml/tally/internal/smallfs"
)

// TestFullDiskRollIsRetriedOnARealFileSystem: on a real file system (a
// small tmpfs) whose free space runs out, the next segment cannot be
// preallocated; the roll that needs it fails, the appends meanwhile fail
// with ENOSPC, and once space is back the log rolls and appends again
// without a reopen (package doc: a failure to start a segment loses nothing
// and is retried). Every acknowledged record is in the log once.
//
// Before, Preallocate fell back to ftruncate on any fallocate error, so a
// full disk made a sparse spare that the roll took as preallocated: the
// writes into it failed with ENOSPC, which broke the log until a restart.
func TestFullDiskRollIsRetriedOnARealFileSystem(t *testing.T) {
	const segment = 256 << 10
	root := smallfs.Mount(t, 2<<20)
	dir := filepath.Join(root, "wal")
	l := mustOpen(t, dir, Options{SegmentSize: segment})
	defer func() { l.Close() }()
	// Room for what is written into the preallocated segments, not for
	// another segment.
	filler := filepath.Join(root, "filler")
	smallfs.Fill(t, filler, 64<<10)

	next, last := uint64(1), uint64(0)
	var failed error
	for ; failed == nil; next++ {
		if next > 20_000 {
			t.Fatalf("no append failed with %d bytes free", smallfs.Free(t, root))
		}
		got, err := l.Append(record(next))
		if err != nil {
			failed = err
			break
		}
		if got != next {
			t.Fatalf("append got index %d, want %d", got, next)
		}
		last = got
	}
	if !errors.Is(failed, syscall.ENOSPC) {
		t.Fatalf("append %d on a full disk: %v, want ENOSPC", next, failed)
	}
	if l.LastIndex() != last {
		t.Fatalf("a failed append changed the log: last index %d, want %d", l.LastIndex(), last)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// With room again, the next Append rolls first and succeeds.
	if got, err := l.Append(record(next)); err != nil || got != next {
		t.Fatalf("append %d once the disk has room again: index %d, %v; want %d, nil (the log must recover without a restart)", next, got, err, next)
	}
	if err := l.Err(); err != nil {
		t.Fatalf("Err after the log recovered: %v", err)
	}
	appendN(t, l, next+1, next+100)
	l.Close()
	l = mustOpen(t, dir, Options{SegmentSize: segment})
	if got := replayAll(t, l); uint64(len(got)) != next+100 || got[len(got)-1] != next+100 {
		t.Fatalf("reopened: %d records, want 1..%d", len(got), next+100)
	}
}
