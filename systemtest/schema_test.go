package systemtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/systemtest/harness"
)

const schemaRepoA = `
sources:
  - {name: clicks, timestamp: ts, schema: {user: string, page: string}}
  - {name: buys, timestamp: ts, schema: {user: string, amt: float}}
entities:
  - {name: user, join_key: user}
feature_views:
  - name: user_clicks
    source: clicks
    entity: user
    aggregations: [{column: page, function: count, window: 1h}]
  - name: user_buys
    source: buys
    entity: user
    aggregations: [{column: amt, function: sum, window: 1h}]
`

// The real binary refuses to start over a data dir whose repo lost a
// source, naming the change and the flag; with the flag it starts, skipping
// the removed source's records in the log, and the next start needs no flag.
func TestServeRefusesRemovedSourceUntilAccepted(t *testing.T) {
	dataDir, repoA, repoB := t.TempDir(), t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(repoA, "repo.yaml"), []byte(schemaRepoA), 0o644)
	b := strings.Replace(schemaRepoA, "  - {name: buys, timestamp: ts, schema: {user: string, amt: float}}\n", "", 1)
	b = b[:strings.Index(b, "  - name: user_buys")]
	os.WriteFile(filepath.Join(repoB, "repo.yaml"), []byte(b), 0o644)

	p := harness.Start(t, harness.Options{Args: []string{"--repo", repoA}, DataDir: dataDir})
	now := time.Now().UnixMilli()
	for _, c := range []struct{ source, body string }{
		{"clicks", fmt.Sprintf(`{"user":"u1","page":"a","ts":%d}`, now-1000)},
		{"buys", fmt.Sprintf(`{"user":"u1","amt":2,"ts":%d}`, now-1000)},
	} {
		if _, err := p.Client.IngestBulk(context.Background(), c.source, []byte(c.body), client.WriteOptions{}); err != nil {
			t.Fatalf("ingest %s: %v", c.source, err)
		}
	}
	p.Kill() // no shutdown snapshot: the log holds the records

	refused := harness.Launch(t, harness.Options{Args: []string{"--repo", repoB}, DataDir: dataDir})
	select {
	case <-refused.Exited():
	case <-time.After(30 * time.Second):
		t.Fatalf("serve over a removed source did not exit\n%s", refused.Output())
	}
	if out := refused.Output(); refused.ExitErr() == nil || !strings.Contains(out, "source buys removed") || !strings.Contains(out, "--accept-schema-change") {
		t.Fatalf("serve over a removed source: %v\n%s", refused.ExitErr(), out)
	}
	p = harness.Start(t, harness.Options{Args: []string{"--repo", repoB, "--accept-schema-change"}, DataDir: dataDir})
	if !strings.Contains(p.Output(), "skipped records of sources or tables the repo no longer has") {
		t.Fatalf("startup log does not count the skipped records:\n%s", p.Output())
	}
	p.Kill()
	harness.Start(t, harness.Options{Args: []string{"--repo", repoB}, DataDir: dataDir})
}
