package node

import (
	"fmt"
	"strings"
	"testing"
)

// A far-future timestamp is refused with a positive span, not an
// overflowed negative duration.
func TestMaxFutureMessageFarFuture(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	for _, ts := range []string{`"9999-12-31T23:59:59Z"`, `9223372036854775807`} {
		body := strings.Replace(txn("u1", "m1", "FR", 1, 0), `"timestamp":0`, `"timestamp":`+ts, 1)
		_, err := n.IngestJSON(ingestBody(body))
		if err == nil {
			t.Fatalf("%s accepted", ts)
		}
		msg := err.Error()
		if !strings.Contains(msg, "ahead of the node's clock") || strings.Contains(msg, " is -") {
			t.Errorf("%s: %s", ts, msg)
		}
	}
	if got := fmtSpan(2922000 * 24 * 3600 * 1000); got != "2922000 days" {
		t.Errorf("fmtSpan = %q", got)
	}
}

// Events before 1970 imported on a fresh node are visible at their own
// timestamps: the log's clock starts before any time, not at 0.
func TestImportBefore1970NotDeferred(t *testing.T) {
	n, clk := newTestNode(t, DefaultConfig())
	clk.set(-10 * 365 * 24 * 3600 * 1000) // 1960
	now := clk.now()
	ev := func(ts int64) string {
		return fmt.Sprintf(`{"user_id":"a","merchant":"m","category":"c","amt":1,"country":"FR","lat":1,"long":2,"is_fraud":0,"timestamp":%d}`+"\n", ts)
	}
	res, err := n.ImportNDJSON("transactions", []byte(ev(now-60_000)+ev(now-30_000)), false)
	if err != nil || res.Accepted != 2 || res.Deferred != 0 {
		t.Fatalf("pre-1970 import on a fresh node: %+v %v, want 2 accepted, 0 deferred", res, err)
	}
}

// An empty body with mode=replace does not empty a table unless asked to.
func TestEmptyReplaceRefused(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	base := serve(t, n)
	url := base + "/api/v1/tables/user_profile"
	if code, body := do(t, "POST", url, "", "text/csv", "user_id,home_lat,home_long\nu1,1,2\n"); code != 200 {
		t.Fatalf("upload: %d %s", code, body)
	}
	for _, c := range []struct{ ct, body string }{{"application/x-ndjson", ""}, {"application/x-ndjson", "\n\n"}, {"text/csv", "user_id,home_lat,home_long\n"}} {
		code, body := do(t, "POST", url+"?mode=replace", "", c.ct, c.body)
		if code != 400 || !strings.Contains(body, "EMPTY_REPLACE") || !strings.Contains(body, "allow_empty=true") {
			t.Errorf("empty replace %q: %d %s, want 400 EMPTY_REPLACE", c.body, code, body)
		}
		if got := n.TableNamed("user_profile").Len(); got != 1 {
			t.Fatalf("table has %d rows after a refused empty replace, want 1", got)
		}
	}
	if code, body := do(t, "POST", url+"?mode=replace&allow_empty=true", "", "application/x-ndjson", ""); code != 200 {
		t.Fatalf("empty replace with allow_empty=true: %d %s", code, body)
	}
	if got := n.TableNamed("user_profile").Len(); got != 0 {
		t.Fatalf("table has %d rows after an allowed empty replace, want 0", got)
	}
}
