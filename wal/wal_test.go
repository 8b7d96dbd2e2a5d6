package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func record(i uint64) []byte {
	n := int(i*37%200) + 1
	return bytes.Repeat([]byte{byte('a' + i%26)}, n)
}

func appendN(t testing.TB, l *Log, from, to uint64) {
	t.Helper()
	for i := from; i <= to; i++ {
		last, err := l.Append(record(i))
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if last != i {
			t.Fatalf("append got index %d, want %d", last, i)
		}
	}
}

func replayAll(t testing.TB, l *Log) []uint64 {
	t.Helper()
	var got []uint64
	err := l.Replay(1, func(i uint64, rec []byte) error {
		if !bytes.Equal(rec, record(i)) {
			return fmt.Errorf("record %d: got %d bytes %q..., want %d", i, len(rec), rec[:min(8, len(rec))], len(record(i)))
		}
		got = append(got, i)
		return nil
	})
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	return got
}

func mustOpen(t testing.TB, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return l
}

func TestAppendReplayReopenAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 4096}
	l := mustOpen(t, dir, opts)
	appendN(t, l, 1, 500)
	if l.Segments() < 10 {
		t.Fatalf("%d segments: did not roll", l.Segments())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, opts)
	defer l.Close()
	if got := replayAll(t, l); len(got) != 500 || got[499] != 500 {
		t.Fatalf("replayed %d records", len(got))
	}
	appendN(t, l, 501, 700)
	if got := replayAll(t, l); len(got) != 700 {
		t.Fatalf("replayed %d records after reopen and append", len(got))
	}
	// Replay from the middle.
	var first uint64
	l.Replay(333, func(i uint64, _ []byte) error {
		if first == 0 {
			first = i
		}
		return nil
	})
	if first != 333 {
		t.Fatalf("replay from 333 started at %d", first)
	}
}

func segmentFiles(t testing.TB, dir string) []string {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".wal") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// frameOffsets returns the byte offset of every frame in a plain segment.
func frameOffsets(t testing.TB, path string) []int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return frameOffsetsOf(data)
}

// frameOffsetsOf returns the byte offset of every frame in the bytes of a
// plain segment, and the offset where they end.
func frameOffsetsOf(data []byte) []int64 {
	var offs []int64
	off := int64(headerSize)
	for off+8 <= int64(len(data)) {
		n := int(binary.LittleEndian.Uint32(data[off:]) &^ commitFlag)
		if n == 0 {
			break
		}
		offs = append(offs, off)
		off += int64(frameSize(n))
	}
	return append(offs, off)
}

func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, _ := os.ReadDir(src)
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644)
	}
	return dst
}

// TestTornTailEveryLength cuts the last record at every byte offset within
// its frame (the rest zeros, as a torn write into a preallocated file
// leaves it, or garbage): Open keeps everything before it and the log
// appends correctly afterwards.
func TestTornTailEveryLength(t *testing.T) {
	src := t.TempDir()
	opts := Options{SegmentSize: 1 << 16}
	l := mustOpen(t, src, opts)
	appendN(t, l, 1, 10)
	l.Close()
	seg := segmentFiles(t, src)[0]
	offs := frameOffsets(t, seg)
	lastStart, lastEnd := offs[9], offs[10]
	for _, garbage := range []bool{false, true} {
		for cut := lastStart; cut < lastEnd; cut++ {
			dir := copyDir(t, src)
			path := filepath.Join(dir, filepath.Base(seg))
			data, _ := os.ReadFile(path)
			for i := cut; i < lastEnd; i++ {
				if garbage {
					data[i] = byte(i*131 + 7)
				} else {
					data[i] = 0
				}
			}
			os.WriteFile(path, data, 0o644)
			l, err := Open(dir, opts)
			if err != nil {
				t.Fatalf("cut at %d (garbage %v): open: %v", cut, garbage, err)
			}
			want := uint64(9)
			if cut >= lastStart+frameHdr+int64(len(record(10))) {
				want = 10 // only the padding is torn: the record is whole
			}
			if l.LastIndex() != want {
				t.Fatalf("cut at %d: last index %d, want %d", cut, l.LastIndex(), want)
			}
			appendN(t, l, want+1, 12)
			if got := replayAll(t, l); len(got) != 12 {
				t.Fatalf("cut at %d: replayed %d after re-append", cut, len(got))
			}
			l.Close()
			// And it reopens cleanly.
			l = mustOpen(t, dir, opts)
			if len(replayAll(t, l)) != 12 {
				t.Fatalf("cut at %d: reopen lost records", cut)
			}
			l.Close()
		}
	}
}

func TestMidLogCorruptionRefusedThenRepaired(t *testing.T) {
	for _, damage := range []string{"bitflip", "zeroed-sector", "bitflip-in-header"} {
		t.Run(damage, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{SegmentSize: 1 << 16}
			l := mustOpen(t, dir, opts)
			appendN(t, l, 1, 40)
			l.Close()
			seg := segmentFiles(t, dir)[0]
			offs := frameOffsets(t, seg)
			data, _ := os.ReadFile(seg)
			switch damage {
			case "bitflip":
				data[offs[5]+frameHdr+1] ^= 0x10
			case "zeroed-sector":
				for i := offs[5]; i < offs[5]+512 && i < offs[30]; i++ {
					data[i] = 0
				}
			case "bitflip-in-header":
				data[offs[5]+5] ^= 0x01
			}
			os.WriteFile(seg, data, 0o644)
			_, err := Open(dir, opts)
			var ce *CorruptionError
			if !errors.As(err, &ce) {
				t.Fatalf("open of a log corrupt in the middle: %v", err)
			}
			if ce.Offset != offs[5] || !strings.Contains(ce.Error(), filepath.Base(seg)) || ce.Index != 6 {
				t.Fatalf("corruption reported at %s offset %d index %d, want offset %d index 6: %v", ce.Segment, ce.Offset, ce.Index, offs[5], ce)
			}
			rep, err := Repair(dir, 0, opts)
			kept, moved := rep.Kept, rep.Aside
			if err != nil || kept != 5 || filepath.Dir(moved) != dir || !strings.HasPrefix(filepath.Base(moved), "corrupt-") {
				t.Fatalf("repair kept %d, moved the rest to %q: %v", kept, moved, err)
			}
			l = mustOpen(t, dir, opts)
			defer l.Close()
			if got := replayAll(t, l); len(got) != 5 {
				t.Fatalf("after repair replayed %d, want 5", len(got))
			}
			appendN(t, l, 6, 8)
			aside, _ := filepath.Glob(filepath.Join(dir, "corrupt-*", "*.wal"))
			if len(aside) != 1 {
				t.Fatalf("repair did not keep the corrupt segment aside: %v", aside)
			}
		})
	}
}

func TestCorruptionInSealedSegmentFailsReplay(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 2048}
	l := mustOpen(t, dir, opts)
	appendN(t, l, 1, 100)
	l.Close()
	seg := segmentFiles(t, dir)[0]
	data, _ := os.ReadFile(seg)
	data[headerSize+frameHdr] ^= 1
	os.WriteFile(seg, data, 0o644)
	l = mustOpen(t, dir, opts) // the last segment is fine
	defer l.Close()
	err := l.Replay(1, func(uint64, []byte) error { return nil })
	var ce *CorruptionError
	if !errors.As(err, &ce) || ce.Offset != headerSize {
		t.Fatalf("replay over a corrupt sealed segment: %v", err)
	}
	// What to do is the caller's: a single node repairs its log, a cluster
	// replica's must not be repaired (package cluster says so).
	if strings.Contains(err.Error(), "repair") {
		t.Fatalf("the corruption's error gives a remedy: %v", err)
	}
}

// faultFS wraps the OS, failing writes or fsyncs on demand and counting
// fsyncs.
type faultFS struct {
	osFS
	failWrite atomic.Bool
	partial   atomic.Bool // write half the bytes, then fail (a full disk)
	failSync  atomic.Bool
	syncs     atomic.Int64
}

type faultFile struct {
	File
	fs *faultFS
}

func (f *faultFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	file, err := f.osFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return faultFile{file, f}, nil
}

func (f faultFile) WriteAt(p []byte, off int64) (int, error) {
	if f.fs.failWrite.Load() {
		if f.fs.partial.Load() {
			n, _ := f.File.WriteAt(p[:len(p)/2], off)
			return n, syscall.ENOSPC
		}
		return 0, syscall.EIO
	}
	return f.File.WriteAt(p, off)
}

func (f faultFile) Sync() error {
	f.fs.syncs.Add(1)
	if f.fs.failSync.Load() {
		return syscall.EIO
	}
	return f.File.Sync()
}

func TestWriteAndSyncErrorsFailTheAppend(t *testing.T) {
	for _, mode := range []string{"write-error", "full-disk", "fsync-error"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			ffs := &faultFS{}
			opts := Options{FS: ffs, SegmentSize: 1 << 16}
			l := mustOpen(t, dir, opts)
			appendN(t, l, 1, 20)
			switch mode {
			case "write-error":
				ffs.failWrite.Store(true)
			case "full-disk":
				ffs.failWrite.Store(true)
				ffs.partial.Store(true)
			case "fsync-error":
				ffs.failSync.Store(true)
			}
			if _, err := l.Append(record(21), record(22)); err == nil {
				t.Fatal("append acknowledged although the disk failed")
			}
			ffs.failWrite.Store(false)
			ffs.failSync.Store(false)
			if _, err := l.Append(record(21)); err == nil {
				t.Fatal("a broken log accepted another append")
			}
			l.Close()
			l = mustOpen(t, dir, Options{SegmentSize: 1 << 16})
			defer l.Close()
			got := replayAll(t, l)
			// Everything acknowledged is there; the failed batch may be there
			// only whole (its write completed but its fsync failed).
			if len(got) != 20 && len(got) != 22 {
				t.Fatalf("after a failed append, replay has %d records, want 20 (or 22 if the write landed)", len(got))
			}
			appendN(t, l, uint64(len(got))+1, uint64(len(got))+3)
		})
	}
}

func TestConcurrentAppendsGroupCommit(t *testing.T) {
	dir := t.TempDir()
	ffs := &faultFS{}
	opts := Options{FS: ffs, SegmentSize: 1 << 20}
	l := mustOpen(t, dir, opts)
	const writers, each = 32, 100
	acked := make([][]uint64, writers)
	var wg sync.WaitGroup
	before := ffs.syncs.Load()
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				idx, err := l.Append([]byte(fmt.Sprintf("w%d-i%d", w, i)))
				if err != nil {
					t.Error(err)
					return
				}
				acked[w] = append(acked[w], idx)
			}
		}(w)
	}
	wg.Wait()
	syncs := ffs.syncs.Load() - before
	if syncs >= writers*each {
		t.Fatalf("%d fsyncs for %d appends: no group commit", syncs, writers*each)
	}
	l.Close()
	l = mustOpen(t, dir, opts)
	defer l.Close()
	seen := map[string]uint64{}
	prev := uint64(0)
	l.Replay(1, func(i uint64, rec []byte) error {
		if i != prev+1 {
			t.Fatalf("index %d after %d", i, prev)
		}
		prev = i
		if _, dup := seen[string(rec)]; dup {
			t.Fatalf("record %s twice", rec)
		}
		seen[string(rec)] = i
		return nil
	})
	for w := 0; w < writers; w++ {
		for i, idx := range acked[w] {
			if got, ok := seen[fmt.Sprintf("w%d-i%d", w, i)]; !ok || got != idx {
				t.Fatalf("acknowledged w%d-i%d at %d: found at %d (%v)", w, i, idx, got, ok)
			}
		}
	}
	t.Logf("%d appends, %d fsyncs", writers*each, syncs)
}

func TestCompressedArchiveReplaysAndTruncates(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 4096, Compress: true}
	l := mustOpen(t, dir, opts)
	appendN(t, l, 1, 400)
	l.Close()
	zst, _ := filepath.Glob(filepath.Join(dir, "*.wal.zst"))
	if len(zst) < 5 {
		t.Fatalf("%d compressed segments", len(zst))
	}
	l = mustOpen(t, dir, opts)
	if got := replayAll(t, l); len(got) != 400 {
		t.Fatalf("replay over compressed segments: %d records", len(got))
	}
	appendN(t, l, 401, 450)
	if err := l.TruncateFront(200); err != nil {
		t.Fatal(err)
	}
	if l.FirstIndex() > 200 || l.FirstIndex() == 1 {
		t.Fatalf("first index %d after truncating before 200", l.FirstIndex())
	}
	var n int
	l.Replay(l.FirstIndex(), func(i uint64, rec []byte) error {
		if !bytes.Equal(rec, record(i)) {
			t.Fatalf("record %d wrong after truncation", i)
		}
		n++
		return nil
	})
	if uint64(n) != 450-l.FirstIndex()+1 {
		t.Fatalf("replayed %d from %d", n, l.FirstIndex())
	}
	l.Close()
}

func TestRandomRecordsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	opts := Options{SegmentSize: 8192, Sync: SyncNever}
	l := mustOpen(t, dir, opts)
	var want [][]byte
	for i := 0; i < 300; i++ {
		var batch [][]byte
		for j := rng.IntN(5); j >= 0; j-- {
			r := make([]byte, rng.IntN(3000))
			for k := range r {
				r[k] = byte(rng.Uint32())
			}
			batch = append(batch, r)
		}
		if _, err := l.Append(batch...); err != nil {
			t.Fatal(err)
		}
		want = append(want, batch...)
	}
	l.Close()
	l = mustOpen(t, dir, opts)
	defer l.Close()
	i := 0
	l.Replay(1, func(idx uint64, rec []byte) error {
		if !bytes.Equal(rec, want[i]) {
			t.Fatalf("record %d differs", idx)
		}
		i++
		return nil
	})
	if i != len(want) {
		t.Fatalf("replayed %d of %d", i, len(want))
	}
}

func TestTruncateFrontOlderThanKeepsYoungSegments(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 4096, Compress: true}
	l := mustOpen(t, dir, opts)
	defer l.Close()
	appendN(t, l, 1, 300)
	if err := l.TruncateFrontOlderThan(250, time.Hour); err != nil {
		t.Fatal(err)
	}
	if l.FirstIndex() != 1 {
		t.Fatalf("deleted segments younger than the retention: first index %d", l.FirstIndex())
	}
	if err := l.TruncateFrontOlderThan(250, time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	if f := l.FirstIndex(); f == 1 || f > 250 {
		t.Fatalf("first index %d after dropping old segments before 250", f)
	}
	if got, err := l.Get(l.FirstIndex()); err != nil || !bytes.Equal(got, record(l.FirstIndex())) {
		t.Fatalf("get first after retention: %v", err)
	}
}

// Repair of a clean log keeps every record and says it moved nothing.
func TestRepairCleanLogMovesNothing(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 1 << 16}
	l := mustOpen(t, dir, opts)
	appendN(t, l, 1, 10)
	l.Close()
	rep, err := Repair(dir, 0, opts)
	kept, moved := rep.Kept, rep.Aside
	if err != nil || kept != 10 || moved != "" {
		t.Fatalf("repair of a clean log: kept %d, moved to %q, %v; want 10 kept, nothing moved", kept, moved, err)
	}
	if aside, _ := filepath.Glob(filepath.Join(dir, "corrupt-*")); len(aside) != 0 {
		t.Fatalf("repair of a clean log made %v", aside)
	}
}

// TestTailCutKeepsACopyOrNothing: under SyncInterval an unreadable frame
// with later writes after it is a torn tail, cut on open, but only once a
// copy of the segment is kept aside. When the copy cannot be written, open
// fails and the segment is left as it was.
func TestTailCutKeepsACopyOrNothing(t *testing.T) {
	dir := t.TempDir()
	ffs := &faultFS{}
	opts := Options{FS: ffs, SegmentSize: 1 << 16, Sync: SyncInterval, SyncEvery: time.Hour}
	l := mustOpen(t, dir, opts)
	appendN(t, l, 1, 40)
	l.Close()
	seg := segmentFiles(t, dir)[0]
	offs := frameOffsets(t, seg)
	data, _ := os.ReadFile(seg)
	data[offs[5]+frameHdr+1] ^= 0x10
	os.WriteFile(seg, data, 0o644)

	ffs.failWrite.Store(true) // the copy's writes fail
	if _, err := Open(dir, opts); err == nil || !strings.Contains(err.Error(), "keep a copy") {
		t.Fatalf("open whose tail cut could not keep a copy: %v", err)
	}
	if after, _ := os.ReadFile(seg); !bytes.Equal(after, data) {
		t.Fatal("the segment changed although its copy was not kept")
	}

	ffs.failWrite.Store(false)
	l = mustOpen(t, dir, opts)
	defer l.Close()
	cut := l.TailCut()
	kept, _ := os.ReadFile(filepath.Join(cut.Aside, cut.Segment))
	if cut.Index != 6 || !bytes.Equal(kept, data) {
		t.Fatalf("tail cut %+v kept %d bytes of %d", cut, len(kept), len(data))
	}
	if got := replayAll(t, l); len(got) != 5 {
		t.Fatalf("after the cut replayed %d, want 5", len(got))
	}
}
