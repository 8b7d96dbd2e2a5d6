package mlflow

import (
	"errors"
	"testing"

	"github.com/tally-ml/tally/score"
)

// go test -run '^$' -fuzz FuzzDecode -fuzztime 10s ./score/mlflow/
// Whatever a scoring server answers, decode returns predictions or an error
// wrapping score.ErrUnavailable, never a panic.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"predictions": [1.5, -2]}`, `[1, 0]`, `{"predictions": [[0.25, 0.75], [0.5, 0.5]]}`,
		`{"predictions": ["fraud", "legit"]}`, `{"predictions": [{"label": 1, "score": 0.5}, {"legit": 0.2, "fraud": 0.8}]}`,
		`{"predictions": {"columns": ["0", "1"], "data": [[0.3, 0.7], [0.6, 0.4]]}}`,
		`{"predictions": {"label": ["fraud", "legit"], "legit": [0.2, 0.9], "fraud": [0.8, 0.1]}}`,
		`{"predictions": [{"a": 1.5, "b": null}, {"prediction": 1}]}`} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	plain, err := New(Options{Endpoint: "http://127.0.0.1:1", Columns: []string{"x"}})
	if err != nil {
		f.Fatal(err)
	}
	labelled, _ := New(Options{Endpoint: "http://127.0.0.1:1", Columns: []string{"x"}, Classes: []string{"legit", "fraud"}})
	f.Fuzz(func(t *testing.T, body []byte, classes bool) {
		c := plain
		if classes {
			c = labelled
		}
		out := make([]Prediction, 2)
		if err := c.decode(body, 2, out); err != nil && !errors.Is(err, score.ErrUnavailable) {
			t.Fatalf("error not wrapping ErrUnavailable: %v", err)
		}
	})
}
