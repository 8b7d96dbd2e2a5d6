package bench

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/bench/inprocess"
)

// TestTinyRun runs every tally scenario and the no-op baseline briefly and
// checks that the report is complete and sane. No timing thresholds: the
// figures depend on the machine.
func TestTinyRun(t *testing.T) {
	dir := t.TempDir()
	var out strings.Builder
	rep, err := Run(context.Background(), Options{
		Quick: true, OutDir: dir, Peers: []string{PeerOnnxRuntime}, Duration: 300 * time.Millisecond,
		Rate: 2000, Users: 500, Preload: 5000, Workers: 8, Calibrate: []time.Duration{50 * time.Microsecond},
		Tally:      func() (string, func(), error) { return inprocess.Start(inprocess.Options{}) },
		TallySetup: inprocess.Setup(inprocess.Options{}),
	}, &out)
	t.Log(out.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	seen := map[string]bool{}
	for _, x := range rep.Results {
		seen[x.System+"/"+x.Scenario] = true
		if x.NotRun != "" {
			continue
		}
		if strings.HasPrefix(x.Scenario, "score-") {
			// Scoring rows are rows per second of in-process calls, no HTTP.
			if x.Throughput <= 0 || x.Description == "" {
				t.Errorf("%s %s: throughput %.0f, %q", x.System, x.Scenario, x.Throughput, x.Description)
			}
			continue
		}
		if x.Throughput <= 0 || x.Requests == 0 {
			t.Errorf("%s %s %s: throughput %.0f, %d requests", x.System, x.Scenario, x.Mode, x.Throughput, x.Requests)
		}
		if x.Latency.P50 <= 0 || x.Latency.P50 > x.Latency.P99 || x.Latency.P99 > x.Latency.Max {
			t.Errorf("%s %s %s: p50 %v p99 %v max %v", x.System, x.Scenario, x.Mode, x.Latency.P50, x.Latency.P99, x.Latency.Max)
		}
		if x.Errors != 0 {
			t.Errorf("%s %s %s: %d errors: %s", x.System, x.Scenario, x.Mode, x.Errors, x.FirstError)
		}
	}
	for _, want := range []string{"tally/lookup", "noop/lookup", "tally/ingest-json", "tally/ingest-bulk", "tally/mixed-lookup", "tally/mixed-ingest"} {
		if !seen[want] {
			t.Errorf("no %s row", want)
		}
	}
	// onnxruntime either ran beside tally's scorer on every scoring model,
	// or the report says why not.
	if !seen["onnxruntime/score"] {
		if len(rep.Scoring) != 2*len(scoreModels) {
			t.Errorf("%d scoring comparisons, want %d models at 2 batch sizes", len(rep.Scoring), len(scoreModels))
		}
		for _, c := range rep.Scoring {
			if c.TallyNs <= 0 || c.OnnxRuntimeNs <= 0 || c.Ratio() <= 0 || !seen["onnxruntime/score-"+c.Model+"-batch100"] {
				t.Errorf("scoring %s batch %d: %+v", c.Model, c.Batch, c)
			}
		}
	}
	if len(rep.Paired) != 2 || rep.Paired[0].System != "tally" || rep.Paired[1].System != "noop+50µs" {
		t.Fatalf("paired rounds beside the no-op server: tally's and one calibration's, got %+v", rep.Paired)
	}
	for _, pr := range rep.Paired {
		if len(pr.Rounds) != pairedRounds || pr.MaxRatio <= 0 || pr.P99Ratio <= 0 {
			t.Errorf("paired rounds of %s: %+v", pr.System, pr)
		}
		for _, rd := range pr.Rounds {
			if rd.Max <= 0 || rd.NoopMax <= 0 || rd.P99 <= 0 || rd.NoopP99 <= 0 {
				t.Errorf("%s: paired round %+v", pr.System, rd)
			}
		}
	}
	// 50 µs of spinning per request is several times what a request costs
	// the no-op server and its client together: the copy must serve less.
	if c := rep.Paired[1]; c.MaxRatio >= 0.9 {
		t.Errorf("a no-op server spinning 50 µs per request served %.2fx the no-op server's maximum", c.MaxRatio)
	}
	if len(rep.Correctness) == 0 || rep.Correctness[0].Lookups == 0 || rep.Correctness[0].Features == 0 {
		t.Fatalf("no lookups were checked against the reference: %+v", rep.Correctness)
	}
	if n := rep.Mismatches(); n != 0 {
		t.Fatalf("%d mismatches with the reference: %v", n, rep.Correctness)
	}
	if rep.Freshness == nil || rep.Freshness.Probes == 0 || rep.Freshness.NeverVisible != 0 {
		t.Fatalf("freshness: %+v", rep.Freshness)
	}
	var back Report
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &back); err != nil || len(back.Results) != len(rep.Results) {
		t.Fatalf("report.json does not round-trip: %v", err)
	}
	for _, f := range []string{"report.md", "latency-tally.png", "latency-noop.png", "p99-all.png"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
}
