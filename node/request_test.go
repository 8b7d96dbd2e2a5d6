package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tally-ml/tally/features"
)

// TestRequestIDsApplyOnce: on a single node, a write retried with its
// Idempotency-Key (an ingest, a bulk ingest, an import, a table upload) is
// applied once and answered as the first was (but for the counts of what
// it placed: none), also after a restart that
// replays the log and after one that restores a snapshot; a write without
// a key, or with another, is applied again, and so is another request
// under a key used before (BoundRequestID: it was skipped, its data lost).
func TestRequestIDsApplyOnce(t *testing.T) {
	dir := t.TempDir()
	cfg := openCfg(dir, "always", false)
	bulkLine := func(u string, amt float64, ts int64) string {
		return fmt.Sprintf(`{"user_id":%q,"merchant":"m1","category":"grocery_pos","country":"FR","amt":%v,"lat":1,"long":2,"is_fraud":0,"timestamp":%d}`+"\n", u, amt, ts)
	}
	type write struct{ path, id, ctype, body string }
	writes := []write{
		{"/api/v1/ingest", "k-json", "application/json", string(ingestBody(txn("u1", "m1", "FR", 1, t0-1000)))},
		{"/api/v1/ingest/bulk?source=transactions", "k-bulk", "application/x-ndjson", bulkLine("u1", 10, t0-900) + bulkLine("u2", 5, t0-900)},
		{"/api/v1/import?source=transactions", "k-import", "application/x-ndjson", bulkLine("u1", 100, t0-800)},
		{"/api/v1/tables/user_profile", "k-table", "text/csv", "user_id,home_lat,home_long\nu1,1,2\n"},
	}
	post := func(t *testing.T, base string, w write, body string) string {
		t.Helper()
		req, err := http.NewRequest("POST", base+w.path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", w.ctype)
		if w.id != "" {
			req.Header.Set("Idempotency-Key", w.id)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %s", w.path, w.id, resp.StatusCode, b)
		}
		return string(b)
	}
	homeLat := func(t *testing.T, in *Instance) float64 {
		t.Helper()
		nums, strs, ok := make([]float64, 2), make([]string, 2), make([]bool, 2)
		if !in.TableNamed("user_profile").Get([]byte("u1"), nums, strs, ok) {
			t.Fatal("u1 has no profile")
		}
		return nums[0]
	}
	check := func(t *testing.T, what string, in *Instance, u1, u2, lat float64) {
		t.Helper()
		if got := sum1h(t, in.Node, "u1"); got != u1 {
			t.Errorf("%s: u1's amt_sum_1h %v, want %v", what, got, u1)
		}
		if got := sum1h(t, in.Node, "u2"); got != u2 {
			t.Errorf("%s: u2's amt_sum_1h %v, want %v", what, got, u2)
		}
		if got := homeLat(t, in); got != lat {
			t.Errorf("%s: u1's home_lat %v, want %v", what, got, lat)
		}
	}

	in := mustOpenNode(t, cfg, nil)
	base := serve(t, in.Node)
	answers := make([]string, len(writes))
	for i, w := range writes {
		answers[i] = post(t, base, w, w.body)
	}
	check(t, "first writes", in, 111, 5, 1)
	for i, w := range writes {
		// The same answer, but for the counts of what the request did to
		// the windows: a retry places nothing.
		want := strings.NewReplacer(`"deferred":1`, `"deferred":0`).Replace(answers[i])
		if got := post(t, base, w, w.body); got != want {
			t.Errorf("retry of %s answered %s, want %s (the first: %s)", w.id, got, want, answers[i])
		}
	}
	check(t, "retries", in, 111, 5, 1)
	// A key used before, with another request: a new write, applied
	// (before, skipped by its key and answered 200), and its own retry
	// counts once.
	reused := []struct {
		w    write
		body string
	}{
		{writes[3], "user_id,home_lat,home_long\nu1,7,8\n"},
		{writes[1], bulkLine("u2", 20, t0-900)},
	}
	for _, r := range reused {
		post(t, base, r.w, r.body)
	}
	check(t, "a key reused for other writes", in, 111, 25, 7)
	for _, r := range reused {
		post(t, base, r.w, r.body)
	}
	check(t, "retries of the other writes", in, 111, 25, 7)
	_, metrics := do(t, "GET", base+"/metrics", "", "", "")
	if !strings.Contains(metrics, "tally_requests_repeated_total 6\n") {
		t.Errorf("metrics lack tally_requests_repeated_total 6:\n%s", grepLines(metrics, "repeated"))
	}
	fresh := writes[1]
	fresh.id = "k-bulk-2"
	post(t, base, fresh, fresh.body)
	fresh.id = ""
	post(t, base, fresh, fresh.body)
	check(t, "another key, and none", in, 131, 35, 7)
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}

	// Restarted, the log replayed: the keys are known again.
	in = mustOpenNode(t, cfg, nil)
	if in.Recovery().SnapshotIndex != 0 {
		t.Fatalf("restored the snapshot at %d, want a replay of the whole log", in.Recovery().SnapshotIndex)
	}
	check(t, "after a replay", in, 131, 35, 7)
	base = serve(t, in.Node)
	for _, w := range writes {
		post(t, base, w, w.body)
	}
	for _, r := range reused {
		post(t, base, r.w, r.body)
	}
	check(t, "retries after a replay", in, 131, 35, 7)
	if _, err := in.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}

	// Restarted from the snapshot: its keys come with it.
	in = mustOpenNode(t, cfg, nil)
	defer in.Close()
	if in.Recovery().SnapshotIndex == 0 {
		t.Fatal("no snapshot restored")
	}
	base = serve(t, in.Node)
	for _, w := range writes {
		post(t, base, w, w.body)
	}
	for _, r := range reused {
		post(t, base, r.w, r.body)
	}
	check(t, "retries after a snapshot", in, 131, 35, 7)
}

// TestRetryOfAnAppliedRequestPastItsWindows: a retry of an applied request
// whose records the node would now refuse (the clock moved past every
// window they count in) is answered 200 as a retry, not 400 "nothing was
// ingested", on the JSON and the bulk paths; a request not applied before
// is still refused.
func TestRetryOfAnAppliedRequestPastItsWindows(t *testing.T) {
	n, clk := newTestNode(t, DefaultConfig())
	sp := n.SourceNamed([]byte("transactions"))
	oldest := t0 - sp.MaxWindow - sp.Src.Lateness + 1000 // the oldest a record may be, and a second
	body := ingestBody(txn("u1", "m1", "FR", 5, oldest))
	if _, err := n.IngestJSONAs("k1", body); err != nil {
		t.Fatal(err)
	}
	clk.set(t0 + 2000)
	res, err := n.IngestJSONAs("k1", body)
	if err != nil || res.Accepted != 1 || res.TooLate != 0 {
		t.Fatalf("retry of an applied request: %+v, %v; want accepted 1, placing nothing", res, err)
	}
	if _, err := n.IngestJSONAs("k2", body); err == nil {
		t.Fatal("a request never applied, its record past every window, was accepted")
	}
	if _, err := n.IngestNDJSONAs("k1", "transactions", []byte(strings.TrimSuffix(strings.TrimPrefix(txn("u1", "m1", "FR", 5, oldest), `{"record":`), "}")+"\n"), false); err != nil {
		t.Fatalf("a bulk retry under the applied key: %v", err)
	}
}

// twoSourceRepo has two sources, clicks (index 0) and views (index 1),
// each counted in a 1h window: a request with events of both is two log
// records.
const twoSourceRepo = `
sources:
  - name: clicks
    timestamp: ts
    schema: {user: string, page: string}
  - name: views
    timestamp: ts
    schema: {user: string, page: string}
entities:
  - {name: user, join_key: user}
feature_views:
  - name: c
    source: clicks
    entity: user
    aggregations:
      - {column: page, function: count, window: 1h}
  - name: v
    source: views
    entity: user
    aggregations:
      - {column: page, function: count, window: 1h}
feature_services:
  - {name: cv, features: [c, v]}
`

// TestRetryOfAPartlyAppliedRequestPastItsWindows: on a single node a
// request is applied whole or not at all, but for a crash, which may keep
// only its first log records (one per source: the log keeps a prefix of
// an append; store's TestRetryAfterAPartialAppend). The retry of such a
// request whose records are now past their windows is answered 409
// PARTLY_APPLIED naming the source whose records were applied, not 400
// INVALID_RECORDS "nothing was ingested" (which it was). A request never
// applied is still 400.
func TestRetryOfAPartlyAppliedRequestPastItsWindows(t *testing.T) {
	repo, err := features.Load(fstest.MapFS{"repo.yaml": {Data: []byte(twoSourceRepo)}})
	if err != nil {
		t.Fatal(err)
	}
	clk := &testClock{}
	clk.set(t0)
	n, err := New(repo, DefaultConfig(), Options{Clock: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	n.SetReady(true)
	sp := n.SourceNamed([]byte("clicks"))
	oldest := t0 - sp.MaxWindow - sp.Src.Lateness + 1000
	rec := func(u string) string { return fmt.Sprintf(`{"record":{"user":%q,"page":"p","ts":%d}}`, u, oldest) }
	both := []byte(`{"records":{"clicks":[` + rec("u1") + `,` + rec("u2") + `],"views":[` + rec("u1") + `]}}`)
	// What a crash that kept only the first record (clicks) of request k
	// leaves: its part 0 applied, its part 1 not.
	id := BoundRequestID("k", "ingest", "", both) // as the HTTP API names it
	if _, err := n.IngestJSONAs(id, []byte(`{"records":{"clicks":[`+rec("u1")+`,`+rec("u2")+`]}}`)); err != nil {
		t.Fatal(err)
	}
	clk.set(t0 + 2000)
	_, err = n.IngestJSONAs(id, both)
	var ie *IngestError
	if !errors.As(err, &ie) || ie.Code != "PARTLY_APPLIED" || strings.Contains(ie.Message, "nothing was ingested") {
		t.Fatalf("the retry of a partly applied request: %v; want PARTLY_APPLIED", err)
	}
	for _, want := range []string{"source clicks (2 records) were applied", "source views (1 record) were not", "new Idempotency-Key"} {
		if !strings.Contains(ie.Message, want) {
			t.Errorf("message %q lacks %q", ie.Message, want)
		}
	}
	if want := []SourceShare{{"clicks", 2, ShareApplied}, {"views", 1, ShareNotApplied}}; !slices.Equal(ie.Sources, want) || ie.Refused != 3 || ie.Total != 3 {
		t.Errorf("sources %+v, refused %d of %d: want %+v, 3 of 3", ie.Sources, ie.Refused, ie.Total, want)
	}
	base := serve(t, n)
	req, _ := http.NewRequest("POST", base+"/api/v1/ingest", bytes.NewReader(both))
	req.Header.Set("Idempotency-Key", "k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(body), `"sources":[{"source":"clicks","records":2,"share":"applied"},{"source":"views","records":1,"share":"not applied"}]`) {
		t.Errorf("over HTTP: %d %s; want 409 with the sources", resp.StatusCode, body)
	}
	if _, err := n.IngestJSONAs("k2", both); !errors.As(err, &ie) || ie.Code != "INVALID_RECORDS" {
		t.Errorf("a request never applied: %v; want INVALID_RECORDS", err)
	}
}
