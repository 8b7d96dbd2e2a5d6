package onnx

// Description summarizes a loaded model for people (tally model inspect).
type Description struct {
	IRVersion int64
	Producer  string
	// Opsets maps each imported operator domain ("ai.onnx", "ai.onnx.ml")
	// to its version.
	Opsets    map[string]int64
	Inputs    []TensorInfo
	Outputs   []TensorInfo
	Operators []OperatorUse // sorted by Op
	NumInputs int           // numeric values per row
	// StringInputs names the inputs fed one string per row (ScoreStrings).
	StringInputs []string
	Classes      []string // nil for regressors
}

// TensorInfo describes one graph input or output.
type TensorInfo struct {
	Name  string
	Type  string // e.g. "tensor(float)", "seq(map(label, float))"
	Shape string // e.g. "[N, 30]"; symbolic dimensions by name, "?" unknown
}

// OperatorUse counts the nodes of one operator, named "domain:op".
type OperatorUse struct {
	Op    string
	Count int
}

// Describe returns the model's inputs, outputs and operators. The result
// shares slices with the Model; the caller must not modify them.
func (m *Model) Describe() Description { return m.desc }
