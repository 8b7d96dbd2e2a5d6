package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeltaExportRefusesColumnNamesDeltaForbids: a spine column whose
// name a Delta table without column mapping cannot hold ("is fraud": a
// space) is refused by `tally export --format delta` with an error naming
// it, before the table directory is made. tally exported such a table,
// one Spark itself refuses to create (DELTA_INVALID_CHARACTERS_IN_COLUMN_NAMES).
func TestDeltaExportRefusesColumnNamesDeltaForbids(t *testing.T) {
	dir := t.TempDir()
	spine := filepath.Join(dir, "spine.csv")
	if err := os.WriteFile(spine, []byte("user_id,merchant,country,timestamp,amt,lat,long,is fraud\nu1,m1,FR,1790000000000,1,2,3,0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeLog(t, filepath.Join(dir, "data"), 0)
	out := filepath.Join(dir, "table")
	_, err := run(t, "export", "--service", "fraud_detection", "--spine", spine, "--format", "delta", "--out", out,
		"--data-dir", filepath.Join(dir, "data"), "--quiet")
	if err == nil || !strings.Contains(err.Error(), `"is fraud"`) {
		t.Fatalf("export of a spine with the column %q: %v, want an error naming it", "is fraud", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("the refused export made %s (%v)", out, err)
	}
}
