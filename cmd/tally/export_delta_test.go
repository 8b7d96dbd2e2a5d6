package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tally-ml/tally/delta"
	"github.com/tally-ml/tally/tabular"
)

// TestExportOutputFormats: --format delta appends to a table directory,
// no --format writes by extension, anything else is refused naming the
// choices.
func TestExportOutputFormats(t *testing.T) {
	cols := []tabular.Column{{Name: "id", Type: tabular.Int64}}
	dir := filepath.Join(t.TempDir(), "table")
	w, err := createOutput(dir, "delta", cols)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := w.(*delta.Writer); !ok {
		t.Fatalf("--format delta made a %T", w)
	}
	w.Write([]tabular.Value{{Int: 1}})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, delta.LogDir, "00000000000000000000.json")); err != nil {
		t.Fatalf("no commit: %v", err)
	}
	f := filepath.Join(t.TempDir(), "out.csv")
	if w, err := createOutput(f, "", cols); err != nil {
		t.Fatal(err)
	} else {
		w.Close()
	}
	if _, err := createOutput(f, "iceberg", cols); err == nil || !strings.Contains(err.Error(), "use delta") {
		t.Fatalf("--format iceberg: %v", err)
	}
}

// TestFailedExportCommitsNothing: an export whose run fails (cancelled by
// SIGINT, an archive read error) after writing rows must not commit them as
// a new version of the Delta table: the table stays as it was.
func TestFailedExportCommitsNothing(t *testing.T) {
	cols := []tabular.Column{{Name: "id", Type: tabular.Int64}}
	dir := filepath.Join(t.TempDir(), "table")
	w, err := createOutput(dir, "delta", cols)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write([]tabular.Value{{Int: 1}}); err != nil {
		t.Fatal(err)
	}
	runErr := errors.New("context canceled")
	if err := finishOutput(w, dir, runErr); err != runErr {
		t.Fatalf("finishOutput: %v, want the run's error", err)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, delta.LogDir))
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".json") {
			t.Fatalf("a failed export committed %s", e.Name())
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.parquet"))
	if len(files) > 0 {
		t.Fatalf("a failed export left data files %v", files)
	}
}
