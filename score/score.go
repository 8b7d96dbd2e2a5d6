package score

import (
	"context"
	"errors"
)

// Prediction is one row's model output. Which fields are set depends on the
// model: classifiers set Label (and LabelString when labels are strings) and,
// when the model outputs them, Probabilities (one per class, in Classes
// order); regressors set Value.
type Prediction struct {
	HasLabel      bool
	Label         int64
	LabelString   string
	Probabilities []float32
	// Value is a regressor's output, or a classifier's single score beside
	// its label (a decision function, an anomaly score); HasValue says it is
	// set. A scorer that leaves HasValue false sets Value only when there is
	// neither a label nor probabilities.
	HasValue bool
	Value    float64
}

// Scorer scores rows of features.
//
// Score writes out[i] for each of the n rows in rows, which is row-major with
// NumInputs() values per row (NaN is a missing value). It must be safe for
// concurrent use. It honours ctx's deadline and returns an error wrapping one
// of the sentinel errors below when it cannot score.
type Scorer interface {
	Score(ctx context.Context, rows []float32, n int, out []Prediction) error
	// NumInputs is the number of values per row.
	NumInputs() int
	// Inputs names the columns in model order when the model names them
	// (MLflow signatures, one ONNX input per feature); nil otherwise.
	Inputs() []string
	// Classes lists class labels in Probabilities order, nil for regressors.
	Classes() []string
}

// Errors a Scorer's failures wrap.
var (
	// ErrUnavailable: the model could not be reached or answered in time;
	// a feature service's fallback policy decides what the caller gets.
	ErrUnavailable = errors.New("model unavailable")
	// ErrOverloaded: the batcher's queue is full; the request is shed.
	ErrOverloaded = errors.New("model overloaded")
	// ErrBadInput: the rows do not fit the model (wrong width, bad values).
	ErrBadInput = errors.New("rows do not fit the model")
)
