package wal

import (
	"bytes"
	"errors"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/tally-ml/tally/wal/walfs"
)

// smallChunks makes compressed segments' chunks 1 KiB for the test.
func smallChunks(t *testing.T) {
	old := zstdChunk
	zstdChunk = 1024
	t.Cleanup(func() { zstdChunk = old })
}

// chunksOf returns the offsets of the index frames of a compressed
// segment, in order, and checks that they tile its plain bytes.
func chunksOf(t *testing.T, z []byte) (ats []int64, offs []int64) {
	t.Helper()
	end := int64(0)
	for at := int64(0); at < int64(len(z)); {
		off, n, zlen, ok := parseChunkHeader(z[at:])
		if !ok || off != end {
			t.Fatalf("no index frame for plain offset %d at %d", end, at)
		}
		ats, offs = append(ats, at), append(offs, off)
		end += int64(n)
		at += chunkHdr + int64(zlen)
	}
	return ats, offs
}

// TestCompressedSegmentIsChunksThatEveryReaderReads: a sealed segment is
// compressed as chunks of zstdChunk plain bytes, each its own zstd frame
// behind an index frame; Replay and Get read it through the zstd stream
// they make, and Repair's reader gives back its plain bytes.
func TestCompressedSegmentIsChunksThatEveryReaderReads(t *testing.T) {
	smallChunks(t)
	mem := walfs.NewMem()
	l := mustOpen(t, "/log", Options{FS: mem, SegmentSize: 4096, Compress: true})
	appendN(t, l, 1, 200)
	for _, i := range []uint64{3, 30} {
		if rec, err := l.Get(i); err != nil || !bytes.Equal(rec, record(i)) {
			t.Fatalf("get %d: %d bytes, %v", i, len(rec), err)
		}
	}
	l.Close()
	segs, _ := listSegments(mem, "/log")
	z := mem.ReadFile("/log/" + segs[0].name)
	ats, _ := chunksOf(t, z)
	if !segs[0].compressed || len(ats) != 4 {
		t.Fatalf("segment 1: %+v in %d chunks, want 4", segs[0], len(ats))
	}
	got, err := replayFrom(mem, "/log", 1)
	if err != nil {
		t.Fatal(err)
	}
	wantRecords(t, got, 1, 200)
	f, size, done, err := plainBytes(mem, "/log", segs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	plain := make([]byte, size)
	f.ReadAt(plain, 0)
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	if want, err := dec.DecodeAll(z, nil); err != nil || !bytes.Equal(plain, want) {
		t.Fatalf("repair's reader: %d bytes, the zstd stream %d (%v)", len(plain), len(want), err)
	}
}

// TestCompressedSegmentOfOneStreamStillReads: a segment compressed as one
// zstd stream, as before chunks, is read by Replay and Get as it was, and
// by Repair's reader as far as its stream reads.
func TestCompressedSegmentOfOneStreamStillReads(t *testing.T) {
	mem := walfs.NewMem()
	opts := Options{FS: mem, SegmentSize: 4096}
	l := mustOpen(t, "/log", opts)
	appendN(t, l, 1, 200)
	l.Close()
	name := "/log/" + segmentName(1)
	plain := mem.ReadFile(name)
	offs := frameOffsetsOf(plain)
	plain = plain[:offs[len(offs)-1]]
	enc, _ := zstd.NewWriter(nil)
	mem.WriteFile(name+".zst", enc.EncodeAll(plain, nil))
	enc.Close()
	mem.Remove(name)
	l = mustOpen(t, "/log", opts)
	if rec, err := l.Get(3); err != nil || !bytes.Equal(rec, record(3)) {
		t.Fatalf("get 3: %d bytes, %v", len(rec), err)
	}
	l.Close()
	got, err := replayFrom(mem, "/log", 1)
	if err != nil {
		t.Fatal(err)
	}
	wantRecords(t, got, 1, 200)
	f, size, done, err := plainBytes(mem, "/log", segmentInfo{first: 1, name: segmentName(1) + ".zst", compressed: true})
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	back := make([]byte, size)
	f.ReadAt(back, 0)
	if !bytes.Equal(back, plain) {
		t.Fatalf("repair's reader gave %d bytes of %d", len(back), len(plain))
	}
}

// TestRepairCutsAtALostChunkAfterCovered: a bad byte in a chunk of a
// compressed segment whose records the snapshot does not cover loses
// that chunk's records as a bad byte in a plain segment loses one record's:
// Repair keeps every record before the first that cannot be read (those
// of the intact chunks before it) and cuts there, with everything after it
// moved aside, never deleted (the log has no gaps).
func TestRepairCutsAtALostChunkAfterCovered(t *testing.T) {
	mem, _, offs := bigCompressed(t)
	name := "/log/" + segmentName(1) + ".zst"
	data := mem.ReadFile(name)
	ats, chunkOffs := chunksOf(t, data)
	bad := 2
	data[ats[bad]+chunkHdr+(ats[bad+1]-ats[bad]-chunkHdr)/2] ^= 0x40
	mem.WriteFile(name, data)
	var whole, partly uint64 // the last record before the chunk; the last that starts in it
	for i := range offs[:len(offs)-1] {
		if offs[i+1] <= chunkOffs[bad] {
			whole = uint64(i + 1)
		}
		if offs[i] < chunkOffs[bad+1] {
			partly = uint64(i + 1)
		}
	}
	rep, err := Repair("/log", 100, Options{FS: mem})
	if err != nil || rep.Cut <= whole || rep.Cut > partly || rep.Kept != rep.Cut-1 || rep.Front != 0 {
		t.Fatalf("repair: %+v, %v; want a cut in records %d..%d, the bad chunk's", rep, err, whole+1, partly)
	}
	got, err := replayFrom(mem, "/log", 101)
	if err != nil {
		t.Fatal(err)
	}
	wantRecords(t, got, 101, rep.Kept)
	if aside := mem.ReadFile(rep.Aside + "/" + segmentName(1) + ".zst"); !bytes.Equal(aside, data) {
		t.Fatal("segment 1 was not copied aside as it was")
	}
}

// TestRepairPassesADamagedIndexFrame: a bad byte in a chunk's index frame
// (its magic: the zstd stream breaks there) loses that chunk only: Repair
// finds the next index frame and keeps the records after the snapshot
// from there on.
func TestRepairPassesADamagedIndexFrame(t *testing.T) {
	mem, _, offs := bigCompressed(t)
	name := "/log/" + segmentName(1) + ".zst"
	data := mem.ReadFile(name)
	ats, chunkOffs := chunksOf(t, data)
	data[ats[1]] ^= 0x80 // neither a skippable frame nor a zstd frame
	mem.WriteFile(name, data)
	var covered uint64 // the last record that starts before chunk 2
	for i, off := range offs[:len(offs)-1] {
		if off < chunkOffs[2] {
			covered = uint64(i + 1)
		}
	}
	rep, err := Repair("/log", covered, Options{FS: mem})
	if err != nil || rep.Front != covered+1 || rep.Cut != 0 || rep.Kept != 12000 {
		t.Fatalf("repair: %+v, %v; want the log to start at %d and keep up to 12000", rep, err, covered+1)
	}
	got, err := replayFrom(mem, "/log", covered+1)
	if err != nil {
		t.Fatal(err)
	}
	wantRecords(t, got, covered+1, 12000)
}

// TestReplayRefusesALostChunk: Replay and Get meet a bad chunk as a
// corrupt record (a *CorruptionError naming the segment), as before.
func TestReplayRefusesALostChunk(t *testing.T) {
	mem, _, _ := bigCompressed(t)
	name := "/log/" + segmentName(1) + ".zst"
	data := mem.ReadFile(name)
	ats, _ := chunksOf(t, data)
	data[ats[1]+chunkHdr+20] ^= 0x40
	mem.WriteFile(name, data)
	var ce *CorruptionError
	if _, err := replayFrom(mem, "/log", 1); !errors.As(err, &ce) || ce.Segment != segmentName(1)+".zst" {
		t.Fatalf("replay: %v", err)
	}
}
