package onnx

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/tally-ml/tally/score"
)

// TestLinearClassifierOneScoreNoLabels: a LinearClassifier with one score
// and no class labels answers label 1 when the score is positive, else 0,
// as onnxruntime does (its positive/negative labels default to 1 and 0).
func TestLinearClassifierOneScoreNoLabels(t *testing.T) {
	n := node("LinearClassifier", "ai.onnx.ml", []string{"X"}, []string{"L", "P"},
		pbFloats("coefficients", 1), pbFloats("intercepts", 0))
	m := mustParse(t, model([][]byte{n}, [][]byte{valueInfo("X", dtFloat, -1, 1)},
		[][]byte{valueInfo("L", dtInt64, -1), valueInfo("P", dtFloat, -1, 1)}, 1))
	out := scoreRows(t, m, 2, -2, 0)
	for i, want := range []int64{1, 0, 0} {
		if !out[i].HasLabel || out[i].Label != want {
			t.Errorf("row %d: label %v (has %v), want %d", i, out[i].Label, out[i].HasLabel, want)
		}
	}
}

// TestInt64InputRefusesMissing: a missing value (NaN) or one beyond int64
// has no int64 to feed an int64 graph input; the call fails with
// ErrBadInput instead of scoring math.MinInt64 as if it were the value.
func TestInt64InputRefusesMissing(t *testing.T) {
	n := node("Cast", "", []string{"X"}, []string{"Y"}, pbInt("to", dtFloat))
	m := mustParse(t, model([][]byte{n}, [][]byte{valueInfo("X", dtInt64, -1, 1)},
		[][]byte{valueInfo("Y", dtFloat, -1, 1)}, 1))
	out := scoreRows(t, m, 3, -2)
	if out[0].Value != 3 || out[1].Value != -2 {
		t.Fatalf("got %v, %v; want 3, -2", out[0].Value, out[1].Value)
	}
	for _, bad := range []float32{nan, float32(math.Inf(1)), 1e19} {
		if err := m.Score(context.Background(), []float32{3, bad}, 2, out); !errors.Is(err, score.ErrBadInput) {
			t.Errorf("int64 input fed %v: err = %v (value %v), want ErrBadInput", bad, err, out[1].Value)
		}
	}
	// The pooled scratch is clean for the next call.
	if err := m.Score(context.Background(), []float32{3, 4}, 2, out); err != nil || out[1].Value != 4 {
		t.Errorf("after a refused call: %v, %v", err, out[1].Value)
	}
}

// TestFlattenNegativeAxis: Flatten's axis -1 of an [N, C] tensor is axis 1
// (r + axis, as the spec counts from the back), which keeps rows apart;
// it was read as axis 2 and the model refused.
func TestFlattenNegativeAxis(t *testing.T) {
	n := node("Flatten", "", []string{"X"}, []string{"Y"}, pbInt("axis", -1))
	b := model([][]byte{n}, [][]byte{valueInfo("X", dtFloat, -1, 3)}, [][]byte{valueInfo("Y", dtFloat, -1, 3)}, 1)
	m := mustParse(t, b)
	out := scoreRows(t, m, 1, 2, 3)
	if p := out[0].Probabilities; len(p) != 3 || p[0] != 1 || p[2] != 3 {
		t.Fatalf("Flatten(axis=-1) of [1, 2, 3]: %v", p)
	}
}

// TestUnpackedBlock: MlasSgemmOperation's K stride for the shapes the
// parity set checks against onnxruntime (hand_wide_linear_3: 1024,
// hand_wide_linear_300: 128) and the steps between.
func TestUnpackedBlock(t *testing.T) {
	for _, c := range []struct{ n, k, want int }{
		{1, 1500, 1024}, {3, 1500, 1024}, {16, 1100, 1024}, {20, 600, 512}, {40, 600, 256},
		{100, 600, 128}, {300, 300, 128}, {100, 100, 128}, {2, 10, 1024},
	} {
		if got := unpackedBlock(c.n, c.k); got != c.want {
			t.Errorf("unpackedBlock(%d, %d) = %d, want %d", c.n, c.k, got, c.want)
		}
	}
}
