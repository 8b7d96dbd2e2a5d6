package onnx

import (
	"context"
	"errors"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/tally-ml/tally/score"
)

// pbInit is an initializer: float32, int64 or string values of shape dims.
func pbInit(name string, dt int64, dims []int64, v ...any) []byte {
	var t []byte
	for _, d := range dims {
		t = pbVarint(t, tensorDims, d)
	}
	t = pbVarint(t, tensorDataType, dt)
	t = pbBytes(t, tensorName, []byte(name))
	for _, x := range v {
		switch x := x.(type) {
		case float64:
			var b [4]byte
			t = pbBytes(t, tensorFloatData, append(b[:0], float32bytes(float32(x))...))
		case int:
			t = pbVarint(t, tensorInt64Data, int64(x))
		case string:
			t = pbBytes(t, tensorStringData, []byte(x))
		}
	}
	return t
}

func float32bytes(f float32) []byte {
	u := math.Float32bits(f)
	return []byte{byte(u), byte(u >> 8), byte(u >> 16), byte(u >> 24)}
}

// graphModel is model() with initializers, at ai.onnx 17 and ai.onnx.ml 3.
func graphModel(nodes, inits, inputs, outputs [][]byte) []byte {
	var g []byte
	for _, n := range nodes {
		g = pbBytes(g, graphNode, n)
	}
	for _, i := range inits {
		g = pbBytes(g, graphInitializer, i)
	}
	for _, i := range inputs {
		g = pbBytes(g, graphInput, i)
	}
	for _, o := range outputs {
		g = pbBytes(g, graphOutput, o)
	}
	b := pbVarint(nil, modelIRVersion, 8)
	for _, o := range [][2]any{{"", int64(17)}, {"ai.onnx.ml", int64(3)}} {
		op := pbBytes(nil, opsetDomain, []byte(o[0].(string)))
		op = pbVarint(op, opsetVersion, o[1].(int64))
		b = pbBytes(b, modelOpsetImport, op)
	}
	return pbBytes(b, modelGraph, g)
}

// sgdGraph is the graph skl2onnx makes of a binary SGDClassifier with
// string classes: MatMul, Add, a negated score beside the score, ArgMax,
// and the class label looked up with ArrayFeatureExtractor.
func sgdGraph() []byte { return sgdGraphOut("probabilities", 2) }

// sgdGraphOut is sgdGraph answering its label and the named float value.
func sgdGraphOut(scores string, width int64) []byte {
	nodes := [][]byte{
		node("MatMul", "", []string{"X", "coef"}, []string{"mm"}),
		node("Add", "", []string{"mm", "intercept"}, []string{"score"}),
		node("Mul", "", []string{"score", "negate"}, []string{"neg"}),
		node("Concat", "", []string{"neg", "score"}, []string{"probabilities"}, pbInt("axis", 1)),
		node("ArgMax", "", []string{"probabilities"}, []string{"am"}, pbInt("axis", 1)),
		node("ArrayFeatureExtractor", "ai.onnx.ml", []string{"classes", "am"}, []string{"lab"}),
		node("Reshape", "", []string{"lab", "shape"}, []string{"label"}),
	}
	inits := [][]byte{
		pbInit("coef", dtFloat, []int64{2, 1}, 2.0, -1.0),
		pbInit("intercept", dtFloat, []int64{1}, 0.5),
		pbInit("negate", dtFloat, nil, -1.0),
		pbInit("classes", dtString, []int64{2}, "ok", "fraud"),
		pbInit("shape", dtInt64, []int64{1}, -1),
	}
	return graphModel(nodes, inits, [][]byte{valueInfo("X", dtFloat, -1, 2)},
		[][]byte{valueInfo("label", dtString, -1), valueInfo(scores, dtFloat, -1, width)})
}

func TestSGDGraph(t *testing.T) {
	m := mustParse(t, sgdGraph())
	// score = 2*x0 - x1 + 0.5
	out := scoreRows(t, m, 1, 1, -1, 2)
	if p := out[0]; p.LabelString != "fraud" || p.Label != 1 || p.Probabilities[1] != 1.5 || p.Probabilities[0] != -1.5 {
		t.Errorf("row 0: %+v, want fraud (class 1) with scores [-1.5 1.5]", p)
	}
	if p := out[1]; p.LabelString != "ok" || p.Label != 0 || p.Probabilities[1] != -3.5 {
		t.Errorf("row 1: %+v, want ok (class 0) with score -3.5", p)
	}
	d := m.Describe()
	var ops []string
	for _, o := range d.Operators {
		ops = append(ops, o.Op)
	}
	if got := strings.Join(ops, ","); got != "ai.onnx.ml:ArrayFeatureExtractor,ai.onnx:Add,ai.onnx:ArgMax,ai.onnx:Concat,ai.onnx:MatMul,ai.onnx:Mul,ai.onnx:Reshape" {
		t.Errorf("operators %s", got)
	}
}

// TestDecisionFunctionIsValue: one float per row beside a label (LinearSVC's
// decision function, IsolationForest's score) is Value, not class scores.
func TestDecisionFunctionIsValue(t *testing.T) {
	m := mustParse(t, sgdGraphOut("score", 1))
	out := scoreRows(t, m, 1, 1)
	if p := out[0]; p.LabelString != "fraud" || p.Value != 1.5 || len(p.Probabilities) != 0 {
		t.Errorf("%+v, want label fraud, Value 1.5 and no probabilities", p)
	}
}

// oneHotGraph one-hot encodes a string category beside a numeric input and
// sums both into one score.
func oneHotGraph() []byte {
	nodes := [][]byte{
		node("OneHotEncoder", "ai.onnx.ml", []string{"cat"}, []string{"oh"}, pbStrings("cats_strings", "fuel", "travel"), pbInt("zeros", 1)),
		node("Reshape", "", []string{"oh", "shape"}, []string{"oh2"}),
		node("Concat", "", []string{"x", "oh2"}, []string{"feats"}, pbInt("axis", 1)),
		node("MatMul", "", []string{"feats", "w"}, []string{"value"}),
	}
	inits := [][]byte{
		pbInit("shape", dtInt64, []int64{2}, -1, 2),
		pbInit("w", dtFloat, []int64{3, 1}, 1.0, 10.0, 100.0),
	}
	return graphModel(nodes, inits, [][]byte{valueInfo("x", dtFloat, -1, 1), valueInfo("cat", dtString, -1, 1)},
		[][]byte{valueInfo("value", dtFloat, -1, 1)})
}

func TestStringInput(t *testing.T) {
	m := mustParse(t, oneHotGraph())
	if m.NumInputs() != 1 || strings.Join(m.StringInputs(), ",") != "cat" || strings.Join(m.Inputs(), ",") != "x" {
		t.Fatalf("inputs %v / %v, %d numeric values", m.Inputs(), m.StringInputs(), m.NumInputs())
	}
	out := make([]Prediction, 3)
	if err := m.Score(context.Background(), []float32{1, 2, 3}, 3, out); !errors.Is(err, score.ErrBadInput) {
		t.Fatalf("Score of a model with string inputs: %v, want ErrBadInput", err)
	}
	err := m.ScoreStrings(context.Background(), []float32{1, 2, 3}, []string{"travel", "fuel", "unknown"}, 3, out)
	if err != nil {
		t.Fatal(err)
	}
	// An unknown category one-hot encodes to zeros, as in onnxruntime.
	for i, want := range []float64{101, 12, 3} {
		if out[i].Value != want {
			t.Errorf("row %d: value %v, want %v", i, out[i].Value, want)
		}
	}
	if err := m.ScoreStrings(context.Background(), []float32{1, 2}, []string{"fuel"}, 2, out); !errors.Is(err, score.ErrBadInput) {
		t.Errorf("too few strings: %v, want ErrBadInput", err)
	}
}

func TestGeneralGraphDoesNotAllocate(t *testing.T) {
	ctx := context.Background()
	sgd := mustParse(t, sgdGraph())
	oh := mustParse(t, oneHotGraph())
	for _, batch := range []int{1, 100} {
		rows := make([]float32, 2*batch)
		strs := make([]string, batch)
		for i := range strs {
			rows[2*i], rows[2*i+1] = float32(i), float32(-i)
			strs[i] = []string{"fuel", "travel", "other"}[i%3]
		}
		out := make([]Prediction, batch)
		allocs := testing.AllocsPerRun(50, func() {
			if err := sgd.Score(ctx, rows, batch, out); err != nil {
				t.Fatal(err)
			}
			if err := oh.ScoreStrings(ctx, rows[:batch], strs, batch, out); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("batch %d: %v allocations per call", batch, allocs)
		}
	}
}

// TestRefusesRowMixing: operators that would combine values of different
// rows are refused at load, naming the operator.
func TestRefusesRowMixing(t *testing.T) {
	in := [][]byte{valueInfo("X", dtFloat, -1, 3)}
	out := [][]byte{valueInfo("Y", dtFloat, -1, 3)}
	for name, n := range map[string]struct {
		node []byte
		init [][]byte
	}{
		"Reshape":   {node("Reshape", "", []string{"X", "s"}, []string{"Y"}), [][]byte{pbInit("s", dtInt64, []int64{2}, 1, -1)}},
		"ReduceSum": {node("ReduceSum", "", []string{"X", "a"}, []string{"Y"}), [][]byte{pbInit("a", dtInt64, []int64{1}, 0)}},
		"Gather":    {node("Gather", "", []string{"X", "i"}, []string{"Y"}, pbInt("axis", 0)), [][]byte{pbInit("i", dtInt64, []int64{1}, 0)}},
		"Concat":    {node("Concat", "", []string{"X", "X"}, []string{"Y"}, pbInt("axis", 0)), nil},
		"Slice": {node("Slice", "", []string{"X", "s", "e", "a"}, []string{"Y"}),
			[][]byte{pbInit("s", dtInt64, []int64{1}, 1), pbInit("e", dtInt64, []int64{1}, 2), pbInit("a", dtInt64, []int64{1}, 0)}},
		"Add":  {node("Add", "", []string{"X", "c"}, []string{"Y"}), [][]byte{pbInit("c", dtFloat, []int64{2, 3}, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0)}},
		"TopK": {node("TopK", "", []string{"X", "k"}, []string{"Y", "I"}, pbInt("axis", 0)), [][]byte{pbInit("k", dtInt64, []int64{1}, 1)}},
	} {
		_, err := Parse(graphModel([][]byte{n.node}, n.init, in, out))
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "ai.onnx:"+name) {
			t.Errorf("%s: err = %v, want ErrUnsupported naming ai.onnx:%s", name, err, name)
		}
	}
}

// TestFailsLikeOnnxruntime: inputs onnxruntime refuses at run time fail
// the call with ErrBadInput instead of scoring a number.
func TestFailsLikeOnnxruntime(t *testing.T) {
	in := [][]byte{valueInfo("X", dtFloat, -1, 1)}
	bin := graphModel([][]byte{node("Binarizer", "ai.onnx.ml", []string{"X"}, []string{"Y"}, pbFloats("threshold", 0.5))},
		nil, in, [][]byte{valueInfo("Y", dtFloat, -1, 1)})
	afe := graphModel([][]byte{
		node("Cast", "", []string{"X"}, []string{"i"}, pbInt("to", dtInt64)),
		node("ArrayFeatureExtractor", "ai.onnx.ml", []string{"c", "i"}, []string{"Y"}),
	}, [][]byte{pbInit("c", dtInt64, []int64{2}, 10, 20)}, in, [][]byte{valueInfo("Y", dtInt64, -1)})
	for name, tc := range map[string]struct {
		model       []byte
		good, bad   float32
		want, want2 float64
	}{
		"Binarizer NaN":               {bin, 0.7, float32(math.NaN()), 1, 0},
		"ArrayFeatureExtractor index": {afe, 1, 2, 20, 0},
	} {
		m := mustParse(t, tc.model)
		out := make([]Prediction, 2)
		if err := m.Score(context.Background(), []float32{tc.good, tc.good}, 2, out); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := out[0].Value + float64(out[0].Label); got != tc.want {
			t.Errorf("%s: good row scores %v, want %v", name, got, tc.want)
		}
		if err := m.Score(context.Background(), []float32{tc.good, tc.bad}, 2, out); !errors.Is(err, score.ErrBadInput) {
			t.Errorf("%s: err = %v, want ErrBadInput", name, err)
		}
		// The scratch buffers go back to the pool clean: the next call works.
		if err := m.Score(context.Background(), []float32{tc.good, tc.good}, 2, out); err != nil {
			t.Errorf("%s: after a failed call: %v", name, err)
		}
	}
}

func TestRefusesConstantOutput(t *testing.T) {
	m := graphModel([][]byte{node("Identity", "", []string{"c"}, []string{"Y"})},
		[][]byte{pbInit("c", dtFloat, []int64{1}, 1.0)},
		[][]byte{valueInfo("X", dtFloat, -1, 1)}, [][]byte{valueInfo("Y", dtFloat, 1)})
	if _, err := Parse(m); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("err = %v, want ErrUnsupported", err)
	}
}

// TestInspect: a model Load refuses is still described, every operator and
// input listed, the unsupported ones marked.
func TestInspect(t *testing.T) {
	b := graphModel([][]byte{
		node("Add", "", []string{"X", "c"}, []string{"a"}),
		node("CumSum", "", []string{"a", "k"}, []string{"Y"}),
	}, [][]byte{pbInit("c", dtFloat, []int64{1}, 1.0), pbInit("k", dtInt64, []int64{1}, 1)},
		[][]byte{valueInfo("X", dtFloat, -1, 3), valueInfo("cat", dtString, -1, 1)}, [][]byte{valueInfo("Y", dtFloat, -1, 1)})
	path := t.TempDir() + "/m.onnx"
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Load: %v, want ErrUnsupported", err)
	}
	d, err := Inspect(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Inputs) != 2 || d.Inputs[0].Name != "X" || d.Inputs[1].Type != "tensor(string)" || strings.Join(d.StringInputs, ",") != "cat" {
		t.Errorf("inputs %+v, string inputs %v", d.Inputs, d.StringInputs)
	}
	want := []OperatorUse{{Op: "ai.onnx:Add", Count: 1, Supported: true}, {Op: "ai.onnx:CumSum", Count: 1, Supported: false}}
	if len(d.Operators) != 2 || d.Operators[0] != want[0] || d.Operators[1] != want[1] {
		t.Errorf("operators %+v, want %+v", d.Operators, want)
	}
}

// TestRefusesRankOneIntoMLOperators: onnxruntime reads an [N] tensor fed
// to a tree ensemble or Softmax as one row of N values; tally refuses it.
func TestRefusesRankOneIntoMLOperators(t *testing.T) {
	for _, n := range [][]byte{
		node("Softmax", "", []string{"X"}, []string{"Y"}, pbInt("axis", -1)),
		node("Normalizer", "ai.onnx.ml", []string{"X"}, []string{"Y"}, pbString("norm", "L1")),
	} {
		_, err := Parse(graphModel([][]byte{n}, nil, [][]byte{valueInfo("X", dtFloat, -1)}, [][]byte{valueInfo("Y", dtFloat, -1)}))
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "rank 1") {
			t.Errorf("err = %v, want ErrUnsupported about rank 1", err)
		}
	}
}

// A string input of several values per row ([N, 2]: two categories in one
// tensor) takes that many strings per row, each named name[j] in
// StringInputs, row-major.
func TestWideStringInput(t *testing.T) {
	m := mustParse(t, wideStringGraph())
	if strings.Join(m.StringInputs(), ",") != "cats[0],cats[1]" || m.NumInputs() != 0 {
		t.Fatalf("string inputs %v, %d numeric values", m.StringInputs(), m.NumInputs())
	}
	out := make([]Prediction, 3)
	strs := []string{"travel", "fuel", "fuel", "unknown", "other", "travel"}
	if err := m.ScoreStrings(context.Background(), nil, strs, 3, out); err != nil {
		t.Fatal(err)
	}
	for i, want := range []float64{110, 1, 1000} {
		if out[i].Value != want {
			t.Errorf("row %d (%q): value %v, want %v", i, strs[2*i:2*i+2], out[i].Value, want)
		}
	}
	if err := m.ScoreStrings(context.Background(), nil, strs[:5], 3, out); !errors.Is(err, score.ErrBadInput) {
		t.Errorf("too few strings: %v, want ErrBadInput", err)
	}
}

// wideStringGraph one-hot encodes two categories held in one [N, 2] string
// input and weighs the four indicators 1, 10, 100, 1000.
func wideStringGraph() []byte {
	nodes := [][]byte{
		node("OneHotEncoder", "ai.onnx.ml", []string{"cats"}, []string{"oh"}, pbStrings("cats_strings", "fuel", "travel"), pbInt("zeros", 1)),
		node("Reshape", "", []string{"oh", "shape"}, []string{"oh2"}),
		node("MatMul", "", []string{"oh2", "w"}, []string{"value"}),
	}
	inits := [][]byte{
		pbInit("shape", dtInt64, []int64{2}, -1, 4),
		pbInit("w", dtFloat, []int64{4, 1}, 1.0, 10.0, 100.0, 1000.0),
	}
	return graphModel(nodes, inits, [][]byte{valueInfo("cats", dtString, -1, 2)}, [][]byte{valueInfo("value", dtFloat, -1, 1)})
}

// TestLabelEncoderDefaultIsNegativeZero: a LabelEncoder with float values
// and no default_float maps an unknown key to the spec's default, -0.0 (as
// onnxruntime does), not +0.
func TestLabelEncoderDefaultIsNegativeZero(t *testing.T) {
	n := node("LabelEncoder", "ai.onnx.ml", []string{"cat"}, []string{"Y"},
		pbStrings("keys_strings", "fuel", "travel"), pbFloats("values_floats", 1, 2))
	m := mustParse(t, model([][]byte{n}, [][]byte{valueInfo("cat", dtString, -1, 1)}, [][]byte{valueInfo("Y", dtFloat, -1, 1)}, 2))
	out := make([]Prediction, 3)
	if err := m.ScoreStrings(context.Background(), nil, []string{"travel", "unknown", "fuel"}, 3, out); err != nil {
		t.Fatal(err)
	}
	if out[0].Value != 2 || out[2].Value != 1 || out[1].Value != 0 || !math.Signbit(out[1].Value) {
		t.Fatalf("values %v, %v, %v: want 2, -0, 1", out[0].Value, out[1].Value, out[2].Value)
	}
}

// Cast to int32 (AdaBoost's zero-normaliser test) truncates, and sends NaN
// and values out of int32's range to math.MinInt32, as onnxruntime on x86.
func TestCastToInt32(t *testing.T) {
	m := mustParse(t, graphModel([][]byte{
		node("Cast", "", []string{"X"}, []string{"i"}, pbInt("to", dtInt32)),
		node("Cast", "", []string{"i"}, []string{"Y"}, pbInt("to", dtFloat)),
	}, nil, [][]byte{valueInfo("X", dtFloat, -1, 1)}, [][]byte{valueInfo("Y", dtFloat, -1, 1)}))
	in := []float32{3.7, -3.7, float32(math.NaN()), 3e9, -3e9, 2147483520}
	want := []float64{3, -3, math.MinInt32, math.MinInt32, math.MinInt32, 2147483520}
	out := make([]Prediction, len(in))
	if err := m.Score(context.Background(), in, len(in), out); err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		if out[i].Value != w {
			t.Errorf("Cast(%v) to int32 = %v, onnxruntime %v", in[i], out[i].Value, w)
		}
	}
}

// svmGraph is an RBF SVMClassifier of three classes, one support vector
// each, with probabilities.
func svmGraph() []byte {
	return graphModel([][]byte{node("SVMClassifier", "ai.onnx.ml", []string{"X"}, []string{"label", "probabilities"},
		pbInts("classlabels_ints", 5, 6, 7), pbInts("vectors_per_class", 1, 1, 1),
		pbFloats("support_vectors", 0, 0, 1, 1, -1, 2), pbFloats("coefficients", 1, 1, -1, -1, 1, -1),
		pbFloats("rho", 0.1, -0.2, 0.3), pbFloats("prob_a", -2, -1.5, -1), pbFloats("prob_b", 0, 0.1, -0.1),
		pbString("kernel_type", "RBF"), pbFloats("kernel_params", 0.5, 0, 3))},
		nil, [][]byte{valueInfo("X", dtFloat, -1, 2)},
		[][]byte{valueInfo("label", dtInt64, -1), valueInfo("probabilities", dtFloat, -1, 3)})
}

// SVMClassifier's labels and probabilities are onnxruntime's (values from
// onnxruntime 1.22.1): the label comes from the pairwise votes, not the
// probabilities (row 0). Scoring allocates nothing.
func TestSVMClassifier(t *testing.T) {
	m := mustParse(t, svmGraph())
	rows := []float32{0, 0, 1, 1, -1, 2}
	want := []struct {
		label int64
		probs [3]float64
	}{
		{5, [3]float64{0.2573409974575043, 0.2555995285511017, 0.4870595335960388}},
		{5, [3]float64{0.3972727358341217, 0.2331937551498413, 0.36953356862068176}},
		{7, [3]float64{0.15127764642238617, 0.24688521027565002, 0.6018370985984802}},
	}
	out := make([]Prediction, 3)
	if err := m.Score(context.Background(), rows, 3, out); err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		p := out[i]
		ok := p.Label == w.label && len(p.Probabilities) == 3
		for k := range w.probs {
			ok = ok && math.Abs(float64(p.Probabilities[k])-w.probs[k]) <= 1e-7
		}
		if !ok {
			t.Errorf("row %d: label %d, probabilities %v; onnxruntime %d, %v", i, p.Label, p.Probabilities, w.label, w.probs)
		}
	}
	if a := testing.AllocsPerRun(20, func() { _ = m.Score(context.Background(), rows, 3, out) }); a != 0 {
		t.Errorf("Score allocates %.1f times per call", a)
	}
}

// TestImputerOnRankOne: onnxruntime cycles several imputed values over
// the whole [N] tensor, so a row's value would depend on its place in the
// batch; tally refuses that, and takes one value.
func TestImputerOnRankOne(t *testing.T) {
	imputer := func(vals ...float32) []byte {
		return graphModel([][]byte{node("Imputer", "ai.onnx.ml", []string{"X"}, []string{"Y"},
			pbFloats("imputed_value_floats", vals...), pbFloat("replaced_value_float", float32(math.NaN())))},
			nil, [][]byte{valueInfo("X", dtFloat, -1)}, [][]byte{valueInfo("Y", dtFloat, -1)})
	}
	_, err := Parse(imputer(1, 2))
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "Imputer of one value per row with 2 imputed values") {
		t.Errorf("err = %v, want ErrUnsupported about one value per row", err)
	}
	m := mustParse(t, imputer(5))
	out := make([]Prediction, 2)
	if err := m.Score(context.Background(), []float32{float32(math.NaN()), 3}, 2, out); err != nil {
		t.Fatal(err)
	}
	if out[0].Value != 5 || out[1].Value != 3 {
		t.Errorf("scored %v, %v; want 5, 3", out[0].Value, out[1].Value)
	}
}
