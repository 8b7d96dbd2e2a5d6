package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/score"
)

// A classifier's single score beside its label (IsolationForest's anomaly
// score, a decision function) reaches the answer; a regressor's value and
// a label alone read as before.
func TestPredictionJSON(t *testing.T) {
	for _, c := range []struct {
		pr   score.Prediction
		want string
	}{
		{score.Prediction{HasLabel: true, Label: -1, HasValue: true, Value: -0.25}, `{"label":-1,"value":-0.25}`},
		{score.Prediction{Value: 3.5}, `{"value":3.5}`},
		{score.Prediction{HasLabel: true, Label: 2}, `{"label":2}`},
		{score.Prediction{HasLabel: true, Label: 1, Probabilities: []float32{0.25, 0.75}}, `{"label":1,"probabilities":{"a":0.25,"b":0.75}}`},
	} {
		if got := string(appendPrediction(nil, &c.pr, []string{"a", "b"})); got != c.want {
			t.Errorf("%+v: %s, want %s", c.pr, got, c.want)
		}
	}
}

// A model with a string input is refused at load, naming the input, rather
// than loading and failing every predict.
func TestStringInputModelRefused(t *testing.T) {
	path, err := filepath.Abs("../score/onnx/testdata/generated/str_onehot_gb.onnx")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("TALLY_REQUIRE_PARITY") == "1" {
			t.Fatalf("parity model missing (make parity): %v", err)
		}
		t.Skip("parity models not generated (make parity)")
	}
	n, _ := newTestNode(t, DefaultConfig())
	_, err = n.defaultOpenModel(&features.Model{ONNX: path}, os.DirFS(filepath.Dir(path)), filepath.Base(path))
	if err == nil || !strings.Contains(err.Error(), "string inputs") {
		t.Fatalf("opening a string-input model: %v, want a refusal naming its string inputs", err)
	}
}
