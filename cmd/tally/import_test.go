package main

import (
	"strings"
	"testing"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/tabular"
)

// TestImportFloatIntoTextFieldKeepsIntegers: a file column of floats read
// into a text field (a Parquet float64 column of numeric ids, as pandas
// writes a column of integers with gaps) sends an integral value as its
// integer text, the key a live ingest of that number, and a lookup, use;
// not Go's shortest float text ("1.234567e+06"), a key nothing reads.
func TestImportFloatIntoTextFieldKeepsIntegers(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	src := repo.Sources[0]
	cols := []tabular.Column{{Name: "user_id", Type: tabular.Float64}, {Name: "merchant", Type: tabular.Float64}, {Name: "amt", Type: tabular.Float64}, {Name: "timestamp", Type: tabular.Int64}}
	enc, err := newEventEncoder(src, cols)
	if err != nil {
		t.Fatal(err)
	}
	row := []tabular.Value{{Num: 1234567}, {Num: 2.5}, {Num: 10}, {Int: 1_700_000_000_000}}
	out, err := enc.appendJSON(nil, row)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"user_id":"1234567","merchant":"2.5","amt":10,"timestamp":1700000000000}`
	if got := strings.TrimSpace(string(out)); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}
