package node

import (
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/features"
)

// t0 is the test clock's start: 2026-11-25T00:00:00Z.
const t0 = int64(1795564800000)

type testClock struct{ ms atomic.Int64 }

func (c *testClock) now() int64      { return c.ms.Load() }
func (c *testClock) set(ms int64)    { c.ms.Store(ms) }
func (c *testClock) advance(d int64) { c.ms.Add(d) }

func newTestNode(t testing.TB, cfg Config) (*Node, *testClock) {
	t.Helper()
	repo, err := features.Default()
	if err != nil {
		t.Fatalf("default repo: %v", err)
	}
	clk := &testClock{}
	clk.set(t0)
	n, err := New(repo, cfg, Options{Clock: clk.now, RepoFS: features.DefaultFS()})
	if err != nil {
		t.Fatalf("new node: %v", err)
	}
	n.SetReady(true)
	return n, clk
}

// vector maps feature name -> value and status.
type vector map[string]struct {
	v      any
	status string
}

func decodeVector(t testing.TB, body []byte) vector {
	t.Helper()
	r, err := client.DecodeFeatures(body)
	if err != nil {
		t.Fatalf("response is not JSON: %v\n%s", err, body)
	}
	if len(r.Result.Features) != len(r.Metadata.Features) {
		t.Fatalf("%d values but %d metadata entries", len(r.Result.Features), len(r.Metadata.Features))
	}
	out := vector{}
	for i, m := range r.Metadata.Features {
		out[m.Name] = struct {
			v      any
			status string
		}{r.Result.Features[i], m.Status}
	}
	return out
}

func lookupBody(user, merchant, country string, amt, lat, long float64) []byte {
	return []byte(fmt.Sprintf(`{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":%q,"merchant":%q,"country":%q},"request_context_map":{"amt":%v,"lat":%v,"long":%v}}}`,
		user, merchant, country, amt, lat, long))
}

func txn(user, merchant, country string, amt float64, ts int64) string {
	return fmt.Sprintf(`{"record":{"user_id":%q,"merchant":%q,"category":"grocery_pos","country":%q,"amt":%v,"lat":48.85,"long":2.35,"is_fraud":0,"timestamp":%d}}`,
		user, merchant, country, amt, ts)
}

func ingestBody(records ...string) []byte {
	return []byte(`{"workspace_name":"default","records":{"transactions":[` + strings.Join(records, ",") + `]}}`)
}

func mustGet(t *testing.T, n *Node, body []byte) vector {
	t.Helper()
	out, err := n.GetFeatures(nil, body)
	if err != nil {
		t.Fatalf("get-features: %v", err)
	}
	return decodeVector(t, out)
}

func TestIngestThenLookup(t *testing.T) {
	n, clk := newTestNode(t, DefaultConfig())
	res, err := n.IngestJSON(ingestBody(
		txn("alice", "m1", "FR", 10, t0-30_000),       // 30 s ago
		txn("alice", "m2", "FR", 20, t0-120_000),      // 2 min ago
		txn("alice", "m1", "FR", 30, t0-2*3_600_000),  // 2 h ago
		txn("bob", "m1", "FR", 1000, t0-10_000),       // another user
		txn("alice", "m3", "FR", 40, t0-25*3_600_000), // 25 h ago: outside 1d
	))
	if err != nil || res.Accepted != 5 {
		t.Fatalf("ingest: %+v %v", res, err)
	}
	if _, aerr := n.UploadTable("user_profile", CSV, []byte("user_id,home_lat,home_long\nalice,48.8566,2.3522\n"), false); aerr != nil {
		t.Fatalf("upload: %v", aerr)
	}
	clk.advance(1)
	v := mustGet(t, n, lookupBody("alice", "m1", "FR", 50, 51.5074, -0.1278))
	want := map[string]any{
		"user_transaction_counts.amt_count_1m":               1.0,
		"user_transaction_counts.amt_count_5m":               2.0,
		"user_transaction_counts.amt_count_1h":               2.0,
		"user_transaction_amounts.amt_sum_1h":                30.0,
		"user_transaction_amounts.amt_mean_1h":               15.0,
		"user_transaction_amounts.amt_max_1h":                20.0,
		"user_transaction_amounts.amt_sum_1d":                60.0,
		"user_transaction_amounts.amt_mean_1d":               20.0,
		"user_distinct_merchants.merchant_distinct_count_1h": 2.0,
		"user_distinct_merchants.merchant_distinct_count_1d": 2.0,
		"merchant_transaction_counts.amt_count_5m":           2.0,
		"merchant_transaction_counts.amt_count_1h":           2.0,
		"user_profile.home_lat":                              48.8566,
		"transaction_request.amt_to_user_mean_1d":            2.5,
	}
	for name, w := range want {
		got, ok := v[name]
		if !ok {
			t.Errorf("%s missing from response", name)
			continue
		}
		if got.status != "PRESENT" || math.Abs(got.v.(float64)-w.(float64)) > 1e-9 {
			t.Errorf("%s = %v (%s), want %v PRESENT", name, got.v, got.status, w)
		}
	}
	// population stddev of 10, 20, 30 is sqrt(200/3)
	if sd := v["user_transaction_amounts.amt_stddev_1d"].v.(float64); math.Abs(sd-math.Sqrt(200.0/3)) > 1e-9 {
		t.Errorf("stddev_1d = %v, want %v", sd, math.Sqrt(200.0/3))
	}
	if d := v["transaction_request.distance_from_home_km"].v.(float64); math.Abs(d-343.5) > 1 {
		t.Errorf("distance Paris-London = %v km, want ~343.5", d)
	}
	if len(v) != 18 {
		t.Errorf("fraud_detection has %d features, want 18", len(v))
	}
}

func TestNeverSeenEntityIsReportedNotZeroed(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	v := mustGet(t, n, lookupBody("nobody", "nowhere", "XX", 5, 0, 0))
	for name, f := range v {
		switch {
		case strings.Contains(name, "_count_") || strings.Contains(name, "_sum_"):
			if f.status != "PRESENT" || f.v.(float64) != 0 {
				t.Errorf("%s = %v %s, want 0 PRESENT", name, f.v, f.status)
			}
		default:
			if f.status != "MISSING_DATA" || f.v != nil {
				t.Errorf("%s = %v %s, want null MISSING_DATA", name, f.v, f.status)
			}
		}
	}
}

func TestBadIngestIsRefusedAndChangesNothing(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	good := txn("carol", "m1", "FR", 10, t0-1000)
	cases := []struct {
		name, body, code, mention string
	}{
		{"malformed", `{"records": {"transactions": [`, "MALFORMED_JSON", "not valid JSON"},
		{"not object", `[1,2]`, "INVALID_REQUEST", "records"},
		{"no records", `{"workspace_name":"default"}`, "INVALID_REQUEST", "records"},
		{"unknown source", `{"records":{"clicks":[]}}`, "UNKNOWN_SOURCE", "clicks"},
		{"unknown workspace", `{"workspace_name":"prod","records":{"transactions":[]}}`, "UNKNOWN_WORKSPACE", "prod"},
		{"wrong type", string(ingestBody(good, fmt.Sprintf(`{"record":{"user_id":"carol","merchant":"m1","country":"FR","amt":"ten","timestamp":%d}}`, t0))), "INVALID_RECORDS", "amt: want a number"},
		{"missing join key", string(ingestBody(good, fmt.Sprintf(`{"record":{"merchant":"m1","country":"FR","amt":1,"timestamp":%d}}`, t0))), "INVALID_RECORDS", `missing join key "user_id"`},
		{"missing timestamp", string(ingestBody(good, `{"record":{"user_id":"carol","merchant":"m1","country":"FR","amt":1}}`)), "INVALID_RECORDS", "missing timestamp"},
		{"bad timestamp", string(ingestBody(good, `{"record":{"user_id":"carol","merchant":"m1","country":"FR","amt":1,"timestamp":"yesterday"}}`)), "INVALID_RECORDS", "RFC 3339"},
		{"future", string(ingestBody(good, txn("carol", "m1", "FR", 1, t0+3_600_000))), "INVALID_RECORDS", "ahead of the node's clock"},
		{"far past", string(ingestBody(good, txn("carol", "m1", "FR", 1, t0-400*86_400_000))), "INVALID_RECORDS", "older than the longest window"},
		{"epoch seconds", string(ingestBody(good, txn("carol", "m1", "FR", 1, t0/1000))), "INVALID_RECORDS", "epoch seconds"},
		{"unknown field", string(ingestBody(good, fmt.Sprintf(`{"record":{"user_id":"carol","merchant":"m1","country":"FR","amount":1,"timestamp":%d}}`, t0))), "INVALID_RECORDS", `unknown field "amount"`},
		{"empty key", string(ingestBody(good, txn("", "m1", "FR", 1, t0))), "INVALID_RECORDS", "join key is empty"},
		{"not a record", string(ingestBody(good, `{"user_id":"carol"}`)), "INVALID_RECORDS", `{"record"`},
		{"int label as float", string(ingestBody(good, fmt.Sprintf(`{"record":{"user_id":"carol","merchant":"m1","country":"FR","amt":1,"is_fraud":0.5,"timestamp":%d}}`, t0))), "INVALID_RECORDS", "is_fraud: want an integer"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := n.IngestJSON([]byte(c.body))
			ie, ok := err.(*IngestError)
			if !ok {
				t.Fatalf("want *IngestError, got %v", err)
			}
			if ie.Code != c.code || !strings.Contains(ie.Message, c.mention) {
				t.Fatalf("got %s %q, want %s mentioning %q", ie.Code, ie.Message, c.code, c.mention)
			}
		})
	}
	v := mustGet(t, n, lookupBody("carol", "m1", "FR", 1, 0, 0))
	if c := v["user_transaction_counts.amt_count_1h"]; c.v.(float64) != 0 {
		t.Fatalf("refused batches changed state: count_1h = %v", c.v)
	}
	if c := v["merchant_transaction_counts.amt_count_1h"]; c.v.(float64) != 0 {
		t.Fatalf("refused batches changed state: merchant count_1h = %v", c.v)
	}
}

func TestDryRunValidatesOnly(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	res, err := n.IngestJSON([]byte(`{"dry_run":true,"records":{"transactions":[` + txn("dave", "m1", "FR", 5, t0-1) + `]}}`))
	if err != nil || !res.DryRun || res.Accepted != 1 {
		t.Fatalf("dry run: %+v %v", res, err)
	}
	if v := mustGet(t, n, lookupBody("dave", "m1", "FR", 1, 0, 0)); v["user_transaction_counts.amt_count_1m"].v.(float64) != 0 {
		t.Fatal("dry run changed state")
	}
}

func TestNDJSONBulk(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	var lines []string
	for i := 0; i < 100; i++ {
		lines = append(lines, fmt.Sprintf(`{"user_id":"erin","merchant":"m%d","country":"FR","amt":%d,"timestamp":%d}`, i%7, i, t0-int64(i)*1000))
	}
	res, err := n.IngestNDJSON("transactions", []byte(strings.Join(lines, "\n")+"\n"), false)
	if err != nil || res.Accepted != 100 {
		t.Fatalf("bulk: %+v %v", res, err)
	}
	v := mustGet(t, n, lookupBody("erin", "m1", "FR", 1, 0, 0))
	if got := v["user_transaction_counts.amt_count_1m"].v.(float64); got != 60 {
		t.Errorf("count_1m = %v, want 60 (events at 0..59 s ago)", got)
	}
	if got := v["user_distinct_merchants.merchant_distinct_count_1h"].v.(float64); got != 7 {
		t.Errorf("distinct merchants = %v, want 7", got)
	}
	// One bad line refuses the whole body.
	_, err = n.IngestNDJSON("transactions", []byte(lines[0]+"\n{\"user_id\":1}\n"), false)
	if ie, ok := err.(*IngestError); !ok || ie.Refused != 1 || ie.Records[0].Index != 1 {
		t.Fatalf("want line 1 refused, got %v", err)
	}
}

func TestBadLookupRequests(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	cases := []struct {
		name, body string
		status     int
		code       string
	}{
		{"malformed", `{"params":`, 400, "MALFORMED_JSON"},
		{"no params", `{}`, 400, "INVALID_REQUEST"},
		{"unknown service", `{"params":{"feature_service_name":"nope","join_key_map":{}}}`, 404, "UNKNOWN_FEATURE_SERVICE"},
		{"service not string", `{"params":{"feature_service_name":5}}`, 400, "INVALID_REQUEST"},
		{"missing join key", `{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"a","merchant":"m"},"request_context_map":{"amt":1,"lat":0,"long":0}}}`, 400, "MISSING_JOIN_KEY"},
		{"unknown join key", `{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"a","merchant":"m","country":"FR","usr":"x"},"request_context_map":{"amt":1,"lat":0,"long":0}}}`, 400, "UNKNOWN_JOIN_KEY"},
		{"join key object", `{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":{},"merchant":"m","country":"FR"},"request_context_map":{"amt":1,"lat":0,"long":0}}}`, 400, "INVALID_JOIN_KEY"},
		{"float join key", `{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":1.5,"merchant":"m","country":"FR"},"request_context_map":{"amt":1,"lat":0,"long":0}}}`, 400, "INVALID_JOIN_KEY"},
		{"missing context", `{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"a","merchant":"m","country":"FR"}}}`, 400, "MISSING_REQUEST_CONTEXT"},
		{"context wrong type", `{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"a","merchant":"m","country":"FR"},"request_context_map":{"amt":"1","lat":0,"long":0}}}`, 400, "INVALID_REQUEST_CONTEXT"},
		{"as_of too old", `{"params":{"feature_service_name":"fraud_detection","as_of":1,"join_key_map":{"user_id":"a","merchant":"m","country":"FR"},"request_context_map":{"amt":1,"lat":0,"long":0}}}`, 400, "INVALID_REQUEST"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := n.GetFeatures(nil, []byte(c.body))
			if err == nil || err.Status != c.status || err.Code != c.code {
				t.Fatalf("got %+v, want %d %s", err, c.status, c.code)
			}
		})
	}
}

func TestIntegerJoinKeysMatchStrings(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	if _, err := n.IngestJSON(ingestBody(txn("12345", "m1", "FR", 3, t0-1))); err != nil {
		t.Fatal(err)
	}
	body := `{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":12345,"merchant":"m1","country":"FR"},"request_context_map":{"amt":1,"lat":0,"long":0}}}`
	v := mustGet(t, n, []byte(body))
	if got := v["user_transaction_counts.amt_count_1m"].v.(float64); got != 1 {
		t.Fatalf("integer join key did not find the string-keyed entity: count %v", got)
	}
}

func TestBatchLookup(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	if _, err := n.IngestJSON(ingestBody(txn("u1", "m1", "FR", 3, t0-1), txn("u2", "m1", "FR", 4, t0-1), txn("u2", "m2", "FR", 5, t0-2))); err != nil {
		t.Fatal(err)
	}
	body := `{"params":{"feature_service_name":"fraud_detection","request_data":[` +
		`{"join_key_map":{"user_id":"u1","merchant":"m1","country":"FR"},"request_context_map":{"amt":1,"lat":0,"long":0}},` +
		`{"join_key_map":{"user_id":"u2","merchant":"m1","country":"FR"},"request_context_map":{"amt":1,"lat":0,"long":0}}]}}`
	out, aerr := n.GetFeaturesBatch(nil, []byte(body))
	if aerr != nil {
		t.Fatal(aerr)
	}
	r, err := client.DecodeBatchFeatures(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(r.Result) != 2 || r.Metadata.Features[0].Name != "user_transaction_counts.amt_count_1m" {
		t.Fatalf("unexpected batch shape: %s", out)
	}
	if r.Result[0].Features[0].(float64) != 1 || r.Result[1].Features[0].(float64) != 2 {
		t.Fatalf("batch rows wrong: %s", out)
	}
	if len(r.Result[1].Statuses) != len(r.Result[1].Features) {
		t.Fatalf("statuses do not line up with features: %s", out)
	}
}

func TestLookupAllocatesNothing(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	if _, err := n.IngestJSON(ingestBody(txn("u1", "m1", "FR", 3, t0-1), txn("u1", "m2", "FR", 4, t0-100))); err != nil {
		t.Fatal(err)
	}
	if _, aerr := n.UploadTable("user_profile", CSV, []byte("user_id,home_lat,home_long\nu1,1,2\n"), false); aerr != nil {
		t.Fatal(aerr)
	}
	body := lookupBody("u1", "m1", "FR", 10, 1.5, 2.5)
	dst := make([]byte, 0, 8192)
	allocs := testing.AllocsPerRun(200, func() {
		out, err := n.GetFeatures(dst[:0], body)
		if err != nil {
			t.Fatal(err)
		}
		dst = out
	})
	if allocs != 0 {
		t.Fatalf("get-features allocates %.1f times per request", allocs)
	}
}

func TestTableUploadAtomicAndValidated(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	if _, aerr := n.UploadTable("user_profile", NDJSON, []byte(`{"user_id":"u1","home_lat":1,"home_long":2}`+"\n"), false); aerr != nil {
		t.Fatal(aerr)
	}
	bad := []struct {
		format TableFormat
		body   string
	}{
		{CSV, "user_id,home_lat,home_long\nu2,3,4\nu3,north,4\n"},
		{CSV, "user,home_lat\nu2,3\n"},
		{CSV, "user_id,elevation\nu2,3\n"},
		{NDJSON, `{"user_id":"u2","home_lat":3}` + "\n" + `{"user_id":"u3","home_lat":"x"}`},
		{NDJSON, `{"home_lat":3}`},
	}
	for i, b := range bad {
		if _, aerr := n.UploadTable("user_profile", b.format, []byte(b.body), false); aerr == nil || aerr.Status != 400 {
			t.Errorf("bad upload %d accepted: %v", i, aerr)
		}
	}
	if got := n.Table(0).Len(); got != 1 {
		t.Fatalf("refused uploads changed the table: %d rows", got)
	}
	if _, aerr := n.UploadTable("nope", CSV, []byte("user_id\n"), false); aerr == nil || aerr.Status != 404 {
		t.Fatalf("unknown table: %v", aerr)
	}
}
