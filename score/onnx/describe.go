package onnx

import (
	"fmt"
	"os"
	"sort"
)

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
	// StringInputs names the string values of a row (ScoreStrings): as
	// Model.StringInputs, name[j] for an input of several; Inspect of a
	// model Load refuses lists the string inputs' names only.
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
	// Supported: this package implements the operator. Always true in a
	// loaded Model's Description; Inspect also lists the ones it does not.
	Supported bool
}

// Describe returns the model's inputs, outputs and operators. The result
// shares slices with the Model; the caller must not modify them.
func (m *Model) Describe() Description { return m.desc }

// Inspect describes the model in the .onnx file at path without compiling
// it: every graph input (initializers excluded), output and operator, each
// operator marked Supported or not. It answers for models Load refuses
// (unsupported operators, shapes), and fails only on unreadable or
// malformed files. NumInputs and Classes are left zero: they need a
// compiled graph.
func Inspect(path string) (Description, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Description{}, fmt.Errorf("inspect onnx model: %w", err)
	}
	if len(data) > maxFileSize {
		return Description{}, fmt.Errorf("inspect onnx model %s: %d bytes is over the %d byte limit: %w", path, len(data), maxFileSize, ErrUnsupported)
	}
	mp, err := parseModel(data)
	if err != nil {
		return Description{}, fmt.Errorf("inspect onnx model %s: %w: %v", path, ErrMalformed, err)
	}
	if mp.graph == nil {
		return Description{}, fmt.Errorf("inspect onnx model %s: %w: no graph", path, ErrMalformed)
	}
	d := Description{IRVersion: mp.irVersion, Producer: mp.producer, Opsets: map[string]int64{}}
	for _, o := range mp.opsets {
		dom := o.domain
		if dom == "" {
			dom = "ai.onnx"
		}
		d.Opsets[dom] = o.version
	}
	inits := map[string]bool{}
	for _, t := range mp.graph.initializers {
		inits[t.name] = true
	}
	info := func(vi *valueInfoProto) TensorInfo {
		return TensorInfo{Name: vi.name, Type: typeString(vi.typ), Shape: shapeString(vi.typ)}
	}
	for _, in := range mp.graph.inputs {
		if !inits[in.name] {
			d.Inputs = append(d.Inputs, info(in))
			if in.typ != nil && in.typ.kind == "tensor" && in.typ.elem == dtString {
				d.StringInputs = append(d.StringInputs, in.name)
			}
		}
	}
	for _, out := range mp.graph.outputs {
		d.Outputs = append(d.Outputs, info(out))
	}
	counts := map[string]int{}
	for _, n := range mp.graph.nodes {
		counts[opName(n)]++
	}
	for op, k := range counts {
		d.Operators = append(d.Operators, OperatorUse{Op: op, Count: k, Supported: compilers[op] != nil})
	}
	sort.Slice(d.Operators, func(i, j int) bool { return d.Operators[i].Op < d.Operators[j].Op })
	return d, nil
}

// typeString names a value's type as onnxruntime does: tensor(float),
// seq(map(int64,tensor(float))), ...
func typeString(t *typeProto) string {
	if t == nil {
		return "?"
	}
	switch t.kind {
	case "tensor":
		if dt, ok := dtypeOf(t.elem); ok {
			return "tensor(" + dt.String() + ")"
		}
		return fmt.Sprintf("tensor(type %d)", t.elem)
	case "sequence":
		return "seq(" + typeString(t.inner) + ")"
	case "map":
		key := "?"
		if dt, ok := dtypeOf(t.key); ok {
			key = dt.String()
		}
		return "map(" + key + "," + typeString(t.inner) + ")"
	}
	return "?"
}
