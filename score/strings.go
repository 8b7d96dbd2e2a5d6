package score

import "context"

// StringScorer is a Scorer whose model also takes string inputs (a
// category fed to a OneHotEncoder, OrdinalEncoder or LabelEncoder).
//
// ScoreStrings is Score with, beside the numeric rows, strs: n rows of
// len(StringInputs()) strings, row-major in StringInputs order. Score on
// such a model fails with ErrBadInput.
type StringScorer interface {
	Scorer
	// StringInputs names the string inputs, one string per row each; nil
	// when the model has none (then Score is enough).
	StringInputs() []string
	ScoreStrings(ctx context.Context, rows []float32, strs []string, n int, out []Prediction) error
}
