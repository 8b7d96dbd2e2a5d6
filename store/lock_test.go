package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckDataDir: a directory whose top level holds log segments
// (compressed or not) or snapshots is the inside of a data dir, refused
// naming its parent; other names, and a dir not made yet, pass.
func TestCheckDataDir(t *testing.T) {
	for _, c := range []struct {
		file   string
		refuse bool
	}{
		{"00000000000000000001.wal", true},
		{"00000000000000000001.wal.zst", true},
		{"00000000000000000040.snap", true},
		{"next.wal.tmp", false},
		{"holiday.snap", false},
		{"1.wal", false},
		{"LOCK", false},
	} {
		parent := t.TempDir()
		dir := filepath.Join(parent, "inner")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, c.file), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		err := CheckDataDir(dir)
		if c.refuse && (err == nil || !strings.HasSuffix(err.Error(), "--data-dir "+parent)) {
			t.Errorf("a dir holding %s: %v, want a refusal naming --data-dir %s", c.file, err, parent)
		}
		if !c.refuse && err != nil {
			t.Errorf("a dir holding %s: %v, want none", c.file, err)
		}
	}
	if err := CheckDataDir(filepath.Join(t.TempDir(), "new")); err != nil {
		t.Errorf("a new dir: %v", err)
	}
}

// TestLockHoldsWhenItsFileIsRemoved: an operator who takes a running
// node's LOCK file for a stale one and deletes it (or a cleanup that
// does) does not let a second process into the data dir: the lock is also
// held on the directory. Before, the second LockDataDir locked the new LOCK
// file and both wrote the same log: the real binary then refused to start
// on "corrupt record at 00000000000000000001.wal", and repair would have
// cut acknowledged records.
func TestLockHoldsWhenItsFileIsRemoved(t *testing.T) {
	dir := t.TempDir()
	first, err := LockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "LOCK")); err != nil {
		t.Fatal(err)
	}
	second, err := LockDataDir(dir)
	if err == nil {
		second.Release()
		t.Fatal("a second lock of the data dir succeeded once its LOCK file was removed")
	}
	if !errors.Is(err, ErrDataDirInUse) || !strings.Contains(err.Error(), "stop it first") || !strings.Contains(err.Error(), "LOCK") {
		t.Fatalf("second lock: %v; want ErrDataDirInUse saying the LOCK file was removed and to stop the holder first", err)
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	again, err := LockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after the holder released it: %v", err)
	}
	again.Release()
}
