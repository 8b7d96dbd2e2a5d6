package systemtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tally-ml/tally/systemtest/harness"
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
