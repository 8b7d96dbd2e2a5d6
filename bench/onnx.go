package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tally-ml/tally/score"
	"github.com/tally-ml/tally/score/onnx"
)

// scoreModels are the scoring scenario's models, all from the parity suite
// (score/onnx/parity/generate.sh): what a fraud team ships.
var scoreModels = []struct{ name, what string }{
	{"rf100_d8", "random forest, 100 trees of depth 8, 30 features"},
	{"pipe_imputer_std_lr", "imputer + scaler + logistic regression, 8 features"},
	{"iso_forest", "IsolationForest, 100 trees"},
	{"str_onehot_gb", "imputer + scaler on 4 numbers, one-hot string category, 30-tree GBDT"},
}

// ScoreComparison is one model at one batch size, scored by tally in
// process and by onnxruntime on the same rows.
type ScoreComparison struct {
	Model string `json:"model"`
	What  string `json:"what"`
	Batch int    `json:"batch"`
	// Per-row medians; OnnxRuntimeNs is 0 when onnxruntime did not run.
	TallyNs       float64 `json:"tally_ns_per_row"`
	OnnxRuntimeNs float64 `json:"onnxruntime_ns_per_row,omitempty"`
}

// Ratio is onnxruntime's time over tally's: above 1, tally is faster; 0
// when onnxruntime did not run.
func (c ScoreComparison) Ratio() float64 {
	if c.TallyNs <= 0 {
		return 0
	}
	return c.OnnxRuntimeNs / c.TallyNs
}

// runOnnx is the scoring scenario: each of scoreModels scored with tally's
// evaluator in process and with onnxruntime (single-threaded, from the
// repo's .venv, through its Python API), on the same rows and string
// columns, at batch 1 and batch 100; it reports nanoseconds per row (the
// median of several repeats of about 100 ms each) and their ratio.
func (r *runner) runOnnx(ctx context.Context) error {
	if !r.opts.want("score") {
		return nil
	}
	dir := filepath.Join(r.opts.RepoRoot, "score", "onnx", "testdata", "generated")
	py := filepath.Join(r.opts.RepoRoot, ".venv", "bin", "python")
	notRun := func(reason string) error {
		r.rep.Peers = append(r.rep.Peers, PeerStatus{Name: PeerOnnxRuntime, Reason: reason, Setup: "score/onnx/parity/generate.sh"})
		r.add(Result{System: "onnxruntime", Scenario: "score", Mode: "-", NotRun: reason})
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "rf100_d8.onnx")); err != nil {
		return notRun("rf100_d8.onnx not generated: run score/onnx/parity/generate.sh")
	}
	reps, target := 7, 100*time.Millisecond
	if r.opts.Quick {
		reps, target = 5, 40*time.Millisecond
	}
	var names []string
	for _, sm := range scoreModels {
		m, rows, strs, n, err := loadScoreModel(dir, sm.name)
		if err != nil {
			return err
		}
		for _, batch := range []int{1, 100} {
			ns, err := timeScore(ctx, m, rows, strs, n, batch, reps, target)
			if err != nil {
				return fmt.Errorf("score %s: %w", sm.name, err)
			}
			r.rep.Scoring = append(r.rep.Scoring, ScoreComparison{Model: sm.name, What: sm.what, Batch: batch, TallyNs: ns})
			r.add(Result{System: "tally", Scenario: fmt.Sprintf("score-%s-batch%d", sm.name, batch), Mode: "-", Throughput: 1e9 / ns,
				Description: fmt.Sprintf("%.0f ns/row, %s, in process, median of %d", ns, sm.what, reps)})
			r.logf("tally    score %-20s batch %3d: %8.0f ns/row", sm.name, batch, ns)
		}
		names = append(names, sm.name)
	}
	if !r.opts.wantPeer(PeerOnnxRuntime) {
		return nil
	}
	if _, err := os.Stat(py); err != nil {
		return notRun("no .venv with onnxruntime: run score/onnx/parity/setup.sh")
	}
	args := append([]string{filepath.Join(r.opts.RepoRoot, "score", "onnx", "parity", "bench_ort.py"), dir}, names...)
	cmd := exec.CommandContext(ctx, py, args...)
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1", fmt.Sprintf("REPEATS=%d", reps), fmt.Sprintf("TARGET_MS=%d", target.Milliseconds()))
	outb, err := cmd.CombinedOutput()
	if err != nil {
		return notRun(fmt.Sprintf("bench_ort.py failed: %v: %s", err, strings.TrimSpace(string(outb))))
	}
	re := regexp.MustCompile(`^(\S+) onnxruntime (\S+) batch (\d+): (\d+) ns/row`)
	found, ortVersion := 0, ""
	for _, line := range strings.Split(string(outb), "\n") {
		mm := re.FindStringSubmatch(line)
		if mm == nil {
			continue
		}
		ns, _ := strconv.ParseFloat(mm[4], 64)
		batch, _ := strconv.Atoi(mm[3])
		for i := range r.rep.Scoring {
			if c := &r.rep.Scoring[i]; c.Model == mm[1] && c.Batch == batch {
				c.OnnxRuntimeNs = ns
				r.add(Result{System: "onnxruntime", Scenario: fmt.Sprintf("score-%s-batch%d", c.Model, batch), Mode: "-", Throughput: 1e9 / ns,
					Description: fmt.Sprintf("%.0f ns/row, %s, onnxruntime %s, single thread, median of %d", ns, c.What, mm[2], reps)})
				r.logf("onnxrt   score %-20s batch %3d: %8.0f ns/row (onnxruntime %s; %.2fx tally's time)", c.Model, batch, ns, mm[2], ns/c.TallyNs)
				found++
			}
		}
		ortVersion = "onnxruntime " + mm[2]
	}
	if found == 0 {
		return notRun("bench_ort.py printed no figures: " + strings.TrimSpace(string(outb)))
	}
	r.rep.Peers = append(r.rep.Peers, PeerStatus{Name: PeerOnnxRuntime, Ran: true, Version: ortVersion, Setup: "score/onnx/parity/setup.sh",
		Differs: "scores the same models and rows single-threaded through its Python API (per-call overhead included, as a Python service would pay it); tally scores in process from Go"})
	return nil
}

// loadScoreModel loads a parity model with its rows and string columns
// (the files its expected.json names).
func loadScoreModel(dir, name string) (*onnx.Model, []float32, []string, int, error) {
	m, err := onnx.Load(filepath.Join(dir, name+".onnx"))
	if err != nil {
		return nil, nil, nil, 0, fmt.Errorf("load %s.onnx (regenerate with score/onnx/parity/generate.sh): %w", name, err)
	}
	var exp struct {
		Rows    string `json:"rows"`
		Strings string `json:"strings"`
	}
	data, err := os.ReadFile(filepath.Join(dir, name+".expected.json"))
	if err == nil {
		err = json.Unmarshal(data, &exp)
	}
	if err != nil {
		return nil, nil, nil, 0, fmt.Errorf("%s.expected.json: %w", name, err)
	}
	rows, n, err := readFloatRows(filepath.Join(dir, exp.Rows), m.NumInputs())
	if err != nil {
		return nil, nil, nil, 0, err
	}
	var strs []string
	if ns := len(m.StringInputs()); ns > 0 {
		data, err := os.ReadFile(filepath.Join(dir, exp.Strings))
		if err != nil {
			return nil, nil, nil, 0, fmt.Errorf("%s string columns: %w", name, err)
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			strs = append(strs, strings.Split(line, ",")...)
		}
		if len(strs) != n*ns {
			return nil, nil, nil, 0, fmt.Errorf("%s: %d strings for %d rows of %d string inputs", name, len(strs), n, ns)
		}
	}
	return m, rows, strs, n, nil
}

// timeScore returns the median over reps repeats of m's time per row,
// batch rows per call, cycling through the n rows; each repeat makes as
// many calls as take about target.
func timeScore(ctx context.Context, m *onnx.Model, rows []float32, strs []string, n, batch, reps int, target time.Duration) (float64, error) {
	w, ns := m.NumInputs(), len(m.StringInputs())
	out := make([]score.Prediction, batch)
	off := 0
	call := func() error {
		if off+batch > n {
			off = 0
		}
		err := m.ScoreStrings(ctx, rows[off*w:(off+batch)*w], strs[off*ns:(off+batch)*ns], batch, out)
		off += batch
		return err
	}
	calls := 0
	for t0 := time.Now(); calls < 3 || time.Since(t0) < target/4; calls++ { // warm up and size the repeats
		if err := call(); err != nil {
			return 0, err
		}
	}
	calls = max(calls*4, 10)
	runs := make([]float64, 0, reps)
	for range reps {
		t0 := time.Now()
		for range calls {
			if err := call(); err != nil {
				return 0, err
			}
		}
		runs = append(runs, float64(time.Since(t0).Nanoseconds())/float64(calls*batch))
	}
	sort.Float64s(runs)
	return runs[len(runs)/2], nil
}

// scoringTable writes the scoring scenario as a markdown table.
func (r *Report) scoringTable(b *strings.Builder) {
	if len(r.Scoring) == 0 {
		return
	}
	b.WriteString("\n## Scoring beside onnxruntime\n\nPer row, in process (tally) and through onnxruntime's Python API, single thread, same rows; ratio = onnxruntime's time / tally's (above 1: tally is faster).\n\n| model | batch | tally | onnxruntime | ratio |\n|---|---:|---:|---:|---:|\n")
	for _, c := range r.Scoring {
		ort, ratio := "not run", "-"
		if c.OnnxRuntimeNs > 0 {
			ort, ratio = fmtNs(c.OnnxRuntimeNs), fmt.Sprintf("%.2f", c.Ratio())
		}
		fmt.Fprintf(b, "| %s (%s) | %d | %s | %s | %s |\n", c.Model, c.What, c.Batch, fmtNs(c.TallyNs), ort, ratio)
	}
}

func fmtNs(ns float64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 10_000:
		return fmt.Sprintf("%.1f us", ns/1000)
	}
	return fmt.Sprintf("%.0f ns", ns)
}

// readFloatRows reads a headerless CSV of width numbers per row.
func readFloatRows(path string, width int) ([]float32, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	var rows []float32
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		fields := strings.Split(strings.TrimSpace(sc.Text()), ",")
		if len(fields) != width {
			return nil, 0, fmt.Errorf("%s row %d: %d values, want %d", path, n+1, len(fields), width)
		}
		for _, fv := range fields {
			v, err := strconv.ParseFloat(fv, 32)
			if err != nil {
				v = math.NaN()
			}
			rows = append(rows, float32(v))
		}
		n++
	}
	return rows, n, sc.Err()
}
