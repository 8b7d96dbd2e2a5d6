package node

import (
	"testing"

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
