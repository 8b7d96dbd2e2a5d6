package history

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tally-ml/tally/node"
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
