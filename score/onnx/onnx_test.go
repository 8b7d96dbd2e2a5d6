package onnx

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/tally-ml/tally/score"
)

var nan = float32(math.NaN())

func mustParse(t *testing.T, b []byte) *Model {
	t.Helper()
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func scoreRows(t *testing.T, m *Model, rows ...float32) []Prediction {
	t.Helper()
	n := len(rows) / m.NumInputs()
	out := make([]Prediction, n)
	if err := m.Score(context.Background(), rows, n, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBranchModes checks every comparison against threshold 2 at 1, 2, 3
// and NaN, without and with the missing-value track: true leaf 10, false 20.
func TestBranchModes(t *testing.T) {
	for _, tc := range []struct {
		mode string
		want [4]float64 // x = 1, 2, 3, NaN
	}{
		{"BRANCH_LEQ", [4]float64{10, 10, 20, 20}},
		{"BRANCH_LT", [4]float64{10, 20, 20, 20}},
		{"BRANCH_GTE", [4]float64{20, 10, 10, 20}},
		{"BRANCH_GT", [4]float64{20, 20, 10, 20}},
		{"BRANCH_EQ", [4]float64{20, 10, 20, 20}},
		{"BRANCH_NEQ", [4]float64{10, 20, 10, 10}}, // NaN != 2 holds
	} {
		for _, missing := range []bool{false, true} {
			m := mustParse(t, stump(tc.mode, 2, missing))
			out := scoreRows(t, m, 1, 2, 3, nan)
			for i, p := range out {
				want := tc.want[i]
				if i == 3 && missing {
					want = 10 // a missing value takes the true branch
				}
				if p.Value != want {
					t.Errorf("%s missing=%v row %d: %v, want %v", tc.mode, missing, i, p.Value, want)
				}
			}
		}
	}
}

// TestThresholdIsFloat32 checks that thresholds compare in float32: a value
// one float32 ulp above the threshold goes right.
func TestThresholdIsFloat32(t *testing.T) {
	thr := float32(0.1)
	m := mustParse(t, stump("BRANCH_LEQ", thr, false))
	out := scoreRows(t, m, thr, math.Nextafter32(thr, 1))
	if out[0].Value != 10 || out[1].Value != 20 {
		t.Fatalf("got %v, %v; want 10, 20", out[0].Value, out[1].Value)
	}
}

func TestProbit(t *testing.T) {
	// Leaf weight 0.3 plus base 0.5: probit(0.8) = 0.8416 (the normal
	// quantile), which onnxruntime's ErfInv approximation gets within ~1e-3.
	// (Later attributes override the stump's weights.)
	m := mustParse(t, stump("BRANCH_LEQ", 2, false, pbString("post_transform", "PROBIT"),
		pbFloats("base_values", 0.5), pbFloats("target_weights", 0.3, -0.3)))
	out := scoreRows(t, m, 1, 3)
	if got := out[0].Value; math.Abs(got-0.8416212) > 2e-3 {
		t.Errorf("probit(0.8) = %v, want about 0.8416", got)
	}
	if got, want := out[1].Value, -out[0].Value; math.Abs(got-want) > 1e-6 {
		t.Errorf("probit(0.2) = %v, want %v", got, want)
	}
}

// TestSoftmaxZero: three targets, leaf weights 1, 0 (none) and 2; the zero
// score stays zero and the others share exp(s - max).
func TestSoftmaxZero(t *testing.T) {
	n := node("TreeEnsembleRegressor", "ai.onnx.ml", []string{"X"}, []string{"Y"},
		pbInts("nodes_treeids", 0, 0, 0),
		pbInts("nodes_nodeids", 0, 1, 2),
		pbInts("nodes_featureids", 0, 0, 0),
		pbStrings("nodes_modes", "BRANCH_LEQ", "LEAF", "LEAF"),
		pbFloats("nodes_values", 0, 0, 0),
		pbInts("nodes_truenodeids", 1, 0, 0),
		pbInts("nodes_falsenodeids", 2, 0, 0),
		pbInts("target_treeids", 0, 0, 0, 0),
		pbInts("target_nodeids", 1, 1, 2, 2),
		pbInts("target_ids", 0, 2, 0, 1),
		pbFloats("target_weights", 1, 2, 3, 4),
		pbInt("n_targets", 3),
		pbString("post_transform", "SOFTMAX_ZERO"))
	m := mustParse(t, model([][]byte{n}, [][]byte{valueInfo("X", dtFloat, -1, 1)}, [][]byte{valueInfo("Y", dtFloat, -1, 3)}, 3))
	out := scoreRows(t, m, -1, 1)
	e := math.Exp(-1)
	want := []float64{e / (1 + e), 0, 1 / (1 + e)}
	for k, w := range want {
		if d := math.Abs(float64(out[0].Probabilities[k]) - w); d > 1e-6 {
			t.Errorf("true leaf: %v, want %v", out[0].Probabilities, want)
		}
	}
	// The false leaf: targets 0 and 1 get 3 and 4, target 2 nothing (0).
	e1 := math.Exp(-1)
	want = []float64{e1 / (1 + e1), 1 / (1 + e1), 0}
	for k, w := range want {
		if d := math.Abs(float64(out[1].Probabilities[k]) - w); d > 1e-6 {
			t.Errorf("false leaf: %v, want %v", out[1].Probabilities, want)
		}
	}
}

// TestTreeEnsembleV5Member: one tree, node 0 tests x0 in {1, 3} (missing
// goes true), true -> leaf 5, false -> node 1: x1 < 0.5 ? 7 : 9.
func TestTreeEnsembleV5Member(t *testing.T) {
	n := node("TreeEnsemble", "ai.onnx.ml", []string{"X"}, []string{"Y"},
		pbInt("n_targets", 1),
		pbInts("tree_roots", 0),
		pbTensorU8("nodes_modes", 6, 1),
		pbInts("nodes_featureids", 0, 1),
		pbTensorF32("nodes_splits", float32(math.NaN()), 0.5),
		pbInts("nodes_truenodeids", 0, 1),
		pbInts("nodes_trueleafs", 1, 1),
		pbInts("nodes_falsenodeids", 1, 2),
		pbInts("nodes_falseleafs", 0, 1),
		pbInts("nodes_missing_value_tracks_true", 1, 0),
		pbTensorF32("membership_values", 1, 3, float32(math.NaN())),
		pbInts("leaf_targetids", 0, 0, 0),
		pbTensorF32("leaf_weights", 5, 7, 9))
	m := mustParse(t, model([][]byte{n}, [][]byte{valueInfo("X", dtFloat, -1, 2)}, [][]byte{valueInfo("Y", dtFloat, -1, 1)}, 5))
	out := scoreRows(t, m, 1, 0, 3, 0, 2, 0, 2, 1, nan, 1, 4, nan)
	want := []float64{5, 5, 7, 9, 5, 9}
	for i, p := range out {
		if p.Value != want[i] {
			t.Errorf("row %d: %v, want %v", i, p.Value, want[i])
		}
	}
}

// TestBinarySingleWeight: a binary classifier with weights for class 0 only
// and LOGISTIC (how boosters export): scores [logistic(-s), logistic(s)].
func TestBinarySingleWeight(t *testing.T) {
	n := node("TreeEnsembleClassifier", "ai.onnx.ml", []string{"X"}, []string{"label", "probabilities"},
		pbInts("nodes_treeids", 0, 0, 0),
		pbInts("nodes_nodeids", 0, 1, 2),
		pbInts("nodes_featureids", 0, 0, 0),
		pbStrings("nodes_modes", "BRANCH_LEQ", "LEAF", "LEAF"),
		pbFloats("nodes_values", 0, 0, 0),
		pbInts("nodes_truenodeids", 1, 0, 0),
		pbInts("nodes_falsenodeids", 2, 0, 0),
		pbInts("class_treeids", 0, 0),
		pbInts("class_nodeids", 1, 2),
		pbInts("class_ids", 0, 0),
		pbFloats("class_weights", -0.5, 0.75),
		pbFloats("base_values", 0.25),
		pbStrings("classlabels_strings", "no", "yes"),
		pbString("post_transform", "LOGISTIC"))
	m := mustParse(t, model([][]byte{n}, [][]byte{valueInfo("X", dtFloat, -1, 1)},
		[][]byte{valueInfo("label", dtString, -1), valueInfo("probabilities", dtFloat, -1, 2)}, 1))
	if got := strings.Join(m.Classes(), ","); got != "no,yes" {
		t.Fatalf("classes %q", got)
	}
	out := scoreRows(t, m, -1, 1)
	lg := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	for i, tc := range []struct {
		s     float64
		label string
	}{{-0.25, "no"}, {1, "yes"}} {
		p := out[i]
		if p.LabelString != tc.label {
			t.Errorf("row %d: label %q, want %q", i, p.LabelString, tc.label)
		}
		want := []float64{lg(-tc.s), lg(tc.s)}
		for k := range want {
			if math.Abs(float64(p.Probabilities[k])-want[k]) > 1e-6 {
				t.Errorf("row %d: %v, want %v", i, p.Probabilities, want)
			}
		}
	}
}

func TestAggregates(t *testing.T) {
	// Two stumps on feature 0 at threshold 0: tree 0 leaves 1 | 4, tree 1
	// leaves 3 | 2, base 0.5. For x = -1 the leaves are 1 and 3.
	for _, tc := range []struct {
		agg  string
		want float64
	}{{"SUM", 4.5}, {"AVERAGE", 2.5}, {"MIN", 1.5}, {"MAX", 3.5}} {
		n := node("TreeEnsembleRegressor", "ai.onnx.ml", []string{"X"}, []string{"Y"},
			pbInts("nodes_treeids", 0, 0, 0, 1, 1, 1),
			pbInts("nodes_nodeids", 0, 1, 2, 0, 1, 2),
			pbInts("nodes_featureids", 0, 0, 0, 0, 0, 0),
			pbStrings("nodes_modes", "BRANCH_LEQ", "LEAF", "LEAF", "BRANCH_LEQ", "LEAF", "LEAF"),
			pbFloats("nodes_values", 0, 0, 0, 0, 0, 0),
			pbInts("nodes_truenodeids", 1, 0, 0, 1, 0, 0),
			pbInts("nodes_falsenodeids", 2, 0, 0, 2, 0, 0),
			pbInts("target_treeids", 0, 0, 1, 1),
			pbInts("target_nodeids", 1, 2, 1, 2),
			pbInts("target_ids", 0, 0, 0, 0),
			pbFloats("target_weights", 1, 4, 3, 2),
			pbFloats("base_values", 0.5),
			pbString("aggregate_function", tc.agg),
			pbInt("n_targets", 1))
		m := mustParse(t, model([][]byte{n}, [][]byte{valueInfo("X", dtFloat, -1, 1)}, [][]byte{valueInfo("Y", dtFloat, -1, 1)}, 3))
		if got := scoreRows(t, m, -1)[0].Value; got != tc.want {
			t.Errorf("%s: %v, want %v", tc.agg, got, tc.want)
		}
	}
}

func TestRefusesUnknownOperator(t *testing.T) {
	n := node("DictVectorizer", "ai.onnx.ml", []string{"X"}, []string{"Y"})
	_, err := Parse(model([][]byte{n}, [][]byte{valueInfo("X", dtFloat, -1, 3)}, [][]byte{valueInfo("Y", dtFloat, -1, 1)}, 3))
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "ai.onnx.ml:DictVectorizer") {
		t.Fatalf("err = %v, want ErrUnsupported naming ai.onnx.ml:DictVectorizer", err)
	}
}

func TestRefusesCycle(t *testing.T) {
	n := node("TreeEnsembleRegressor", "ai.onnx.ml", []string{"X"}, []string{"Y"},
		pbInts("nodes_treeids", 0, 0),
		pbInts("nodes_nodeids", 0, 1),
		pbInts("nodes_featureids", 0, 0),
		pbStrings("nodes_modes", "BRANCH_LEQ", "BRANCH_LEQ"),
		pbFloats("nodes_values", 0, 0),
		pbInts("nodes_truenodeids", 1, 0),
		pbInts("nodes_falsenodeids", 1, 0),
		pbInt("n_targets", 1))
	_, err := Parse(model([][]byte{n}, [][]byte{valueInfo("X", dtFloat, -1, 1)}, [][]byte{valueInfo("Y", dtFloat, -1, 1)}, 3))
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("err = %v, want ErrMalformed", err)
	}
}

func TestScoreErrors(t *testing.T) {
	m := mustParse(t, stump("BRANCH_LEQ", 0, false))
	out := make([]Prediction, 2)
	if err := m.Score(context.Background(), []float32{1}, 2, out); !errors.Is(err, score.ErrBadInput) {
		t.Errorf("short rows: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Score(ctx, []float32{1, 2}, 2, out); !errors.Is(err, score.ErrUnavailable) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestScoreDoesNotAllocate(t *testing.T) {
	n := node("TreeEnsembleClassifier", "ai.onnx.ml", []string{"X"}, []string{"label", "probabilities"},
		pbInts("nodes_treeids", 0, 0, 0),
		pbInts("nodes_nodeids", 0, 1, 2),
		pbInts("nodes_featureids", 0, 0, 0),
		pbStrings("nodes_modes", "BRANCH_LEQ", "LEAF", "LEAF"),
		pbFloats("nodes_values", 0, 0, 0),
		pbInts("nodes_truenodeids", 1, 0, 0),
		pbInts("nodes_falsenodeids", 2, 0, 0),
		pbInts("class_treeids", 0, 0, 0, 0),
		pbInts("class_nodeids", 1, 1, 2, 2),
		pbInts("class_ids", 0, 1, 0, 1),
		pbFloats("class_weights", 0.2, 0.8, 0.6, 0.4),
		pbInts("classlabels_int64s", 0, 1))
	m := mustParse(t, model([][]byte{n}, [][]byte{valueInfo("X", dtFloat, -1, 1)},
		[][]byte{valueInfo("label", dtInt64, -1), valueInfo("probabilities", dtFloat, -1, 2)}, 1))
	rows := []float32{-1, 1, 0.5, -0.5}
	out := make([]Prediction, 4)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		if err := m.Score(ctx, rows, 4, out); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Score allocates %v times per call in steady state", allocs)
	}
	if p := out[1].Probabilities; len(p) != 2 || p[0] != 0.6 || p[1] != 0.4 {
		t.Fatalf("probabilities %v, want [0.6 0.4]", p)
	}
}

func TestDescribe(t *testing.T) {
	m := mustParse(t, stump("BRANCH_LEQ", 0, false))
	d := m.Describe()
	if d.NumInputs != 1 || len(d.Inputs) != 1 || d.Inputs[0].Shape != "[N, 1]" || d.Inputs[0].Type != "tensor(float)" {
		t.Fatalf("inputs %+v", d.Inputs)
	}
	if len(d.Operators) != 1 || d.Operators[0].Op != "ai.onnx.ml:TreeEnsembleRegressor" {
		t.Fatalf("operators %+v", d.Operators)
	}
	if d.Opsets["ai.onnx.ml"] != 3 {
		t.Fatalf("opsets %v", d.Opsets)
	}
}

// FuzzParse: hostile bytes are refused with an error, never a crash, and
// cannot make Parse allocate much beyond their length.
func FuzzParse(f *testing.F) {
	f.Add(stump("BRANCH_LEQ", 0, false))
	f.Add(stump("BRANCH_NEQ", 1, true, pbString("post_transform", "PROBIT")))
	f.Add(sgdGraph())
	f.Add(oneHotGraph())
	f.Add(wideStringGraph())
	f.Add(svmGraph())
	f.Add([]byte{})
	f.Add([]byte{0x3a, 0x02, 0x0a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			return
		}
		rows := make([]float32, 2*m.NumInputs())
		if len(rows) > 0 {
			rows[0] = float32(math.NaN())
		}
		strs := make([]string, 2*len(m.StringInputs()))
		out := make([]Prediction, 2)
		_ = m.ScoreStrings(context.Background(), rows, strs, 2, out)
		_ = m.Describe()
	})
}
