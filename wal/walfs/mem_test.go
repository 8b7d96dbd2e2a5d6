package walfs

import (
	"bytes"
	"math/rand/v2"
	"os"
	"testing"
)

// TestMemPowerLoss: what Mem keeps after a crash follows the fsync rules a
// program relies on. A file written, fsynced, and whose directory was
// fsynced after its create or rename always survives whole; a rename not
// yet made durable leaves the file under its old name or its new one,
// never both or neither; unsynced bytes may or may not survive.
func TestMemPowerLoss(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := bytes.Repeat([]byte("x"), 3000)
	sawOld, sawNew, sawTorn := false, false, false
	for i := 0; i < 500; i++ {
		m := NewMem()
		m.MkdirAll("/d", 0o755)
		f, _ := m.OpenFile("/d/a.tmp", os.O_RDWR|os.O_CREATE, 0o644)
		f.WriteAt(data, 0)
		f.Sync()
		m.SyncDir("/d")
		m.Rename("/d/a.tmp", "/d/a") // not synced
		g, _ := m.OpenFile("/d/b", os.O_RDWR|os.O_CREATE, 0o644)
		g.WriteAt(data, 0)
		m.SyncDir("/d") // b's name is durable, its bytes are not; the rename is now durable too
		g.WriteAt([]byte("y"), 0)
		h, _ := m.OpenFile("/d/c", os.O_RDWR|os.O_CREATE, 0o644)
		h.WriteAt(data, 0)
		h.Sync()
		m.Rename("/d/c", "/d/c2") // not synced
		img := m.Crash(rng)
		if !bytes.Equal(img.ReadFile("/d/a"), data) || img.ReadFile("/d/a.tmp") != nil {
			t.Fatalf("a synced file renamed before a SyncDir did not survive whole under its new name")
		}
		c, c2 := img.ReadFile("/d/c"), img.ReadFile("/d/c2")
		switch {
		case c == nil && c2 == nil:
			// its create was not durable either: fine
		case c != nil && c2 != nil:
			t.Fatalf("an unsynced rename left both names")
		case c != nil:
			sawOld = true
		default:
			sawNew = true
		}
		if b := img.ReadFile("/d/b"); b == nil {
			t.Fatalf("a file whose create was synced is gone")
		} else if !bytes.Equal(b, data) {
			sawTorn = true
		}
	}
	if !sawOld || !sawNew || !sawTorn {
		t.Fatalf("500 crashes never showed some outcome: old name %v, new name %v, torn bytes %v", sawOld, sawNew, sawTorn)
	}
}

// TestMemFreezeAfter: after n mutations every operation fails, and the
// state stays as it was.
func TestMemFreezeAfter(t *testing.T) {
	m := NewMem()
	m.MkdirAll("/d", 0o755)
	f, _ := m.OpenFile("/d/a", os.O_RDWR|os.O_CREATE, 0o644)
	m.FreezeAfter(2)
	if _, err := f.WriteAt([]byte("ab"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("c"), 2); err == nil || !m.Frozen() {
		t.Fatalf("third mutation: %v, frozen %v", err, m.Frozen())
	}
	if err := m.SyncDir("/d"); err == nil {
		t.Fatal("SyncDir after the freeze succeeded")
	}
	if got := m.ReadFile("/d/a"); string(got) != "ab" {
		t.Fatalf("file is %q after the freeze", got)
	}
}
