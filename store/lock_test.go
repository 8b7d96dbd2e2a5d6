package store

import (
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
