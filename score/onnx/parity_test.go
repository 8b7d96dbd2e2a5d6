package onnx

import (
	"bufio"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// parityDir is where parity/generate.sh writes models and onnxruntime's
// outputs; TALLY_PARITY_DIR overrides it.
func parityDir(t *testing.T) string {
	dir := os.Getenv("TALLY_PARITY_DIR")
	if dir == "" {
		dir = filepath.Join("testdata", "generated")
	}
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); err != nil {
		msg := "no parity data in " + dir + ": run score/onnx/parity/generate.sh"
		if os.Getenv("TALLY_REQUIRE_PARITY") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return dir
}

type parityManifest struct {
	Models []struct {
		Name     string   `json:"name"`
		Model    string   `json:"model"`
		Expected string   `json:"expected"`
		Ops      []string `json:"ops"`
	} `json:"models"`
}

type parityExpected struct {
	Rows          string     `json:"rows"`
	Strings       string     `json:"strings"`
	Labels        []string   `json:"labels"`
	Probabilities [][]jfloat `json:"probabilities"`
	Values        []jfloat   `json:"values"`
	Classes       []string   `json:"classes"`
	Batch         int        `json:"batch"` // onnxruntime scored this many rows per call; 0: all at once
}

// jfloat is a JSON number, or one of the strings "NaN", "Inf", "-Inf"
// that generate.py writes for non-finite values.
type jfloat float64

func (f *jfloat) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case `"NaN"`:
		*f = jfloat(math.NaN())
	case `"Inf"`:
		*f = jfloat(math.Inf(1))
	case `"-Inf"`:
		*f = jfloat(math.Inf(-1))
	default:
		v, err := strconv.ParseFloat(string(b), 64)
		*f = jfloat(v)
		return err
	}
	return nil
}

// diff is |got-want|, 0 when both are NaN or the same infinity.
func diff(got, want float64) float64 {
	if got == want || (math.IsNaN(got) && math.IsNaN(want)) {
		return 0
	}
	return math.Abs(got - want)
}

func readRows(t testing.TB, path string) ([]float32, int, int) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []float32
	n, width := 0, 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ",")
		width = len(fields)
		for _, s := range fields {
			v, err := strconv.ParseFloat(s, 32)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			rows = append(rows, float32(v))
		}
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows, n, width
}

// readStrings reads a strings file: one line per row, comma-separated.
func readStrings(t testing.TB, path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		out = append(out, strings.Split(line, ",")...)
	}
	return out
}

func readJSON(t testing.TB, path string, v any) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestParity scores every generated model on its rows and compares with
// onnxruntime: labels identical, probabilities and values within 1e-6
// (relative for magnitudes beyond 1). Rows go in one Score call, or in
// calls of as many rows as onnxruntime had when the expected file says.
func TestParity(t *testing.T) {
	dir := parityDir(t)
	var man parityManifest
	readJSON(t, filepath.Join(dir, "manifest.json"), &man)
	totalRows, worst := 0, 0.0
	for _, mm := range man.Models {
		t.Run(mm.Name, func(t *testing.T) {
			var exp parityExpected
			readJSON(t, filepath.Join(dir, mm.Expected), &exp)
			m, err := Load(filepath.Join(dir, mm.Model))
			if err != nil {
				t.Fatal(err)
			}
			rows, n, width := readRows(t, filepath.Join(dir, exp.Rows))
			if width != m.NumInputs() {
				t.Fatalf("rows have %d values, model takes %d", width, m.NumInputs())
			}
			var strs []string
			if exp.Strings != "" {
				strs = readStrings(t, filepath.Join(dir, exp.Strings))
			}
			out := make([]Prediction, n)
			batch := n
			if exp.Batch > 0 {
				batch = exp.Batch
			}
			ns := len(m.StringInputs())
			for off := 0; off < n; off += batch {
				k := min(batch, n-off)
				var s []string
				if strs != nil {
					s = strs[off*ns : (off+k)*ns]
				}
				if err := m.ScoreStrings(context.Background(), rows[off*width:(off+k)*width], s, k, out[off:off+k]); err != nil {
					t.Fatal(err)
				}
			}
			modelWorst := 0.0
			if exp.Classes != nil && strings.Join(exp.Classes, ",") != strings.Join(m.Classes(), ",") {
				t.Errorf("classes %v, onnxruntime %v", m.Classes(), exp.Classes)
			}
			bad := 0
			report := func(format string, args ...any) {
				if bad++; bad <= 5 {
					t.Errorf(format, args...)
				}
			}
			for i := range n {
				p := out[i]
				if exp.Labels != nil {
					got := p.LabelString
					if got == "" {
						got = strconv.FormatInt(p.Label, 10)
					}
					if !p.HasLabel || got != exp.Labels[i] {
						report("row %d: label %q, onnxruntime %q (row %v)", i, got, exp.Labels[i], rows[i*width:(i+1)*width])
					}
				}
				if exp.Probabilities != nil && len(exp.Probabilities[i]) == 1 && len(p.Probabilities) == 0 {
					// One score per row (a decision function): tally's Value.
					w := float64(exp.Probabilities[i][0])
					d := diff(p.Value, w)
					if math.Abs(w) > 1 {
						d /= math.Abs(w)
					}
					modelWorst = math.Max(modelWorst, d)
					if !(d <= 1e-6) {
						report("row %d: value %v, onnxruntime score %v", i, p.Value, w)
					}
				} else if exp.Probabilities != nil {
					want := exp.Probabilities[i]
					if len(p.Probabilities) != len(want) {
						report("row %d: %d probabilities, onnxruntime %d", i, len(p.Probabilities), len(want))
						continue
					}
					for k, w := range want {
						d := diff(float64(p.Probabilities[k]), float64(w))
						if math.Abs(float64(w)) > 1 {
							d /= math.Abs(float64(w))
						}
						modelWorst = math.Max(modelWorst, d)
						if !(d <= 1e-6) {
							report("row %d: probabilities %v, onnxruntime %v", i, p.Probabilities, want)
							break
						}
					}
				}
				if exp.Values != nil {
					w := float64(exp.Values[i])
					d := diff(p.Value, w)
					if math.Abs(w) > 1 {
						d /= math.Abs(w)
					}
					modelWorst = math.Max(modelWorst, d)
					if !(d <= 1e-6) {
						report("row %d: value %v, onnxruntime %v", i, p.Value, w)
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d rows differ", bad, n)
			}
			worst = math.Max(worst, modelWorst)
			t.Logf("%d rows, max difference %.3g, operators %v", n, modelWorst, mm.Ops)
			totalRows += n
		})
	}
	t.Logf("compared %d models, %d rows; max difference %.3g", len(man.Models), totalRows, worst)
}

// issueModels are the models issue #15 names, and the other common
// scikit-learn models, as generate.py names them:
// each must be in the parity set, so that a converter or generator change
// that drops one (generate.py skips a model its converter refuses) fails
// here instead of shrinking the comparison silently.
var issueModels = []string{
	// every linear classifier and regressor
	"logreg_bin", "lin_sgd_hinge_bin", "lin_sgd_log_multi", "lin_sgd_modhuber_bin", "lin_sgd_sqhinge_bin",
	"lin_perceptron_bin", "lin_ridgeclf_bin", "lin_svc_bin", "lin_svc_multi", "lin_svr", "lin_lasso",
	"lin_elasticnet", "lin_ridge", "lin_sgd_reg",
	// tree ensembles
	"rf_bin", "gb_bin", "iso_forest", "hgb_bin", "hgb_multi", "hgb_reg",
	// pipelines
	"pipe_imputer_std_lr", "pipe_imputer_median_minmax_lr", "pipe_imputer_const_robust_lr", "pipe_imputer_maxabs_gb",
	"pipe_binarizer_lr", "pipe_kbins_onehot_lr", "pipe_kbins_ordinal_lr", "pipe_coltrans_lr", "pipe_featunion_lr",
	"scaler_logreg", "normalizer_linreg",
	// string columns: one-hot and ordinal encoders in a ColumnTransformer with numbers
	"str_onehot_lr", "str_onehot_gb", "str_ordinal_gb", "str_two_cats_lr", "str_two_cats_hgb",
	// meta-estimators
	"calib_svc_sigmoid", "calib_svc_isotonic", "calib_rf_multi", "ovr_logreg", "voting_soft", "voting_hard", "stacking",
	// boosters
	"xgb_bin", "xgb_multi", "xgb_reg", "xgb_categorical", "lgbm_bin", "lgbm_multi", "lgbm_reg", "lgbm_categorical",
	"catboost_bin", "catboost_reg",
	// the other common scikit-learn models (generate.py's common_models)
	"mlp_bin", "mlp_multi", "mlp_reg", "et_bin", "et_multi", "pipe_pca_lr", "pipe_tsvd_lr",
	"ada_bin", "ada_multi", "svc_rbf_prob_bin", "svc_rbf_bin", "svc_rbf_prob_multi", "svc_rbf_multi", "svc_linear_bin",
	// wide enough for onnxruntime's GEMM to sum in blocks (generate.py's wide_models)
	"mlp_256x256", "lr_wide_bin", "lr_wide_multi", "hand_wide_matmul_add", "hand_wide_gemm", "hand_wide_linear_3",
	"hand_wide_linear_300",
	// the rest people export (generate.py's coverage_models)
	"svr_rbf", "svr_linear", "nusvr_rbf", "gnb_bin", "gnb_multi", "knn_bin", "knn_multi", "knn_reg",
	"hand_matmul_vec_10",
	// k-NN beyond the defaults, and TopK past onnxruntime's switch to a sort (generate.py's neighbour_models)
	"knn_dist_bin", "knn_dist_multi", "knn_dist_reg", "knn_manhattan_multi", "knn_manhattan_reg",
	"knn_minkowski3_bin", "knn_minkowski3_reg", "knn_minkowski15_reg", "knn_ties_k25", "knn_ties_k25_dist_manhattan", "hand_topk_large_k",
	// Imputer on a rank-3 tensor (generate.py's imputer_models)
	"hand_imputer_rank3",
	// MatMul by a 1-D constant, whole batch and one row per call (generate.py's gemv_models)
	"hand_matmul_vec_300", "hand_matmul_vec_7", "hand_matmul_vec_3x300", "hand_matmul_vec_3x300_batch1",
	// one row per call: MLAS's M = 1 kernel (generate.py's one_row_models)
	"hand_wide_linear_3_batch1", "hand_wide_linear_300_batch1", "lin_ridge_batch1", "lin_svc_multi_batch1",
	"svr_rbf_batch1", "svr_linear_batch1", "svc_linear_bin_batch1",
}

func TestParityCoversTheIssueModels(t *testing.T) {
	dir := parityDir(t)
	var man parityManifest
	readJSON(t, filepath.Join(dir, "manifest.json"), &man)
	have := map[string]bool{}
	for _, mm := range man.Models {
		have[mm.Name] = true
	}
	for _, name := range issueModels {
		if !have[name] {
			t.Errorf("%s is not in the parity set (%s): regenerate with score/onnx/parity/generate.sh and check its log", name, dir)
		}
	}
}

// The scoring scenario's models (and two string inputs into trees) score
// without allocating at batch 1 and 100 once warm: the scratch is pooled
// and Probabilities reuse the caller's arrays.
func TestParityModelsDoNotAllocate(t *testing.T) {
	dir := parityDir(t)
	for _, name := range []string{"rf100_d8", "pipe_imputer_std_lr", "iso_forest", "str_onehot_gb", "str_two_cats_hgb", "svc_rbf_prob_multi", "knn_ties_k25", "knn_manhattan_reg"} {
		m, err := Load(filepath.Join(dir, name+".onnx"))
		if err != nil {
			t.Fatal(err)
		}
		var exp parityExpected
		readJSON(t, filepath.Join(dir, name+".expected.json"), &exp)
		rows, _, w := readRows(t, filepath.Join(dir, exp.Rows))
		var strs []string
		if exp.Strings != "" {
			strs = readStrings(t, filepath.Join(dir, exp.Strings))
		}
		ns := len(m.StringInputs())
		for _, batch := range []int{1, 100} {
			out := make([]Prediction, batch)
			allocs := testing.AllocsPerRun(20, func() {
				if err := m.ScoreStrings(context.Background(), rows[:batch*w], strs[:batch*ns], batch, out); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Errorf("%s at batch %d allocates %.1f times per call", name, batch, allocs)
			}
		}
	}
}
