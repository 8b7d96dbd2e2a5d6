package node

import (
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tally-ml/tally/features"
)

// rec is one transaction record with its fields written as given, so that
// a test can put any JSON text in one of them.
func rec(fields map[string]string) string {
	base := map[string]string{"user_id": `"u1"`, "merchant": `"m1"`, "category": `"c"`, "country": `"FR"`,
		"amt": "1", "timestamp": fmt.Sprint(t0 - 1)}
	for k, v := range fields {
		base[k] = v
	}
	var parts []string
	for _, k := range []string{"user_id", "merchant", "category", "country", "amt", "timestamp", "is_fraud"} {
		if v, ok := base[k]; ok {
			parts = append(parts, fmt.Sprintf("%q:%s", k, v))
		}
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// A mistyped option is refused naming the field and the type it wants,
// never read as its default; nothing is ingested.
func TestMistypedOptionsRefused(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	one := `{"transactions":[{"record":` + rec(nil) + `}]}`
	for _, c := range []struct{ body, mention string }{
		{`{"dryRun":"true","records":` + one + `}`, `dryRun must be true or false, got a string`},
		{`{"dry_run":1,"records":` + one + `}`, `dry_run must be true or false, got a number`},
		{`{"dry_run":"false","records":` + one + `}`, `dry_run must be true or false, got a string`},
		{`{"workspace_name":7,"records":` + one + `}`, `workspace_name must be a string, got a number`},
		{`{"records":[]}`, `"records": an object`},
		{`{"dry_run":true,"dry_run":false,"records":` + one + `}`, `field "dry_run" appears twice`},
	} {
		_, err := n.IngestJSON([]byte(c.body))
		ie, ok := err.(*IngestError)
		if !ok || ie.Code != "INVALID_REQUEST" || !strings.Contains(ie.Message, c.mention) {
			t.Errorf("%s: got %v, want INVALID_REQUEST mentioning %q", c.body, err, c.mention)
		}
	}
	if n.AppliedIndex() != 0 {
		t.Fatalf("a refused request was applied (index %d)", n.AppliedIndex())
	}
	// null is the same as leaving an option out.
	if res, err := n.IngestJSON([]byte(`{"dry_run":null,"workspace_name":null,"records":` + one + `}`)); err != nil || res.DryRun {
		t.Fatalf("null options: %+v %v", res, err)
	}

	get := func(params string) string {
		return `{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"u1","merchant":"m1","country":"FR"},` +
			`"request_context_map":{"amt":1,"lat":2,"long":3}` + params + `}}`
	}
	for _, c := range []struct{ body, mention string }{
		{get(`,"metadata_options":{"include_names":"false"}`), `params.metadata_options.include_names must be true or false, got a string`},
		{get(`,"metadataOptions":{"includeEffectiveTimes":1}`), `params.metadataOptions.includeEffectiveTimes must be true or false, got a number`},
		{get(`,"metadata_options":true`), `params.metadata_options must be an object, got a boolean`},
		{get(`,"metadata_options":{"include_names":true,"include_names":false}`), `params.metadata_options.field "include_names" appears twice`},
		{get(`,"workspace_name":["default"]`), `params.workspace_name must be a string, got an array`},
		{get(`,"as_of":"soon"`), `params.as_of`},
		{get(`,"as_of":01`), `params.as_of`},
		{get(`,"feature_service_name":"fraud_detection"`), `params.field "feature_service_name" appears twice`},
		{`{"params":{"feature_service_name":7}}`, `params.feature_service_name must be a string, got a number`},
		{`{"params":"fraud_detection"}`, `got a string`},
		{`{"params":{"feature_service_name":"fraud_detection","join_key_map":"u1"}}`, `join_key_map must be an object with user_id, merchant, country, got a string`},
		{`{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"u1","user_id":"u2","merchant":"m1","country":"FR"}}}`, `join_key_map: key "user_id" appears twice`},
		{`{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"u1","merchant":"m1","country":"FR"},"request_context_map":[1,2,3]}}`, `request_context_map must be an object, got an array`},
		{`{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"u1","merchant":"m1","country":"FR"},"request_context_map":{"amt":1,"lat":2,"long":3,"amt":4}}}`, `request_context_map: key "amt" appears twice`},
	} {
		_, aerr := n.GetFeatures(nil, []byte(c.body))
		if aerr == nil || aerr.Status != 400 || !strings.Contains(aerr.Message, c.mention) {
			t.Errorf("%s: got %v, want 400 mentioning %q", c.body, aerr, c.mention)
		}
	}
	_, aerr := n.GetFeaturesBatch(nil, []byte(`{"params":{"feature_service_name":"fraud_detection","request_data":{"join_key_map":{}}}}`))
	if aerr == nil || aerr.Status != 400 || !strings.Contains(aerr.Message, "params.request_data must be an array") {
		t.Errorf("batch with an object for request_data: %v", aerr)
	}
	_, aerr = n.GetFeaturesBatch(nil, []byte(`{"params":{"feature_service_name":"fraud_detection","request_data":["u1"]}}`))
	if aerr == nil || aerr.Status != 400 || !strings.Contains(aerr.Message, "request_data[0]: a row must be an object") {
		t.Errorf("batch with a string for a row: %v", aerr)
	}
	_, aerr = n.GetFeaturesBatch(nil, []byte(`{"params":{"feature_service_name":"fraud_detection","metadata_options":{"include_serving_status":"no"},"request_data":[]}}`))
	if aerr == nil || aerr.Status != 400 || !strings.Contains(aerr.Message, "include_serving_status must be true or false") {
		t.Errorf("batch with a mistyped metadata option: %v", aerr)
	}
	if _, aerr := n.GetFeatures(nil, []byte(get(`,"metadata_options":{"include_names":null}`))); aerr != nil {
		t.Errorf("null option: %v", aerr)
	}
}

// Numbers are JSON numbers as RFC 8259 writes them; fastjson alone would
// read 01, +1, .5, 1., 1e and inf.
func TestLenientJSONNumbersRefused(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	for _, c := range []struct{ field, text string }{
		{"amt", "01"}, {"amt", "+1"}, {"amt", ".5"}, {"amt", "1."}, {"amt", "-.5"}, {"amt", "1e"}, {"amt", "inf"}, {"amt", "nan"},
		{"amt", "00"}, {"is_fraud", "01"}, {"is_fraud", "+1"}, {"user_id", "007"}, {"user_id", "+7"},
		{"timestamp", "0" + fmt.Sprint(t0-1)}, {"timestamp", "+" + fmt.Sprint(t0-1)},
	} {
		body := ingestBody(`{"record":` + rec(map[string]string{c.field: c.text}) + `}`)
		_, err := n.IngestJSON(body)
		ie, ok := err.(*IngestError)
		if !ok || ie.Code != "INVALID_RECORDS" || !strings.Contains(ie.Message, c.field) {
			t.Errorf("%s: %s: got %v, want INVALID_RECORDS naming the field", c.field, c.text, err)
		}
		if _, err := n.IngestNDJSON("transactions", []byte(rec(map[string]string{c.field: c.text})), false); err == nil {
			t.Errorf("bulk %s: %s accepted", c.field, c.text)
		}
	}
	for _, ok := range []string{"0", "-0", "1.5", "1e2", "1E+2", "-1.25e-3", "0.5"} {
		if _, err := n.IngestJSON(ingestBody(`{"record":` + rec(map[string]string{"amt": ok}) + `}`)); err != nil {
			t.Errorf("amt %s: %v", ok, err)
		}
	}
	for _, bad := range []string{"01", ".5", "+1"} {
		body := `{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"u1","merchant":"m1","country":"FR"},"request_context_map":{"amt":` + bad + `,"lat":2,"long":3}}}`
		if _, aerr := n.GetFeatures(nil, []byte(body)); aerr == nil || aerr.Status != 400 || !strings.Contains(aerr.Message, "amt") {
			t.Errorf("request context amt %s: %v", bad, aerr)
		}
		body = `{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":` + bad + `,"merchant":"m1","country":"FR"},"request_context_map":{"amt":1,"lat":2,"long":3}}}`
		if _, aerr := n.GetFeatures(nil, []byte(body)); aerr == nil || aerr.Status != 400 || !strings.Contains(aerr.Message, "user_id") {
			t.Errorf("join key %s: %v", bad, aerr)
		}
	}
	if _, aerr := n.UploadTable("user_profile", NDJSON, []byte(`{"user_id":"u1","home_lat":01}`), false); aerr == nil || !strings.Contains(aerr.Message, "home_lat") {
		t.Errorf("table NDJSON 01: %v", aerr)
	}
}

// A lookup ignores members it does not read, but the body must still be
// JSON: a number RFC 8259 does not write, anywhere in it, is a 400
// MALFORMED_JSON naming where it is (fastjson reads a number's text only
// when asked, so an unread 01 or nan was answered 200).
func TestLookupRefusesInvalidNumbersItDoesNotRead(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	one := `{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"u1","merchant":"m1","country":"FR"},"request_context_map":{"amt":1,"lat":2,"long":3}`
	row := `{"join_key_map":{"user_id":"u1","merchant":"m1","country":"FR"},"request_context_map":{"amt":1,"lat":2,"long":3}`
	lookups := map[string]func([]byte) *APIError{
		"get-features": func(b []byte) *APIError { _, aerr := n.GetFeatures(nil, b); return aerr },
		"predict":      func(b []byte) *APIError { _, aerr := n.Predict(nil, b); return aerr },
	}
	for _, c := range []struct{ extra, where string }{
		{`"extra":01`, "params.extra"},
		{`"extra":nan`, "params.extra"},
		{`"extra":-inf`, "params.extra"},
		{`"extra":+1`, "params.extra"},
		{`"extra":.5`, "params.extra"},
		{`"extra":1.`, "params.extra"},
		{`"extra":1e`, "params.extra"},
		{`"extra":1.2.3`, "params.extra"},
		{`"extra":{"a":[1,{"b":[2,00]}]}`, "params.extra.a[1].b[1]"},
		{`"metadata_options":{"include_names":true,"unread":01}`, "params.metadata_options.unread"},
	} {
		body := []byte(`{"params":` + one + `,` + c.extra + `}}`)
		for name, lookup := range lookups {
			aerr := lookup(body)
			if aerr == nil || aerr.Status != 400 || aerr.Code != "MALFORMED_JSON" || !strings.Contains(aerr.Message, c.where) {
				t.Errorf("%s %s: %v, want 400 MALFORMED_JSON naming %s", name, body, aerr, c.where)
			}
		}
		batch := []byte(`{"params":{"feature_service_name":"fraud_detection","request_data":[` + row + `,` + c.extra + `}]}}`)
		where := strings.Replace(c.where, "params.", "params.request_data[0].", 1)
		if _, aerr := n.GetFeaturesBatch(nil, batch); aerr == nil || aerr.Code != "MALFORMED_JSON" || !strings.Contains(aerr.Message, where) {
			t.Errorf("batch %s: %v, want 400 MALFORMED_JSON naming %s", batch, aerr, where)
		}
	}
	// Members a lookup does not read are still ignored.
	for _, extra := range []string{`"extra":1`, `"extra":-0.5e-3`, `"extra":[1,{"a":null}]`, `"metadata_options":{"unread":2}`} {
		body := []byte(`{"params":` + one + `,` + extra + `},"top":1}`)
		for name, lookup := range lookups {
			if aerr := lookup(body); aerr != nil {
				t.Errorf("%s %s: %v", name, body, aerr)
			}
		}
	}
	// Feast's lookup, which answers a body that is not JSON with its 422.
	feast := []byte(`{"feature_service":"fraud_detection","entities":{"user_id":["u1"],"merchant":["m1"],"country":["FR"],"amt":[1],"lat":[2],"long":[3]},"full_feature_names":true,"project":01}`)
	if _, ferr := n.FeastOnlineFeatures(nil, feast); ferr == nil || ferr.Status != 422 || !strings.Contains(ferr.Error(), "JSON decode error: project") {
		t.Errorf("Feast %s: %v, want Feast's 422 JSON decode error naming project", feast, ferr)
	}
}

// A record naming a field twice is refused naming it (it used to say
// `unknown field ""`).
func TestDuplicateKeysNamed(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	r := `{"user_id":"u1","merchant":"m1","country":"FR","amt":1,"amt":2,"timestamp":` + fmt.Sprint(t0-1) + `}`
	_, err := n.IngestJSON(ingestBody(`{"record":` + r + `}`))
	if ie, ok := err.(*IngestError); !ok || !strings.Contains(ie.Message, `field "amt" appears twice`) {
		t.Fatalf("got %v, want the duplicate named", err)
	}
	if _, err := n.IngestNDJSON("transactions", []byte(r), false); err == nil || !strings.Contains(err.Error(), `field "amt" appears twice`) {
		t.Fatalf("bulk: %v", err)
	}
	_, aerr := n.UploadTable("user_profile", NDJSON, []byte(`{"user_id":"u1","home_lat":1,"home_lat":2}`), false)
	if aerr == nil || !strings.Contains(aerr.Message, `field "home_lat" appears twice`) {
		t.Fatalf("table: %v", aerr)
	}
	_, aerr = n.UploadTable("user_profile", NDJSON, []byte(`{"user_id":"u1","user_id":"u2"}`), false)
	if aerr == nil || !strings.Contains(aerr.Message, `field "user_id" appears twice`) {
		t.Fatalf("table key: %v", aerr)
	}
}

// Table CSV numbers follow tabular.ParseNumber: decimal only.
func TestTableCSVNumberSyntax(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	for _, bad := range []string{"1_000", "0x1p3", ".5", "5.", "inf", "NaN", "+Inf", "1e400"} {
		_, aerr := n.UploadTable("user_profile", CSV, []byte("user_id,home_lat\nu1,"+bad+"\n"), false)
		if aerr == nil || aerr.Status != 400 || !strings.Contains(aerr.Message, "home_lat") {
			t.Errorf("home_lat %s: %v", bad, aerr)
		}
	}
	if n.Table(0).Len() != 0 {
		t.Fatal("a refused upload changed the table")
	}
	for _, ok := range []string{"12", "-0.5", "+3", "007", "1.5e-3", "2E2"} {
		if _, aerr := n.UploadTable("user_profile", CSV, []byte("user_id,home_lat\nu1,"+ok+"\n"), false); aerr != nil {
			t.Errorf("home_lat %s: %v", ok, aerr)
		}
	}
}

// Keys and string values longer than the limits are refused on every write
// path with a 400 naming the field and the limit, and nothing is applied.
func TestKeyAndValueSizeLimits(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Limits.MaxKeyBytes, cfg.Limits.MaxValueBytes = 64, 128
	n, _ := newTestNode(t, cfg)
	base := serve(t, n)
	longKey := `"` + strings.Repeat("k", 65) + `"`
	longVal := `"` + strings.Repeat("v", 129) + `"`
	okKey := `"` + strings.Repeat("k", 64) + `"`
	okVal := `"` + strings.Repeat("v", 128) + `"`
	type call struct{ path, ct, body string }
	line := func(f map[string]string) string { return rec(f) + "\n" }
	for _, c := range []struct {
		call
		mention []string
	}{
		{call{"/api/v1/ingest", "application/json", string(ingestBody(`{"record":` + rec(map[string]string{"user_id": longKey}) + `}`))},
			[]string{"user_id", "limits.max_key_bytes (64)"}},
		{call{"/api/v1/ingest", "application/json", string(ingestBody(`{"record":` + rec(map[string]string{"merchant": longKey}) + `}`))},
			[]string{"merchant", "limits.max_key_bytes (64)"}},
		{call{"/api/v1/ingest", "application/json", string(ingestBody(`{"record":` + rec(map[string]string{"category": longVal}) + `}`))},
			[]string{"category", "limits.max_value_bytes (128)"}},
		{call{"/api/v1/ingest/bulk?source=transactions", "application/x-ndjson", line(nil) + line(map[string]string{"user_id": longKey})},
			[]string{"user_id", "limits.max_key_bytes (64)"}},
		{call{"/api/v1/import?source=transactions", "application/x-ndjson", line(map[string]string{"category": longVal})},
			[]string{"category", "limits.max_value_bytes (128)"}},
		{call{"/api/v1/tables/user_profile", "text/csv", "user_id,home_lat\nu0,1\n" + strings.Trim(longKey, `"`) + ",1\n"},
			[]string{"user_id", "limits.max_key_bytes (64)"}},
		{call{"/api/v1/tables/user_profile", "application/x-ndjson", `{"user_id":` + longKey + `,"home_lat":1}`},
			[]string{"user_id", "limits.max_key_bytes (64)"}},
	} {
		status, body := do(t, "POST", base+c.path, "", c.ct, c.body)
		if status != 400 {
			t.Errorf("%s: %d %s, want 400", c.path, status, body)
		}
		for _, m := range c.mention {
			if !strings.Contains(body, m) {
				t.Errorf("%s: %s does not mention %q", c.path, body, m)
			}
		}
	}
	if n.AppliedIndex() != 0 || n.Table(0).Len() != 0 {
		t.Fatalf("refused writes were applied: index %d, table rows %d", n.AppliedIndex(), n.Table(0).Len())
	}
	// At the limit, accepted.
	if status, body := do(t, "POST", base+"/api/v1/ingest", "", "application/json",
		string(ingestBody(`{"record":`+rec(map[string]string{"user_id": okKey, "category": okVal})+`}`))); status != 200 {
		t.Fatalf("at the limits: %d %s", status, body)
	}
	// Query booleans are typed too: dry_run=1 is not a dry run.
	if status, body := do(t, "POST", base+"/api/v1/ingest/bulk?source=transactions&dry_run=1", "", "application/x-ndjson", line(nil)); status != 400 ||
		!strings.Contains(body, "dry_run") {
		t.Fatalf("dry_run=1: %d %s", status, body)
	}
}

// A table's string values are held to limits.max_value_bytes too.
func TestTableStringValueLimit(t *testing.T) {
	src, err := fs.ReadFile(features.DefaultFS(), "fraud.yaml")
	if err != nil {
		t.Fatal(err)
	}
	model, err := fs.ReadFile(features.DefaultFS(), "fraud_model.onnx")
	if err != nil {
		t.Fatal(err)
	}
	yaml := strings.Replace(string(src), "      home_long: float\n", "      home_long: float\n      segment: string\n", 1)
	repoFS := fstest.MapFS{"fraud.yaml": {Data: []byte(yaml)}, "fraud_model.onnx": {Data: model}}
	repo, err := features.Load(repoFS)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Limits.MaxValueBytes = 8
	n, err := New(repo, cfg, Options{RepoFS: repoFS})
	if err != nil {
		t.Fatal(err)
	}
	for format, body := range map[TableFormat]string{
		CSV:    "user_id,segment\nu1,short\nu2,much-too-long\n",
		NDJSON: `{"user_id":"u1","segment":"short"}` + "\n" + `{"user_id":"u2","segment":"much-too-long"}`,
	} {
		_, aerr := n.UploadTable("user_profile", format, []byte(body), false)
		if aerr == nil || aerr.Status != 400 || !strings.Contains(aerr.Message, "segment") || !strings.Contains(aerr.Message, "limits.max_value_bytes (8)") {
			t.Errorf("format %d: %v", format, aerr)
		}
	}
	if n.Table(0).Len() != 0 {
		t.Fatal("a refused upload changed the table")
	}
	if _, aerr := n.UploadTable("user_profile", CSV, []byte("user_id,segment\nu1,12345678\n"), false); aerr != nil {
		t.Fatalf("at the limit: %v", aerr)
	}
}

func TestInputLimitsValidated(t *testing.T) {
	for _, set := range []func(*Limits){
		func(l *Limits) { l.MaxKeyBytes = 0 },
		func(l *Limits) { l.MaxValueBytes = -1 },
		func(l *Limits) { l.MaxSpineRows = 0 },
		func(l *Limits) { l.MaxSpineBytes = 0 },
		func(l *Limits) { l.StallTimeout = 0 },
	} {
		cfg := DefaultConfig()
		set(&cfg.Limits)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "stall_timeout must be positive") {
			t.Errorf("%+v: %v", cfg.Limits, err)
		}
	}
}

// The checks on options, numbers and sizes cost the ingest path no
// allocation: validating a body (a dry run) allocates nothing.
func TestIngestValidationAllocatesNothing(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	var lines []string
	for i := 0; i < 100; i++ {
		lines = append(lines, rec(map[string]string{"amt": "3.25", "is_fraud": "0", "user_id": "12"}))
	}
	bulk := []byte(strings.Join(lines, "\n"))
	body := []byte(`{"workspace_name":"default","dry_run":true,"records":{"transactions":[{"record":` + rec(nil) + `},{"record":` + rec(nil) + `}]}}`)
	if allocs := testing.AllocsPerRun(100, func() {
		if _, err := n.IngestNDJSON("transactions", bulk, true); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("bulk ingest validation allocates %.1f times per request", allocs)
	}
	if allocs := testing.AllocsPerRun(100, func() {
		if _, err := n.IngestJSON(body); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("ingest validation allocates %.1f times per request", allocs)
	}
}

// A source named twice in "records", or an item naming "record" twice, is
// refused naming it, and nothing of the request is applied (both sources'
// records were applied, and the second "record" silently dropped).
func TestDuplicateSourceOrRecordRefused(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	one := txn("u1", "m1", "FR", 1, t0-1000)
	_, err := n.IngestJSON([]byte(`{"records":{"transactions":[` + one + `],"transactions":[` + one + `]}}`))
	if ie, ok := err.(*IngestError); !ok || ie.Code != "INVALID_REQUEST" || !strings.Contains(ie.Message, `field "transactions" appears twice`) {
		t.Errorf("a source named twice: got %v, want INVALID_REQUEST naming it", err)
	}
	r := func(amt int) string {
		return fmt.Sprintf(`{"user_id":"u1","merchant":"m1","country":"FR","amt":%d,"timestamp":%d}`, amt, t0-1)
	}
	_, err = n.IngestJSON(ingestBody(`{"record":` + r(1) + `,"record":` + r(5) + `}`))
	if ie, ok := err.(*IngestError); !ok || ie.Code != "INVALID_RECORDS" || !strings.Contains(ie.Message, `field "record" appears twice`) {
		t.Errorf("an item naming record twice: got %v, want INVALID_RECORDS naming it", err)
	}
	if got := sum1h(t, n, "u1"); got != 0 || n.AppliedIndex() != 0 {
		t.Fatalf("refused requests changed the state: u1's amt_sum_1h %v, applied index %d", got, n.AppliedIndex())
	}
}

// An integer join key is held to limits.max_key_bytes as its decimal text
// (what the views and tables keep), on the event and the table paths: it
// was not checked at all.
func TestIntegerKeySizeLimit(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Limits.MaxKeyBytes = 4
	n, _ := newTestNode(t, cfg)
	line := fmt.Sprintf(`{"user_id":123456789,"merchant":"m1","country":"FR","amt":1,"timestamp":%d}`, t0-1)
	_, err := n.IngestNDJSON("transactions", []byte(line), false)
	if err == nil || !strings.Contains(err.Error(), "limits.max_key_bytes (4)") {
		t.Errorf("bulk, an integer key of 9 digits: %v, want it refused naming limits.max_key_bytes", err)
	}
	_, err = n.IngestJSON(ingestBody(`{"record":` + line + `}`))
	if err == nil || !strings.Contains(err.Error(), "limits.max_key_bytes (4)") {
		t.Errorf("ingest, an integer key of 9 digits: %v, want it refused naming limits.max_key_bytes", err)
	}
	_, aerr := n.UploadTable("user_profile", NDJSON, []byte(`{"user_id":123456789,"home_lat":1}`), false)
	if aerr == nil || !strings.Contains(aerr.Message, "limits.max_key_bytes (4)") {
		t.Errorf("table, an integer key of 9 digits: %v, want it refused naming limits.max_key_bytes", aerr)
	}
	if n.AppliedIndex() != 0 || n.Table(0).Len() != 0 {
		t.Fatalf("refused writes were applied: index %d, table rows %d", n.AppliedIndex(), n.Table(0).Len())
	}
	// At the limit, accepted.
	if _, err := n.IngestNDJSON("transactions", []byte(strings.Replace(line, "123456789", "1234", 1)), false); err != nil {
		t.Fatalf("an integer key of 4 digits: %v", err)
	}
}

// A get-features-batch row naming a member twice is refused naming it, as
// a single lookup's params are: which of the two would be read is not for
// a client to guess (the first was read silently).
func TestBatchRowDuplicateMemberRefused(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	row := func(members string) string {
		return `{"params":{"feature_service_name":"fraud_detection","request_data":[` +
			`{"join_key_map":{"user_id":"u1","merchant":"m1","country":"FR"},"request_context_map":{"amt":1,"lat":2,"long":3}},` +
			`{` + members + `}]}}`
	}
	keys := func(u string) string { return `{"user_id":"` + u + `","merchant":"m1","country":"FR"}` }
	for _, c := range []struct{ body, mention string }{
		{row(`"join_key_map":` + keys("a") + `,"join_key_map":` + keys("b") + `,"request_context_map":{"amt":1,"lat":2,"long":3}`), `request_data[1]: field "join_key_map" appears twice`},
		{row(`"join_key_map":` + keys("a") + `,"request_context_map":{"amt":1,"lat":2,"long":3},"request_context_map":{"amt":2,"lat":2,"long":3}`), `request_data[1]: field "request_context_map" appears twice`},
	} {
		_, aerr := n.GetFeaturesBatch(nil, []byte(c.body))
		if aerr == nil || aerr.Status != 400 || !strings.Contains(aerr.Message, c.mention) {
			t.Errorf("%s: got %v, want 400 mentioning %q", c.body, aerr, c.mention)
		}
	}
}

// An option given in both its spellings (dry_run and dryRun, join_key_map
// and joinKeyMap...) is refused naming both, even when one is null: the
// snake_case one was read silently, and a null one hid the other, so
// {"dry_run": null, "dryRun": true} (a dry run, null being the same as
// leaving an option out) was applied.
func TestOptionInBothSpellingsRefused(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	one := `{"transactions":[{"record":` + rec(nil) + `}]}`
	for _, c := range []struct{ body, mention string }{
		{`{"dry_run":null,"dryRun":true,"records":` + one + `}`, `dry_run and dryRun`},
		{`{"dry_run":false,"dryRun":true,"records":` + one + `}`, `dry_run and dryRun`},
		{`{"workspace_name":"default","workspaceName":"other","records":` + one + `}`, `workspace_name and workspaceName`},
	} {
		_, err := n.IngestJSON([]byte(c.body))
		ie, ok := err.(*IngestError)
		if !ok || ie.Code != "INVALID_REQUEST" || !strings.Contains(ie.Message, c.mention) {
			t.Errorf("%s: got %v, want INVALID_REQUEST mentioning %q", c.body, err, c.mention)
		}
	}
	if n.AppliedIndex() != 0 {
		t.Fatalf("a refused request was applied (index %d)", n.AppliedIndex())
	}
	keys := func(u string) string { return `{"user_id":"` + u + `","merchant":"m1","country":"FR"}` }
	ctx := `{"amt":1,"lat":2,"long":3}`
	for _, c := range []struct{ body, mention string }{
		{`{"params":{"feature_service_name":"fraud_detection","join_key_map":` + keys("a") + `,"joinKeyMap":` + keys("b") + `,"request_context_map":` + ctx + `}}`, `join_key_map and joinKeyMap`},
		{`{"params":{"feature_service_name":"fraud_detection","join_key_map":null,"joinKeyMap":` + keys("b") + `,"request_context_map":` + ctx + `}}`, `join_key_map and joinKeyMap`},
		{`{"params":{"feature_service_name":"fraud_detection","join_key_map":` + keys("a") + `,"request_context_map":` + ctx + `,"requestContextMap":` + ctx + `}}`, `request_context_map and requestContextMap`},
		{`{"params":{"feature_service_name":"fraud_detection","featureServiceName":"fraud_detection","join_key_map":` + keys("a") + `,"request_context_map":` + ctx + `}}`, `params.feature_service_name and params.featureServiceName`},
		{`{"params":{"feature_service_name":"fraud_detection","join_key_map":` + keys("a") + `,"request_context_map":` + ctx + `,"as_of":null,"asOf":1}}`, `params.as_of and params.asOf`},
		{`{"params":{"feature_service_name":"fraud_detection","join_key_map":` + keys("a") + `,"request_context_map":` + ctx + `,"workspace_name":"default","workspaceName":"x"}}`, `params.workspace_name and params.workspaceName`},
		{`{"params":{"feature_service_name":"fraud_detection","join_key_map":` + keys("a") + `,"request_context_map":` + ctx + `,"metadata_options":{},"metadataOptions":{}}}`, `params.metadata_options and params.metadataOptions`},
		{`{"params":{"feature_service_name":"fraud_detection","join_key_map":` + keys("a") + `,"request_context_map":` + ctx + `,"metadata_options":{"include_names":false,"includeNames":true}}}`, `params.metadata_options.include_names and params.metadata_options.includeNames`},
		{`{"params":{"feature_service_name":"fraud_detection","join_key_map":` + keys("a") + `,"request_context_map":` + ctx + `,"read_level":"local","readLevel":"default"}}`, `params.read_level and params.readLevel`},
	} {
		_, aerr := n.GetFeatures(nil, []byte(c.body))
		if aerr == nil || aerr.Status != 400 || !strings.Contains(aerr.Message, c.mention) {
			t.Errorf("%s: got %v, want 400 mentioning %q", c.body, aerr, c.mention)
		}
	}
	for _, c := range []struct{ body, mention string }{
		{`{"params":{"feature_service_name":"fraud_detection","request_data":[],"requestData":[]}}`, `params.request_data and params.requestData`},
		{`{"params":{"feature_service_name":"fraud_detection","request_data":[{"join_key_map":` + keys("a") + `,"joinKeyMap":` + keys("b") + `,"request_context_map":` + ctx + `}]}}`, `request_data[0]: join_key_map and joinKeyMap`},
	} {
		_, aerr := n.GetFeaturesBatch(nil, []byte(c.body))
		if aerr == nil || aerr.Status != 400 || !strings.Contains(aerr.Message, c.mention) {
			t.Errorf("batch %s: got %v, want 400 mentioning %q", c.body, aerr, c.mention)
		}
	}
	// One spelling, or the other, is read as before.
	for _, b := range []string{
		`{"params":{"featureServiceName":"fraud_detection","joinKeyMap":` + keys("a") + `,"requestContextMap":` + ctx + `,"asOf":null}}`,
		`{"params":{"feature_service_name":"fraud_detection","join_key_map":` + keys("a") + `,"request_context_map":` + ctx + `,"metadata_options":{"includeNames":true}}}`,
	} {
		if _, aerr := n.GetFeatures(nil, []byte(b)); aerr != nil {
			t.Errorf("%s: %v", b, aerr)
		}
	}
}

// TestWriteRefusesUnknownOptions: a write's body member or query parameter
// it does not read (a misspelled option: "dryrun", "?dryrun=true",
// "?as-of=") is refused with a 400 naming it, and so is a query parameter
// given twice, and nothing is applied: before, the option was read as left
// out, so a dry run wrote its records and an upload's rows were valid from
// now.
func TestWriteRefusesUnknownOptions(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	base := serve(t, n)
	line := strings.TrimSuffix(strings.TrimPrefix(txn("u1", "m1", "FR", 5, t0-1000), `{"record":`), "}") + "\n"
	rec := txn("u1", "m1", "FR", 5, t0-1000)
	for _, c := range []struct{ path, ctype, body, want string }{
		{"/api/v1/ingest", "application/json", `{"dryrun":true,"records":{"transactions":[` + rec + `]}}`, `unknown member \"dryrun\"`},
		{"/api/v1/ingest?dry_run=true", "application/json", string(ingestBody(rec)), `unknown query parameter \"dry_run\"`},
		{"/api/v1/ingest/bulk?source=transactions&dryrun=true", "application/x-ndjson", line, `unknown query parameter \"dryrun\"`},
		{"/api/v1/ingest/bulk?source=transactions&source=clicks", "application/x-ndjson", line, `query parameter \"source\" is given twice`},
		{"/api/v1/import?source=transactions&dry-run=true", "application/x-ndjson", line, `unknown query parameter \"dry-run\"`},
		{"/api/v1/tables/user_profile?as-of=2026-01-01T00:00:00Z", "text/csv", "user_id,home_lat,home_long\nu1,1,2\n", `unknown query parameter \"as-of\"`},
	} {
		status, body := do(t, "POST", base+c.path, "", c.ctype, c.body)
		if status != 400 || !strings.Contains(body, c.want) || !strings.Contains(body, "INVALID_REQUEST") {
			t.Errorf("POST %s: %d %s; want 400 INVALID_REQUEST naming %s", c.path, status, body, c.want)
		}
	}
	if got := sum1h(t, n, "u1"); got != 0 {
		t.Errorf("u1's amt_sum_1h %v after the refusals, want 0: a refused write was applied", got)
	}
	nums, strs, ok := make([]float64, 2), make([]string, 2), make([]bool, 2)
	if n.TableNamed("user_profile").Get([]byte("u1"), nums, strs, ok) {
		t.Error("u1 has a profile: a refused upload was applied")
	}
	// The options spelled right are read.
	if status, body := do(t, "POST", base+"/api/v1/ingest/bulk?source=transactions&dry_run=true", "", "application/x-ndjson", line); status != 200 || !strings.Contains(body, `"dryRun":true`) {
		t.Errorf("a bulk dry run: %d %s", status, body)
	}
	if status, body := do(t, "POST", base+"/api/v1/ingest", "", "application/json", `{"dry_run":false,"workspace_name":"default","records":{"transactions":[`+rec+`]}}`); status != 200 {
		t.Errorf("an ingest with every option: %d %s", status, body)
	}
	if got := sum1h(t, n, "u1"); got != 5 {
		t.Errorf("u1's amt_sum_1h %v, want 5", got)
	}
}

// An escape RFC 8259 does not define (\q, a \u without four hex digits),
// a \u escape of a UTF-16 surrogate not paired, or a raw control character
// (a byte below 0x20), in a value or a member name, is refused with a 400
// on every JSON path (the lookup's quick scanner and learned skeleton
// leave any escape to fastjson), and nothing is applied; fastjson alone
// took "\q" as the text `\q`, "\u12" as itself, "\ud800" as its six bytes,
// "\ud800\u0041" as U+FFFD (the A lost) and a tab as a tab (as did the
// lookup's quick scanner). The escapes JSON has read as what they stand
// for, a surrogate pair as its character.
func TestInvalidStringsRefused(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	record := func(user, key string) string {
		return `{"` + key + `":"` + user + `","merchant":"m1","category":"c","country":"FR","amt":1,"timestamp":` + fmt.Sprint(t0-1) + `}`
	}
	get := func(user, key string) []byte {
		return []byte(`{"params":{"feature_service_name":"fraud_detection","join_key_map":{"` + key + `":"` + user + `","merchant":"m1","country":"FR"},` +
			`"request_context_map":{"amt":1,"lat":2,"long":3}}}`)
	}
	// A valid body of get's shape, so that a skeleton of it is learned
	// and reads the bodies below first.
	if _, aerr := n.GetFeatures(nil, get("u1", "user_id")); aerr != nil {
		t.Fatal(aerr)
	}
	for _, c := range []struct{ user, key, mention string }{
		{`u\q`, "user_id", `invalid escape "\\q"`},
		{`u\u12`, "user_id", `invalid escape "\\u12" at`},
		{`u\u12G4`, "user_id", `invalid escape "\\u12" at`},
		{`u\`, "user_id", ``}, // the backslash escapes the quote: unterminated
		{`u1`, `user\_id`, `invalid escape "\\_"`},
		{`u\\\x`, "user_id", `invalid escape "\\x"`},
		{"u\t1", "user_id", `raw control character U+0009 (tab) at offset`},
		{"u\r1", "user_id", `raw control character U+000D (carriage return)`},
		{"u\x001", "user_id", `raw control character U+0000`},
		{"u1", "user\x1fid", `raw control character U+001F`},
		{"u1", "user_id\t", `U+0009 (tab)`},
		{`u\ud800`, "user_id", `unpaired surrogate escape "\\ud800" at offset`},
		{`u\ud800\u0041`, "user_id", `unpaired surrogate escape "\\ud800" at offset`},
		{`u\uDC00x`, "user_id", `unpaired surrogate escape "\\uDC00" at offset`},
		{`u\ude00\ud83d`, "user_id", `unpaired surrogate escape "\\ude00" at offset`},
		{"u1", `user_id\udbff`, `unpaired surrogate escape "\\udbff" at offset`},
	} {
		what := c.key + ":" + c.user
		checkStatus := func(path string, want, status int, msg string) {
			t.Helper()
			if status != want || !strings.Contains(msg, c.mention) {
				t.Errorf("%s %s: got %d %s, want %d mentioning %s", path, what, status, msg, want, c.mention)
			}
		}
		check := func(path string, status int, msg string) { t.Helper(); checkStatus(path, 400, status, msg) }
		// A refused ingest is a 400 (ingestReply): its message, or its
		// records' reasons, say why.
		ingestCheck := func(path string, err error) {
			t.Helper()
			ie, ok := err.(*IngestError)
			if !ok {
				check(path, 0, fmt.Sprint(err))
				return
			}
			text := ie.Message
			for _, r := range ie.Records {
				text += "; " + r.Reason
			}
			check(path, 400, text)
		}
		_, err := n.IngestJSON(ingestBody(`{"record":` + record(c.user, c.key) + `}`))
		ingestCheck("ingest", err)
		_, err = n.IngestNDJSON("transactions", []byte(record(c.user, c.key)+"\n"), false)
		ingestCheck("bulk", err)
		_, err = n.ImportNDJSON("transactions", []byte(record(c.user, c.key)+"\n"), false)
		ingestCheck("import", err)
		_, aerr := n.UploadTable("user_profile", NDJSON, []byte(`{"`+c.key+`":"`+c.user+`","home_lat":1}`), false)
		if aerr == nil {
			aerr = &APIError{}
		}
		check("table", aerr.Status, aerr.Message)
		if p := n.quickParse(&lookupWork{}, get(c.user, c.key)); p != nil {
			t.Errorf("quickParse took %s", what)
		}
		_, aerr = n.GetFeatures(nil, get(c.user, c.key))
		if aerr == nil {
			aerr = &APIError{}
		}
		check("get-features", aerr.Status, aerr.Message)
		_, ferr := n.FeastOnlineFeatures(nil, []byte(`{"feature_service":"fraud_detection","entities":{"`+c.key+`":["`+c.user+`"],"merchant":["m1"],"country":["FR"]},"full_feature_names":true}`))
		if ferr == nil {
			ferr = &FeastError{}
		}
		// Feast answers a body that is not JSON with its 422.
		checkStatus("feast get-online-features", 422, ferr.Status, ferr.Error())
		_, ferr = n.FeastPush([]byte(`{"push_source_name":"transactions","df":{"` + c.key + `":["` + c.user + `"],"merchant":["m1"],"category":["c"],"country":["FR"],"amt":[1],"timestamp":[` + fmt.Sprint(t0-1) + `]}}`))
		if ferr == nil {
			ferr = &FeastError{}
		}
		checkStatus("feast push", 422, ferr.Status, ferr.Error())
	}
	if n.AppliedIndex() != 0 {
		t.Fatalf("a refused request was applied (index %d)", n.AppliedIndex())
	}
	// The escapes JSON defines are read: u\u0031 and u\/ are u1 and u/,
	// and a surrogate pair is the character it encodes.
	if _, err := n.IngestNDJSON("transactions", []byte(record(`u\u0031`, "user_id")+"\n"+record(`u\/`, "user_id")+"\n"+record(`u\ud83d\uDE00`, "user_id")), false); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"u1", "u/", "u\U0001F600"} {
		if v := mustGet(t, n, lookupBody(u, "m1", "FR", 1, 2, 3))["user_transaction_counts.amt_count_1h"].v; v != 1.0 {
			t.Errorf("%s after escaped writes: count %v, want 1", u, v)
		}
	}
}

// Text that is not UTF-8 (RFC 8259 requires it), in a value or a member
// name, is refused with a 400 naming where (the byte offset, and the row or
// line of a bulk body) on every JSON path, the lookup's quick scanner and
// its learned skeletons included, and nothing is applied: a join key of
// such bytes was stored, and written out later as a string no Parquet,
// Delta or Spark reader takes. Valid multi-byte text is read as before.
func TestInvalidUTF8Refused(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	record := func(user, key string) string {
		return `{"` + key + `":"` + user + `","merchant":"m1","category":"c","country":"FR","amt":1,"timestamp":` + fmt.Sprint(t0-1) + `}`
	}
	get := func(user, key string) []byte {
		return []byte(`{"params":{"feature_service_name":"fraud_detection","join_key_map":{"` + key + `":"` + user + `","merchant":"m1","country":"FR"},` +
			`"request_context_map":{"amt":1,"lat":2,"long":3}}}`)
	}
	// A valid body of get's shape, so that a skeleton of it is learned
	// and reads the bodies below first.
	if _, aerr := n.GetFeatures(nil, get("u1", "user_id")); aerr != nil {
		t.Fatal(aerr)
	}
	for _, c := range []struct{ user, key, mention string }{
		{"u\xff", "user_id", `invalid UTF-8 (byte 0xff) at offset`},
		{"u\xc3", "user_id", `invalid UTF-8 (byte 0xc3) at offset`},                                // cut short
		{"\xc0\xafetc", "user_id", `invalid UTF-8 (byte 0xc0) at offset`},                          // overlong
		{"u\xed\xa0\x80", "user_id", `invalid UTF-8 (byte 0xed) at offset`},                        // a surrogate
		{"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\x80", "user_id", `invalid UTF-8 (byte 0x80) at offset`}, // after valid é
		{"u1", "user\xfeid", `invalid UTF-8 (byte 0xfe) at offset`},
	} {
		what := fmt.Sprintf("%q:%q", c.key, c.user)
		checkStatus := func(path string, want, status int, msg string) {
			t.Helper()
			if status != want || !strings.Contains(msg, c.mention) {
				t.Errorf("%s %s: got %d %s, want %d mentioning %s", path, what, status, msg, want, c.mention)
			}
		}
		check := func(path string, status int, msg string) { t.Helper(); checkStatus(path, 400, status, msg) }
		ingestCheck := func(path string, err error) {
			t.Helper()
			ie, ok := err.(*IngestError)
			if !ok {
				check(path, 0, fmt.Sprint(err))
				return
			}
			text := ie.Message
			for _, r := range ie.Records {
				text += fmt.Sprintf("; record %d: %s", r.Index, r.Reason)
			}
			check(path, 400, text)
		}
		_, err := n.IngestJSON(ingestBody(`{"record":` + record(c.user, c.key) + `}`))
		ingestCheck("ingest", err)
		// The bad record is the second line: the refusal names it.
		lines := []byte(record("u1", "user_id") + "\n" + record(c.user, c.key) + "\n")
		_, err = n.IngestNDJSON("transactions", lines, false)
		ingestCheck("bulk", err)
		if ie, ok := err.(*IngestError); ok && (len(ie.Records) != 1 || ie.Records[0].Index != 1) {
			t.Errorf("bulk %s: refused records %+v, want line 1 alone", what, ie.Records)
		}
		_, err = n.ImportNDJSON("transactions", lines, false)
		ingestCheck("import", err)
		_, aerr := n.UploadTable("user_profile", NDJSON, []byte(`{"user_id":"u0","home_lat":1}`+"\n"+`{"`+c.key+`":"`+c.user+`","home_lat":1}`), false)
		if aerr == nil {
			aerr = &APIError{}
		}
		check("table", aerr.Status, aerr.Message)
		if !strings.Contains(aerr.Message, "line 2") {
			t.Errorf("table %s: %s, want it to name line 2", what, aerr.Message)
		}
		if p := n.quickParse(&lookupWork{}, get(c.user, c.key)); p != nil {
			t.Errorf("quickParse took %s", what)
		}
		for name, lookup := range map[string]func([]byte) *APIError{
			"get-features": func(b []byte) *APIError { _, aerr := n.GetFeatures(nil, b); return aerr },
			"predict":      func(b []byte) *APIError { _, aerr := n.Predict(nil, b); return aerr },
		} {
			aerr = lookup(get(c.user, c.key))
			if aerr == nil {
				aerr = &APIError{}
			}
			check(name, aerr.Status, aerr.Message)
		}
		_, aerr = n.GetFeaturesBatch(nil, []byte(`{"params":{"feature_service_name":"fraud_detection","request_data":[{"join_key_map":{"`+c.key+`":"`+c.user+`","merchant":"m1","country":"FR"},"request_context_map":{"amt":1,"lat":2,"long":3}}]}}`))
		if aerr == nil {
			aerr = &APIError{}
		}
		check("get-features-batch", aerr.Status, aerr.Message)
		_, ferr := n.FeastOnlineFeatures(nil, []byte(`{"feature_service":"fraud_detection","entities":{"`+c.key+`":["`+c.user+`"],"merchant":["m1"],"country":["FR"],"amt":[1],"lat":[2],"long":[3]},"full_feature_names":true}`))
		if ferr == nil {
			ferr = &FeastError{}
		}
		// Feast answers a body that is not JSON with its 422.
		checkStatus("feast get-online-features", 422, ferr.Status, ferr.Error())
		df := `{"` + c.key + `":["` + c.user + `"],"merchant":["m1"],"category":["c"],"country":["FR"],"amt":[1],"timestamp":[` + fmt.Sprint(t0-1) + `]}`
		_, ferr = n.FeastPush([]byte(`{"push_source_name":"transactions","df":` + df + `}`))
		if ferr == nil {
			ferr = &FeastError{}
		}
		checkStatus("feast push", 422, ferr.Status, ferr.Error())
		_, ferr = n.FeastWriteToOnlineStore([]byte(`{"feature_view_name":"transactions_events","df":` + df + `}`))
		if ferr == nil {
			ferr = &FeastError{}
		}
		checkStatus("feast write-to-online-store", 422, ferr.Status, ferr.Error())
	}
	if n.AppliedIndex() != 0 {
		t.Fatalf("a refused request was applied (index %d)", n.AppliedIndex())
	}
	// Valid multi-byte UTF-8 is taken, by the quick scanner too.
	for _, u := range []string{"ü", "Zürich-😀-✓-longer than eight bytes"} {
		if _, err := n.IngestNDJSON("transactions", []byte(record(u, "user_id")), false); err != nil {
			t.Fatal(err)
		}
		if p := n.quickParse(&lookupWork{}, get(u, "user_id")); p == nil {
			t.Errorf("quickParse left %q to fastjson", u)
		}
		if v := mustGet(t, n, get(u, "user_id"))["user_transaction_counts.amt_count_1h"].v; v != 1.0 {
			t.Errorf("%s: count %v, want 1", u, v)
		}
	}
}

// Over HTTP, invalid UTF-8 is the project's 400 JSON error.
func TestInvalidUTF8RefusedOverHTTP(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	base := serve(t, n)
	bad := "u\xff"
	record := `{"user_id":"` + bad + `","merchant":"m1","category":"c","country":"FR","amt":1,"timestamp":` + fmt.Sprint(t0-1) + `}`
	for path, body := range map[string]string{
		"/api/v1/ingest": `{"records":{"transactions":[{"record":` + record + `}]}}`,
		"/api/v1/ingest/bulk?source=transactions": record + "\n",
		"/api/v1/feature-service/get-features":    `{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"` + bad + `","merchant":"m1","country":"FR"},"request_context_map":{"amt":1,"lat":2,"long":3}}}`,
		"/push":                                   `{"push_source_name":"transactions","df":{"user_id":["` + bad + `"],"merchant":["m1"],"category":["c"],"country":["FR"],"amt":[1],"timestamp":[` + fmt.Sprint(t0-1) + `]}}`,
	} {
		status, got := do(t, "POST", base+path, "", "", body)
		want := 400
		if path == "/push" {
			want = 422 // Feast's answer to a body that is not JSON
		}
		if status != want || !strings.Contains(got, "invalid UTF-8") {
			t.Errorf("%s: %d %s, want %d naming invalid UTF-8", path, status, got, want)
		}
		if want == 400 && !strings.Contains(got, `{"error":{"code":`) {
			t.Errorf("%s: %s, want the JSON error body", path, got)
		}
	}
	if n.AppliedIndex() != 0 {
		t.Fatalf("a refused request was applied (index %d)", n.AppliedIndex())
	}
}

// TestMembersNamedEmptyRefused: a member named "" is a member like any
// other. An ingest body's was taken for no unknown member at all (the
// name was the "none" answer), so {"":.,"records":{}} was accepted, its
// unread value not even JSON (FuzzIngestJSON found it); a record's field,
// a join key and a request-context key named "" were refused, but as keys
// "given twice".
func TestMembersNamedEmptyRefused(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	before := n.AppliedIndex()
	for _, c := range []struct{ body, mention string }{
		{`{"":1,"records":{}}`, `unknown member ""`},
		{`{"":.,"records":{}}`, `unknown member ""`},
		{`{"records":{"transactions":[{"record":` + strings.TrimSuffix(rec(nil), "}") + `,"":1}}]}}`, `unknown field ""`},
	} {
		if _, err := n.IngestJSON([]byte(c.body)); err == nil || !strings.Contains(err.Error(), c.mention) {
			t.Errorf("ingest %s: %v, want an error mentioning %q", c.body, err, c.mention)
		}
	}
	if after := n.AppliedIndex(); after != before {
		t.Fatalf("refused ingests moved the applied index %d -> %d", before, after)
	}
	keys := `"user_id":"u1","merchant":"m1","country":"FR"`
	for _, c := range []struct{ body, mention string }{
		{`{"params":{"feature_service_name":"fraud_detection","join_key_map":{` + keys + `,"":"x"},"request_context_map":{"amt":1,"lat":2,"long":3}}}`, `join_key_map has unknown key ""`},
		{`{"params":{"feature_service_name":"fraud_detection","join_key_map":{` + keys + `},"request_context_map":{"amt":1,"lat":2,"long":3,"":4}}}`, `request_context_map has unknown key ""`},
	} {
		if _, aerr := n.GetFeatures(nil, []byte(c.body)); aerr == nil || aerr.Status != 400 || !strings.Contains(aerr.Message, c.mention) {
			t.Errorf("lookup %s: %v, want 400 mentioning %q", c.body, aerr, c.mention)
		}
	}
}

// TestNDJSONLinesTakeJSONWhitespaceOnly: a line of an NDJSON body may
// carry JSON's whitespace around its value (space, tab, carriage return),
// nothing else: a form feed, a vertical tab or a no-break space after the
// value makes the line no JSON text, and bytes.TrimSpace cut them, so the
// bulk, import and table paths took such lines (FuzzIngestNDJSON found the
// form feed).
func TestNDJSONLinesTakeJSONWhitespaceOnly(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	before := n.AppliedIndex()
	for _, tail := range []string{"\f", "\v", "\u00a0", "\u0085"} {
		line := rec(nil) + tail + "\n"
		if _, err := n.IngestNDJSON("transactions", []byte(line), false); err == nil {
			t.Errorf("bulk ingest took a line ending in %q", tail)
		}
		if _, err := n.ImportNDJSON("transactions", []byte(line), false); err == nil {
			t.Errorf("import took a line ending in %q", tail)
		}
		if _, aerr := n.UploadTable("user_profile", NDJSON, []byte(`{"user_id":"u1","home_lat":1}`+tail+"\n"), false); aerr == nil {
			t.Errorf("table upload took a line ending in %q", tail)
		}
	}
	if after := n.AppliedIndex(); after != before {
		t.Fatalf("refused bodies moved the applied index %d -> %d", before, after)
	}
	if _, err := n.IngestNDJSON("transactions", []byte(" \t"+rec(nil)+" \r\n"), false); err != nil {
		t.Fatalf("a line with JSON's whitespace around its value: %v", err)
	}
}

// TestUnknownMemberNamedFirst: a write body's, a record's, a join_key_map's
// and a request_context_map's refusal of members it does not take names
// the first of them, in the body's order, with what it takes instead.
func TestUnknownMemberNamedFirst(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	before := n.AppliedIndex()
	rec := strings.TrimSuffix(rec(nil), "}")
	for _, c := range []struct{ body, want string }{
		{`{"records":{},"dryrun":true,"":1}`, `unknown member "dryrun": an ingest body takes records, dry_run (dryRun) and workspace_name (workspaceName); nothing was ingested`},
		{`{"records":{"transactions":[{"record":` + rec + `,"amount":1,"":2}}]}}`, `unknown field "amount": source transactions has fields timestamp, user_id, merchant, category, amt, country, lat, long, is_fraud`},
		{`{"records":{"transactions":[{"record":` + rec + `,"amt":2}}]}}`, `field "amt" appears twice`},
	} {
		_, err := n.IngestJSON([]byte(c.body))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ingest %s: %v, want an error with %q", c.body, err, c.want)
		}
	}
	if after := n.AppliedIndex(); after != before {
		t.Fatalf("refused ingests moved the applied index %d -> %d", before, after)
	}
	keys := `"user_id":"u1","merchant":"m1","country":"FR"`
	for _, c := range []struct{ body, code, want string }{
		{`{"params":{"feature_service_name":"fraud_detection","join_key_map":{"usr":"u2",` + keys + `,"":"x"},"request_context_map":{"amt":1,"lat":2,"long":3}}}`,
			"UNKNOWN_JOIN_KEY", `join_key_map has unknown key "usr": service fraud_detection takes user_id, merchant, country`},
		{`{"params":{"feature_service_name":"fraud_detection","join_key_map":{` + keys + `},"request_context_map":{"amt":1,"":0,"lat":2,"long":3,"la":4}}}`,
			"UNKNOWN_REQUEST_CONTEXT", `request_context_map has unknown key "": service fraud_detection takes amt, lat, long`},
	} {
		_, aerr := n.GetFeatures(nil, []byte(c.body))
		if aerr == nil || aerr.Status != 400 || aerr.Code != c.code || aerr.Message != c.want {
			t.Errorf("lookup %s: %v, want 400 %s %q", c.body, aerr, c.code, c.want)
		}
	}
}
