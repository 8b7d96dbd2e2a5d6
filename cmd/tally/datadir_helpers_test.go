package main

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
)

// stoppedNode leaves in dataDir what a node that served the default repo
// and stopped leaves: its log (with one ingest), a snapshot, schema.json,
// LOCK.
func stoppedNode(t *testing.T, dataDir string) {
	t.Helper()
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.DefaultConfig()
	cfg.DataDir = dataDir
	cfg.Durability.Fsync = "never"
	in, err := node.Open(cfg, repo, node.OpenOptions{Node: node.Options{RepoFS: features.DefaultFS()}})
	if err != nil {
		t.Fatal(err)
	}
	rec := fmt.Sprintf(`{"record":{"user_id":"u1","merchant":"m1","category":"c","amt":1,"country":"FR","lat":1,"long":1,"is_fraud":0,"timestamp":%d}}`,
		time.Now().Add(-time.Minute).UnixMilli())
	if _, err := in.IngestJSON([]byte(`{"workspace_name":"default","records":{"transactions":[` + rec + `]}}`)); err != nil {
		t.Fatal(err)
	}
	if err := in.Close(); err != nil { // the final snapshot
		t.Fatal(err)
	}
}

// treeOf describes every file under dir (path, mode, size, content hash),
// so that a test can say a command changed nothing there.
func treeOf(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			lines = append(lines, rel+"/")
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		lines = append(lines, fmt.Sprintf("%s %d %x", rel, len(b), sha256.Sum256(b)))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
