package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExportRefusesEpochSeconds: `tally export` of a spine whose times are
// epoch seconds fails naming the row and the fix, and leaves --out as it
// was. (It wrote a training set of rows in January 1970, every feature
// empty.)
func TestExportRefusesEpochSeconds(t *testing.T) {
	dir := t.TempDir()
	spine := filepath.Join(dir, "spine.csv")
	if err := os.WriteFile(spine, []byte("user_id,merchant,country,timestamp,amt,lat,long\nu1,m1,FR,1790000000000,1,2,3\nu1,m1,FR,1790000000,1,2,3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeLog(t, filepath.Join(dir, "data"), 0)
	out := filepath.Join(dir, "train.csv")
	old := []byte("the previous training set\n")
	if err := os.WriteFile(out, old, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := run(t, "export", "--service", "fraud_detection", "--spine", spine, "--out", out,
		"--data-dir", filepath.Join(dir, "data"), "--quiet")
	if err == nil || !strings.Contains(err.Error(), "row 2") || !strings.Contains(err.Error(), "multiply by 1000") {
		t.Fatalf("export of a spine in epoch seconds: %v, want an error naming row 2 and saying to multiply by 1000", err)
	}
	if b, err := os.ReadFile(out); err != nil || string(b) != string(old) {
		t.Fatalf("the refused export changed --out: %q (%v)", b, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 3 {
		t.Fatalf("the refused export left %d entries in %s, want spine.csv, data and train.csv", len(ents), dir)
	}
}
