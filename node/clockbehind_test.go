package node

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/features"
)

// TestStartWarnsWhenTheClockIsBehind: reads use the node's clock, so after
// the clock steps back between restarts the events and table rows
// acknowledged in the time it stepped over read as not yet valid until it
// passes them again; nothing said so. A start whose clock is more than a
// second behind the newest acknowledgement clock the log holds now warns,
// naming both times, and tally_clock_behind_seconds says by how much;
// from the final snapshot (nothing replayed) and from the log alike. A
// clock at or past it warns of nothing.
func TestStartWarnsWhenTheClockIsBehind(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, final := range []bool{true, false} {
		t.Run(fmt.Sprintf("final_snapshot=%v", final), func(t *testing.T) {
			cfg := openCfg(t.TempDir(), "always", final)
			open := func(now int64) (*Instance, string) {
				clk := &testClock{}
				clk.set(now)
				var log bytes.Buffer
				in, err := Open(cfg, repo, OpenOptions{Node: Options{Clock: clk.now, RepoFS: features.DefaultFS()},
					Logger: slog.New(slog.NewTextHandler(&log, nil))})
				if err != nil {
					t.Fatal(err)
				}
				return in, log.String()
			}
			behind := func(in *Instance) string {
				var buf bytes.Buffer
				in.Metrics().WritePrometheus(&buf)
				for _, l := range strings.Split(buf.String(), "\n") {
					if strings.HasPrefix(l, "tally_clock_behind_seconds ") {
						return l
					}
				}
				return "(no tally_clock_behind_seconds)"
			}
			in, _ := open(t0)
			userTxn(t, in.Node, "u1", 5)
			if err := in.Close(); err != nil {
				t.Fatal(err)
			}

			in, log := open(t0 - time.Hour.Milliseconds())
			got := behind(in)
			in.Close()
			newest, now := time.UnixMilli(t0).UTC().Format(time.RFC3339), time.UnixMilli(t0-time.Hour.Milliseconds()).UTC().Format(time.RFC3339)
			var warn string
			for _, l := range strings.Split(log, "\n") {
				if strings.Contains(l, "level=WARN") && strings.Contains(l, "clock") {
					warn = l
				}
			}
			if warn == "" {
				t.Fatalf("restarted with the clock an hour behind the newest acknowledged change: no WARN about the clock; log:\n%s", log)
			}
			for _, want := range []string{newest, now, "not yet valid"} {
				if !strings.Contains(warn, want) {
					t.Fatalf("warning %q does not say %q", warn, want)
				}
			}
			t.Log(warn)
			if got != "tally_clock_behind_seconds 3600" {
				t.Fatalf("metric %q; want tally_clock_behind_seconds 3600", got)
			}

			in, log = open(t0)
			got = behind(in)
			in.Close()
			if strings.Contains(log, "level=WARN") || got != "tally_clock_behind_seconds 0" {
				t.Fatalf("restarted with the clock where it was: metric %q, log:\n%s\nwant no warning and 0", got, log)
			}
		})
	}
}
