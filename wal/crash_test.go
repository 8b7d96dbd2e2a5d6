package wal

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCrashNeverLosesAcknowledged crashes the in-memory disk in the middle
// of concurrent appends (sectors of unsynced writes survive at random) and
// reopens what is left: every acknowledged record is there once, at its
// index, in order; and the log appends after it.
func TestCrashNeverLosesAcknowledged(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	for round := 0; round < 100; round++ {
		mfs := newMemFS()
		opts := Options{FS: mfs, SegmentSize: 8192, Compress: round%2 == 0}
		l := mustOpen(t, "/wal", opts)
		var mu sync.Mutex
		acked := map[uint64]string{}
		var stop atomic.Bool
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; !stop.Load(); i++ {
					n := 1 + (w+i)%5
					batch := make([][]byte, n)
					for j := range batch {
						batch[j] = []byte(fmt.Sprintf("w%d-i%d-j%d-%s", w, i, j, bytes.Repeat([]byte("x"), (i*7+j)%300)))
					}
					last, err := l.Append(batch...)
					if err != nil {
						return
					}
					mu.Lock()
					for j := range batch {
						acked[last-uint64(n-1-j)] = string(batch[j])
					}
					mu.Unlock()
				}
			}(w)
		}
		time.Sleep(time.Duration(1+rng.IntN(20)) * time.Millisecond)
		img := mfs.Crash(rng)
		stop.Store(true)
		wg.Wait()
		l.Close()

		opts.FS = img
		l, err := Open("/wal", opts)
		if err != nil {
			t.Fatalf("round %d: open after crash: %v", round, err)
		}
		mu.Lock()
		var maxAcked uint64
		for i := range acked {
			maxAcked = max(maxAcked, i)
		}
		mu.Unlock()
		if l.LastIndex() < maxAcked {
			t.Fatalf("round %d: last index %d after crash, acknowledged up to %d", round, l.LastIndex(), maxAcked)
		}
		prev := uint64(0)
		err = l.Replay(1, func(i uint64, rec []byte) error {
			if i != prev+1 {
				return fmt.Errorf("index %d after %d", i, prev)
			}
			prev = i
			if want, ok := acked[i]; ok && want != string(rec) {
				return fmt.Errorf("record %d is %q, acknowledged %q", i, rec, want)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("round %d: replay after crash: %v", round, err)
		}
		for i := uint64(1); i <= maxAcked; i++ {
			want, ok := acked[i]
			if !ok {
				continue
			}
			got, err := l.Get(i)
			if err != nil || string(got) != want {
				t.Fatalf("round %d: get %d: %q, %v", round, i, got, err)
			}
		}
		next := l.LastIndex() + 1
		if last, err := l.Append([]byte("after"), []byte("crash")); err != nil || last != next+1 {
			t.Fatalf("round %d: append after crash: %d, %v", round, last, err)
		}
		l.Close()
		if l, err = Open("/wal", opts); err != nil {
			t.Fatalf("round %d: reopen: %v", round, err)
		}
		if got, _ := l.Get(next + 1); string(got) != "crash" {
			t.Fatalf("round %d: record after the crash lost on reopen", round)
		}
		l.Close()
	}
}

// TestFaultsNeverAcknowledge: a failed write, a short write on a full disk
// or a failed fsync fails the Append; nothing of it becomes visible; the log
// refuses further appends; a reopened log has every acknowledged record.
func TestFaultsNeverAcknowledge(t *testing.T) {
	for _, mode := range []string{"write-error", "full-disk", "fsync-error"} {
		t.Run(mode, func(t *testing.T) {
			mfs := newMemFS()
			opts := Options{FS: mfs, SegmentSize: 4096}
			l := mustOpen(t, "/wal", opts)
			appendN(t, l, 1, 50) // several segments
			mfs.Set(func(m *memFS) {
				m.FailWrite = mode != "fsync-error"
				m.ShortWrite = mode == "full-disk"
				m.FailSync = mode == "fsync-error"
			})
			if last, err := l.Append(record(51), record(52)); err == nil {
				t.Fatalf("append acknowledged at %d although the disk failed", last)
			}
			if l.LastIndex() != 50 {
				t.Fatalf("last index %d after a failed append", l.LastIndex())
			}
			if _, err := l.Get(51); !errors.Is(err, ErrNotFound) {
				t.Fatalf("get of the failed record: %v", err)
			}
			mfs.Set(func(m *memFS) { m.FailWrite, m.FailSync = false, false })
			if _, err := l.Append(record(51)); err == nil {
				t.Fatal("a broken log accepted another append")
			}
			if err := l.Sync(); err == nil {
				t.Fatal("a broken log reports a good sync")
			}
			l.Close()
			l = mustOpen(t, "/wal", opts)
			defer l.Close()
			got := replayAll(t, l)
			if len(got) != 50 && len(got) != 52 {
				t.Fatalf("after a failed append, replay has %d records, want 50 (or 52 if the write landed whole)", len(got))
			}
			appendN(t, l, uint64(len(got))+1, uint64(len(got))+3)
		})
	}
}

func TestGetFromActiveSealedAndCompressed(t *testing.T) {
	for _, compress := range []bool{false, true} {
		mfs := newMemFS()
		opts := Options{FS: mfs, SegmentSize: 4096, Compress: compress}
		l := mustOpen(t, "/wal", opts)
		appendN(t, l, 1, 300)
		check := func(l *Log) {
			t.Helper()
			for _, i := range rand.Perm(300) {
				idx := uint64(i + 1)
				got, err := l.Get(idx)
				if err != nil || !bytes.Equal(got, record(idx)) {
					t.Fatalf("compress %v: get %d: %d bytes, %v", compress, idx, len(got), err)
				}
			}
			for _, idx := range []uint64{0, 301} {
				if _, err := l.Get(idx); !errors.Is(err, ErrNotFound) {
					t.Fatalf("get %d: %v", idx, err)
				}
			}
		}
		check(l)
		l.Close()
		l = mustOpen(t, "/wal", opts)
		check(l)
		l.Close()
	}
}

func TestTruncateBack(t *testing.T) {
	for _, compress := range []bool{false, true} {
		for _, to := range []uint64{299, 250, 150, 37, 1, 0} {
			mfs := newMemFS()
			opts := Options{FS: mfs, SegmentSize: 4096, Compress: compress}
			l := mustOpen(t, "/wal", opts)
			appendN(t, l, 1, 300)
			if err := l.TruncateBack(to); err != nil {
				t.Fatalf("truncate back to %d: %v", to, err)
			}
			if l.LastIndex() != to {
				t.Fatalf("last index %d after truncating back to %d", l.LastIndex(), to)
			}
			if _, err := l.Get(to + 1); !errors.Is(err, ErrNotFound) {
				t.Fatalf("get %d after truncating back to %d: %v", to+1, to, err)
			}
			appendN(t, l, to+1, to+40)
			if got := replayAll(t, l); uint64(len(got)) != to+40 {
				t.Fatalf("compress %v, to %d: replayed %d", compress, to, len(got))
			}
			l.Close()
			l = mustOpen(t, "/wal", opts)
			if got := replayAll(t, l); uint64(len(got)) != to+40 {
				t.Fatalf("compress %v, to %d: replayed %d after reopen", compress, to, len(got))
			}
			appendN(t, l, to+41, to+45)
			l.Close()
		}
	}
}

func TestTruncateFrontAndReset(t *testing.T) {
	mfs := newMemFS()
	opts := Options{FS: mfs, SegmentSize: 4096, Compress: true}
	l := mustOpen(t, "/wal", opts)
	appendN(t, l, 1, 300)
	if err := l.TruncateFront(120); err != nil {
		t.Fatal(err)
	}
	first := l.FirstIndex()
	if first > 120 || first == 1 {
		t.Fatalf("first index %d after truncating before 120", first)
	}
	if _, err := l.Get(first - 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get before the first index: %v", err)
	}
	if got, err := l.Get(first); err != nil || !bytes.Equal(got, record(first)) {
		t.Fatalf("get first: %v", err)
	}
	if err := l.Reset(1000); err != nil {
		t.Fatal(err)
	}
	if l.FirstIndex() != 1000 || l.LastIndex() != 999 {
		t.Fatalf("after reset: [%d, %d]", l.FirstIndex(), l.LastIndex())
	}
	appendN(t, l, 1000, 1100)
	l.Close()
	l = mustOpen(t, "/wal", opts)
	defer l.Close()
	if l.FirstIndex() != 1000 || l.LastIndex() != 1100 {
		t.Fatalf("reopened after reset: [%d, %d]", l.FirstIndex(), l.LastIndex())
	}
	n := 0
	l.Replay(0, func(i uint64, rec []byte) error {
		if !bytes.Equal(rec, record(i)) {
			t.Fatalf("record %d differs", i)
		}
		n++
		return nil
	})
	if n != 101 {
		t.Fatalf("replayed %d", n)
	}
}

// TestTornSegmentCreation: a crash while a new segment was created, before
// its header was durable, leaves a zero-filled last segment.
func TestTornSegmentCreation(t *testing.T) {
	mfs := newMemFS()
	opts := Options{FS: mfs, SegmentSize: 4096}
	l := mustOpen(t, "/wal", opts)
	appendN(t, l, 1, 100)
	l.Close()
	segs, _ := listSegments(mfs, "/wal")
	last := segs[len(segs)-1]
	mfs.WriteFile("/wal/"+last.name, make([]byte, 4096))
	l = mustOpen(t, "/wal", opts)
	defer l.Close()
	if l.LastIndex() != last.first-1 {
		t.Fatalf("last index %d, want %d", l.LastIndex(), last.first-1)
	}
	appendN(t, l, last.first, last.first+10)
}

// TestCrashUnderSyncIntervalKeepsAPrefix: under SyncInterval a power loss
// keeps unsynced pages in any order, so a later write may survive an
// earlier one; Open cuts the log at the first lost record instead of
// refusing it, and the log holds every record up to the last Sync, in
// order, and nothing else.
func TestCrashUnderSyncIntervalKeepsAPrefix(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 13))
	cuts := 0
	for round := 0; round < 300; round++ {
		mfs := newMemFS()
		opts := Options{FS: mfs, SegmentSize: 4096, Sync: SyncInterval, SyncEvery: time.Hour}
		l := mustOpen(t, "/wal", opts)
		mfs.FreezeAfter(rng.IntN(200))
		var synced uint64
		for i := uint64(1); i <= 150; i++ {
			if _, err := l.Append(record(i)); err != nil {
				break
			}
			if rng.IntN(20) == 0 {
				if err := l.Sync(); err != nil {
					break
				}
				synced = i
			}
		}
		img := mfs.Crash(rng)
		l.Close()
		opts.FS = img
		l, err := Open("/wal", opts)
		if err != nil {
			t.Fatalf("round %d: open after a power loss: %v", round, err)
		}
		if l.LastIndex() < synced {
			t.Fatalf("round %d: last index %d, synced up to %d", round, l.LastIndex(), synced)
		}
		if cut := l.TailCut(); cut.Aside != "" {
			cuts++
			// The segment as it was is kept, whole, beside the log.
			kept := img.ReadFile(filepath.Join(cut.Aside, cut.Segment))
			if kept == nil || cut.Index != l.LastIndex()+1 {
				t.Fatalf("round %d: tail cut %+v (log ends at %d) kept %d bytes", round, cut, l.LastIndex(), len(kept))
			}
		}
		err = l.Replay(1, func(i uint64, rec []byte) error {
			if !bytes.Equal(rec, record(i)) {
				return fmt.Errorf("record %d is not the one appended", i)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if _, err := l.Append(record(l.LastIndex() + 1)); err != nil {
			t.Fatalf("round %d: append after recovery: %v", round, err)
		}
		l.Close()
	}
	if cuts == 0 {
		t.Fatal("no power loss left a bad frame with writes after it: the test does not test the cut")
	}
	t.Logf("%d of 300 power losses cut a tail past a bad frame", cuts)
}

// TestStaleFrameAfterCleanEndStaysDead: a crash can keep a later sector of
// a lost write but not the first, so the last segment ends cleanly (a zero
// header) with a complete old frame further on. Open must clear it: if new
// appends happen to end exactly where it begins, its index is the one the
// log expects next, and a later open would count a record nobody wrote
// there (an unacknowledged or lost write brought back).
func TestStaleFrameAfterCleanEndStaysDead(t *testing.T) {
	mfs := newMemFS()
	opts := Options{FS: mfs, SegmentSize: 1 << 16}
	l := mustOpen(t, "/wal", opts)
	rec := func(i uint64, fill byte) []byte { return bytes.Repeat([]byte{fill}, 40+int(i)*8) }
	for i := uint64(1); i <= 6; i++ {
		if _, err := l.Append(rec(i, 'a')); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	seg := "/wal/" + segmentName(1)
	data := mfs.ReadFile(seg)
	// Find where frames 4 and 6 begin, and keep only frame 6 of 4..6.
	res, err := scanSegment(mfs, "/wal", segmentInfo{first: 1, name: segmentName(1)})
	if err != nil || len(res.offs) != 6 {
		t.Fatalf("scan: %v, %d frames", err, len(res.offs))
	}
	lost := append([]byte(nil), data...)
	clear(lost[res.offs[3]:res.offs[5]])
	img := newMemFS()
	img.MkdirAll("/wal", 0o755)
	img.WriteFile(seg, lost)

	l, err = Open("/wal", Options{FS: img, SegmentSize: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	if l.LastIndex() != 3 {
		t.Fatalf("last index %d after losing 4..6, want 3", l.LastIndex())
	}
	// Rewrite 4 and 5 with the same sizes: they end where the old 6 began.
	for i := uint64(4); i <= 5; i++ {
		if _, err := l.Append(rec(i, 'b')); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	l, err = Open("/wal", Options{FS: img, SegmentSize: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.LastIndex() != 5 {
		got, _ := l.Get(l.LastIndex())
		t.Fatalf("last index %d (record %q), want 5: the lost record 6 came back", l.LastIndex(), got)
	}
}
