package wal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
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
