package history

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/tabular"
)

// TestSpineTimesBeyondYear9999Refused: a spine whose integer timestamps are
// microseconds or nanoseconds (pandas' datetime64[ns] cast to int64), read
// as epoch milliseconds, puts every row tens of thousands of years ahead,
// where every window is empty: a training set of zero features. It is
// refused as a bad spine naming the row, column and unit (it was joined:
// 200, every count 0).
func TestSpineTimesBeyondYear9999Refused(t *testing.T) {
	ln := newLiveNode(t, spineStart)
	ln.ingest(t, txn{user: "u1", merchant: "m1", country: "FR", amt: 3, ts: spineStart - 1000})
	h := startHistoryServer(t, ln, node.DefaultConfig().Limits)
	for _, ts := range []int64{spineStart * 1000, spineStart * 1_000_000} {
		csv := fmt.Sprintf("user_id,merchant,country,timestamp,amt,lat,long\nu1,m1,FR,%d,1,2,3\n", ts)
		ndjson := fmt.Sprintf(`{"user_id":"u1","merchant":"m1","country":"FR","timestamp":%d,"amt":1,"lat":2,"long":3}`+"\n", ts)
		for _, in := range []struct{ ct, body string }{{"text/csv", csv}, {"application/x-ndjson", ndjson}} {
			status, body := postSpine(t, h.base+Path+"?service=fraud_detection&format=csv", in.ct, []byte(in.body))
			if status != 400 || !strings.Contains(body, "INVALID_SPINE") || !strings.Contains(body, "row 1") || !strings.Contains(body, "milliseconds") {
				t.Errorf("%s spine at %d: %d %q, want 400 INVALID_SPINE naming row 1 and the unit", in.ct, ts, status, body)
			}
		}
	}
	csv := fmt.Sprintf("user_id,merchant,country,timestamp,amt,lat,long\nu1,m1,FR,%d,1,2,3\n", spineStart)
	if status, body := postSpine(t, h.base+Path+"?service=fraud_detection&format=csv", "text/csv", []byte(csv)); status != 200 {
		t.Fatalf("a spine in milliseconds: %d %q", status, body)
	}
}

// TestSpineEpochSecondsRefused: a spine whose integer timestamps are epoch
// seconds, read as milliseconds, puts every row in the first months of
// 1970, before any event: a training set of empty features that looks
// valid. An integer time (or integer text) before 1973-03-03 (1e11 ms) is
// refused as a bad spine naming the row and saying to multiply by 1000 (it
// was joined: 200, every count 0). RFC 3339 text and a Parquet timestamp
// say the unit, and are read as they say.
func TestSpineEpochSecondsRefused(t *testing.T) {
	ln := newLiveNode(t, spineStart)
	ln.ingest(t, txn{user: "u1", merchant: "m1", country: "FR", amt: 3, ts: spineStart - 1000})
	h := startHistoryServer(t, ln, node.DefaultConfig().Limits)
	url := h.base + Path + "?service=fraud_detection&format=csv"
	secs := spineStart / 1000
	intCol := []tabular.Column{{Name: "user_id", Type: tabular.String}, {Name: "merchant", Type: tabular.String}, {Name: "country", Type: tabular.String},
		{Name: "timestamp", Type: tabular.Int64}, {Name: "amt", Type: tabular.Float64}, {Name: "lat", Type: tabular.Float64}, {Name: "long", Type: tabular.Float64}}
	for _, in := range []struct{ name, ct, body string }{
		{"csv", "text/csv", fmt.Sprintf("user_id,merchant,country,timestamp,amt,lat,long\nu1,m1,FR,%d,1,2,3\nu1,m1,FR,%d,1,2,3\n", spineStart, secs)},
		{"csv text", "text/csv", fmt.Sprintf("user_id,merchant,country,timestamp,amt,lat,long\nu1,m1,FR,2026-11-25T10:00:00Z,1,2,3\nu1,m1,FR,%d,1,2,3\n", secs)},
		{"ndjson", "application/x-ndjson", fmt.Sprintf(`{"user_id":"u1","merchant":"m1","country":"FR","timestamp":%d,"amt":1,"lat":2,"long":3}`+"\n"+
			`{"user_id":"u1","merchant":"m1","country":"FR","timestamp":%d,"amt":1,"lat":2,"long":3}`+"\n", spineStart, secs)},
		{"parquet int64", "application/vnd.apache.parquet", string(parquetSpine(t, intCol, spineStart, secs))},
	} {
		status, body := postSpine(t, url, in.ct, []byte(in.body))
		if status != 400 || !strings.Contains(body, "INVALID_SPINE") || !strings.Contains(body, "row 2") ||
			!strings.Contains(body, "epoch seconds") || !strings.Contains(body, "1000") {
			t.Errorf("%s spine in epoch seconds: %d %q, want 400 INVALID_SPINE naming row 2 and saying to multiply by 1000", in.name, status, body)
		}
	}
	// The same instant, said to be 1970, is read as 1970.
	early := time.UnixMilli(secs).UTC().Format(time.RFC3339Nano)
	tsCol := slices.Clone(intCol)
	tsCol[3].Type = tabular.Timestamp
	for _, in := range []struct{ name, ct, body string }{
		{"rfc 3339", "text/csv", "user_id,merchant,country,timestamp,amt,lat,long\nu1,m1,FR," + early + ",1,2,3\n"},
		{"parquet timestamp", "application/vnd.apache.parquet", string(parquetSpine(t, tsCol, secs))},
	} {
		if status, body := postSpine(t, url, in.ct, []byte(in.body)); status != 200 || !strings.Contains(body, "1970-01-21") {
			t.Errorf("%s spine in 1970: %d %q, want 200", in.name, status, body)
		}
	}
}

// parquetSpine is a one-row-per-time Parquet spine of the fraud service.
func parquetSpine(t *testing.T, cols []tabular.Column, times ...int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := tabular.NewWriter(tabular.Parquet, &buf, cols)
	if err != nil {
		t.Fatal(err)
	}
	for _, ts := range times {
		if err := w.Write([]tabular.Value{{Str: "u1"}, {Str: "m1"}, {Str: "FR"}, {Int: ts}, {Num: 1}, {Num: 2}, {Num: 3}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
