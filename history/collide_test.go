package history

import (
	"strings"
	"testing"

	"github.com/tally-ml/tally/node"
)

// TestSpineColumnNamedLikeAFeature: a spine column with the name of one of
// the service's features (a training set fed back as a spine) would make
// the output's columns collide. It is refused as a bad spine, 400
// INVALID_SPINE naming the column, before anything streams (it was a 200
// whose connection closed with no body).
func TestSpineColumnNamedLikeAFeature(t *testing.T) {
	ln := newLiveNode(t, spineStart)
	ln.ingest(t, txn{user: "u1", merchant: "m1", country: "FR", amt: 3, ts: spineStart - 1000})
	h := startHistoryServer(t, ln, node.DefaultConfig().Limits)
	const feature = "user_transaction_counts.amt_count_1h"
	spine := "user_id,merchant,country,timestamp,amt,lat,long," + feature + "\nu1,m1,FR,1790000000000,1,2,3,7\n"
	for _, f := range []string{"csv", "ndjson", "parquet"} {
		status, body := postSpine(t, h.base+Path+"?service=fraud_detection&format="+f, "text/csv", []byte(spine))
		if status != 400 || !strings.Contains(body, "INVALID_SPINE") || !strings.Contains(body, feature) {
			t.Errorf("format %s: %d %q, want 400 INVALID_SPINE naming %s", f, status, body, feature)
		}
	}
}
