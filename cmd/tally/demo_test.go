package main

import (
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
)

// TestDemoRefusesANodesDataDir: demo's default data dir is serve's,
// ./tally-data. Run where a stopped node keeps its data (or given that
// node's --data-dir), demo wrote synthetic transactions and user_profile
// rows into the node's log and tables. It refuses a data dir it did not
// make, changing nothing, and says to give --data-dir a new directory.
func TestDemoRefusesANodesDataDir(t *testing.T) {
	work := t.TempDir()
	prod := filepath.Join(work, "tally-data")
	stoppedNode(t, prod)
	before := treeOf(t, prod)
	demo := []string{"demo", "--listen", "127.0.0.1:0", "--duration", "1s", "--rate", "100", "--users", "10"}
	check := func(what string, args ...string) {
		t.Helper()
		_, err := run(t, append(demo, args...)...)
		if err == nil || !strings.Contains(err.Error(), "--data-dir") || !strings.Contains(err.Error(), "new directory") {
			t.Errorf("%s: %v, want a refusal saying to pass --data-dir a new directory", what, err)
		}
		if after := treeOf(t, prod); after != before {
			t.Fatalf("%s changed the node's data dir:\nbefore:\n%s\nafter:\n%s", what, before, after)
		}
	}
	check("demo --data-dir <a node's data dir>", "--data-dir", prod)
	t.Chdir(work)
	check("demo (the default ./tally-data, a node's)")
}

// TestDemoDataDirServesAgain: a data dir demo made (a new one, or an empty
// one) is demo's: demo runs on it again, and tally serve opens it (the
// README's and issue #14's `tally demo ...` then `tally serve`).
func TestDemoDataDirServesAgain(t *testing.T) {
	for _, dir := range []string{filepath.Join(t.TempDir(), "new"), t.TempDir()} {
		for i := range 2 {
			out, err := run(t, "demo", "--data-dir", dir, "--listen", "127.0.0.1:0", "--duration", "1s", "--rate", "100", "--users", "10")
			if err != nil || !strings.Contains(out, "sent ") {
				t.Fatalf("demo run %d on %s: %v\n%s", i+1, dir, err, out)
			}
		}
		repo, err := features.Default()
		if err != nil {
			t.Fatal(err)
		}
		cfg := node.DefaultConfig()
		cfg.DataDir, cfg.Listen = dir, "127.0.0.1:0"
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		r, err := start(cfg, repo, features.DefaultFS(), log)
		if err != nil {
			t.Fatalf("serve on the demo's data dir: %v", err)
		}
		// Serving.
		resp, err := http.Get("http://" + r.ln.Addr().String() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if err := r.stop(log); err != nil {
			t.Fatal(err)
		}
	}
}
