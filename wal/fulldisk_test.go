package wal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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

// TestCompressedSegmentsFreeTheirSpace: once a sealed segment is compressed
// and its plain file removed, the log holds no descriptor of the removed
// file, so its space is free (df agrees with ls). Before, the Get cache
// kept the two segments a roll had just sealed open after compression
// removed them: two segments' worth of disk (128 MiB at the default size)
// taken and invisible in the data dir, which an operator freeing a full
// disk could not find.
func TestCompressedSegmentsFreeTheirSpace(t *testing.T) {
	const segment = 256 << 10
	dir := filepath.Join(t.TempDir(), "wal")
	l := mustOpen(t, dir, Options{SegmentSize: segment, Compress: true, Sync: SyncNever})
	defer l.Close()
	next := uint64(1)
	for range 3 {
		next = appendUntilRoll(t, l, next)
	}
	// Wait for the sealed segments' compression (it runs in the background).
	for i := 0; ; i++ {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		plain := 0
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".wal") {
				plain++
			}
		}
		if plain == 1 { // the active segment
			break
		}
		if i == 500 {
			t.Fatalf("sealed segments not compressed after 5 s: %d plain segments", plain)
		}
		time.Sleep(10 * time.Millisecond)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd to list open files: %v", err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir) && strings.HasSuffix(target, " (deleted)") {
			t.Errorf("the log holds a removed file open: %s", target)
		}
	}
}

// TestWriteErrorNamesTheSegment: a write that fails in a segment made from
// the spare (opened as next.wal.tmp, then renamed) names the segment, not
// the spare: an operator reading "write .../next.wal.tmp: no space left on
// device" would look for a temporary file. A record larger than a segment
// writes past its preallocated bytes, so on a full disk its write fails.
func TestWriteErrorNamesTheSegment(t *testing.T) {
	const segment = 64 << 10
	root := smallfs.Mount(t, 1<<20)
	dir := filepath.Join(root, "wal")
	l := mustOpen(t, dir, Options{SegmentSize: segment, Sync: SyncNever})
	defer l.Close()
	next := appendUntilRoll(t, l, 1) // the active segment was the spare
	smallfs.Fill(t, filepath.Join(root, "filler"), 16<<10)
	_, err := l.Append(make([]byte, 2*segment))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append of a record larger than a segment on a full disk: %v, want ENOSPC", err)
	}
	// The record rolled to a segment of its own, made from the spare.
	if want := segmentName(next); strings.Contains(err.Error(), spareName) || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q: want it to name the segment written, %s, not %s", err, want, spareName)
	}
}
