package systemtest

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDataDirLock: a second `tally serve` on a data dir in use exits
// non-zero naming the dir and the first one's pid, and so does `tally
// admin wal repair`; once the first stops, both run. (`tally export` reads
// a running node's log: TestImportThenHistoricalFeatures runs it beside.)
func TestDataDirLock(t *testing.T) {
	dir := t.TempDir()
	p := startTally(t, "serve", "--data-dir", dir)
	pid := strconv.Itoa(p.cmd.Process.Pid)
	for _, args := range [][]string{
		{"serve", "--data-dir", dir, "--listen", freeAddr(t)},
		{"admin", "wal", "repair", "--data-dir", dir},
	} {
		// Without the lock the second serve would run: give it 10 s.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
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
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-p.done; err != nil {
		t.Fatalf("serve stopped with %v\n%s", err, p.out)
	}
	if out, err := exec.Command(binary, "admin", "wal", "repair", "--data-dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("repair after the node stopped: %v\n%s", err, out)
	}
	startTally(t, "serve", "--data-dir", dir)
}
