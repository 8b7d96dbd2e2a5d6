package systemtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

	p := startTally(t, "serve", "--repo", repoA, "--data-dir", dataDir)
	now := time.Now().UnixMilli()
	for _, c := range []struct{ source, body string }{
		{"clicks", fmt.Sprintf(`{"user":"u1","page":"a","ts":%d}`, now-1000)},
		{"buys", fmt.Sprintf(`{"user":"u1","amt":2,"ts":%d}`, now-1000)},
	} {
		if code, body := p.post(t, "/api/v1/ingest/bulk?source="+c.source, c.body); code != 200 {
			t.Fatalf("ingest %s: %d %s", c.source, code, body)
		}
	}
	p.cmd.Process.Kill() // no shutdown snapshot: the log holds the records
	<-p.done

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "serve", "--repo", repoB, "--data-dir", dataDir, "--listen", freeAddr(t)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "source buys removed") || !strings.Contains(string(out), "--accept-schema-change") {
		t.Fatalf("serve over a removed source: %v\n%s", err, out)
	}
	p = startTally(t, "serve", "--repo", repoB, "--data-dir", dataDir, "--accept-schema-change")
	if !strings.Contains(p.out.String(), "skipped records of sources or tables the repo no longer has") {
		t.Fatalf("startup log does not count the skipped records:\n%s", p.out)
	}
	p.cmd.Process.Kill()
	<-p.done
	startTally(t, "serve", "--repo", repoB, "--data-dir", dataDir)
}
