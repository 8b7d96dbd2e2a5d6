package delta

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tally-ml/tally/tabular"
)

// TestRefusesColumnNamesDeltaCannotHold: Delta without column mapping
// (tally writes protocol 1/2) forbids a column name holding any of
// " ,;{}()\n\t=" and two names that differ only in case (delta-io/delta's
// SchemaUtils.checkFieldNames and its duplicate-column check): Spark
// refuses to create the first (DELTA_INVALID_CHARACTERS_IN_COLUMN_NAMES)
// and to read the second (COLUMN_ALREADY_EXISTS). Create refuses them,
// naming the column, before anything is written. Other punctuation (a
// feature's "view.name", #, :, /) is accepted.
func TestRefusesColumnNamesDeltaCannotHold(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "table")
	for _, c := range " ,;{}()\n\t=" {
		name := "is" + string(c) + "fraud"
		cols := []tabular.Column{{Name: "user_id", Type: tabular.String}, {Name: name, Type: tabular.Int64}}
		_, err := Create(dir, cols)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", name)) {
			t.Errorf("column %q: %v, want an error naming it", name, err)
		}
	}
	cols := []tabular.Column{{Name: "Label", Type: tabular.Int64}, {Name: "user_id", Type: tabular.String}, {Name: "label", Type: tabular.Int64}}
	if _, err := Create(dir, cols); err == nil || !strings.Contains(err.Error(), `"Label"`) || !strings.Contains(err.Error(), `"label"`) {
		t.Errorf("columns Label and label: %v, want an error naming both", err)
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Fatalf("refused appends left %v", ents)
	}
	ok := []tabular.Column{{Name: "user_transaction_counts.amt_count_1m", Type: tabular.Int64}, {Name: "a#b:c/d-e_f!@$%^&*~<>?", Type: tabular.String}}
	w, err := Create(dir, ok)
	if err != nil {
		t.Fatalf("names Delta accepts: %v", err)
	}
	w.Discard()
}
