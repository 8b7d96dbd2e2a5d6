package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

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

// opFS records, in order, the directories made, the directories synced
// (SyncDir, or Sync of a directory's handle) and the files truncated.
type opFS struct {
	*walfs.Mem
	mu  sync.Mutex
	ops []string
}

func (f *opFS) add(op string) {
	f.mu.Lock()
	f.ops = append(f.ops, op)
	f.mu.Unlock()
}

type opFile struct {
	File
	fs   *opFS
	name string
	dir  bool
}

func (f *opFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	file, err := f.Mem.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	_, derr := f.Mem.ReadDir(name) // a directory's handle (whose Stat Mem lacks)
	return opFile{file, f, filepath.Clean(name), derr == nil}, nil
}

func (f *opFS) MkdirAll(dir string, perm os.FileMode) error {
	f.add("mkdir " + filepath.Clean(dir))
	return f.Mem.MkdirAll(dir, perm)
}

func (f *opFS) SyncDir(dir string) error {
	f.add("syncdir " + filepath.Clean(dir))
	return f.Mem.SyncDir(dir)
}

func (f opFile) Sync() error {
	if f.dir {
		f.fs.add("syncdir " + f.name)
	}
	return f.File.Sync()
}

func (f opFile) Truncate(size int64) error {
	f.fs.add("truncate " + f.name)
	return f.File.Truncate(size)
}

// TestTailCutAsideDirIsDurableBeforeTheCut: the corrupt-<time> directory
// that keeps the uncut segment is new; its entry in the log directory must
// be fsynced before the segment is cut, or a power loss just after the
// cut can leave the cut segment and no copy.
func TestTailCutAsideDirIsDurableBeforeTheCut(t *testing.T) {
	mem := walfs.NewMem()
	opts := Options{FS: mem, SegmentSize: 1 << 16, Sync: SyncInterval, SyncEvery: time.Hour}
	l := mustOpen(t, "/log", opts)
	appendN(t, l, 1, 40)
	l.Close()
	seg := filepath.Join("/log", segmentName(1))
	data := mem.ReadFile(seg)
	off := int64(headerSize)
	for range 5 { // to record 6's frame
		off += int64(frameSize(int(binary.LittleEndian.Uint32(data[off:]) &^ commitFlag)))
	}
	data[off+frameHdr+1] ^= 0x10
	mem.WriteFile(seg, data)

	ofs := &opFS{Mem: mem}
	opts.FS = ofs
	l = mustOpen(t, "/log", opts)
	defer l.Close()
	cut := l.TailCut()
	if cut.Aside == "" {
		t.Fatal("no tail cut")
	}
	made, synced := -1, -1
	for i, op := range ofs.ops {
		switch {
		case op == "mkdir "+cut.Aside:
			made = i
		case op == "syncdir /log" && made >= 0:
			synced = i
		case op == "truncate "+seg:
			if made < 0 || synced < 0 {
				t.Fatalf("the segment was cut before the new %s was made durable in /log: %q", cut.Aside, ofs.ops)
			}
			return
		}
	}
	t.Fatalf("no cut: %q", ofs.ops)
}

// TestRepairAsideDirIsDurableBeforeTheCut: Repair's corrupt-<time>
// directory, holding the copy of the segment it cuts, is made durable in
// the log directory before the cut, as for Open's tail cut.
func TestRepairAsideDirIsDurableBeforeTheCut(t *testing.T) {
	mem := walfs.NewMem()
	opts := Options{FS: mem, SegmentSize: 2048}
	l := mustOpen(t, "/log", opts)
	appendN(t, l, 1, 100)
	l.Close()
	seg := filepath.Join("/log", segmentName(1))
	data := mem.ReadFile(seg)
	off := int64(headerSize)
	for range 5 { // to record 6's frame
		off += int64(frameSize(int(binary.LittleEndian.Uint32(data[off:]) &^ commitFlag)))
	}
	data[off+frameHdr+1] ^= 1
	mem.WriteFile(seg, data)

	ofs := &opFS{Mem: mem}
	opts.FS = ofs
	rep, err := Repair("/log", 0, opts)
	aside := rep.Aside
	if err != nil || aside == "" {
		t.Fatalf("repair: %q, %v", aside, err)
	}
	made, synced := -1, -1
	for i, op := range ofs.ops {
		switch {
		case op == "mkdir "+aside:
			made = i
		case op == "syncdir /log" && made >= 0:
			synced = i
		case op == "truncate "+seg:
			if made < 0 || synced < 0 {
				t.Fatalf("the segment was cut before the new %s was made durable in /log: %q", aside, ofs.ops)
			}
			return
		}
	}
	t.Fatalf("no cut: %q", ofs.ops)
}
