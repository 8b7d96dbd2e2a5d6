package wal

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/tally-ml/tally/wal/walfs"
)

// straddling writes records 1..200 into /log on a new Mem, in segments of
// 4096 bytes (segment 1 holds 1..~35), the sealed ones compressed or not,
// and flips a byte of record 10's payload in segment 1 (in its plain bytes,
// for a compressed one: compressed again after the flip). It returns the
// Mem and segment 1's bytes as they are then.
func straddling(t *testing.T, compressed bool) (*walfs.Mem, []byte) {
	t.Helper()
	mem := walfs.NewMem()
	l := mustOpen(t, "/log", Options{FS: mem, SegmentSize: 4096, Compress: compressed})
	appendN(t, l, 1, 200)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	name := "/log/" + segmentName(1)
	if !compressed {
		data := mem.ReadFile(name)
		data[frameOffsetsOf(data)[9]+frameHdr+1] ^= 0x40
		mem.WriteFile(name, data)
		return mem, data
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := dec.DecodeAll(mem.ReadFile(name+".zst"), nil)
	dec.Close()
	if err != nil {
		t.Fatal(err)
	}
	plain[frameOffsetsOf(plain)[9]+frameHdr+1] ^= 0x40
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	data := enc.EncodeAll(plain, nil)
	enc.Close()
	mem.WriteFile(name+".zst", data)
	return mem, data
}

// replayFrom replays the log in dir from index from, checking every record.
func replayFrom(fsys FS, dir string, from uint64) ([]uint64, error) {
	l, err := Open(dir, Options{FS: fsys, SegmentSize: 4096})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	var got []uint64
	err = l.Replay(from, func(i uint64, rec []byte) error {
		if !bytes.Equal(rec, record(i)) {
			return fmt.Errorf("record %d: got %d bytes, want %d", i, len(rec), len(record(i)))
		}
		got = append(got, i)
		return nil
	})
	return got, err
}

func wantRecords(t *testing.T, got []uint64, from, to uint64) {
	t.Helper()
	if uint64(len(got)) != to-from+1 || got[0] != from || got[len(got)-1] != to {
		t.Fatalf("replayed %d records (%v..), want %d..%d", len(got), got[:min(3, len(got))], from, to)
	}
}

// TestRepairKeepsTheRecordsAfterCoveredOfTheCorruptSegment: a corrupt
// record the snapshot covers (10, snapshot at 30) in a segment that also
// holds records after the snapshot (31..35): Repair keeps them, in a
// segment of their own named 31, moves the corrupt segment as it was aside,
// and the log replays 31..200. It used to cut the segment at record 10 and
// move every later segment aside.
func TestRepairKeepsTheRecordsAfterCoveredOfTheCorruptSegment(t *testing.T) {
	for _, compressed := range []bool{false, true} {
		t.Run(fmt.Sprintf("compressed=%v", compressed), func(t *testing.T) {
			mem, seg1 := straddling(t, compressed)
			segs, _ := listSegments(mem, "/log")
			if segs[0].first != 1 || segs[1].first <= 31 || segs[0].compressed != compressed {
				t.Fatalf("segment 1 does not straddle 30: %+v", segs[:2])
			}
			if _, err := replayFrom(mem, "/log", 31); !errors.As(err, new(*CorruptionError)) {
				t.Fatalf("replay before the repair: %v", err)
			}
			rep, err := Repair("/log", 30, Options{FS: mem})
			if err != nil || rep.Front != 31 || rep.Cut != 0 || rep.Missing != 0 || rep.Kept != 200 {
				t.Fatalf("repair: %+v, %v; want the log to start at 31 and keep up to 200, nothing cut", rep, err)
			}
			got, err := replayFrom(mem, "/log", 31)
			if err != nil {
				t.Fatalf("replay after the repair: %v", err)
			}
			wantRecords(t, got, 31, 200)
			if aside := mem.ReadFile(filepath.Join(rep.Aside, segs[0].name)); !bytes.Equal(aside, seg1) {
				t.Fatalf("segment 1 was not moved aside as it was (%d bytes of %d)", len(aside), len(seg1))
			}
			if after, _ := listSegments(mem, "/log"); after[0].name != segmentName(31) || after[1] != segs[1] {
				t.Fatalf("segments after the repair: %+v", after[:2])
			}
			if rep, err := Repair("/log", 30, Options{FS: mem}); err != nil || rep.Aside != "" || rep.Kept != 200 {
				t.Fatalf("a second repair: %+v, %v; want a clean log", rep, err)
			}
		})
	}
}

// TestRepairKeepsTheRecordsAfterCoveredOfTheNewestSegment: the same in the
// log's only segment, which Open classifies (corruption with a later write
// after it) rather than Replay: the new segment is the newest, and the log
// appends after it.
func TestRepairKeepsTheRecordsAfterCoveredOfTheNewestSegment(t *testing.T) {
	mem := walfs.NewMem()
	opts := Options{FS: mem, SegmentSize: 1 << 16}
	l := mustOpen(t, "/log", opts)
	appendN(t, l, 1, 60)
	l.Close()
	name := "/log/" + segmentName(1)
	data := mem.ReadFile(name)
	data[frameOffsetsOf(data)[9]+frameHdr+1] ^= 0x40
	mem.WriteFile(name, data)
	if _, err := Open("/log", opts); !errors.As(err, new(*CorruptionError)) {
		t.Fatalf("open before the repair: %v", err)
	}
	rep, err := Repair("/log", 30, opts)
	if err != nil || rep.Front != 31 || rep.Cut != 0 || rep.Kept != 60 {
		t.Fatalf("repair: %+v, %v", rep, err)
	}
	l = mustOpen(t, "/log", opts)
	appendN(t, l, 61, 70)
	l.Close()
	got, err := replayFrom(mem, "/log", 31)
	if err != nil {
		t.Fatal(err)
	}
	wantRecords(t, got, 31, 70)
}

// TestRepairCutsWhenTheRecordAfterCoveredIsGone: when the damage reaches
// the frame of record covered+1 too, nothing says where the records after
// it begin: Repair cuts at the corruption as before, and says so
// (Missing). A second corruption after covered, in the records kept, is
// cut there (nothing else holds those records).
func TestRepairCutsWhenTheRecordAfterCoveredIsGone(t *testing.T) {
	t.Run("record 31 destroyed", func(t *testing.T) {
		mem, _ := straddling(t, false)
		name := "/log/" + segmentName(1)
		data := mem.ReadFile(name)
		offs := frameOffsetsOf(data)
		for i := offs[29] + 4; i < offs[31]; i++ { // records 30 (its CRC on) and 31
			data[i] = 0xee
		}
		mem.WriteFile(name, data)
		rep, err := Repair("/log", 30, Options{FS: mem})
		if err != nil || rep.Missing != 31 || rep.Cut != 10 || rep.Kept != 9 || rep.Front != 0 {
			t.Fatalf("repair: %+v, %v; want a cut at 10 (9 kept) and 31 missing", rep, err)
		}
	})
	t.Run("corrupt after covered too", func(t *testing.T) {
		mem, _ := straddling(t, false)
		name := "/log/" + segmentName(1)
		data := mem.ReadFile(name)
		data[frameOffsetsOf(data)[32]+frameHdr] ^= 1 // record 33
		mem.WriteFile(name, data)
		rep, err := Repair("/log", 30, Options{FS: mem})
		if err != nil || rep.Front != 31 || rep.Cut != 33 || rep.Kept != 32 || rep.Missing != 0 {
			t.Fatalf("repair: %+v, %v; want the log to start at 31 and be cut at 33", rep, err)
		}
		got, err := replayFrom(mem, "/log", 31)
		if err != nil {
			t.Fatal(err)
		}
		wantRecords(t, got, 31, 32)
	})
}

// TestRepairKeepingRecordsAfterCoveredSurvivesACrash: a power loss at any
// point of the repair of a segment straddling the snapshot leaves a log
// from which records 31..200 replay, at once or after another Repair; none
// is lost or wrong. The segment is plain, or compressed with a bad byte in
// its first chunk.
func TestRepairKeepingRecordsAfterCoveredSurvivesACrash(t *testing.T) {
	t.Run("plain", func(t *testing.T) {
		fixture, _ := straddling(t, false)
		repairCrashes(t, fixture)
	})
	t.Run("compressed", func(t *testing.T) {
		smallChunks(t)
		mem := walfs.NewMem()
		l := mustOpen(t, "/log", Options{FS: mem, SegmentSize: 4096, Compress: true})
		appendN(t, l, 1, 200)
		l.Close()
		name := "/log/" + segmentName(1) + ".zst"
		data := mem.ReadFile(name)
		ats, _ := chunksOf(t, data)
		data[(ats[0]+ats[1]+chunkHdr)/2] ^= 0x40
		mem.WriteFile(name, data)
		repairCrashes(t, mem)
	})
}

func repairCrashes(t *testing.T, fixture *walfs.Mem) {
	files := map[string][]byte{}
	ents, _ := fixture.ReadDir("/log")
	for _, e := range ents {
		files[e.Name()] = fixture.ReadFile("/log/" + e.Name())
	}
	rng := rand.New(rand.NewPCG(3, 11))
	for n := 0; ; n++ {
		mem := walfs.NewMem()
		for name, data := range files {
			mem.WriteFile("/log/"+name, data)
		}
		mem.FreezeAfter(n)
		_, err := Repair("/log", 30, Options{FS: mem})
		if err == nil && !mem.Frozen() {
			if n == 0 {
				t.Fatal("a repair that changed nothing")
			}
			return
		}
		for c := range 4 {
			img := mem.Crash(rng)
			got, err := replayFrom(img, "/log", 31)
			if errors.As(err, new(*CorruptionError)) {
				if _, err = Repair("/log", 30, Options{FS: img}); err != nil {
					t.Fatalf("crash after %d operations (%d): repair again: %v", n, c, err)
				}
				got, err = replayFrom(img, "/log", 31)
			}
			if err != nil {
				t.Fatalf("crash after %d operations (%d): %v", n, c, err)
			}
			wantRecords(t, got, 31, 200)
			if ents, _ := img.ReadDir("/log"); strings.Contains(fmt.Sprint(ents), ".tmp") {
				t.Fatalf("crash after %d operations (%d): a temporary file is left: %v", n, c, ents)
			}
		}
	}
}

// bigCompressed writes records 1..12000 into /log on a new Mem, in segments
// of 1 MiB (segment 1, holding 1..~9000, sealed and compressed: several
// frames of the compressed format), and returns the Mem, segment 1's
// plain bytes and the offsets of its frames.
func bigCompressed(t *testing.T) (*walfs.Mem, []byte, []int64) {
	t.Helper()
	mem := walfs.NewMem()
	l := mustOpen(t, "/log", Options{FS: mem, SegmentSize: 1 << 20, Compress: true, Sync: SyncNever})
	appendN(t, l, 1, 12000)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := listSegments(mem, "/log")
	if len(segs) < 2 || !segs[0].compressed {
		t.Fatalf("segment 1 is not sealed and compressed: %+v", segs)
	}
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	plain, err := dec.DecodeAll(mem.ReadFile("/log/"+segs[0].name), nil)
	if err != nil {
		t.Fatal(err)
	}
	return mem, plain, frameOffsetsOf(plain)
}

// TestRepairKeepsTheRecordsAfterCoveredPastABrokenCompressedStream: a bad
// byte early in a compressed segment (its first 256 KiB of plain bytes
// cannot be decompressed), whose records after the snapshot begin in the
// plain bytes after that: Repair keeps them, as it does for a plain
// segment, and every later segment. A compressed segment was one zstd
// frame, which after a bad byte held nothing that could be read: Repair
// cut the log at the corruption and moved every record after the snapshot
// aside.
func TestRepairKeepsTheRecordsAfterCoveredPastABrokenCompressedStream(t *testing.T) {
	mem, _, offs := bigCompressed(t)
	var covered uint64 // the last record that starts in the first 300 KiB
	for i, off := range offs[:len(offs)-1] {
		if off < 300<<10 {
			covered = uint64(i + 1)
		}
	}
	name := "/log/" + segmentName(1) + ".zst"
	data := mem.ReadFile(name)
	data[100] ^= 0x40
	mem.WriteFile(name, data)
	if _, err := replayFrom(mem, "/log", covered+1); !errors.As(err, new(*CorruptionError)) {
		t.Fatalf("replay before the repair: %v", err)
	}
	rep, err := Repair("/log", covered, Options{FS: mem})
	if err != nil || rep.Front != covered+1 || rep.Cut != 0 || rep.Missing != 0 || rep.Kept != 12000 {
		t.Fatalf("repair: %+v, %v; want the log to start at %d and keep up to 12000, nothing cut", rep, err, covered+1)
	}
	got, err := replayFrom(mem, "/log", covered+1)
	if err != nil {
		t.Fatalf("replay after the repair: %v", err)
	}
	wantRecords(t, got, covered+1, 12000)
	if aside := mem.ReadFile(filepath.Join(rep.Aside, segmentName(1)+".zst")); !bytes.Equal(aside, data) {
		t.Fatalf("segment 1 was not moved aside as it was (%d bytes of %d)", len(aside), len(data))
	}
}

// TestPlanRepairAnswersAsRepairChangingNothing: PlanRepair answers what
// Repair then does (the log's new front, the cut, the record not found)
// and leaves the log's directory as it was, for a caller that must refuse
// a cut before anything moves (a cluster replica's log).
func TestPlanRepairAnswersAsRepairChangingNothing(t *testing.T) {
	spoil := func(at func(offs []int64) (int64, int64)) func(*testing.T, *walfs.Mem) {
		return func(t *testing.T, mem *walfs.Mem) {
			name := "/log/" + segmentName(1)
			data := mem.ReadFile(name)
			from, to := at(frameOffsetsOf(data))
			for i := from; i < to; i++ {
				data[i] ^= 0xee
			}
			mem.WriteFile(name, data)
		}
	}
	for _, tc := range []struct {
		name       string
		compressed bool
		spoil      func(*testing.T, *walfs.Mem)
	}{
		{"front", false, func(*testing.T, *walfs.Mem) {}},
		{"front of a compressed segment", true, func(*testing.T, *walfs.Mem) {}},
		{"front and a cut after covered", false, spoil(func(offs []int64) (int64, int64) { return offs[32] + frameHdr, offs[32] + frameHdr + 1 })},
		{"record after covered destroyed", false, spoil(func(offs []int64) (int64, int64) { return offs[29] + 4, offs[31] })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem, _ := straddling(t, tc.compressed)
			tc.spoil(t, mem)
			before := memTree(t, mem, "/log")
			plan, err := PlanRepair("/log", 30, Options{FS: mem})
			if err != nil {
				t.Fatal(err)
			}
			if after := memTree(t, mem, "/log"); after != before {
				t.Fatalf("the plan changed the log:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			rep, err := Repair("/log", 30, Options{FS: mem})
			if err != nil {
				t.Fatal(err)
			}
			if plan.Aside != "" || rep.Aside == "" {
				t.Fatalf("plan aside %q, repair aside %q", plan.Aside, rep.Aside)
			}
			rep.Aside = ""
			if plan != rep {
				t.Fatalf("plan %+v, repair %+v", plan, rep)
			}
		})
	}
}

// memTree lists the files of dir in mem with a hash of their bytes.
func memTree(t *testing.T, mem *walfs.Mem, dir string) string {
	t.Helper()
	ents, err := mem.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range ents {
		fmt.Fprintf(&b, "%s %x\n", e.Name(), sha256.Sum256(mem.ReadFile(filepath.Join(dir, e.Name()))))
	}
	return b.String()
}
