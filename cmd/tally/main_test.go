package main

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/wal"
)

// run executes the tally command line in process and returns its output.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := rootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// A command group run alone or with a mistyped subcommand fails, as a
// usage error (exit 2).
func TestUnknownSubcommandFails(t *testing.T) {
	for _, args := range [][]string{{"admin", "snapshot"}, {"admin", "wal", "repir"}, {"admin"}, {"admin", "wal"}, {"model", "inspekt"}} {
		out, err := run(t, args...)
		if err == nil {
			t.Errorf("tally %s: no error (output %q)", strings.Join(args, " "), out)
			continue
		}
		if exitCode(err) != exitUsage {
			t.Errorf("tally %s: %v (exit %d), want a usage error (exit 2)", strings.Join(args, " "), err, exitCode(err))
		}
		if len(args) > 1 && args[len(args)-1] != "wal" && !strings.Contains(err.Error(), "unknown command") {
			t.Errorf("tally %s: %v, want unknown command", strings.Join(args, " "), err)
		}
	}
}

// A command run without a flag it needs fails as a usage error (exit 2),
// naming the flags missing, before it does anything.
func TestMissingRequiredFlagsAreUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"export", "--service", "fraud_detection"}, "--spine, --out"},
		{[]string{"import", "--url", "http://127.0.0.1:1"}, "--source"},
		{[]string{"model", "predict"}, "--input"},
	} {
		_, err := run(t, c.args...)
		if exitCode(err) != exitUsage || err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("tally %s: %v (exit %d), want a usage error (exit 2) naming %s", strings.Join(c.args, " "), err, exitCode(err), c.want)
		}
	}
}

// writeLog writes n records to dataDir's write-ahead log.
func writeLog(t *testing.T, dataDir string, n int) string {
	t.Helper()
	dir := filepath.Join(dataDir, "wal")
	l, err := wal.Open(dir, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if _, err := l.Append(bytes.Repeat([]byte{byte(i)}, 200)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	if len(segs) != 1 {
		t.Fatalf("segments: %v", segs)
	}
	return segs[0]
}

// corrupt flips a byte in the middle of a segment's records.
func corrupt(t *testing.T, seg string) {
	t.Helper()
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	end := len(bytes.TrimRight(data, "\x00")) // segments are preallocated
	data[end/2] ^= 0xff
	if err := os.WriteFile(seg, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// repair refuses extra arguments, says when a log is clean, and names where
// it moved a corrupt tail.
func TestRepairMessages(t *testing.T) {
	dataDir := t.TempDir()
	seg := writeLog(t, dataDir, 40)
	if _, err := run(t, "admin", "wal", "repair", "--data-dir", dataDir, "extra"); err == nil {
		t.Fatal("repair with an extra argument: no error")
	}
	out, err := run(t, "admin", "wal", "repair", "--data-dir", dataDir)
	if err != nil || !strings.Contains(out, "the log is clean, nothing moved") || strings.Contains(out, "corrupt-") {
		t.Fatalf("repair of a clean log: %v %q", err, out)
	}
	corrupt(t, seg)
	out, err = run(t, "admin", "wal", "repair", "--data-dir", dataDir)
	moved, _ := filepath.Glob(filepath.Join(dataDir, "wal", "corrupt-*"))
	if err != nil || len(moved) != 1 || !strings.Contains(out, moved[0]) || strings.Contains(out, "<time>") {
		t.Fatalf("repair of a corrupt log: %v %q (moved: %v)", err, out, moved)
	}
}

// A node whose log is corrupt in the middle refuses to start and names the
// command that repairs it.
func TestStartNamesRepairCommand(t *testing.T) {
	dataDir := t.TempDir()
	corrupt(t, writeLog(t, dataDir, 40))
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.DefaultConfig()
	cfg.DataDir, cfg.Listen = dataDir, "127.0.0.1:0"
	r, err := start(cfg, repo, features.DefaultFS(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		r.stop(slog.New(slog.NewTextHandler(io.Discard, nil)))
		t.Fatal("started over a corrupt log")
	}
	if want := "tally admin wal repair --data-dir " + dataDir; !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "wal.Repair") {
		t.Fatalf("start: %v\nwant it to name %q", err, want)
	}

	// Corruption in a sealed segment, met by the replay, not by the log's
	// open.
	dataDir = t.TempDir()
	l, err := wal.Open(filepath.Join(dataDir, "wal"), wal.Options{SegmentSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		if _, err := l.Append(bytes.Repeat([]byte{byte(i)}, 200)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dataDir, "wal", "*.wal"))
	if len(segs) < 3 {
		t.Fatalf("segments: %v", segs)
	}
	data, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	data[16+8+4] ^= 0xff // the first record (the replay reads no record before it)
	if err := os.WriteFile(segs[0], data, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = dataDir
	r, err = start(cfg, repo, features.DefaultFS(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		r.stop(slog.New(slog.NewTextHandler(io.Discard, nil)))
		t.Fatal("started over a log corrupt in a sealed segment")
	}
	if want := "tally admin wal repair --data-dir " + dataDir; !strings.Contains(err.Error(), want) {
		t.Fatalf("start: %v\nwant it to name %q", err, want)
	}
}

func TestImportChunkMustBePositive(t *testing.T) {
	for _, c := range []string{"0", "-5"} {
		_, err := run(t, "import", "events.csv", "--source", "transactions", "--chunk", c)
		if err == nil || !strings.Contains(err.Error(), "--chunk") {
			t.Errorf("--chunk %s: %v, want an error naming --chunk", c, err)
		}
	}
}

// A positional argument to a command that takes none is refused, not
// ignored: `tally serve ./repo` (meant: --repo ./repo) served the embedded
// fraud repo. Each command line would fail later for another reason, so
// the run stops before anything starts.
func TestPositionalArgumentsAreRefused(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"serve", "./myrepo", "--listen", "bad", "--data-dir", dir},
		{"demo", "./myrepo", "--listen", "bad", "--data-dir", dir},
		{"export", "./myrepo", "--repo", filepath.Join(dir, "none")},
		{"bench", "extra", "--cpuprofile", filepath.Join(dir, "none", "cpu.out")},
	} {
		_, err := run(t, args...)
		if err == nil || !strings.Contains(err.Error(), "takes no arguments") || exitCode(err) != exitUsage {
			t.Errorf("tally %s: %v (exit %d), want a usage error saying it takes no arguments", strings.Join(args, " "), err, exitCode(err))
		}
	}
}

// demo's numbers must be ones it can run: --users 0 started the node and
// then panicked (index out of range) drawing a card holder, --rate 0 or
// less streamed 20 events a second while saying it streamed 0 or -5.
func TestDemoRefusesBadNumbers(t *testing.T) {
	dir := t.TempDir()
	for _, flags := range [][]string{{"--users", "0"}, {"--users", "-3"}, {"--rate", "0"}, {"--rate", "-5"}, {"--nodes", "0"}, {"--duration", "-1s"}} {
		args := append([]string{"demo", "--data-dir", dir, "--listen", "127.0.0.1:0", "--duration", "1s"}, flags...)
		_, err := run(t, args...)
		if err == nil || !strings.Contains(err.Error(), flags[0]) {
			t.Errorf("tally %s: %v, want an error naming %s", strings.Join(args, " "), err, flags[0])
		}
	}
}

// TestStrayArgumentsAreUsageErrors: every command refuses arguments it
// does not take as a usage error, exit 2, as the help texts promise
// ("2 bad flags or arguments"): commands built with cobra.NoArgs or
// cobra.ExactArgs exited 1 (as if the cluster had refused a change), and
// `tally version` took any. The validators are called directly, so that a
// command that would accept the arguments does not run.
func TestStrayArgumentsAreUsageErrors(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.HasSubCommands() {
			for _, sub := range c.Commands() {
				walk(sub)
			}
			return
		}
		if c.Args == nil {
			t.Errorf("%s takes any arguments: give it noArgs or exactArgs", c.CommandPath())
			return
		}
		if err := c.Args(c, []string{"stray-1", "stray-2", "stray-3"}); exitCode(err) != exitUsage {
			t.Errorf("%s stray-1 stray-2 stray-3: %v (exit %d), want a usage error (exit 2)", c.CommandPath(), err, exitCode(err))
		}
		if err := c.Args(c, nil); err != nil && exitCode(err) != exitUsage {
			t.Errorf("%s without arguments: %v (exit %d), want none or a usage error (exit 2)", c.CommandPath(), err, exitCode(err))
		}
	}
	walk(rootCmd())
	// Through the command line: nothing is sent (--addr: nothing listens).
	for _, args := range [][]string{
		{"cluster", "--addr", "127.0.0.1:1", "rebalance", "now"},
		{"cluster", "--addr", "127.0.0.1:1", "move-replica", "--group", "0", "--from", "n0", "--to", "n1", "extra"},
		{"cluster", "--addr", "127.0.0.1:1", "remove-node"},
		{"cluster", "--addr", "127.0.0.1:1", "remove-node", "n1", "n2"},
		{"version", "extra"},
	} {
		if _, err := run(t, args...); exitCode(err) != exitUsage {
			t.Errorf("tally %s: %v (exit %d), want a usage error (exit 2)", strings.Join(args, " "), err, exitCode(err))
		}
	}
}

// TestRecoverRefusesTheOnlineFlags: `tally cluster recover` works offline
// on a data dir and took the `tally cluster` flags --addr, --api-key and
// --timeout without a word, doing nothing with them. Each is a usage
// error (exit 2) that changes nothing, and its help leaves them out (the
// other subcommands keep them).
func TestRecoverRefusesTheOnlineFlags(t *testing.T) {
	dir := t.TempDir()
	for _, fl := range [][]string{{"--addr", "10.0.0.1:8080"}, {"--api-key", "k"}, {"--timeout", "1m"}} {
		args := append([]string{"cluster", "recover", "--data-dir", dir, "--keep", "n0", "--yes"}, fl...)
		_, err := run(t, args...)
		if exitCode(err) != exitUsage || !strings.Contains(err.Error(), fl[0]+": recover talks to no node") {
			t.Errorf("tally %s: %v (exit %d), want a usage error naming %s", strings.Join(args, " "), err, exitCode(err), fl[0])
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the refused recoveries wrote into the data dir: %v", ents)
	}
	help, err := run(t, "cluster", "recover", "--help")
	if err != nil || !strings.Contains(help, "--keep") || strings.Contains(help, "--addr") || strings.Contains(help, "--api-key") || strings.Contains(help, "--timeout") {
		t.Errorf("recover --help (%v) lists the online flags, or not its own:\n%s", err, help)
	}
	if help, _ := run(t, "cluster", "status", "--help"); !strings.Contains(help, "--addr") {
		t.Errorf("status --help lost --addr:\n%s", help)
	}
}
