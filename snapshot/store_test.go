package snapshot

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
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
