package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fastjson"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
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

// TestRefusedImportChangesNothing: a bad row anywhere in the file refuses
// the whole import, naming the row and why, and the node holds none of
// the file's events: the chunks before the bad row's were applied, and a
// run after fixing the row skipped them by request id, so an operator
// could not tell a refused import from a half-done one. Running it again
// after the fix loads the whole file once.
func TestRefusedImportChangesNothing(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.DefaultConfig()
	cfg.DataDir, cfg.Listen = t.TempDir(), "127.0.0.1:0"
	log := slog.New(slog.DiscardHandler)
	r, err := start(cfg, repo, features.DefaultFS(), log)
	if err != nil {
		t.Fatal(err)
	}
	defer r.stop(log)
	url := "http://" + r.ln.Addr().String()
	c, err := client.New(url, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	events := func() string {
		m, err := c.Metrics(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(m), "\n") {
			if v, ok := strings.CutPrefix(l, "tally_ingest_events_total "); ok {
				return v
			}
		}
		t.Fatalf("no tally_ingest_events_total in\n%s", m)
		return ""
	}

	const rows, bad = 1000, 351 // the bad row (from 1) is in the fourth chunk of 100
	now := time.Now().UnixMilli()
	path := filepath.Join(t.TempDir(), "events.csv")
	write := func(badRow string) {
		var b strings.Builder
		b.WriteString("timestamp,user_id,merchant,category,amt,country,lat,long,is_fraud\n")
		for i := 1; i <= rows; i++ {
			if i == bad && badRow != "" {
				b.WriteString(badRow + "\n")
				continue
			}
			fmt.Fprintf(&b, "%d,u%d,m%d,food,10,FR,48.8,2.3,0\n", now-2*3_600_000+int64(i)*1000, i%7, i%3)
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A row the node refuses (a day ahead of its clock), and one the CLI
	// itself refuses.
	for _, tc := range []struct{ row, why string }{
		{fmt.Sprintf("%d,u1,m1,food,10,FR,48.8,2.3,0", now+86_400_000), "ahead of the node's clock"},
		{fmt.Sprintf("%d,u1,m1,food,-1e400,FR,48.8,2.3,0", now), "finite decimal number"},
	} {
		write(tc.row)
		_, err := run(t, "import", path, "--source", "transactions", "--url", url, "--quiet", "--chunk", "100")
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("row %d", bad)) || !strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), "nothing was imported") {
			t.Fatalf("import with a bad row %d: %v\nwant the row, %q and that nothing was imported", bad, err, tc.why)
		}
		if n := events(); n != "0" {
			t.Fatalf("a refused import (row %d: %s) applied %s events, want none", bad, tc.why, n)
		}
	}
	write("")
	if out, err := run(t, "import", path, "--source", "transactions", "--url", url, "--quiet", "--chunk", "100"); err != nil || !strings.Contains(out, fmt.Sprintf("imported %d events", rows)) {
		t.Fatalf("import of the fixed file: %v\n%s", err, out)
	}
	if n := events(); n != fmt.Sprint(rows) {
		t.Fatalf("the fixed import applied %s events, want %d", n, rows)
	}
}
