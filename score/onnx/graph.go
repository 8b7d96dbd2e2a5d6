package onnx

import (
	"fmt"
)

// The general operators (elementwise.go, shape.go, reduce.go) share these
// shape helpers. Every per-row tensor is [N, shape...]; an operator is
// compiled only when it keeps rows apart (never mixes values of two rows),
// and its shapes are checked at load. Operators whose inputs are all
// constants are folded at load.

// rank is the full rank of v: 1 + the per-row rank, or the constant's rank.
func rank(v *value) int {
	if v.isConst() {
		return len(v.kdims)
	}
	return 1 + len(v.shape)
}

func shapeWidth(shape []int) int {
	w := 1
	for _, d := range shape {
		w *= d
	}
	return w
}

// rowShape is a constant's shape aligned to per-row tensors of full rank r:
// its leading dimension, when it has rank r, must be 1 (it broadcasts over
// the rows).
func rowShape(v *value, r int) ([]int, error) {
	kd := v.kdims
	if len(kd) == r {
		if kd[0] != 1 {
			return nil, fmt.Errorf("%w: constant %q of shape %v cannot broadcast over rows", ErrUnsupported, v.name, kd)
		}
		kd = kd[1:]
	}
	out := make([]int, r-1)
	for i := range out {
		out[i] = 1
	}
	for i, d := range kd {
		out[r-1-len(kd)+i] = int(d)
	}
	return out, nil
}

// strides returns row-major strides of shape.
func strides(shape []int) []int {
	s := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= shape[i]
	}
	return s
}

// broadcastIndex maps each element of out (row-major) to the element of an
// operand of shape in (same rank, each dim 1 or equal), nil when in == out.
func broadcastIndex(in, out []int) []int32 {
	same := len(in) == len(out)
	for i := range in {
		same = same && in[i] == out[i]
	}
	if same {
		return nil
	}
	w := shapeWidth(out)
	idx := make([]int32, w)
	is := strides(in)
	coord := make([]int, len(out))
	for j := range w {
		k := 0
		for d := range out {
			if in[d] != 1 {
				k += coord[d] * is[d]
			}
		}
		idx[j] = int32(k)
		for d := len(out) - 1; d >= 0; d-- {
			coord[d]++
			if coord[d] < out[d] {
				break
			}
			coord[d] = 0
		}
	}
	return idx
}
