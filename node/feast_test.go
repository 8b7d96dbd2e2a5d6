package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"
	"unicode/utf8"

	"github.com/tally-ml/tally/features"
)

type feastResponse struct {
	Metadata struct {
		FeatureNames []string `json:"feature_names"`
	} `json:"metadata"`
	Results []struct {
		Values          []any    `json:"values"`
		Statuses        []string `json:"statuses"`
		EventTimestamps []string `json:"event_timestamps"`
	} `json:"results"`
}

func decodeFeast(t testing.TB, body []byte) feastResponse {
	t.Helper()
	var r feastResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("response is not JSON: %v\n%s", err, body)
	}
	if len(r.Results) != len(r.Metadata.FeatureNames) {
		t.Fatalf("%d results for %d feature names:\n%s", len(r.Results), len(r.Metadata.FeatureNames), body)
	}
	return r
}

// feastStatus is the Feast status get-features' answer maps to.
func feastStatus(name, tallyStatus string, tableRow bool) string {
	switch {
	case tallyStatus == "PRESENT":
		return "PRESENT"
	case strings.HasPrefix(name, "user_profile.") && !tableRow:
		return "NOT_FOUND"
	}
	return "NULL_VALUE"
}

// seedFeast ingests events for u1 and u2 (not u3) and a profile for u1 only.
func seedFeast(t *testing.T, n *Node) {
	t.Helper()
	if _, err := n.IngestJSON(ingestBody(txn("u1", "m1", "FR", 10, t0-30_000), txn("u1", "m2", "FR", 30, t0-10_000),
		txn("u2", "m1", "DE", 7.5, t0-5_000))); err != nil {
		t.Fatal(err)
	}
	if _, aerr := n.UploadTable("user_profile", CSV, []byte("user_id,home_lat,home_long\nu1,48.85,2.35\n"), false); aerr != nil {
		t.Fatal(aerr)
	}
}

// Every feature of every row equals get-features' answer for the same keys,
// with statuses mapped: PRESENT, a table without a row NOT_FOUND, any other
// missing value NULL_VALUE.
func TestFeastOnlineFeaturesMatchGetFeatures(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	seedFeast(t, n)
	type row struct {
		user, merchant, country string
		amt, lat, long          float64
	}
	rows := []row{{"u1", "m1", "FR", 80, 51.5, -0.12}, {"u2", "m1", "DE", 15, 52.5, 13.4}, {"nobody", "m9", "ZZ", 1, 0, 0}}
	var cols [6][]string
	for _, r := range rows {
		for i, v := range []any{r.user, r.merchant, r.country, r.amt, r.lat, r.long} {
			b, _ := json.Marshal(v)
			cols[i] = append(cols[i], string(b))
		}
	}
	entities := fmt.Sprintf(`{"user_id":[%s],"merchant":[%s],"country":[%s],"amt":[%s],"lat":[%s],"long":[%s]}`,
		strings.Join(cols[0], ","), strings.Join(cols[1], ","), strings.Join(cols[2], ","), strings.Join(cols[3], ","), strings.Join(cols[4], ","), strings.Join(cols[5], ","))
	out, ferr := n.FeastOnlineFeatures(nil, []byte(`{"feature_service":"fraud_detection","entities":`+entities+`,"full_feature_names":true}`))
	if ferr != nil {
		t.Fatalf("get-online-features: %s", ferr.body())
	}
	resp := decodeFeast(t, out)
	if got := resp.Metadata.FeatureNames[:3]; !reflect.DeepEqual(got, []string{"user_id", "merchant", "country"}) {
		t.Fatalf("entity columns %v, want the join keys in request order", got)
	}
	for ri, r := range rows {
		want := mustGet(t, n, lookupBody(r.user, r.merchant, r.country, r.amt, r.lat, r.long))
		if len(want)+3 != len(resp.Results) {
			t.Fatalf("%d feature columns, get-features has %d", len(resp.Results)-3, len(want))
		}
		if resp.Results[0].Values[ri] != r.user || resp.Results[0].Statuses[ri] != "PRESENT" {
			t.Fatalf("row %d: entity column %v %v", ri, resp.Results[0].Values[ri], resp.Results[0].Statuses[ri])
		}
		for ci, name := range resp.Metadata.FeatureNames[3:] {
			tallyName := strings.Replace(name, "__", ".", 1)
			w, ok := want[tallyName]
			if !ok {
				t.Fatalf("feature %s (tally %s) is not in get-features' answer", name, tallyName)
			}
			res := resp.Results[ci+3]
			if !reflect.DeepEqual(res.Values[ri], w.v) {
				t.Errorf("row %d %s: Feast API %v, get-features %v", ri, name, res.Values[ri], w.v)
			}
			if st := feastStatus(tallyName, w.status, r.user == "u1"); res.Statuses[ri] != st {
				t.Errorf("row %d %s: status %s, want %s (get-features %s)", ri, name, res.Statuses[ri], st, w.status)
			}
			wantTS := "2026-11-25T00:00:00Z"
			if res.Statuses[ri] == "NOT_FOUND" {
				wantTS = "1970-01-01T00:00:00Z"
			}
			if res.EventTimestamps[ri] != wantTS {
				t.Errorf("row %d %s: event timestamp %s, want %s", ri, name, res.EventTimestamps[ri], wantTS)
			}
		}
	}
	if resp.Results[3].Values[0] != float64(2) || resp.Results[3].Values[2] != float64(0) {
		t.Fatalf("u1's amt_count_1m %v (want 2), nobody's %v (want 0)", resp.Results[3].Values[0], resp.Results[3].Values[2])
	}
}

// Features named as Feast names them, short names, a request-time feature
// whose inputs come in entities, integer join keys, and no rows.
func TestFeastFeatureList(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	seedFeast(t, n)
	body := `{"features":["user_transaction_amounts:amt_sum_1h","transaction_request:amt_to_user_mean_1d","user_profile.home_lat"],
		"entities":{"amt":[40,null],"user_id":["u1",7],"lat":[0,0],"long":[0,0]}}`
	out, ferr := n.FeastOnlineFeatures(nil, []byte(body))
	if ferr != nil {
		t.Fatalf("get-online-features: %s", ferr.body())
	}
	r := decodeFeast(t, out)
	if want := []string{"user_id", "amt_sum_1h", "amt_to_user_mean_1d", "home_lat"}; !reflect.DeepEqual(r.Metadata.FeatureNames, want) {
		t.Fatalf("names %v, want %v (request data is not echoed)", r.Metadata.FeatureNames, want)
	}
	if got := r.Results[0].Values; !reflect.DeepEqual(got, []any{"u1", float64(7)}) {
		t.Fatalf("entity column %v", got)
	}
	if r.Results[1].Values[0] != float64(40) || r.Results[2].Values[0] != float64(2) || r.Results[3].Values[0] != 48.85 {
		t.Fatalf("u1: %v %v %v, want 40 2 48.85", r.Results[1].Values[0], r.Results[2].Values[0], r.Results[3].Values[0])
	}
	if got := []string{r.Results[1].Statuses[1], r.Results[2].Statuses[1], r.Results[3].Statuses[1]}; !reflect.DeepEqual(got, []string{"PRESENT", "NULL_VALUE", "NOT_FOUND"}) {
		t.Fatalf("user 7 statuses %v", got)
	}
	out, ferr = n.FeastOnlineFeatures(nil, []byte(`{"features":["user_transaction_counts:amt_count_1m"],"entities":{"user_id":[]}}`))
	if ferr != nil {
		t.Fatalf("no rows: %s", ferr.body())
	}
	if r := decodeFeast(t, out); len(r.Results[1].Values) != 0 {
		t.Fatalf("no rows answered %v", r.Results[1].Values)
	}
}

// feastErr decodes Feast's error body: the JSON string of {"module",
// "class", "message"}, or FastAPI's 422 detail.
func feastErr(t *testing.T, body string) (class, msg string) {
	t.Helper()
	var inner string
	if err := json.Unmarshal([]byte(body), &inner); err == nil {
		var m map[string]string
		if err := json.Unmarshal([]byte(inner), &m); err != nil || m["module"] != "feast.errors" {
			t.Fatalf("error detail %q is not Feast's {module, class, message}", inner)
		}
		return m["class"], m["message"]
	}
	var d struct {
		Detail []struct {
			Loc []string `json:"loc"`
			Msg string   `json:"msg"`
		} `json:"detail"`
	}
	if err := json.Unmarshal([]byte(body), &d); err != nil || len(d.Detail) != 1 {
		t.Fatalf("error body %q is neither Feast's error detail nor a 422 detail", body)
	}
	return "422", d.Detail[0].Msg
}

func TestFeastHTTPErrors(t *testing.T) {
	cfg := DefaultConfig()
	cfg.APIKeys = []APIKey{{Name: "producer", Key: ingestKey, Scopes: []string{"ingest"}}, {Name: "model", Key: readKey, Scopes: []string{"read"}}}
	n, _ := newTestNode(t, cfg)
	base := serve(t, n)
	ok := `{"features":["user_transaction_counts:amt_count_1m"],"entities":{"user_id":["u1"]}}`
	cases := []struct {
		path, auth, body string
		status           int
		class, msg       string
	}{
		{"/get-online-features", "Bearer " + readKey, ok, 200, "", ""},
		{"/get-online-features", "", ok, 401, "", ""},
		{"/get-online-features", "Bearer " + ingestKey, ok, 403, "", ""},
		{"/get-online-features", "Bearer " + readKey, `{"features":["nope:x"],"entities":{"user_id":["u1"]}}`, 404, "FeatureViewNotFoundException", "Feature view nope does not exist"},
		{"/get-online-features", "Bearer " + readKey, `{"features":["user_transaction_counts:zz"],"entities":{"user_id":["u1"]}}`, 404, "FeastObjectNotFoundException", "amt_count_1m"},
		{"/get-online-features", "Bearer " + readKey, `{"features":["user_transaction_counts"],"entities":{"user_id":["u1"]}}`, 400, "FeastError", "Invalid feature reference"},
		{"/get-online-features", "Bearer " + readKey, `{"feature_service":"nope","entities":{"user_id":["u1"]}}`, 404, "FeatureServiceNotFoundException", "fraud_detection"},
		{"/get-online-features", "Bearer " + readKey, `{"feature_service":"fraud_detection","entities":{"user_id":["u1"]}}`, 400, "FeatureNameCollisionError", "amt_count_5m"},
		{"/get-online-features", "Bearer " + readKey, `{"features":["user_transaction_counts:amt_count_1m"],"entities":{"user":["u1"]}}`, 404, "EntityNotFoundException", "Entity user does not exist"},
		{"/get-online-features", "Bearer " + readKey, `{"features":["user_transaction_counts:amt_count_1m"],"entities":{}}`, 400, "FeastError", "Missing join key values for keys: user_id"},
		{"/get-online-features", "Bearer " + readKey, `{"features":["transaction_request:amt_to_user_mean_1d"],"entities":{"user_id":["u1"]}}`, 404, "RequestDataNotFoundInEntityRowsException", "amt"},
		{"/get-online-features", "Bearer " + readKey, `{"features":["user_transaction_counts:amt_count_1m","merchant_transaction_counts:amt_count_5m"],"entities":{"user_id":["u1","u2"],"merchant":["m1"]}}`, 400, "FeastError", "same columns"},
		{"/get-online-features", "Bearer " + readKey, `{"features":["user_transaction_counts:amt_count_1m"],"entities":{"user_id":[{"a":1}]}}`, 400, "FeastError", "string or an integer"},
		{"/get-online-features", "Bearer " + readKey, `{"features":["user_transaction_counts:amt_count_1m"],"entities":{"user_id":"u1"}}`, 422, "422", "entities.user_id must be a list"},
		{"/get-online-features", "Bearer " + readKey, `{"features":"user_transaction_counts:amt_count_1m","entities":{"user_id":["u1"]}}`, 422, "422", "features must be a list"},
		{"/get-online-features", "Bearer " + readKey, `{"entities":`, 422, "422", "JSON"},
		{"/get-online-features", "Bearer " + readKey, `{"features":["user_transaction_counts:amt_count_1m"],"entities":{"user_id":["u1"]},"full_feature_names":"yes"}`, 422, "422", "true or false"},
		{"/push", "Bearer " + readKey, `{"push_source_name":"transactions","df":{}}`, 403, "", ""},
		{"/push", "Bearer " + ingestKey, `{"push_source_name":"clicks","df":{}}`, 422, "PushSourceNotFoundException", "Unable to find push source 'clicks'"},
		{"/push", "Bearer " + ingestKey, `{"push_source_name":"transactions","df":{},"to":"offline"}`, 400, "FeastError", "offline"},
		{"/push", "Bearer " + ingestKey, `{"push_source_name":"transactions","df":{"user_id":["u1"],"timestamp":["2026-11-24T23:59:00"],"amt":["ten"]}}`, 400, "FeastError", "INVALID_RECORDS"},
		{"/push", "Bearer " + ingestKey, `{"push_source_name":"transactions","df":{"user_id":["u1","u2"],"amt":[1]}}`, 400, "DataFrameSerializationError", "one value per row"},
		{"/write-to-online-store", "Bearer " + ingestKey, `{"feature_view_name":"user_transaction_counts","df":{}}`, 404, "FeatureViewNotFoundException", "events view"},
	}
	for _, c := range cases {
		status, body := do(t, "POST", base+c.path, c.auth, "application/json", c.body)
		if status != c.status {
			t.Errorf("%s %s: status %d, want %d: %s", c.path, c.body, status, c.status, body)
			continue
		}
		if c.class == "" {
			continue
		}
		class, msg := feastErr(t, body)
		if class != c.class || !strings.Contains(msg, c.msg) {
			t.Errorf("%s %s: %s %q, want %s containing %q", c.path, c.body, class, msg, c.class, c.msg)
		}
	}
	if n.AppliedIndex() != 0 {
		t.Fatalf("refused pushes applied something: index %d", n.AppliedIndex())
	}
	if status, body := do(t, "GET", base+"/health", "", "", ""); status != 200 {
		t.Fatalf("GET /health: %d %s", status, body)
	}
}

// An acknowledged push (Feast's /push, and /write-to-online-store as the
// Feast SDK's FeatureStore.push sends it) is visible to the next lookup.
func TestFeastPushVisible(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	base := serve(t, n)
	count := func(user string) any {
		t.Helper()
		status, body := do(t, "POST", base+"/get-online-features", "", "application/json",
			`{"features":["user_transaction_counts:amt_count_1h","user_transaction_amounts:amt_sum_1h"],"entities":{"user_id":["`+user+`"]}}`)
		if status != 200 {
			t.Fatalf("lookup: %d %s", status, body)
		}
		r := decodeFeast(t, []byte(body))
		return []any{r.Results[1].Values[0], r.Results[2].Values[0]}
	}
	ts := time.UnixMilli(t0 - 60_000).UTC()
	push := fmt.Sprintf(`{"push_source_name":"transactions","to":"online","df":{"user_id":["p1","p1"],"merchant":["m1","m2"],"category":["a","b"],
		"amt":[2.5,4],"country":["FR","FR"],"lat":[1,1],"long":[2,2],"is_fraud":[0,1],"timestamp":[%q,%q]}}`,
		ts.Format("2006-01-02 15:04:05"), ts.Format(time.RFC3339))
	if status, body := do(t, "POST", base+"/push", "", "application/json", push); status != 200 || body != "" {
		t.Fatalf("push: %d %q", status, body)
	}
	if got := count("p1"); !reflect.DeepEqual(got, []any{float64(2), 6.5}) {
		t.Fatalf("after /push: count, sum %v, want 2, 6.5", got)
	}
	write := fmt.Sprintf(`{"feature_view_name":"transactions_events","allow_registry_cache":false,"df":{"user_id":["p1"],"merchant":["m3"],"country":["FR"],
		"category":["c"],"amt":[1.5],"lat":[1],"long":[2],"is_fraud":[0],"event_timestamp":[%q],"created":[null]}}`, ts.Format("2006-01-02T15:04:05.000000"))
	if status, body := do(t, "POST", base+"/write-to-online-store", "", "application/json", write); status != 200 {
		t.Fatalf("write-to-online-store: %d %s", status, body)
	}
	if got := count("p1"); !reflect.DeepEqual(got, []any{float64(3), float64(8)}) {
		t.Fatalf("after write-to-online-store: count, sum %v, want 3, 8", got)
	}
}

func TestUTCTimestamp(t *testing.T) {
	for in, want := range map[string]string{
		"2026-11-27 02:25:21":           "2026-11-27T02:25:21Z",
		"2026-11-27T02:25:21.5":         "2026-11-27T02:25:21.5Z",
		"2026-11-27T02:25:21Z":          "2026-11-27T02:25:21Z",
		"2026-11-27T02:25:21.1+02:00":   "2026-11-27T02:25:21.1+02:00",
		"2026-11-27T02:25:21.123-05:00": "2026-11-27T02:25:21.123-05:00",
		"yesterday":                     "yesterday",
	} {
		if got := utcTimestamp(in); got != want {
			t.Errorf("utcTimestamp(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzFeastOnlineFeatures: any body is answered (a response with one result
// per name, each with one value per row) or refused; never a panic.
func FuzzFeastOnlineFeatures(f *testing.F) {
	n := fuzzNode(f)
	f.Add([]byte(`{"features":["user_transaction_counts:amt_count_1m","transaction_request:amt_to_user_mean_1d"],"entities":{"user_id":["u1",2],"amt":[1,null]}}`))
	f.Add([]byte(`{"feature_service":"fraud_detection","full_feature_names":true,"entities":{"user_id":["u"],"merchant":["m"],"country":["c"],"amt":[1],"lat":[0],"long":[0]}}`))
	f.Add([]byte(`{"features":["user_profile.home_lat"],"entities":{"user_id":[]},"include_feature_view_version_metadata":true}`))
	f.Add([]byte(`{"features":["a:b:c"],"entities":{"user_id":[01]}}`))
	f.Add([]byte("{\"features\":[\"user_transaction_counts:amt_count_1m\"],\"entities\":{\"user_id\":[\"u\xff\",\"\xc3\xa9\"]}}"))
	f.Add([]byte(`{"features":["user_transaction_counts:amt_count_1m"],"entities":{"user_id":["u\ud800\u0041","\ud83d\ude00"]}}`))
	f.Add([]byte(`{"features":["transaction_request:amt_to_user_mean_1d"],"entities":{"user_id":["u1","u2"],"amt":[NaN,1],"lat":[0,NaN],"long":[0,0]},"extra":NaN}`))
	f.Add([]byte(`{"features":["transaction_request:amt_to_user_mean_1d"],"entities":{"user_id":["u1","Infinity"],"amt":[Infinity,-Infinity],"lat":[0,1Infinity],"long":[0,0]},"extra":-Infinity}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		out, ferr := n.FeastOnlineFeatures(nil, body)
		if ferr == nil && !utf8.Valid(body) {
			t.Fatalf("answered a body that is not UTF-8: %q", body)
		}
		if ferr != nil {
			if ferr.Status < 400 || ferr.Status > 499 || len(ferr.body()) == 0 {
				t.Fatalf("refusal %d %q", ferr.Status, ferr.body())
			}
			return
		}
		var r feastResponse
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("answer is not JSON: %v\n%s", err, out)
		}
		if len(r.Results) != len(r.Metadata.FeatureNames) {
			t.Fatalf("%d results for %d names", len(r.Results), len(r.Metadata.FeatureNames))
		}
		for _, res := range r.Results {
			if len(res.Values) != len(r.Results[0].Values) || len(res.Statuses) != len(res.Values) || len(res.EventTimestamps) != len(res.Values) {
				t.Fatalf("ragged columns: %s", out)
			}
		}
	})
}

// FuzzFeastPush: a push is applied whole or refused without changing
// anything.
func FuzzFeastPush(f *testing.F) {
	n := fuzzNode(f)
	f.Add([]byte(`{"push_source_name":"transactions","df":{"user_id":["u"],"merchant":["m"],"country":["FR"],"amt":[1],"timestamp":["2026-11-24 23:59:00"]}}`))
	f.Add([]byte(`{"push_source_name":"transactions","df":{"user_id":["u"],"event_timestamp":[1795564799000],"created":[null]},"to":"online_and_offline"}`))
	f.Add([]byte(`{"push_source_name":"x","df":[]}`))
	f.Add([]byte(`{"push_source_name":"transactions","df":{"user_id":["u","u"],"merchant":["m","m"],"country":["FR","FR"],"amt":[NaN,1],"is_fraud":[1.0,NaN],"category":[NaN,"a"],"timestamp":["2026-11-24 23:59:00",NaN]}}`))
	f.Add([]byte("{\"push_source_name\":\"transactions\",\"df\":{\"user_id\":[\"u\xc3\"],\"event_timestamp\":[1795564799000],\"created\":[NaN]},\"extra\":01}"))
	f.Add([]byte(`{"push_source_name":"transactions","df":{"user_id":["u\udc00"],"event_timestamp":[1795564799000],"created":[null]}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		before := n.AppliedIndex()
		_, ferr := n.FeastPush(body)
		if ferr == nil && !utf8.Valid(body) {
			t.Fatalf("pushed a body that is not UTF-8: %q", body)
		}
		if after := n.AppliedIndex(); ferr != nil && after != before {
			t.Fatalf("refused push (%s) changed the applied index %d -> %d", ferr.Message, before, after)
		}
	})
}

// A Feast lookup (a feature service, or a feature list already asked for)
// allocates nothing in steady state, as get-features.
func TestFeastLookupAllocs(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	seedFeast(t, n)
	dst := make([]byte, 0, 8192)
	for _, b := range []string{
		`{"feature_service":"fraud_detection","full_feature_names":true,"entities":{"user_id":["u1","u2"],"merchant":["m1","m1"],"country":["FR","DE"],"amt":[1,2],"lat":[0,1],"long":[0,1]}}`,
		`{"features":["user_transaction_counts:amt_count_1m","user_profile:home_lat"],"entities":{"user_id":["u1"]}}`,
	} {
		body := []byte(b)
		allocs := testing.AllocsPerRun(200, func() {
			out, ferr := n.FeastOnlineFeatures(dst[:0], body)
			if ferr != nil {
				t.Fatal(ferr.Message)
			}
			dst = out
		})
		if allocs != 0 {
			t.Errorf("get-online-features allocates %.1f times per request: %s", allocs, body)
		}
	}
}

// Feast's writes (/push, /write-to-online-store) refuse, with Feast's 422
// naming where, a number RFC 8259 does not write in a member they do not
// read (a top-level option, the df's dropped "created" column), as
// lookups do; they took it and ingested the rows. NaN, which Python's json
// writes for pandas' missing value, is still taken there.
func TestFeastWritesRefuseInvalidNumbersTheyDoNotRead(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	row := func(user string) string {
		return `"user_id":["` + user + `"],"merchant":["m1"],"category":["c"],"country":["FR"],"amt":[1],"timestamp":[` + fmt.Sprint(t0-1) + `]`
	}
	push := func(user, extraDF, extra string) []byte {
		return []byte(`{"push_source_name":"transactions","df":{` + row(user) + extraDF + `}` + extra + `}`)
	}
	write := func(user, extraDF, extra string) []byte {
		return []byte(`{"feature_view_name":"transactions_events","df":{` + row(user) + extraDF + `}` + extra + `}`)
	}
	writes := map[string]func([]byte) *FeastError{
		"push":                  func(b []byte) *FeastError { _, ferr := n.FeastPush(b); return ferr },
		"write-to-online-store": func(b []byte) *FeastError { _, ferr := n.FeastWriteToOnlineStore(b); return ferr },
	}
	bodies := map[string]func(user, extraDF, extra string) []byte{"push": push, "write-to-online-store": write}
	for _, c := range []struct{ extraDF, extra, where string }{
		{``, `,"extra":01`, "extra: 01"},
		{``, `,"allow_registry_cache":+1`, "allow_registry_cache: +1"},
		{``, `,"extra":{"a":[1,.5]}`, "extra.a[1]: .5"},
		{``, `,"extra":nan`, "extra: nan"},
		{``, `,"extra":-Inf`, "extra: -Inf"},
		{`,"created":[1.]`, ``, "df.created[0]: 1."},
		{`,"created":[1e]`, ``, "df.created[0]: 1e"},
	} {
		for name, w := range writes {
			before := n.AppliedIndex()
			body := bodies[name]("bad", c.extraDF, c.extra)
			ferr := w(body)
			if ferr == nil || ferr.Status != 422 || !strings.Contains(ferr.Error(), "JSON decode error: "+c.where) {
				t.Errorf("%s %s: %v, want Feast's 422 JSON decode error naming %s", name, body, ferr, c.where)
			}
			if n.AppliedIndex() != before {
				t.Fatalf("%s %s: refused, but applied", name, body)
			}
		}
	}
	// NaN (as the SDK writes it) and valid numbers in unread members are
	// taken.
	for i, c := range []struct{ extraDF, extra string }{
		{`,"created":[NaN]`, ``},
		{``, `,"extra":NaN`},
		{``, `,"extra":[NaN,-0.5e-3,{"a":NaN}]`},
		{`,"created":[1795564799000]`, `,"allow_registry_cache":true`},
	} {
		for name, w := range writes {
			body := bodies[name](fmt.Sprintf("ok%d", i), c.extraDF, c.extra)
			if ferr := w(body); ferr != nil {
				t.Errorf("%s %s: %v", name, body, ferr)
			}
		}
	}
}

// pandas marks a missing float (and a missing value in an int column,
// which pandas makes float) NaN, which the Python SDK's json writes as the
// literal NaN; Feast stores it as a null value (feast/type_map.py:
// pd.isnull(value) -> an empty ValueProto) and answers null for it. tally's
// Feast writes take a NaN in a float or integer column as a missing value,
// as null, which every aggregation ignores, and count them in
// tally_feast_nan_values_total. A NaN anywhere else (a string, a join key,
// the timestamp) is still refused naming the column and row, Infinity is
// still a JSON decode error, and tally's own ingest still refuses NaN.
func TestFeastWritesTakeNaNAsMissing(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	base := serve(t, n)
	stats := func(user string) []any {
		t.Helper()
		status, body := do(t, "POST", base+"/get-online-features", "", "application/json",
			`{"features":["user_transaction_counts:amt_count_1h","user_transaction_amounts:amt_sum_1h","user_transaction_amounts:amt_mean_1h"],"entities":{"user_id":["`+user+`"]}}`)
		if status != 200 {
			t.Fatalf("lookup: %d %s", status, body)
		}
		r := decodeFeast(t, []byte(body))
		return []any{r.Results[1].Values[0], r.Results[2].Values[0], r.Results[3].Values[0], r.Results[3].Statuses[0]}
	}
	ts := time.UnixMilli(t0 - 60_000).UTC().Format("2006-01-02 15:04:05")
	push := func(df string) string {
		return `{"push_source_name":"transactions","to":"online","df":{` + df + `}}`
	}
	three := fmt.Sprintf(`"merchant":["m1","m2","m3"],"category":["a","b","c"],"country":["FR","FR","FR"],"timestamp":[%q,%q,%q]`, ts, ts, ts)
	body := push(`"user_id":["n1","n1","n1"],"amt":[2.5,NaN,null],"lat":[1,NaN,1],"long":[2,2,NaN],"is_fraud":[0,NaN,1],` + three)
	if status, out := do(t, "POST", base+"/push", "", "application/json", body); status != 200 {
		t.Fatalf("push with NaN in float and int columns: %d %s", status, out)
	}
	if got, want := stats("n1"), []any{float64(1), 2.5, 2.5, "PRESENT"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after a push with amt [2.5, NaN, null]: count, sum, mean, status %v, want %v", got, want)
	}
	write := fmt.Sprintf(`{"feature_view_name":"transactions_events","df":{"user_id":["n2","n2"],"merchant":["m1","m2"],"country":["FR","FR"],
		"category":["c","d"],"amt":[NaN,4],"lat":[1,1],"long":[2,2],"is_fraud":[NaN,1.0],"event_timestamp":[%q,%q],"created":[NaN,NaN]}}`, ts, ts)
	if status, out := do(t, "POST", base+"/write-to-online-store", "", "application/json", write); status != 200 {
		t.Fatalf("write-to-online-store with NaN in float and int columns: %d %s", status, out)
	}
	if got, want := stats("n2"), []any{float64(1), float64(4), float64(4), "PRESENT"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after a write with amt [NaN, 4]: count, sum, mean, status %v, want %v", got, want)
	}
	if got, want := stats("n3"), []any{float64(0), float64(0), nil, "NULL_VALUE"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("before any push: %v, want %v", got, want)
	}
	_, prom := do(t, "GET", base+"/metrics", "", "", "")
	if !strings.Contains(prom, "tally_feast_nan_values_total 6\n") {
		t.Errorf("/metrics does not count the 6 NaN values taken as null:\n%s", grepLines(prom, "tally_feast"))
	}

	// Refused, naming the column and row, and nothing applied.
	before := n.AppliedIndex()
	for _, c := range []struct {
		df     string
		status int
		class  string
		msg    string
	}{
		{`"user_id":["n3","n3","n3"],"amt":[1,2,3],"category":["a",NaN,"c"],"merchant":["m1","m2","m3"],"country":["FR","FR","FR"],"timestamp":[1,2,3]`,
			400, "FeastError", "transactions[1]: category: NaN (pandas' missing value) is a missing value only in a float or int column, and category is a string column: send null"},
		{`"user_id":["n3",NaN,"n3"],"amt":[1,2,3],` + three, 400, "FeastError", "transactions[1]: user_id: NaN (pandas' missing value) is not a key: user_id is a join key"},
		{`"user_id":["n3","n3","n3"],"amt":[1,2,3],"merchant":["m1","m2","m3"],"country":["FR","FR","FR"],"timestamp":[1795564799000,NaN,1795564799000]`,
			400, "FeastError", "transactions[1]: timestamp: NaN (pandas' missing value) is not a timestamp"},
		{`"user_id":["n3","n3","n3"],"amt":[1,2,3],"is_fraud":[0.0,NaN,1.5],` + three, 400, "FeastError", "transactions[2]: is_fraud: want an integer, got 1.5"},
		{`"user_id":["n3","n3","n3"],"amt":[1,Infinity,3],` + three, 422, "422", "JSON decode error: Infinity at offset 91: tally takes finite numbers only"},
		{`"user_id":["n3","n3","n3"],"amt":[1,-Infinity,3],` + three, 422, "422", "JSON decode error: -Infinity at offset 91"},
		{`"user_id":["n3","n3","n3"],"amt":[1,2,3],"category":["Infinity","a",1e],` + three[strings.Index(three, `"merchant"`):strings.Index(three, `"category"`)] + `"country":["FR","FR","FR"],"timestamp":[1,2,3]`, 422, "422", "df.category[2]: 1e"},
	} {
		status, out := do(t, "POST", base+"/push", "", "application/json", push(c.df))
		if status != c.status {
			t.Errorf("push %s: status %d, want %d: %s", c.df, status, c.status, out)
			continue
		}
		class, msg := feastErr(t, out)
		if class != c.class || !strings.Contains(msg, c.msg) {
			t.Errorf("push %s: %s %q, want %s containing %q", c.df, class, msg, c.class, c.msg)
		}
	}
	if n.AppliedIndex() != before {
		t.Fatalf("refused pushes applied something")
	}
	// tally's own ingest keeps refusing NaN.
	_, err := n.IngestNDJSON("transactions", []byte(`{"user_id":"n4","merchant":"m","country":"FR","amt":NaN,"timestamp":1795564799000}`), false)
	if err == nil || !strings.Contains(err.Error(), "amt: want a finite number, got NaN") {
		t.Fatalf("bulk ingest of amt NaN: %v, want refused", err)
	}
}

// Feast's /get-online-features takes a NaN in a float or int column of
// request data (what Python's json writes for pandas' missing value) as
// null, as Feast 0.67 does (feast/utils.py converts every entities column,
// request data included, with type_map.python_values_to_proto_values,
// which makes a pd.isnull value an empty Value before any on-demand view
// sees it) and as tally's Feast writes do: the answer is the one for null.
// A NaN where no value can be missing (a join key) or in a string or bool
// column is refused naming its column and row; a NaN in a member nothing
// reads is taken, as Feast's writes take it; other numbers RFC 8259 does
// not write are still Feast's 422.
func TestFeastOnlineFeaturesTakeNaNRequestDataAsMissing(t *testing.T) {
	n := typedTestNode(t)
	get := func(cols, extra string) ([]byte, *FeastError) {
		return n.FeastOnlineFeatures(nil, []byte(`{"feature_service":"typed","entities":{"user_id":["u1","u1","u1"],"shop":[7,7,7],`+cols+`}`+extra+`}`))
	}
	want, ferr := get(`"s":["x","x",null],"b":[true,true,false],"f":[1.5,null,2],"i":[3,4,null]`, ``)
	if ferr != nil {
		t.Fatalf("request data with null: %s", ferr.body())
	}
	resp := decodeFeast(t, want)
	for i, name := range resp.Metadata.FeatureNames {
		switch name {
		case "f2", "i2":
			missing := 1
			if name == "i2" {
				missing = 2
			}
			if st := resp.Results[i].Statuses[missing]; st != "NULL_VALUE" {
				t.Fatalf("%s of row %d, whose input is null: %s, want NULL_VALUE", name, missing, st)
			}
		}
	}
	for _, c := range []struct{ cols, extra string }{
		{`"s":["x","x",null],"b":[true,true,false],"f":[1.5,NaN,2],"i":[3,4,NaN]`, ``},
		{`"s":["x","x",null],"b":[true,true,false],"f":[1.5,NaN,2],"i":[3,4,NaN]`, `,"extra":[NaN,{"a":NaN}]`},
	} {
		got, ferr := get(c.cols, c.extra)
		if ferr != nil {
			t.Errorf("request data %s%s: %s", c.cols, c.extra, ferr.body())
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("request data %s%s:\n%s\nwant the answer for null:\n%s", c.cols, c.extra, got, want)
		}
	}
	for _, c := range []struct {
		body   string
		status int
		want   string
	}{
		{`{"feature_service":"typed","entities":{"user_id":["u1",NaN],"shop":[7,7],"s":["x","x"],"b":[true,true],"f":[1,1],"i":[1,1]}}`,
			400, "entities.user_id[1]: NaN (pandas' missing value) is not a key: user_id is a join key"},
		{`{"feature_service":"typed","entities":{"user_id":["u1","u1"],"shop":[NaN,7],"s":["x","x"],"b":[true,true],"f":[1,1],"i":[1,1]}}`,
			400, "entities.shop[0]: NaN (pandas' missing value) is not a key: shop is a join key"},
		{`{"feature_service":"typed","entities":{"user_id":["u1","u1"],"shop":[7,7],"s":["x",NaN],"b":[true,true],"f":[1,1],"i":[1,1]}}`,
			400, "entities.s[1]: NaN (pandas' missing value) is a missing value only in a float or int column, and s is a string column: send null"},
		{`{"feature_service":"typed","entities":{"user_id":["u1","u1"],"shop":[7,7],"s":["x","x"],"b":[NaN,true],"f":[1,1],"i":[1,1]}}`,
			400, "entities.b[0]: NaN (pandas' missing value) is a missing value only in a float or int column, and b is a bool column: send null"},
		{`{"feature_service":"typed","entities":{"user_id":["u1"],"shop":[7],"s":["x"],"b":[true],"f":[nan],"i":[1]}}`,
			422, "JSON decode error: entities.f[0]: nan is not a number"},
		{`{"feature_service":"typed","entities":{"user_id":["u1"],"shop":[7],"s":["x"],"b":[true],"f":[1],"i":[1]},"full_feature_names":NaN}`,
			422, "full_feature_names"},
	} {
		_, ferr := n.FeastOnlineFeatures(nil, []byte(c.body))
		if ferr == nil || ferr.Status != c.status || !strings.Contains(ferr.Error(), c.want) {
			t.Errorf("%s: %v, want %d with %q", c.body, ferr, c.status, c.want)
		}
	}
}

// Feast's /get-online-features takes Infinity and -Infinity in request
// data (its server reads the body with Python's json, which writes and
// reads an infinite float so, as it reads 1e999; feast/utils.py makes
// each request data column a Value by the type of its values, and a float
// column's inf is a double), so tally takes them in a float column: a
// request-time feature computes with them (min(inf, 10) is 10; one whose
// result is not finite is NULL_VALUE, as any such result is). In an int,
// string or bool column or a join key, none of which holds an infinite
// number, it is refused naming its column and row, as NaN is there.
func TestFeastOnlineFeaturesTakeInfinityInFloatRequestData(t *testing.T) {
	repo, err := features.Load(fstest.MapFS{"repo.yaml": {Data: []byte(strings.Replace(typedRepo,
		"      - {name: f2, expression: request.f * 2}\n",
		"      - {name: f2, expression: request.f * 2}\n      - {name: fcap, expression: 'min(request.f, 10)'}\n", 1))}})
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(repo, DefaultConfig(), Options{Clock: func() int64 { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	body := func(keys, cols string) []byte {
		return []byte(`{"feature_service":"typed","full_feature_names":true,"entities":{` + keys + `,"s":["x","x","x"],"b":[true,true,true],` + cols + `}}`)
	}
	const keys = `"user_id":["u1","u1","u1"],"shop":[7,7,7]`
	out, ferr := n.FeastOnlineFeatures(nil, body(keys, `"f":[1.5,Infinity,-Infinity],"i":[1,2,3]`))
	if ferr != nil {
		t.Fatalf("Infinity in a float column: %s", ferr.body())
	}
	resp := decodeFeast(t, out)
	got := map[string][]any{}
	for i, name := range resp.Metadata.FeatureNames {
		for r := range resp.Results[i].Values {
			got[name] = append(got[name], resp.Results[i].Values[r], resp.Results[i].Statuses[r])
		}
	}
	if want := []any{1.5, "PRESENT", float64(10), "PRESENT", nil, "NULL_VALUE"}; !reflect.DeepEqual(got["req__fcap"], want) {
		t.Errorf("min(f, 10) for f 1.5, Infinity, -Infinity: %v, want %v", got["req__fcap"], want)
	}
	if want := []any{float64(3), "PRESENT", nil, "NULL_VALUE", nil, "NULL_VALUE"}; !reflect.DeepEqual(got["req__f2"], want) {
		t.Errorf("f * 2 for f 1.5, Infinity, -Infinity: %v, want %v", got["req__f2"], want)
	}
	for _, c := range []struct{ keys, cols, want string }{
		{keys, `"f":[1,1,1],"i":[1,Infinity,3]`, "entities.i[1]: Infinity is a number only a float column takes, and i is an int column"},
		{keys, `"f":[1,1,1],"i":[1,2,-Infinity]`, "entities.i[2]: -Infinity is a number only a float column takes, and i is an int column"},
		{`"user_id":["u1","u1","u1"],"shop":[7,Infinity,7]`, `"f":[1,1,1],"i":[1,2,3]`, "entities.shop[1]: Infinity is not a key: shop is a join key"},
		{`"user_id":[-Infinity,"u1","u1"],"shop":[7,7,7]`, `"f":[1,1,1],"i":[1,2,3]`, "entities.user_id[0]: -Infinity is not a key: user_id is a join key"},
	} {
		_, ferr := n.FeastOnlineFeatures(nil, body(c.keys, c.cols))
		if ferr == nil || ferr.Status != 400 || !strings.Contains(ferr.Error(), c.want) {
			t.Errorf("%s %s: %v, want 400 with %q", c.keys, c.cols, ferr, c.want)
		}
	}
	for _, c := range []struct{ s, b, want string }{
		{`"s":["x",Infinity,"x"]`, `"b":[true,true,true]`, "entities.s[1]: Infinity is a number only a float column takes, and s is a string column"},
		{`"s":["x","x","x"]`, `"b":[true,true,-Infinity]`, "entities.b[2]: -Infinity is a number only a float column takes, and b is a bool column"},
	} {
		b := []byte(`{"feature_service":"typed","entities":{` + keys + `,` + c.s + `,` + c.b + `,"f":[1,1,1],"i":[1,2,3]}}`)
		_, ferr := n.FeastOnlineFeatures(nil, b)
		if ferr == nil || ferr.Status != 400 || !strings.Contains(ferr.Error(), c.want) {
			t.Errorf("%s %s: %v, want 400 with %q", c.s, c.b, ferr, c.want)
		}
	}
}
