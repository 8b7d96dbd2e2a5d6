package main

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
)

// TestDataDirInsideADataDirIsRefused: `--data-dir D/wal` (or D/snapshots)
// is the inside of a node's data dir, D. serve (and demo) started an empty
// node inside the log directory, export read an empty archive there. Every
// command that opens a data dir refuses it, naming D, and changes nothing.
func TestDataDirInsideADataDirIsRefused(t *testing.T) {
	prod := filepath.Join(t.TempDir(), "tally-data")
	stoppedNode(t, prod)
	before := treeOf(t, prod)
	work := t.TempDir()
	spine := filepath.Join(work, "spine.csv")
	if err := os.WriteFile(spine, []byte("user_id,merchant,country,timestamp,amt,lat,long\nu1,m1,FR,1790000000000,1,2,3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	want := "--data-dir " + prod
	// names prod itself, not prod/wal
	names := regexp.MustCompile(regexp.QuoteMeta(want) + `($|[^/])`).MatchString
	for _, inside := range []string{filepath.Join(prod, "wal"), filepath.Join(prod, "snapshots")} {
		cfg := node.DefaultConfig()
		cfg.DataDir, cfg.Listen = inside, "127.0.0.1:0"
		if r, err := start(cfg, repo, features.DefaultFS(), log); err == nil {
			if resp, err := http.Get("http://" + r.ln.Addr().String() + "/healthz"); err == nil {
				resp.Body.Close()
			}
			r.stop(log)
			t.Errorf("serve --data-dir %s: started, want a refusal naming %s", inside, want)
		} else if !names(err.Error()) {
			t.Errorf("serve --data-dir %s: %v, want a refusal naming %s", inside, err, want)
		}
		for _, args := range [][]string{
			{"demo", "--listen", "127.0.0.1:0", "--duration", "1s", "--rate", "100", "--users", "10"},
			{"export", "--service", "fraud_detection", "--spine", spine, "--out", filepath.Join(work, "train.csv"), "--quiet"},
			{"admin", "wal", "repair"},
			{"admin", "inspect"},
			{"cluster", "recover", "--keep", "n0", "--yes"},
		} {
			args = append(args, "--data-dir", inside)
			if _, err := run(t, args...); err == nil || !names(err.Error()) {
				t.Errorf("tally %s: %v, want a refusal naming %s", strings.Join(args, " "), err, want)
			}
		}
		if after := treeOf(t, prod); after != before {
			t.Fatalf("--data-dir %s changed the node's data dir:\nbefore:\n%s\nafter:\n%s", inside, before, after)
		}
	}
	if ents, _ := os.ReadDir(work); len(ents) != 1 {
		t.Errorf("the refused commands left %d entries in %s, want spine.csv alone", len(ents), work)
	}
}
