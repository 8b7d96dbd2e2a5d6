package feastrepo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tally-ml/tally/features"
)

// The generated repo names every entity, source, view, table, request view
// and service of the default repo; `feast apply` on it runs in the Python
// suite (python/tests/test_feast.py).
func TestWriteDefaultRepo(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	notes, err := Write(dir, repo, Options{URL: "http://127.0.0.1:8080/", Project: "tally"})
	if err != nil {
		t.Fatal(err)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "fraud_detection has a model") {
		t.Errorf("notes %q, want one about the service's model", notes)
	}
	cfg, _ := os.ReadFile(filepath.Join(dir, ConfigFile))
	if !strings.Contains(string(cfg), "type: remote\n  path: http://127.0.0.1:8080\n") {
		t.Errorf("feature_store.yaml lacks the remote online store:\n%s", cfg)
	}
	py, _ := os.ReadFile(filepath.Join(dir, RepoFile))
	for _, want := range []string{
		`Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)`,
		`PushSource(name="transactions", batch_source=batch_transactions)`,
		`name="transactions_events"`,
		`Field(name="amt_count_1m", dtype=Int64)`,
		`Field(name="amt_stddev_1d", dtype=Float64)`,
		`name="user_profile"`,
		`def transaction_request(inputs: dict) -> dict:`,
		`RequestSource(name="transaction_request_request"`,
		`FeatureService(name="fraud_detection", features=[fv_user_transaction_counts, fv_user_transaction_amounts, fv_user_distinct_merchants, fv_merchant_transaction_counts, fv_country_amount_stats, fv_user_profile, transaction_request])`,
	} {
		if !strings.Contains(string(py), want) {
			t.Errorf("tally_repo.py lacks %s", want)
		}
	}
}

func TestWriteRefusesBadOptions(t *testing.T) {
	repo, _ := features.Default()
	for _, o := range []Options{{URL: "127.0.0.1:8080", Project: "tally"}, {URL: "http://h:1", Project: "my-project"}} {
		if _, err := Write(t.TempDir(), repo, o); err == nil {
			t.Errorf("Write with %+v succeeded", o)
		}
	}
}
