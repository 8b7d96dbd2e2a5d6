package node

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"testing/fstest"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tally-ml/tally/features"
)

// linearONNX is an ONNX model of y = x·coefs: with several inputs (one
// float per row each, as skl2onnx makes from a DataFrame), they are
// concatenated in the order listed; with one, it takes len(coefs) floats
// per row (one tensor).
func linearONNX(inputs []string, coefs ...float32) []byte {
	msg := func(b []byte, num protowire.Number, v []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
	}
	varint := func(b []byte, num protowire.Number, v int64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), uint64(v))
	}
	// ONNX field numbers (onnx.proto3).
	valueInfo := func(name string, width int64) []byte {
		dims := msg(nil, 1, msg(nil, 2, []byte("N")))             // TensorShapeProto.dim: dim_param
		dims = msg(dims, 1, varint(nil, 1, width))                // dim_value
		tt := msg(varint(nil, 1, 1), 2, dims)                     // TypeProto.Tensor: elem_type float, shape
		return msg(msg(nil, 1, []byte(name)), 2, msg(nil, 1, tt)) // ValueInfoProto: name, type
	}
	node := func(op, domain string, in []string, out string, attrs ...[]byte) []byte {
		b := msg(nil, 4, []byte(op))
		if domain != "" {
			b = msg(b, 7, []byte(domain))
		}
		for _, s := range in {
			b = msg(b, 1, []byte(s))
		}
		b = msg(b, 2, []byte(out))
		for _, a := range attrs {
			b = msg(b, 5, a)
		}
		return b
	}
	floats := func(name string, v ...float32) []byte {
		var packed []byte
		for _, x := range v {
			packed = binary.LittleEndian.AppendUint32(packed, math.Float32bits(x))
		}
		return msg(varint(msg(nil, 1, []byte(name)), 20, 6), 7, packed) // AttributeProto: name, type FLOATS, floats
	}
	var g []byte
	x := inputs[0]
	if len(inputs) > 1 {
		x = "concat"
		axis := varint(varint(msg(nil, 1, []byte("axis")), 20, 2), 3, 1) // type INT, i
		g = msg(g, 1, node("Concat", "", inputs, x, axis))
	}
	g = msg(g, 1, node("LinearRegressor", "ai.onnx.ml", []string{x}, "y", floats("coefficients", coefs...), floats("intercepts", 0)))
	width := int64(1)
	if len(inputs) == 1 {
		width = int64(len(coefs))
	}
	for _, in := range inputs {
		g = msg(g, 11, valueInfo(in, width))
	}
	g = msg(g, 12, valueInfo("y", 1))
	b := varint(nil, 1, 8) // ir_version
	b = msg(b, 8, varint(msg(nil, 1, []byte("")), 2, 17))
	b = msg(b, 8, varint(msg(nil, 1, []byte("ai.onnx.ml")), 2, 3))
	return msg(b, 7, g)
}

const modelInputsRepo = `
request_views:
  - name: req
    request_schema: {a: float, b: float, c: float}
    features:
      - {name: one, expression: "1"}
feature_services:
%s
`

// TestModelInputsByName: a model with one input per column (named a and
// b, as skl2onnx makes from a DataFrame) is fed by name whatever the order
// of model.inputs; a model.inputs order a model input's name contradicts
// is refused at load, naming both lists; a one-tensor model (its input's
// name is not a feature's) is fed in model.inputs order, as before.
func TestModelInputsByName(t *testing.T) {
	fsys := fstest.MapFS{
		"ab.onnx":     {Data: linearONNX([]string{"a", "b"}, 1, 100)},
		"tensor.onnx": {Data: linearONNX([]string{"float_input"}, 1, 100)},
	}
	services := `  - {name: ordered, features: [req], model: {onnx: ab.onnx, inputs: [request.a, request.b]}}
  - {name: swapped, features: [req], model: {onnx: ab.onnx, inputs: [request.b, request.a]}}
  - {name: tensor, features: [req], model: {onnx: tensor.onnx, inputs: [request.b, request.a]}}`
	fsys["repo.yaml"] = &fstest.MapFile{Data: []byte(strings.Replace(modelInputsRepo, "%s", services, 1))}
	repo, err := features.Load(fsys)
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(repo, DefaultConfig(), Options{RepoFS: fsys})
	if err != nil {
		t.Fatal(err)
	}
	n.SetReady(true)
	for svc, want := range map[string]float64{"ordered": 201, "swapped": 201, "tensor": 102} {
		out, aerr := n.Predict(nil, []byte(`{"params":{"feature_service_name":"`+svc+`","join_key_map":{},"request_context_map":{"a":1,"b":2,"c":3}}}`))
		if aerr != nil {
			t.Fatalf("%s: %v", svc, aerr)
		}
		var got struct {
			Result struct {
				Prediction struct{ Value float64 } `json:"prediction"`
			} `json:"result"`
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		if got.Result.Prediction.Value != want {
			t.Errorf("service %s predicts %v, want %v (a=1, b=2, y = a + 100 b): %s", svc, got.Result.Prediction.Value, want, out)
		}
	}

	// b is fed request.c, while the feature request.b is named after it.
	fsys["repo.yaml"] = &fstest.MapFile{Data: []byte(strings.Replace(modelInputsRepo, "%s",
		`  - {name: wrong, features: [req], model: {onnx: ab.onnx, inputs: [request.b, request.c]}}`, 1))}
	if repo, err = features.Load(fsys); err != nil {
		t.Fatal(err)
	}
	_, err = New(repo, DefaultConfig(), Options{RepoFS: fsys})
	if err == nil || !strings.Contains(err.Error(), "[a b]") || !strings.Contains(err.Error(), "[request.b request.c]") {
		t.Fatalf("a model whose input b is fed request.c loads, or its error does not list both orders: %v", err)
	}
	t.Log(err)
}
