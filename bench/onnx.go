package bench

import (
	"bufio"
	"context"
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

// runOnnx scores the parity suite's 100-tree, depth-8 random forest
// (rf100_d8.onnx) with tally's evaluator in process and with onnxruntime
// (single-threaded, from the repo's .venv), on the same rows, at batch 1
// and batch 100, and reports nanoseconds per row for each.
func (r *runner) runOnnx(ctx context.Context) error {
	if !r.opts.wantPeer(PeerOnnxRuntime) {
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
	if _, err := os.Stat(py); err != nil {
		return notRun("no .venv with onnxruntime: run score/onnx/parity/setup.sh")
	}
	m, err := onnx.Load(filepath.Join(dir, "rf100_d8.onnx"))
	if err != nil {
		return fmt.Errorf("load rf100_d8.onnx: %w", err)
	}
	rows, n, err := readFloatRows(filepath.Join(dir, "rows_rf100_d8.csv"), m.NumInputs())
	if err != nil {
		return err
	}
	out := make([]score.Prediction, 100)
	for _, batch := range []int{1, 100} {
		calls := 3000
		if batch == 100 {
			calls = 300
		}
		var runs []float64
		for rep := 0; rep < 7; rep++ {
			t0 := time.Now()
			for i := 0; i < calls; i++ {
				k := (i * batch) % (n - batch + 1)
				if err := m.Score(ctx, rows[k*m.NumInputs():(k+batch)*m.NumInputs()], batch, out[:batch]); err != nil {
					return err
				}
			}
			runs = append(runs, float64(time.Since(t0).Nanoseconds())/float64(calls*batch))
		}
		sort.Float64s(runs)
		ns := runs[len(runs)/2]
		r.add(Result{System: "tally", Scenario: fmt.Sprintf("score-batch%d", batch), Mode: "-", Throughput: 1e9 / ns,
			Description: fmt.Sprintf("%.0f ns/row, rf100_d8 (100 trees, depth 8), in process, median of 7", ns)})
		r.logf("tally    score batch %3d: %.0f ns/row", batch, ns)
	}
	cmd := exec.CommandContext(ctx, py, filepath.Join(r.opts.RepoRoot, "score", "onnx", "parity", "bench_ort.py"), dir)
	cmd.Env = append(os.Environ(), "OMP_NUM_THREADS=1")
	outb, err := cmd.CombinedOutput()
	if err != nil {
		return notRun(fmt.Sprintf("bench_ort.py failed: %v: %s", err, strings.TrimSpace(string(outb))))
	}
	re := regexp.MustCompile(`onnxruntime (\S+) batch (\d+): (\d+) ns/row`)
	found, ortVersion := 0, ""
	for _, line := range strings.Split(string(outb), "\n") {
		mm := re.FindStringSubmatch(line)
		if mm == nil {
			continue
		}
		ns, _ := strconv.ParseFloat(mm[3], 64)
		r.add(Result{System: "onnxruntime", Scenario: "score-batch" + mm[2], Mode: "-", Throughput: 1e9 / ns,
			Description: fmt.Sprintf("%.0f ns/row, onnxruntime %s, single thread, median of 7", ns, mm[1])})
		r.logf("onnxrt   score batch %3s: %.0f ns/row (onnxruntime %s)", mm[2], ns, mm[1])
		found++
		ortVersion = "onnxruntime " + mm[1]
	}
	if found == 0 {
		return notRun("bench_ort.py printed no figures: " + strings.TrimSpace(string(outb)))
	}
	r.rep.Peers = append(r.rep.Peers, PeerStatus{Name: PeerOnnxRuntime, Ran: true, Version: ortVersion, Setup: "score/onnx/parity/setup.sh",
		Differs: "scores the same model and rows single-threaded through its Python API (per-call overhead included, as a Python service would pay it); tally scores in process from Go"})
	return nil
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
