package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
)

// TestClusterRetryOfAnAppliedRequestPastItsWindows: in a cluster, a retry
// of a request every group applied its share of, whose events the node
// would now refuse (its clock moved past every window they count in), is
// answered 200 as a retry (accepted, placing nothing), on the JSON and the
// bulk paths, as on a single node (node's
// TestRetryOfAnAppliedRequestPastItsWindows). It was answered 400 "nothing
// was ingested": the cluster path asked no group about the request's id.
// A new request of the same events is still refused and changes nothing,
// and so is the retry of a request only some of whose groups applied their
// share (409 PARTLY_APPLIED: TestClusterRetryOfAPartlyAppliedRequestPastItsWindows).
// retryCluster is two nodes, group g on node g only (n0 asks group 1
// over the cluster port), and a front on n0 whose clock the test sets;
// its events are a second younger than the oldest the front takes now.
type retryCluster struct {
	cs  []*Cluster
	nd  *node.Node
	clk *atomic.Int64
	now int64
	// line is an event whose keys all belong to group g; body is a JSON
	// ingest of one such event for each of groups.
	line func(g int) string
	body func(groups ...int) []byte
}

func newRetryCluster(t *testing.T) *retryCluster {
	cs, _ := openTestCluster(t, nil, 2, 2, 1)
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	var clk atomic.Int64
	clk.Store(now)
	nd, err := node.New(repo, node.DefaultConfig(), node.Options{Cluster: cs[0], RepoFS: features.DefaultFS(), Clock: clk.Load})
	if err != nil {
		t.Fatal(err)
	}
	nd.SetReady(true)
	sp := nd.SourceNamed([]byte("transactions"))
	oldest := now - sp.MaxWindow - sp.Src.Lateness + 1000 // the oldest an event may be, and a second

	m := cs[0].Map()
	keyIn := func(prefix string, g int) string {
		for i := 0; ; i++ {
			if k := fmt.Sprintf("%s%d", prefix, i); m.GroupOfKey([]byte(k)) == g {
				return k
			}
		}
	}
	rc := &retryCluster{cs: cs, nd: nd, clk: &clk, now: now}
	rc.line = func(g int) string {
		return fmt.Sprintf(`{"user_id":%q,"merchant":%q,"category":"c","amt":5,"country":%q,"lat":1,"long":2,"timestamp":%d}`,
			keyIn("retry-u", g), keyIn("retry-m", g), keyIn("retry-c", g), oldest)
	}
	rc.body = func(groups ...int) []byte {
		var recs []string
		for _, g := range groups {
			recs = append(recs, `{"record":`+rc.line(g)+`}`)
		}
		return []byte(`{"records":{"transactions":[` + strings.Join(recs, ",") + `]}}`)
	}
	return rc
}

// applies is how many entries each group's replica has applied.
func (rc *retryCluster) applies() [2]uint64 {
	return [2]uint64{rc.cs[0].group(0).fsm.applies.Load(), rc.cs[1].group(1).fsm.applies.Load()}
}

func TestClusterRetryOfAnAppliedRequestPastItsWindows(t *testing.T) {
	rc := newRetryCluster(t)
	nd, body, line, now, applies := rc.nd, rc.body, rc.line, rc.now, rc.applies
	clk := rc.clk

	if res, err := nd.IngestJSONAs("k1", body(0, 1)); err != nil || res.Accepted != 2 {
		t.Fatalf("first write: %+v, %v", res, err)
	}
	// A partly applied request: group 0 applied its share of k3 (k3/s0),
	// group 1 did not (its proposal failed: the client was answered 503).
	if _, err := nd.IngestJSONAs("k3", body(0)); err != nil {
		t.Fatalf("group 0's share of k3: %v", err)
	}

	clk.Store(now + 2000)
	before := applies()
	res, err := nd.IngestJSONAs("k1", body(0, 1))
	if err != nil || res.Accepted != 2 || res.TooLate != 0 || res.Deferred != 0 {
		t.Fatalf("retry of an applied request: %+v, %v; want accepted 2, placing nothing", res, err)
	}
	bulk := []byte(line(0) + "\n" + line(1) + "\n")
	if res, err := nd.IngestNDJSONAs("k1", "transactions", bulk, false); err != nil || res.Accepted != 2 {
		t.Fatalf("a bulk retry under the applied key: %+v, %v", res, err)
	}
	if _, err := nd.IngestJSONAs("k2", body(0, 1)); err == nil {
		t.Error("a request never applied, its events past every window, was accepted")
	}
	if _, err := nd.IngestJSONAs("k3", body(0, 1)); err == nil {
		t.Error("the retry of a request group 1 never applied its share of, its events past every window, was accepted")
	}
	if after := applies(); after != before {
		t.Errorf("the groups applied %v entries, then %v: the retries and refusals changed the state", before, after)
	}
}

// postIngest sends body to path on base under Idempotency-Key key and
// returns the status and the decoded error body ({} when none).
func postIngest(t *testing.T, base, path, key string, body []byte) (int, ingestErrorBody) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out ingestErrorBody
	if resp.StatusCode != http.StatusOK {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s: %d %s: %v", path, resp.StatusCode, raw, err)
		}
	}
	out.raw = string(raw)
	return resp.StatusCode, out
}

type ingestErrorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Refused int    `json:"refused"`
		Total   int    `json:"total"`
		Records []struct {
			Reason string `json:"reason"`
		} `json:"records"`
		Groups []struct {
			Group   int    `json:"group"`
			Records int    `json:"records"`
			Share   string `json:"share"`
		} `json:"groups"`
	} `json:"error"`
	raw string
}

func serveFront(t *testing.T, nd *node.Node) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := node.NewServer(nd)
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Shutdown()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// TestClusterRetryOfAPartlyAppliedRequestPastItsWindows: the retry of a
// request only some of whose groups applied their share (group 0 did,
// group 1's write failed and the client was told to retry under the same
// key), whose events are now past every window, is answered 409
// PARTLY_APPLIED naming the group that applied its share and the one that
// did not, on the JSON and the bulk paths. It was answered 400
// INVALID_RECORDS "... nothing was ingested", which is false: group 0
// holds its share, and re-sending the events under a new key (as that
// answer invites) would count it twice. A request no group applied is
// still 400 INVALID_RECORDS, and neither answer changes the state.
func TestClusterRetryOfAPartlyAppliedRequestPastItsWindows(t *testing.T) {
	rc := newRetryCluster(t)
	base := serveFront(t, rc.nd)
	bulk := []byte(rc.line(0) + "\n" + rc.line(1) + "\n")
	// Group 0's share of request k3, sent to each path: what the HTTP API
	// applies under the key k3 (node.BoundRequestID) had group 1's write
	// failed.
	if _, err := rc.nd.IngestJSONAs(node.BoundRequestID("k3", "ingest", "", rc.body(0, 1)), rc.body(0)); err != nil {
		t.Fatalf("group 0's share of k3: %v", err)
	}
	if _, err := rc.nd.IngestNDJSONAs(node.BoundRequestID("k3", "ingest-bulk", "transactions", bulk), "transactions", []byte(rc.line(0)+"\n"), false); err != nil {
		t.Fatalf("group 0's share of k3 (bulk): %v", err)
	}
	rc.clk.Store(rc.now + 2000)
	before := rc.applies()

	for _, c := range []struct {
		path string
		body []byte
	}{{"/api/v1/ingest", rc.body(0, 1)}, {"/api/v1/ingest/bulk?source=transactions", bulk}} {
		status, e := postIngest(t, base, c.path, "k3", c.body)
		if status != http.StatusConflict || e.Error.Code != "PARTLY_APPLIED" || strings.Contains(e.Error.Message, "nothing was ingested") {
			t.Errorf("%s: the retry of a partly applied request: %d %s; want 409 PARTLY_APPLIED, not \"nothing was ingested\"", c.path, status, e.raw)
			continue
		}
		for _, want := range []string{"group 0 applied its share (1 record)", "group 1 did not apply its share (1 record)", "too late", "new Idempotency-Key"} {
			if !strings.Contains(e.Error.Message, want) {
				t.Errorf("%s: message %q lacks %q", c.path, e.Error.Message, want)
			}
		}
		if e.Error.Refused != 2 || e.Error.Total != 2 || len(e.Error.Records) != 2 || !strings.Contains(e.Error.Records[0].Reason, "older than the longest window") {
			t.Errorf("%s: refused %d of %d, records %+v: want the 2 records and why", c.path, e.Error.Refused, e.Error.Total, e.Error.Records)
		}
		if g := e.Error.Groups; len(g) != 2 || g[0].Group != 0 || g[0].Share != "applied" || g[0].Records != 1 || g[1].Group != 1 || g[1].Share != "not applied" || g[1].Records != 1 {
			t.Errorf("%s: groups %+v: want group 0 applied, group 1 not, 1 record each", c.path, g)
		}
	}
	if status, e := postIngest(t, base, "/api/v1/ingest", "k2", rc.body(0, 1)); status != http.StatusBadRequest || e.Error.Code != "INVALID_RECORDS" || !strings.Contains(e.Error.Message, "nothing was ingested") {
		t.Errorf("a request no group applied: %d %s; want 400 INVALID_RECORDS, nothing was ingested", status, e.raw)
	}
	if after := rc.applies(); after != before {
		t.Errorf("the groups applied %v entries, then %v: the refusals changed the state", before, after)
	}
}

// TestClusterWriteWithAGroupDown: a write one of whose groups cannot
// commit (its only replica is down) while the other applies its share is
// answered 503 UNAVAILABLE saying which group applied its share and to
// retry under the same Idempotency-Key, never that nothing was written.
// Its retry once its events are past every window cannot learn whether
// group 1 applied its share: it is answered 503 (retry under the same
// key) naming group 0's share as applied and group 1's as unknown, not
// 400 "nothing was ingested" (which it was) nor 409 with group 1's share
// "not applied".
func TestClusterWriteWithAGroupDown(t *testing.T) {
	rc := newRetryCluster(t)
	rc.cs[0].cfg.WriteTimeout = time.Second
	base := serveFront(t, rc.nd)
	rc.cs[1].Close()

	status, e := postIngest(t, base, "/api/v1/ingest", "k4", rc.body(0, 1))
	if status != http.StatusServiceUnavailable || e.Error.Code != "UNAVAILABLE" || strings.Contains(e.Error.Message, "nothing") {
		t.Fatalf("a write group 1 could not commit: %d %s; want 503 UNAVAILABLE", status, e.raw)
	}
	for _, want := range []string{"group 0 applied its share", "retry with the same Idempotency-Key"} {
		if !strings.Contains(e.Error.Message, want) {
			t.Errorf("first attempt: message %q lacks %q", e.Error.Message, want)
		}
	}

	rc.clk.Store(rc.now + 2000)
	status, e = postIngest(t, base, "/api/v1/ingest", "k4", rc.body(0, 1))
	if status != http.StatusServiceUnavailable || e.Error.Code != "UNAVAILABLE" || strings.Contains(e.Error.Message, "nothing was ingested") {
		t.Fatalf("the retry, group 1 unreachable: %d %s; want 503 UNAVAILABLE", status, e.raw)
	}
	for _, want := range []string{"group 0 applied its share (1 record)", "group 1: unknown", "retry with the same Idempotency-Key"} {
		if !strings.Contains(e.Error.Message, want) {
			t.Errorf("the retry: message %q lacks %q", e.Error.Message, want)
		}
	}
}

// TestClusterWriteOverTheEntryLimitIs413: a write one of whose groups'
// shares is a Raft entry over the log's record limit is refused 413
// TOO_LARGE before any group is asked: no group applies its share (a
// leader whose log refused the entry would step down, and so would the
// next one, each retry). A write within the limit is applied after it.
func TestClusterWriteOverTheEntryLimitIs413(t *testing.T) {
	rc := newRetryCluster(t)
	base := serveFront(t, rc.nd)
	old := maxEntryBytes
	maxEntryBytes = 200 // a share of one event fits (155-175 bytes), one of two does not (217)
	defer func() { maxEntryBytes = old }()
	before := rc.applies()
	status, e := postIngest(t, base, "/api/v1/ingest", "big", rc.body(0, 1, 1))
	if status != http.StatusRequestEntityTooLarge || e.Error.Code != "TOO_LARGE" || !strings.Contains(e.Error.Message, "nothing was ingested") {
		t.Fatalf("a write over the entry limit: %d %s", status, e.raw)
	}
	if got := rc.applies(); got != before {
		t.Fatalf("the refused write was applied: entries applied %v, before %v", got, before)
	}
	if status, e := postIngest(t, base, "/api/v1/ingest", "small", rc.body(0, 1)); status != http.StatusOK {
		t.Fatalf("a write within the limit after it: %d %s", status, e.raw)
	}
}
