package history

import (
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
)

// A string request field (which feeds a model's string input, never an
// expression) is a column the spine carries as text: the join neither
// parses it as a number nor refuses it.
func TestSpineCarriesStringRequestField(t *testing.T) {
	data, err := fs.ReadFile(features.DefaultFS(), "fraud.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(data), "      long: float\n    features:", "      long: float\n      channel: string\n    features:", 1)
	repo, err := features.Load(fstest.MapFS{"fraud.yaml": {Data: []byte(src)}})
	if err != nil {
		t.Fatal(err)
	}
	if ctx := repo.Services[0].RequestContext; len(ctx) != 4 || ctx[3].Name != "channel" || ctx[3].Type != features.String {
		t.Fatalf("request context %+v", ctx)
	}
	ln := newLiveNodeOf(t, spineStart, repo)
	ln.ingest(t, txn{user: "u1", merchant: "m1", country: "FR", amt: 3, ts: spineStart - 1000})
	h := startHistoryServer(t, ln, node.DefaultConfig().Limits)
	url := h.base + Path + "?service=fraud_detection&format=csv"
	var b strings.Builder
	b.WriteString("user_id,merchant,country,timestamp,amt,lat,long,channel\n")
	for i := 0; i < 5; i++ {
		fmt.Fprintf(&b, "u1,m1,FR,%d,%d.5,48.8,2.3,%s\n", spineStart+int64(i), i, []string{"web", "pos", "", "app web", "web"}[i])
	}
	status, body := postSpine(t, url, "text/csv", []byte(b.String()))
	if status != 200 {
		t.Fatalf("a spine with a text channel: %d %s", status, body[:min(len(body), 300)])
	}
	if !strings.Contains(body, "app web") || strings.Count(strings.TrimSpace(body), "\n") != 5 {
		t.Fatalf("the joined rows do not carry the spine's channel column:\n%s", body)
	}
}
