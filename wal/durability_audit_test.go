package wal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/wal/walfs"
)

// TestCompressionKeepsASealedSegmentThatEndsEarly: a sealed segment whose
// frames stop at a zeroed header before the next segment begins is
// corruption of acknowledged records (Replay refuses it). Open's background
// compression must leave it as it is: compressing only the frames before
// the zeros, then removing the plain file, would destroy the records after
// them, which Repair's copy aside is there to keep.
func TestCompressionKeepsASealedSegmentThatEndsEarly(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 4096}
	l := mustOpen(t, dir, opts)
	appendN(t, l, 1, 200)
	l.Close()
	seg := segmentFiles(t, dir)[0]
	offs := frameOffsets(t, seg)
	data, _ := os.ReadFile(seg)
	clear(data[offs[10] : offs[10]+frameHdr]) // a zeroed frame header: record 11 and the rest of the segment
	os.WriteFile(seg, data, 0o644)

	opts.Compress = true
	l = mustOpen(t, dir, opts)
	err := l.Replay(1, func(uint64, []byte) error { return nil })
	var ce *CorruptionError
	if !errors.As(err, &ce) {
		t.Fatalf("replay over a sealed segment that ends early: %v", err)
	}
	l.Close() // waits for the background compression
	if after, err := os.ReadFile(seg); err != nil || !bytes.Equal(after, data) {
		zst, _ := filepath.Glob(filepath.Join(dir, "*.wal.zst"))
		t.Fatalf("the corrupt sealed segment was replaced (%v; compressed segments %v): records after the zeroed frame are gone", err, zst)
	}
}

// TestRaftStoreDeleteRangeFailedLeavesBounds: a prefix DeleteRange whose
// stable-store write fails returns the error and changes nothing: the
// entries stay visible, as they are on disk (the stable file still says
// where the log starts), instead of hidden in memory only.
func TestRaftStoreDeleteRangeFailedLeavesBounds(t *testing.T) {
	mfs := walfs.NewMem()
	s, err := OpenRaftStore("/raft", Options{FS: mfs, SegmentSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storeRange(t, s, 1, 100, 1)
	mfs.Set(func(m *walfs.Mem) { m.FailOpen = syscall.EMFILE }) // no descriptor for stable.tmp
	if err := s.DeleteRange(1, 50); err == nil {
		t.Fatal("DeleteRange whose stable write failed returned nil")
	}
	mfs.Set(func(m *walfs.Mem) { m.FailOpen = nil })
	checkBounds(t, s, 1, 100)
	var got raft.Log
	if err := s.GetLog(10, &got); err != nil {
		t.Fatalf("entry 10 after a failed DeleteRange: %v", err)
	}
}
