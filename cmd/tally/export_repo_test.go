package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tally-ml/tally/features"
)

// TestExportWarnsOfAnotherRepo: export with a repo whose views differ from
// the ones the node served (its data dir's schema.json) wrote features the
// node never served, without a word. It still exports (a backfill of new
// features is deliberate), and warns on stderr naming each view that
// differs; with the node's own repo it says nothing.
func TestExportWarnsOfAnotherRepo(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	stoppedNode(t, data) // served the embedded repo
	spine := filepath.Join(dir, "spine.csv")
	if err := os.WriteFile(spine, []byte("user_id,merchant,country,timestamp,amt,lat,long\nu1,m1,FR,1790000000000,1,2,3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	same := filepath.Join(dir, "same")
	if err := os.CopyFS(same, features.DefaultFS()); err != nil {
		t.Fatal(err)
	}
	changed := filepath.Join(dir, "changed")
	if err := os.CopyFS(changed, features.DefaultFS()); err != nil {
		t.Fatal(err)
	}
	yaml, err := os.ReadFile(filepath.Join(changed, "fraud.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(yaml), "aggregation_interval: 1d", "aggregation_interval: 1h", 1)
	s = strings.Replace(s, "feature_views:\n", "feature_views:\n  - name: user_max_amounts\n    source: transactions\n    entity: user\n"+
		"    aggregations:\n      - {column: amt, function: max, window: 1d}\n\n", 1)
	if err := os.WriteFile(filepath.Join(changed, "fraud.yaml"), []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		repo string
		want []string // in the warning; none: no warning
	}{
		{"", nil},
		{same, nil},
		{changed, []string{"country_amount_stats", "user_max_amounts"}},
	} {
		out := filepath.Join(dir, "train.csv")
		os.Remove(out)
		args := []string{"export", "--service", "fraud_detection", "--spine", spine, "--out", out, "--data-dir", data, "--quiet"}
		if c.repo != "" {
			args = append(args, "--repo", c.repo)
		}
		msg, err := run(t, args...)
		if err != nil {
			t.Fatalf("export --repo %q: %v\n%s", c.repo, err, msg)
		}
		if _, err := os.Stat(out); err != nil {
			t.Errorf("export --repo %q wrote nothing: %v", c.repo, err)
		}
		if warned := strings.Contains(msg, "warning"); warned != (c.want != nil) {
			t.Errorf("export --repo %q: warned %v, want %v:\n%s", c.repo, warned, c.want != nil, msg)
		}
		for _, v := range c.want {
			if !strings.Contains(msg, "view "+v) {
				t.Errorf("export --repo %q: the warning does not name view %s:\n%s", c.repo, v, msg)
			}
		}
	}
}
