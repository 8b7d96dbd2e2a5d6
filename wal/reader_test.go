package wal

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// archiveAll replays an Archive from 1 and checks every record's contents
// and that indexes are consecutive.
func archiveAll(t testing.TB, a *Archive) uint64 {
	t.Helper()
	var n uint64
	err := a.Replay(1, func(i uint64, rec []byte) error {
		if i != n+1 {
			return fmt.Errorf("index %d after %d", i, n)
		}
		if !bytes.Equal(rec, record(i)) {
			return fmt.Errorf("record %d differs", i)
		}
		n = i
		return nil
	})
	if err != nil {
		t.Fatalf("archive replay: %v", err)
	}
	return n
}

func TestArchiveReadsBesideTheWriter(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 8192, Compress: true, Sync: SyncNever})
	defer l.Close()
	appendN(t, l, 1, 300)
	a, err := OpenArchive(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := archiveAll(t, a); got != 300 {
		t.Fatalf("archive replayed %d of 300 records", got)
	}
	// Replays while the writer appends (and compresses sealed segments) see
	// a consecutive prefix of the log, never a torn or foreign record.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		appendN(t, l, 301, 3000)
	}()
	prev := uint64(0)
	for range 20 {
		got := archiveAll(t, a)
		if got < prev || got < 300 {
			t.Fatalf("archive replayed %d records, earlier %d", got, prev)
		}
		prev = got
	}
	wg.Wait()
	if got := archiveAll(t, a); got != 3000 {
		t.Fatalf("archive replayed %d of 3000 records", got)
	}
	if a.FirstIndex() != 1 {
		t.Fatalf("first index %d", a.FirstIndex())
	}
	var from uint64
	a.Replay(1234, func(i uint64, _ []byte) error {
		if from == 0 {
			from = i
		}
		return nil
	})
	if from != 1234 {
		t.Fatalf("replay from 1234 started at %d", from)
	}
}

func TestArchiveStopsAtATornTailAndRefusesSealedCorruption(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 4096, Sync: SyncNever})
	appendN(t, l, 1, 200)
	l.Close()
	segs, _ := listSegments(OS, dir)
	lastPath := filepath.Join(dir, segs[len(segs)-1].name)
	// Tear the newest segment inside its last frame: the archive ends at the
	// last complete write and says nothing is wrong.
	b, _ := os.ReadFile(lastPath)
	res, _ := scanSegment(OS, dir, segs[len(segs)-1])
	b[int64(res.offs[len(res.offs)-1])+frameHdr] ^= 0xff
	os.WriteFile(lastPath, b, 0o644)
	a, err := OpenArchive(nil, dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := archiveAll(t, a); got != 199 {
		t.Fatalf("archive replayed %d records, want 199 before the torn one", got)
	}
	// The same damage in a sealed segment is corruption.
	first := filepath.Join(dir, segs[0].name)
	b, _ = os.ReadFile(first)
	b[headerSize+frameHdr] ^= 0xff
	os.WriteFile(first, b, 0o644)
	if err := a.Replay(1, func(uint64, []byte) error { return nil }); err == nil {
		t.Fatal("replay over a corrupt sealed segment succeeded")
	}
	if _, err := OpenArchive(nil, t.TempDir()); err == nil {
		t.Fatal("an empty directory opened as an archive")
	}
}
