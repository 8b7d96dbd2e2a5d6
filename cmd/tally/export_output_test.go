package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/tally-ml/tally/tabular"
)

// TestExportOutputAppearsWhole: a file export is written beside --out and
// renamed over it when the join finishes. While it runs, and after it fails
// (SIGINT, an archive error), a file already at --out is as it was and no
// partial training set is at --out; a process killed mid-export leaves no
// readable half file there either. (--out was truncated at the start and
// removed on failure: a failed re-export deleted the previous training set,
// or the spine itself when --out named it.)
func TestExportOutputAppearsWhole(t *testing.T) {
	cols := []tabular.Column{{Name: "id", Type: tabular.Int64}}
	for _, name := range []string{"train.csv", "train.ndjson", "train.parquet"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, name)
			old := []byte("the previous training set\n")
			if err := os.WriteFile(out, old, 0o644); err != nil {
				t.Fatal(err)
			}
			unchanged := func(when string) {
				t.Helper()
				if b, err := os.ReadFile(out); err != nil || string(b) != string(old) {
					t.Fatalf("%s: --out holds %d bytes starting %q (%v), want the previous file", when, len(b), b[:min(len(b), 20)], err)
				}
			}
			for _, fail := range []bool{true, false} {
				w, err := createOutput(out, "", cols)
				if err != nil {
					t.Fatal(err)
				}
				for i := range 100_000 {
					if err := w.Write([]tabular.Value{{Int: int64(i)}}); err != nil {
						t.Fatal(err)
					}
				}
				unchanged("during the export")
				if fail {
					runErr := errors.New("context canceled")
					if err := finishOutput(w, out, runErr); err != runErr {
						t.Fatalf("finishOutput: %v", err)
					}
					unchanged("after a failed export")
				} else if err := finishOutput(w, out, nil); err != nil {
					t.Fatal(err)
				}
				if ents, _ := os.ReadDir(dir); len(ents) != 1 {
					var names []string
					for _, e := range ents {
						names = append(names, e.Name())
					}
					t.Fatalf("the directory holds %v, want only %s", names, name)
				}
			}
			r, err := tabular.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			n, row := 0, make([]tabular.Value, 1)
			for r.Next(row) == nil {
				if row[0].Str != fmt.Sprint(n) && (row[0].Str != "" || row[0].Int != int64(n)) { // CSV reads text
					t.Fatalf("row %d reads %+v", n, row[0])
				}
				n++
			}
			if n != 100_000 {
				t.Fatalf("the export holds %d rows, want 100000", n)
			}
		})
	}
}
