package systemtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tally-ml/tally/systemtest/harness"
	"github.com/tally-ml/tally/wal"
)

// TestDemoNodes runs `tally demo --nodes 3` for a few seconds: it starts a
// 3-process cluster, streams into it, prints live vectors read through the
// nodes, and stops every node when it ends.
func TestDemoNodes(t *testing.T) {
	dir := t.TempDir()
	out, err := exec.Command(harness.Binary(t), "demo", "--nodes", "3", "--duration", "6s", "--rate", "500", "--data-dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("demo --nodes 3: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{"starting 3 nodes", "--node-id n2", "p(fraud)"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if m := regexp.MustCompile(`sent (\d+) transactions`).FindStringSubmatch(s); m == nil || m[1] == "0" {
		t.Errorf("no transactions sent:\n%s", s)
	}
	// Every node was stopped gracefully (SIGTERM), not left running.
	for _, id := range []string{"n0", "n1", "n2"} {
		b, err := os.ReadFile(filepath.Join(dir, id+".log"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "shutting down") {
			t.Errorf("%s was not shut down:\n%s", id, b)
		}
	}
	if _, err := exec.Command(harness.Binary(t), "demo", "--nodes", "3", "--listen", "127.0.0.1:0").CombinedOutput(); err == nil {
		t.Error("demo --nodes 3 --listen: no error")
	}
}

// TestDemoNodesRefusesANodesDataDir: `tally demo --nodes 3 --data-dir D`
// over a node's data dir started the cluster's nodes inside it (D/n0...,
// D/n0.log, with --kafka D/kafka-repo). Demo refuses a data dir it did not
// make before it starts anything, and D is left as it was.
func TestDemoNodesRefusesANodesDataDir(t *testing.T) {
	dir := t.TempDir()
	l, err := wal.Open(filepath.Join(dir, "wal"), wal.Options{SegmentSize: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append([]byte("a record")); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	list := func() []string {
		ents, _ := os.ReadDir(dir)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names
	}
	before := list()
	out, err := exec.Command(harness.Binary(t), "demo", "--nodes", "3", "--duration", "2s", "--rate", "100", "--data-dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "pass --data-dir a new directory") {
		t.Errorf("demo --nodes 3 over a node's data dir: %v, want a refusal saying to pass --data-dir a new directory:\n%s", err, out)
	}
	if after := list(); !slices.Equal(before, after) {
		t.Errorf("the data dir held %v, now %v", before, after)
	}
}
