package walfs

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestMkdirAllMakesNewDirectoriesDurable: OS.MkdirAll fsyncs the parent of
// each directory it creates, outermost first, and nothing when the
// directory exists.
func TestMkdirAllMakesNewDirectoriesDurable(t *testing.T) {
	var synced []string
	old := syncDir
	syncDir = func(dir string) error { synced = append(synced, dir); return old(dir) }
	defer func() { syncDir = old }()
	root := t.TempDir()
	dir := filepath.Join(root, "a", "b", "c")
	if err := OS.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		t.Fatalf("%s not created: %v", dir, err)
	}
	want := []string{root, filepath.Join(root, "a"), filepath.Join(root, "a", "b")}
	if !slices.Equal(synced, want) {
		t.Fatalf("synced %v, want %v", synced, want)
	}
	synced = nil
	if err := OS.MkdirAll(dir, 0o755); err != nil || len(synced) != 0 {
		t.Fatalf("MkdirAll of an existing directory synced %v: %v", synced, err)
	}
}
