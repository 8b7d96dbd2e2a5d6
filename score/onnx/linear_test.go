package onnx

import "testing"

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
