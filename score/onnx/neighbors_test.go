package onnx

import (
	"errors"
	"strings"
	"testing"
)

// scanModel is skl2onnx's nearest-neighbour distances (a Scan of X against
// two constant training rows, then Transpose) with body nodes of the
// caller's, which read next_in (the state) and next (a training row) and
// write red, and body initializers inits.
func scanModel(body, inits [][]byte) []byte {
	var g []byte
	body = append(body, node("Identity", "", []string{"next_in"}, []string{"next_out"}),
		node("Identity", "", []string{"red"}, []string{"scan_out"}))
	for _, n := range body {
		g = pbBytes(g, graphNode, n)
	}
	for _, i := range inits {
		g = pbBytes(g, graphInitializer, i)
	}
	g = pbBytes(g, graphInput, valueInfo("next_in", dtFloat, -1, 2))
	g = pbBytes(g, graphInput, valueInfo("next", dtFloat, 2))
	g = pbBytes(g, graphOutput, valueInfo("next_out", dtFloat, -1, 2))
	g = pbBytes(g, graphOutput, valueInfo("scan_out", dtFloat, -1))
	attr := pbBytes(nil, attrName, []byte("body"))
	attr = pbVarint(attr, attrType, 5)
	attr = pbBytes(attr, attrG, g)
	return graphModel([][]byte{
		node("Scan", "", []string{"X", "T"}, []string{"S0", "S1"}, attr, pbInt("num_scan_inputs", 1)),
		node("Transpose", "", []string{"S1"}, []string{"Y"}, pbInts("perm", 1, 0)),
	}, [][]byte{pbInit("T", dtFloat, []int64{2, 2}, 1.0, 2.0, 3.0, 4.0)},
		[][]byte{valueInfo("X", dtFloat, -1, 2)}, [][]byte{valueInfo("Y", dtFloat, -1, 2)})
}

// TestScanDistances: the three distances skl2onnx writes load; another
// body (a Chebyshev maximum, a computed Minkowski power) is refused,
// saying which distances are supported.
func TestScanDistances(t *testing.T) {
	axes := pbInit("axes", dtInt64, []int64{1}, 1)
	sub := node("Sub", "", []string{"next_in", "next"}, []string{"d"})
	abs := node("Abs", "", []string{"d"}, []string{"a"})
	sum := func(in string) []byte {
		return node("ReduceSum", "", []string{in, "axes"}, []string{"red"}, pbInt("keepdims", 0))
	}
	for name, tc := range map[string]struct {
		body, inits [][]byte
		refused     string
	}{
		"euclidean": {[][]byte{sub, node("ReduceSumSquare", "", []string{"d", "axes"}, []string{"red"}, pbInt("keepdims", 0))}, [][]byte{axes}, ""},
		"manhattan": {[][]byte{sub, abs, sum("a")}, [][]byte{axes}, ""},
		"minkowski": {[][]byte{sub, abs, node("Pow", "", []string{"a", "p"}, []string{"ap"}), sum("ap")},
			[][]byte{axes, pbInit("p", dtFloat, []int64{1}, 3.0)}, ""},
		"chebyshev": {[][]byte{sub, abs, node("ReduceMax", "", []string{"a", "axes"}, []string{"red"}, pbInt("keepdims", 0))},
			[][]byte{axes}, "does not end in ReduceSumSquare or ReduceSum"},
		"computed power": {[][]byte{sub, abs, node("ReduceMax", "", []string{"a"}, []string{"p"}, pbInt("keepdims", 1)),
			node("Pow", "", []string{"a", "p"}, []string{"ap"}), sum("ap")}, [][]byte{axes}, `raising to the power "p"`},
		"negative power": {[][]byte{sub, abs, node("Pow", "", []string{"a", "p"}, []string{"ap"}), sum("ap")},
			[][]byte{axes, pbInit("p", dtFloat, []int64{1}, -1.0)}, `raising to the power "p"`},
		"squared sum": {[][]byte{sub, node("Mul", "", []string{"d", "d"}, []string{"m"}), sum("m")},
			[][]byte{axes}, "summing something else than absolute differences"},
	} {
		_, err := Parse(scanModel(tc.body, tc.inits))
		if tc.refused == "" {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.refused) ||
			!strings.Contains(err.Error(), "Euclidean, Manhattan and Minkowski distances") {
			t.Errorf("%s: err = %v, want ErrUnsupported saying %q", name, err, tc.refused)
		}
	}
}
