package history

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/tabular"
)

// TestSpineInvalidUTF8Refused: a CSV or Parquet spine with a string that
// is not UTF-8 is refused with 400 INVALID_SPINE naming the row, the
// column and the byte, before anything streams; it was joined, and its
// bytes written into the training set, which Parquet, Delta and Spark
// readers then refused.
func TestSpineInvalidUTF8Refused(t *testing.T) {
	ln := newLiveNode(t, spineStart)
	ln.ingest(t, txn{user: "u1", merchant: "m1", country: "FR", amt: 3, ts: spineStart - 1000})
	h := startHistoryServer(t, ln, node.DefaultConfig().Limits)
	header := "user_id,merchant,country,timestamp,amt,lat,long\n"
	csv := header + "u1,m1,FR,1790000000000,1,2,3\nu1,m\xff,FR,1790000000000,1,2,3\n"
	cols := []tabular.Column{{Name: "user_id", Type: tabular.String}, {Name: "merchant", Type: tabular.String}, {Name: "country", Type: tabular.String},
		{Name: "timestamp", Type: tabular.Int64}, {Name: "amt", Type: tabular.Float64}, {Name: "lat", Type: tabular.Float64}, {Name: "long", Type: tabular.Float64}}
	var pq bytes.Buffer
	w, err := tabular.NewWriter(tabular.Parquet, &pq, cols)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"m1", "m\xff"} {
		if err := w.Write([]tabular.Value{{Str: "u1"}, {Str: m}, {Str: "FR"}, {Int: spineStart}, {Num: 1}, {Num: 2}, {Num: 3}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, in := range []struct{ ct, body string }{{"text/csv", csv}, {"application/vnd.apache.parquet", pq.String()}} {
		status, body := postSpine(t, h.base+Path+"?service=fraud_detection&format=parquet", in.ct, []byte(in.body))
		if status != 400 || !strings.Contains(body, "INVALID_SPINE") || !strings.Contains(body, `row 2, column \"merchant\"`) || !strings.Contains(body, "invalid UTF-8 (byte 0xff) at offset 1") {
			t.Errorf("%s spine: %d %.200q, want 400 INVALID_SPINE naming row 2, column merchant and the byte", in.ct, status, body)
		}
	}
	if status, body := postSpine(t, h.base+Path+"?service=fraud_detection&format=csv", "text/csv", []byte(header+"u1,m\xc3\xa9,FR,1790000000000,1,2,3\n")); status != 200 {
		t.Fatalf("a spine with valid UTF-8: %d %q", status, body)
	}
}
