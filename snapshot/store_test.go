package snapshot

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tally-ml/tally/wal/walfs"
)

const magic = "TESTSNAP"

// write stores a snapshot at index whose content is body, framed.
func write(t *testing.T, s *Store, index uint64, body string) {
	t.Helper()
	k, err := s.Create(index)
	if err != nil {
		t.Fatal(err)
	}
	cw := NewChecksumWriter(k)
	cw.Write(AppendHeader(nil, magic, 1, index))
	io.WriteString(cw, body)
	if err := cw.WriteSum(); err != nil {
		t.Fatal(err)
	}
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	if m := k.Meta(); m.Index != index || m.ID != Name(index) || m.Size == 0 {
		t.Fatalf("meta %+v", m)
	}
}

func read(t *testing.T, s *Store, id string) (string, error) {
	t.Helper()
	_, r, err := s.Open(id)
	if err != nil {
		return "", err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < HeaderLen+4 {
		t.Fatalf("%d bytes", len(b))
	}
	return string(b[HeaderLen : len(b)-4]), nil
}

// A snapshot reads back as written; List is newest first; Retain keeps
// the newest Keep and says from where the log is needed.
func TestCreateListOpenRetain(t *testing.T) {
	s := New(t.TempDir(), Options{Magic: magic, Keep: 2, Logger: slog.New(slog.DiscardHandler)})
	if l, err := s.List(); err != nil || len(l) != 0 {
		t.Fatalf("empty store lists %v, %v", l, err)
	}
	write(t, s, 10, "ten")
	if from, err := s.Retain(10); err != nil || from != 0 {
		t.Fatalf("one snapshot: keepFrom %d, %v; want 0 (no fallback yet)", from, err)
	}
	write(t, s, 20, "twenty")
	write(t, s, 30, "thirty")
	if from, err := s.Retain(30); err != nil || from != 20 {
		t.Fatalf("keepFrom %d, %v; want 20", from, err)
	}
	l, _ := s.List()
	if len(l) != 2 || l[0].Index != 30 || l[1].Index != 20 {
		t.Fatalf("list after retain: %+v", l)
	}
	if got, err := read(t, s, Name(30)); err != nil || got != "thirty" {
		t.Fatalf("read %q, %v", got, err)
	}
	// A leftover of an interrupted write is removed by List.
	os.WriteFile(filepath.Join(s.Dir(), "snap-1.tmp"), []byte("x"), 0o644)
	s.List()
	if _, err := os.Stat(filepath.Join(s.Dir(), "snap-1.tmp")); !os.IsNotExist(err) {
		t.Errorf("temporary file left: %v", err)
	}
}

// A damaged snapshot, or one whose header disagrees with its name, is
// refused with ErrCorrupt and moved to corrupt-<name>; Retain does not
// count it.
func TestCorruptSetAside(t *testing.T) {
	var logs bytes.Buffer
	s := New(t.TempDir(), Options{Magic: magic, Keep: 2, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	write(t, s, 10, strings.Repeat("a", 1000))
	write(t, s, 20, strings.Repeat("b", 1000))
	p := filepath.Join(s.Dir(), Name(20))
	data, _ := os.ReadFile(p)
	data[len(data)/2] ^= 0xff
	os.WriteFile(p, data, 0o644)
	if _, err := read(t, s, Name(20)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damaged: %v, want ErrCorrupt", err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), "corrupt-"+Name(20))); err != nil {
		t.Fatalf("not set aside: %v", err)
	}
	if !strings.Contains(logs.String(), "moved aside") {
		t.Errorf("no log line: %s", logs.String())
	}
	// Renamed: the header says 10, the name 15.
	os.Rename(filepath.Join(s.Dir(), Name(10)), filepath.Join(s.Dir(), Name(15)))
	if _, err := read(t, s, Name(15)); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "not the one its name says") {
		t.Fatalf("renamed: %v", err)
	}
	write(t, s, 40, "forty")
	if from, err := s.Retain(40); err != nil || from != 0 {
		t.Fatalf("keepFrom %d, %v; want 0: no verified fallback", from, err)
	}
}

// A cancelled snapshot leaves no file behind.
func TestCancelLeavesNothing(t *testing.T) {
	fsys := walfs.NewMem()
	s := New("/snaps", Options{FS: fsys, Magic: magic})
	k, err := s.Create(5)
	if err != nil {
		t.Fatal(err)
	}
	k.Write([]byte("partial"))
	k.Cancel()
	if l, _ := s.List(); len(l) != 0 {
		t.Fatalf("cancelled snapshot listed: %+v", l)
	}
	ents, _ := fsys.ReadDir("/snaps")
	if len(ents) != 0 {
		t.Fatalf("files left: %v", ents)
	}
}

// memStore is a store in /snaps of a Mem, with 20 and 10 written (each
// 4 KiB of incompressible content, so a read can fail in the middle).
func memStore(t *testing.T) (*Store, *walfs.Mem, *bytes.Buffer) {
	t.Helper()
	fsys := walfs.NewMem()
	var logs bytes.Buffer
	s := New("/snaps", Options{FS: fsys, Magic: magic, Keep: 2, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for _, i := range []uint64{10, 20} {
		write(t, s, i, noise(i))
	}
	return s, fsys, &logs
}

// noise is 4 KiB that zstd cannot shrink, different for each seed.
func noise(seed uint64) string {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, 4096)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return string(b)
}

// assertInPlace fails unless the snapshot id is still under its name and
// nothing was set aside.
func assertInPlace(t *testing.T, s *Store, fsys *walfs.Mem, id string) {
	t.Helper()
	if fsys.ReadFile(filepath.Join(s.Dir(), id)) == nil {
		t.Errorf("%s is no longer under its name", id)
	}
	ents, _ := fsys.ReadDir(s.Dir())
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "corrupt-") {
			t.Errorf("%s set aside although only its reads failed", e.Name())
		}
	}
}

// ioFaults are reads of a good snapshot that fail for a reason that is
// not its content: the open (no file descriptor left), a read in the
// middle (a disk error), a read at once.
var ioFaults = []struct {
	name string
	set  func(m *walfs.Mem, path string, size int)
	want error
}{
	{"open-EMFILE", func(m *walfs.Mem, path string, _ int) { m.FailOpen, m.FailOnly = syscall.EMFILE, path }, syscall.EMFILE},
	{"read-EIO-mid-file", func(m *walfs.Mem, path string, size int) {
		m.FailRead, m.FailReadAt, m.FailOnly = syscall.EIO, int64(size/2), path
	}, syscall.EIO},
	{"read-EACCES-at-once", func(m *walfs.Mem, path string, _ int) { m.FailRead, m.FailOnly = syscall.EACCES, path }, syscall.EACCES},
}

// clearFaults makes every read succeed again.
func clearFaults(m *walfs.Mem) {
	m.FailOpen, m.FailRead, m.FailReadAt, m.FailOnly = nil, nil, 0, ""
}

// A good snapshot whose open or read fails with an OS error is not
// corrupt: Open fails with an error naming the file and the cause, without
// ErrCorrupt, and leaves it where it is; once reads succeed, it is read.
func TestIOErrorIsNotCorruption(t *testing.T) {
	for _, f := range ioFaults {
		t.Run(f.name, func(t *testing.T) {
			s, fsys, logs := memStore(t)
			p := filepath.Join(s.Dir(), Name(20))
			size := len(fsys.ReadFile(p))
			fsys.Set(func(m *walfs.Mem) { f.set(m, p, size) })
			_, err := read(t, s, Name(20))
			if err == nil || errors.Is(err, ErrCorrupt) || !errors.Is(err, f.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("open with a failing disk: %v; want an error naming %s and %v, not ErrCorrupt", err, p, f.want)
			}
			assertInPlace(t, s, fsys, Name(20))
			if strings.Contains(logs.String(), "moved aside") {
				t.Errorf("logged as set aside: %s", logs.String())
			}
			fsys.Set(clearFaults)
			if got, err := read(t, s, Name(20)); err != nil || got != noise(20) {
				t.Fatalf("once reads succeed: %d bytes, %v; want the snapshot", len(got), err)
			}
		})
	}
}

// Retain that cannot read a fallback reports it and leaves it in place,
// uncounted (the older one that verifies is kept, and the log from it);
// Close that cannot read
// back the snapshot it wrote fails without ErrCorrupt and leaves nothing
// under its name, and nothing set aside.
func TestIOErrorIsNotCorruptionInRetainAndClose(t *testing.T) {
	for _, f := range ioFaults {
		t.Run(f.name, func(t *testing.T) {
			s, fsys, _ := memStore(t)
			write(t, s, 30, "thirty")
			p := filepath.Join(s.Dir(), Name(20))
			size := len(fsys.ReadFile(p))
			fsys.Set(func(m *walfs.Mem) { f.set(m, p, size) })
			from, err := s.Retain(30)
			if err == nil || !errors.Is(err, f.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("retain with a failing disk: %v; want an error naming %s and %v", err, p, f.want)
			}
			if from != 10 {
				t.Errorf("keepFrom %d, want 10: the unread fallback does not count, the older one that verifies does", from)
			}
			assertInPlace(t, s, fsys, Name(20))
			fsys.Set(clearFaults)
			if from, err := s.Retain(30); err != nil || from != 20 {
				t.Fatalf("once reads succeed: keepFrom %d, %v; want 20", from, err)
			}

			p = filepath.Join(s.Dir(), Name(40))
			fsys.Set(func(m *walfs.Mem) { f.set(m, p, 2000) })
			k, err := s.Create(40)
			if err != nil {
				t.Fatal(err)
			}
			cw := NewChecksumWriter(k)
			cw.Write(AppendHeader(nil, magic, 1, 40))
			io.WriteString(cw, noise(40))
			cw.WriteSum()
			err = k.Close()
			if err == nil || errors.Is(err, ErrCorrupt) || !errors.Is(err, f.want) {
				t.Errorf("close with a failing disk: %v; want %v, not ErrCorrupt", err, f.want)
			}
			fsys.Set(clearFaults)
			if fsys.ReadFile(p) != nil {
				t.Errorf("a snapshot whose Close failed is under its name")
			}
			assertInPlace(t, s, fsys, Name(20))
		})
	}
}
