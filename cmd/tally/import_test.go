package main

import (
	"encoding/json"
	"github.com/valyala/fastjson"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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

// TestImportRefusesInvalidUTF8: an event file with a string that is not
// UTF-8 stops the import at that row, naming the row, the column and the
// byte, and sends nothing of the chunk it is in: the reader took such
// bytes, and the import sent them in the Go escape strconv.AppendQuote
// writes ("m\xff"), which the node refuses as no JSON escape, naming
// neither the file's row nor its column.
func TestImportRefusesInvalidUTF8(t *testing.T) {
	var sent atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sent.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"accepted":2}`)
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "events.csv")
	events := "user_id,merchant,category,country,amt,timestamp\n" +
		"u1,m1,c,FR,1,1700000000000\n" +
		"u1,m\xff,c,FR,2,1700000000001\n"
	if err := os.WriteFile(path, []byte(events), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := run(t, "import", path, "--source", "transactions", "--url", srv.URL, "--quiet")
	if err == nil || !strings.Contains(err.Error(), `row 2, column "merchant"`) || !strings.Contains(err.Error(), "invalid UTF-8 (byte 0xff) at offset 1") {
		t.Fatalf("import: %v, want an error naming row 2, column merchant and the byte", err)
	}
	if n := sent.Load(); n != 0 {
		t.Fatalf("the import sent %d requests, want none", n)
	}
}

// TestImportWritesJSONEscapes: strings are sent in JSON's escapes, so that
// valid UTF-8 a Go escape would write otherwise reaches the node as it is:
// strconv.AppendQuote wrote a control character as "\a" and a character
// it deems unprintable past U+FFFF as "\U000e0001", neither of them JSON
// (the node refused the whole chunk as an invalid escape).
func TestImportWritesJSONEscapes(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	src := repo.Sources[0]
	cols := []tabular.Column{{Name: "user_id", Type: tabular.String}, {Name: "merchant", Type: tabular.String}, {Name: "amt", Type: tabular.Float64}, {Name: "timestamp", Type: tabular.Int64}}
	enc, err := newEventEncoder(src, cols)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"m\a1", "tag\U000e0001", "quote\"back\\slash\ttab", "é😀"} {
		out, err := enc.appendJSON(nil, []tabular.Value{{Str: "u1"}, {Str: s}, {Num: 10}, {Int: 1_700_000_000_000}})
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%q was sent as %s: not JSON: %v", s, out, err)
		}
		if got["merchant"] != s {
			t.Fatalf("%q was sent as %s, which reads as %q", s, out, got["merchant"])
		}
		if _, err := tabular.ParseJSON(new(fastjson.Parser), out); err != nil {
			t.Fatalf("%q was sent as %s, which the node refuses: %v", s, out, err)
		}
	}
}
