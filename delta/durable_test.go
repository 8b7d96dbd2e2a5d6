package delta

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestDirectoriesMadeDurable: a new table's directories are created with
// their entries made durable (mkdirAll), and the table directory, which
// holds the data file, is synced after the data file is written and
// before a commit names it: a power loss after the commit cannot leave
// it pointing at a data file the table lost.
func TestDirectoriesMadeDurable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "table")
	var made, synced []string
	oldMk, oldSync := mkdirAll, syncDir
	defer func() { mkdirAll, syncDir = oldMk, oldSync }()
	mkdirAll = func(d string, perm os.FileMode) error {
		made = append(made, d)
		return oldMk(d, perm)
	}
	syncDir = func(d string) error {
		if d == dir {
			if ents, _ := os.ReadDir(filepath.Join(dir, LogDir)); len(ents) != 0 {
				t.Errorf("the table directory synced after a commit was written: %v", ents)
			}
		}
		synced = append(synced, d)
		return oldSync(d)
	}
	v := appendRows(t, dir, testRows(0, 10))
	if !slices.Contains(made, filepath.Join(dir, LogDir)) {
		t.Errorf("the table's directories were made with %v, not made durable (mkdirAll of %s)", made, filepath.Join(dir, LogDir))
	}
	if !slices.Contains(synced, dir) {
		t.Errorf("directories synced %v: the table directory %s, which holds the data file, was never synced before the commit", synced, dir)
	}
	if n, rows := readTable(t, dir); v != 0 || n != 1 || len(rows) != 10 {
		t.Fatalf("version %d, %d versions, %d rows read back; want version 0, 1 version, 10 rows", v, n, len(rows))
	}
}
