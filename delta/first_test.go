package delta

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestFailedFirstAppendLeavesNoTable: the first append to a new table that
// is discarded (a cancelled export) or fails to commit leaves no table
// behind: no table directory, no empty _delta_log, none of the parent
// directories Create made. Spark would read such a directory as a table
// that is not one. A directory that existed before is left as it was.
// The append run again then creates the table at version 0.
func TestFailedFirstAppendLeavesNoTable(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "new", "table")
	gone := func(when string) {
		t.Helper()
		if ents, err := os.ReadDir(parent); err != nil || len(ents) != 0 {
			var names []string
			filepath.WalkDir(parent, func(p string, _ os.DirEntry, _ error) error {
				names = append(names, p)
				return nil
			})
			t.Errorf("%s: left %v behind", when, names)
		}
	}

	w, err := Create(dir, testCols)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(testRows(0, 1)[0])
	if err := w.Discard(); err != nil {
		t.Fatal(err)
	}
	gone("a discarded first append")

	oldSync := syncDir
	syncDir = func(d string) error {
		if d == dir {
			return errors.New("injected: sync failed")
		}
		return oldSync(d)
	}
	w, err = Create(dir, testCols)
	if err != nil {
		syncDir = oldSync
		t.Fatal(err)
	}
	w.Write(testRows(0, 1)[0])
	err = w.Close()
	syncDir = oldSync
	if err == nil {
		t.Fatal("Close succeeded despite the injected failure")
	}
	gone("a first append whose Close failed")

	if v := appendRows(t, dir, testRows(0, 2)); v != 0 {
		t.Fatalf("the append run again committed version %d, want 0", v)
	}
	if versions, rows := readTable(t, dir); versions != 1 || len(rows) != 2 {
		t.Fatalf("after the retry: %d versions, %d rows; want 1, 2", versions, len(rows))
	}

	existing := filepath.Join(t.TempDir(), "made-by-the-user")
	if err := os.Mkdir(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	if w, err = Create(existing, testCols); err != nil {
		t.Fatal(err)
	}
	w.Discard()
	if ents, err := os.ReadDir(existing); err != nil || len(ents) != 0 {
		t.Fatalf("a discarded first append into an existing empty directory left %v (%v)", ents, err)
	}
}

// TestFailedFirstAppendLeavesOthersTables: two first appends to a new
// table; the one that made the directory is discarded while the other is
// still writing. The directory holds the other's data file, so it stays,
// and the other commits version 0.
func TestFailedFirstAppendLeavesOthersTables(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "table")
	a, err := Create(dir, testCols)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Create(dir, testCols)
	if err != nil {
		t.Fatal(err)
	}
	a.Write(testRows(0, 1)[0])
	b.Write(testRows(1, 2)[0])
	b.Write(testRows(1, 2)[1])
	if err := a.Discard(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("the other append, after the first was discarded: %v", err)
	}
	if versions, rows := readTable(t, dir); b.Version() != 0 || versions != 1 || len(rows) != 2 {
		t.Fatalf("version %d, %d versions, %d rows; want version 0, 1 version, 2 rows", b.Version(), versions, len(rows))
	}
}
