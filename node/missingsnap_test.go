package node

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/wal"
)

// TestMissingSnapshotRefusalSaysWhatToDo: a data dir whose snapshots were
// deleted after the log's front was dropped is refused at start (the log
// alone cannot rebuild the state); the refusal said only "a snapshot is
// missing". It now names the snapshots directory and what works: put the
// snapshot back, or start over with the data dir moved aside.
func TestMissingSnapshotRefusalSaysWhatToDo(t *testing.T) {
	dir := t.TempDir()
	cfg := openCfg(dir, "always", false)
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	clk := &testClock{}
	clk.set(t0)
	opts := OpenOptions{Node: Options{Clock: clk.now, RepoFS: features.DefaultFS()},
		WAL: func(o *wal.Options) { o.SegmentSize = 4096 }} // roll often: the front has segments to drop
	in, err := Open(cfg, repo, opts)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 4 {
		for i := range 40 {
			userTxn(t, in.Node, "u"+strconv.Itoa(i%5), float64(round*40+i+1))
		}
		if _, err := in.Snapshot(); err != nil {
			t.Fatal(err)
		}
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	snaps := filepath.Join(dir, "snapshots")
	if err := os.RemoveAll(snaps); err != nil {
		t.Fatal(err)
	}
	in, err = Open(cfg, repo, opts)
	if err == nil {
		in.Close()
		t.Fatal("a data dir whose log's front was dropped and whose snapshots were deleted was opened; want it refused")
	}
	for _, want := range []string{"a snapshot is missing", snaps, "put", "move " + dir + " aside"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("refusal %q does not say %q", err, want)
		}
	}
	t.Log(err)
}
