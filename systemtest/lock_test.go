package systemtest

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/systemtest/harness"
)

// TestDataDirLock: a second `tally serve` on a data dir in use exits
// non-zero naming the dir and the first one's pid, and so does `tally
// admin wal repair`; once the first stops, both run. (`tally export` reads
// a running node's log: TestImportThenHistoricalFeatures runs it beside.)
func TestDataDirLock(t *testing.T) {
	dir := t.TempDir()
	p := harness.Start(t, harness.Options{DataDir: dir})
	pid := strconv.Itoa(p.Pid())
	for _, args := range [][]string{
		{"serve", "--data-dir", dir, "--listen", harness.FreeAddr(t)},
		{"admin", "wal", "repair", "--data-dir", dir},
	} {
		// Without the lock the second serve would run: give it 10 s.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, harness.Binary(t), args...).CombinedOutput()
		cancel()
		if err == nil {
			t.Fatalf("tally %s beside a running serve succeeded:\n%s", strings.Join(args, " "), out)
		}
		for _, want := range []string{"data dir " + dir + " is in use by pid " + pid, "stop it first"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("tally %s: output does not say %q:\n%s", args[0], want, out)
			}
		}
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("serve stopped with %v\n%s", err, p.Output())
	}
	if out, err := exec.Command(harness.Binary(t), "admin", "wal", "repair", "--data-dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("repair after the node stopped: %v\n%s", err, out)
	}
	harness.Start(t, harness.Options{DataDir: dir})
}
