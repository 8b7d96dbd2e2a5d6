package history

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"testing"
	"testing/fstest"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
)

// A log written under a repo that had one more source (events logged to
// it) joins under the repo without it: the removed source's records feed
// none of the repo's features, so they are skipped, not an error, and the
// features of the sources that remain are what they were.
func TestJoinOverRecordsOfARemovedSource(t *testing.T) {
	fraud, err := fs.ReadFile(features.DefaultFS(), "fraud.yaml")
	if err != nil {
		t.Fatal(err)
	}
	withClicks, err := features.Load(fstest.MapFS{
		"fraud.yaml": {Data: fraud},
		"clicks.yaml": {Data: []byte(`
sources:
  - {name: clicks, timestamp: ts, schema: {user_id: string, page: string}}
feature_views:
  - name: user_clicks
    source: clicks
    entity: user
    aggregations: [{column: page, function: count, window: 1h}]
`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	repo, withClicks = withoutModels(repo), withoutModels(withClicks)
	cfg := node.DefaultConfig()
	cfg.DataDir = t.TempDir()
	clock := int64(1795564800000)
	in, err := node.Open(cfg, withClicks, node.OpenOptions{Node: node.Options{Clock: func() int64 { return clock }}})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	for i := 0; i < 3; i++ {
		clock += 1000
		x := txn{user: "u1", merchant: "m1", country: "FR", amt: 1, ts: clock - 10}
		if _, err := in.IngestNDJSON("transactions", []byte(x.json()+"\n"), false); err != nil {
			t.Fatal(err)
		}
		if _, err := in.IngestNDJSON("clicks", []byte(fmt.Sprintf(`{"user_id":"u1","page":"p","ts":%d}`+"\n", clock-10)), false); err != nil {
			t.Fatal(err)
		}
	}
	probes := []*probe{{user: "u1", merchant: "m1", country: "FR", amt: 1, t: clock + 1}}
	j, err := New(Options{Repo: repo, Service: "fraud_detection", Archive: in.WAL()})
	if err != nil {
		t.Fatal(err)
	}
	s, err := j.ReadSpine(spineOf(t, probes, rand.New(rand.NewPCG(1, 2))), "timestamp", 0)
	if err != nil {
		t.Fatal(err)
	}
	var w rowsWriter
	if _, err := j.Run(context.Background(), s, &w); err != nil {
		t.Fatalf("join over records of a removed source: %v", err)
	}
	cols := j.Columns(s)
	for i, c := range cols {
		if c.Name == "user_transaction_counts.amt_count_1h" {
			if got := w.rows[0][i].Int; got != 3 {
				t.Fatalf("amt_count_1h = %d, want 3 (%v)", got, w.rows[0][i])
			}
			return
		}
	}
	t.Fatalf("no amt_count_1h column in %v", cols)
}
