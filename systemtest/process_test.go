package systemtest

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/systemtest/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

func TestServeIngestLookupStop(t *testing.T) {
	p := harness.Start(t, harness.Options{StopTimeout: 10 * time.Second})
	ctx := context.Background()
	now := time.Now().UnixMilli()
	var recs []string
	for i := 0; i < 50; i++ {
		recs = append(recs, fmt.Sprintf(`{"record":{"user_id":"u42","merchant":"m%d","category":"grocery_pos","country":"FR","amt":%d,"lat":48.85,"long":2.35,"is_fraud":0,"timestamp":%d}}`,
			i%5, i+1, now-int64(i)*1000))
	}
	res, err := p.Client.IngestJSON(ctx, []byte(`{"workspace_name":"default","records":{"transactions":[`+strings.Join(recs, ",")+`]}}`))
	if err != nil || res.Accepted != 50 {
		t.Fatalf("ingest: %+v %v", res, err)
	}
	f, err := p.Client.GetFeatures(ctx, client.LookupRequest{Service: "fraud_detection",
		JoinKeys:       map[string]any{"user_id": "u42", "merchant": "m1", "country": "FR"},
		RequestContext: map[string]any{"amt": 100, "lat": 48.85, "long": 2.35}})
	if err != nil {
		t.Fatalf("get-features: %v", err)
	}
	got := f.Map()
	if got["user_transaction_counts.amt_count_1h"] != 50.0 || got["user_transaction_amounts.amt_sum_1h"] != 1275.0 ||
		got["user_distinct_merchants.merchant_distinct_count_1h"] != 5.0 || got["merchant_transaction_counts.amt_count_1h"] != 10.0 {
		t.Fatalf("features over HTTP from the real binary: %+v", f)
	}
	// An unknown service is a 404 with a JSON error naming it.
	_, err = p.Client.GetFeatures(ctx, client.LookupRequest{Service: "fraud", JoinKeys: map[string]any{}})
	if client.StatusOf(err) != 404 || !client.IsCode(err, "UNKNOWN_FEATURE_SERVICE") {
		t.Fatalf("unknown service: %v", err)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("tally exited with %v after SIGTERM\n%s", err, p.Output())
	}
	if !strings.Contains(p.Output(), "shutting down") {
		t.Fatalf("no graceful shutdown in the log:\n%s", p.Output())
	}
}

func TestDemoServesFeatures(t *testing.T) {
	addr := harness.FreeAddr(t)
	cmd := exec.Command(harness.Binary(t), "demo", "--listen", addr, "--data-dir", t.TempDir(), "--duration", "3s", "--rate", "500", "--users", "200")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, "km_from_home") || !strings.Contains(s, "sent ") {
		t.Fatalf("demo printed no feature vectors:\n%s", s)
	}
}

func TestRefusesPublicListenWithoutKeys(t *testing.T) {
	out, err := exec.Command(harness.Binary(t), "serve", "--listen", "0.0.0.0:0", "--data-dir", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--insecure") {
		t.Fatalf("serve on 0.0.0.0 without keys: %v\n%s", err, out)
	}
}
