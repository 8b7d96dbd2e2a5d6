package onnx

import (
	"fmt"
	"math"
)

// This file holds the general operators: numpy broadcasting elementwise
// arithmetic, comparisons and logic, reductions, MatMul/Gemm, and the shape
// and indexing operators. Every per-row tensor is [N, shape...]; an
// operator is compiled only when it keeps rows apart (never mixes values of
// two rows), and its shapes are checked at load. Operators whose inputs are
// all constants are folded at load.

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

// flatBlock is how many elements an elementwise step converts at a time
// when it runs flat (see ewStep).
const flatBlock = 256

// ewStep applies fn element by element to broadcast operands. When no
// operand broadcasts but scalar constants, it runs flat: over the whole
// chunk's elements in blocks, converting each operand once per block,
// which costs a few nanoseconds per element instead of a row's overhead.
type ewStep struct {
	ins  []*value
	idx  [][]int32 // per operand: out element -> operand element; nil is identity
	out  *value
	fn   func(a []float64) float64
	flat bool
}

func (s *ewStep) run(sc *scratch, n int) {
	if s.flat {
		s.runFlat(sc, n)
		return
	}
	w := s.out.width
	dst := sc.row2[:w]
	args := sc.args[:len(s.ins)]
	for r := range n {
		for i, v := range s.ins {
			if !v.isConst() {
				loadRow(sc, v, r, sc.tmp[i][:v.width])
			}
		}
		for j := range w {
			for i, v := range s.ins {
				k := j
				if ix := s.idx[i]; ix != nil {
					k = int(ix[j])
				}
				if v.isConst() {
					args[i] = v.konst[k]
				} else {
					args[i] = sc.tmp[i][k]
				}
			}
			dst[j] = s.fn(args)
		}
		storeRow(sc, s.out, r, dst)
	}
}

func (s *ewStep) runFlat(sc *scratch, n int) {
	total := n * s.out.width
	args := sc.args[:len(s.ins)]
	dst := sc.tmp[len(s.ins)]
	for off := 0; off < total; off += flatBlock {
		m := min(flatBlock, total-off)
		for k, v := range s.ins {
			if v.isConst() {
				args[k] = v.konst[0]
			} else {
				loadFlat(sc, v, off, sc.tmp[k][:m])
			}
		}
		switch len(s.ins) {
		case 1:
			a := sc.tmp[0][:m]
			for i, x := range a {
				args[0] = x
				dst[i] = s.fn(args)
			}
		case 2:
			c0, c1 := s.ins[0].isConst(), s.ins[1].isConst()
			a, b := sc.tmp[0][:m], sc.tmp[1][:m]
			for i := range m {
				if !c0 {
					args[0] = a[i]
				}
				if !c1 {
					args[1] = b[i]
				}
				dst[i] = s.fn(args)
			}
		default:
			for i := range m {
				for k, v := range s.ins {
					if !v.isConst() {
						args[k] = sc.tmp[k][i]
					}
				}
				dst[i] = s.fn(args)
			}
		}
		storeFlat(sc, s.out, off, dst[:m])
	}
}

// round converts x to what a tensor of type dt holds.
func round(dt dtype, x float64) float64 {
	switch dt {
	case tF32:
		return float64(float32(x))
	case tBool:
		if x != 0 {
			return 1
		}
		return 0
	case tI64, tStr:
		return float64(toInt64(x))
	}
	return x
}

// ew compiles an elementwise operator over broadcast inputs, or folds it
// when every input is a constant. Its result has type outDT.
func (c *compiler) ew(n *nodeProto, ins []*value, outDT dtype, fn func(a []float64) float64) (*value, error) {
	name := c.output(n, 0)
	r, allConst := 0, true
	for _, v := range ins {
		if v.symN {
			return nil, fmt.Errorf("%w: %s of a Shape output", ErrUnsupported, n.opType)
		}
		r = max(r, rank(v))
		allConst = allConst && v.isConst()
	}
	if allConst {
		return c.fold(name, ins, outDT, fn)
	}
	shapes := make([][]int, len(ins))
	out := make([]int, r-1)
	for i := range out {
		out[i] = 1
	}
	for i, v := range ins {
		if v.isConst() {
			s, err := rowShape(v, r)
			if err != nil {
				return nil, err
			}
			shapes[i] = s
		} else {
			if rank(v) != r {
				return nil, fmt.Errorf("%w: %s broadcasts %q of rank %d against rank %d, mixing rows", ErrUnsupported, n.opType, v.name, rank(v), r)
			}
			shapes[i] = v.shape
		}
		for d, x := range shapes[i] {
			switch {
			case out[d] == 1:
				out[d] = x
			case x != 1 && x != out[d]:
				return nil, fmt.Errorf("%w: %s of shapes that do not broadcast (%v and %v per row)", ErrMalformed, n.opType, shapes[i], out)
			}
		}
	}
	if shapeWidth(out) > maxWidth {
		return nil, fmt.Errorf("%w: %s wider than %d", ErrUnsupported, n.opType, maxWidth)
	}
	s := &ewStep{ins: ins, fn: fn}
	for i, v := range ins {
		ix := broadcastIndex(shapes[i], out)
		if ix == nil && v.isConst() && len(v.konst) != shapeWidth(out) {
			ix = make([]int32, shapeWidth(out))
		}
		s.idx = append(s.idx, ix)
	}
	s.out = c.newShaped(name, outDT, out)
	s.flat = true
	for i, v := range ins {
		s.flat = s.flat && (v.isConst() && len(v.konst) == 1 || !v.isConst() && s.idx[i] == nil)
	}
	c.m.nTmp = max(c.m.nTmp, len(ins)+1)
	c.m.steps = append(c.m.steps, s)
	return s.out, nil
}

// fold evaluates fn over constants at load.
func (c *compiler) fold(name string, ins []*value, outDT dtype, fn func(a []float64) float64) (*value, error) {
	r := 0
	for _, v := range ins {
		r = max(r, len(v.kdims))
	}
	out := make([]int, r)
	for i := range out {
		out[i] = 1
	}
	shapes := make([][]int, len(ins))
	for i, v := range ins {
		s := make([]int, r)
		for d := range s {
			s[d] = 1
		}
		for d, x := range v.kdims {
			s[r-len(v.kdims)+d] = int(x)
		}
		shapes[i] = s
		for d, x := range s {
			switch {
			case out[d] == 1:
				out[d] = x
			case x != 1 && x != out[d]:
				return nil, fmt.Errorf("%w: constants of shapes %v and %v do not broadcast", ErrMalformed, v.kdims, out)
			}
		}
	}
	w := shapeWidth(out)
	if w > maxWidth {
		return nil, fmt.Errorf("%w: constant wider than %d", ErrUnsupported, maxWidth)
	}
	idx := make([][]int32, len(ins))
	for i := range ins {
		idx[i] = broadcastIndex(shapes[i], out)
	}
	args := make([]float64, len(ins))
	res := make([]float64, w)
	for j := range w {
		for i, v := range ins {
			k := j
			if idx[i] != nil {
				k = int(idx[i][j])
			}
			args[i] = v.konst[k]
		}
		res[j] = round(outDT, fn(args))
	}
	kd := make([]int64, r)
	for d, x := range out {
		kd[d] = int64(x)
	}
	v := &value{name: name, dt: outDT, buf: -1, konst: res, kdims: kd, width: w}
	c.values[name] = v
	return v, nil
}

// inputs returns node inputs from..to-1 that are present ("" skips).
func (c *compiler) inputsOf(n *nodeProto) ([]*value, error) {
	var ins []*value
	for i := range n.inputs {
		v, err := c.input(n, i)
		if err != nil {
			return nil, err
		}
		ins = append(ins, v)
	}
	if len(ins) == 0 {
		return nil, fmt.Errorf("%w: %s without inputs", ErrMalformed, n.opType)
	}
	return ins, nil
}

func isFloat(dt dtype) bool { return dt == tF32 || dt == tF64 }

// elementwise compiles the ai.onnx elementwise operators.
func (c *compiler) elementwise(n *nodeProto, a attrs) error {
	ins, err := c.inputsOf(n)
	if err != nil {
		return err
	}
	dt := ins[0].dt
	numeric := func() error {
		for _, v := range ins {
			if v.dt == tStr {
				return fmt.Errorf("%w: %s on strings", ErrUnsupported, n.opType)
			}
		}
		return nil
	}
	need := func(k int) error {
		if len(ins) != k {
			return fmt.Errorf("%w: %s takes %d inputs, has %d", ErrMalformed, n.opType, k, len(ins))
		}
		return nil
	}
	var fn func(a []float64) float64
	out := dt
	op := n.opType
	switch op {
	case "Add", "Sub", "Mul", "Div", "Pow", "Mod":
		if err := need(2); err != nil {
			return err
		}
		if err := numeric(); err != nil {
			return err
		}
		if op != "Pow" && ins[1].dt != dt {
			return fmt.Errorf("%w: %s of %s and %s", ErrMalformed, op, dt, ins[1].dt)
		}
		intDiv := dt == tI64 || dt == tBool
		switch op {
		case "Add":
			fn = func(a []float64) float64 { return a[0] + a[1] }
		case "Sub":
			fn = func(a []float64) float64 { return a[0] - a[1] }
		case "Mul":
			fn = func(a []float64) float64 { return a[0] * a[1] }
		case "Div":
			if intDiv {
				fn = func(a []float64) float64 {
					if a[1] == 0 {
						return 0
					}
					return float64(toInt64(a[0]) / toInt64(a[1]))
				}
			} else {
				fn = func(a []float64) float64 { return a[0] / a[1] }
			}
		case "Pow":
			if dt == tF32 {
				fn = func(a []float64) float64 { return float64(float32(math.Pow(a[0], float64(float32(a[1]))))) }
			} else {
				fn = func(a []float64) float64 { return math.Pow(a[0], a[1]) }
			}
		case "Mod":
			if a.int("fmod", 0) == 1 || !intDiv {
				fn = func(a []float64) float64 { return math.Mod(a[0], a[1]) }
			} else {
				fn = func(a []float64) float64 {
					x, y := toInt64(a[0]), toInt64(a[1])
					if y == 0 {
						return 0
					}
					m := x % y
					if m != 0 && (m < 0) != (y < 0) {
						m += y
					}
					return float64(m)
				}
			}
		}
	case "Max", "Min", "Sum", "Mean":
		if err := numeric(); err != nil {
			return err
		}
		switch op {
		case "Max":
			fn = func(a []float64) float64 {
				m := a[0]
				for _, x := range a[1:] {
					if x > m || x != x {
						m = x
					}
				}
				return m
			}
		case "Min":
			fn = func(a []float64) float64 {
				m := a[0]
				for _, x := range a[1:] {
					if x < m || x != x {
						m = x
					}
				}
				return m
			}
		case "Sum":
			fn = func(a []float64) float64 {
				s := a[0]
				for _, x := range a[1:] {
					s = round(dt, s+x)
				}
				return s
			}
		default:
			fn = func(a []float64) float64 {
				s := a[0]
				for _, x := range a[1:] {
					s = round(dt, s+x)
				}
				return s / float64(len(a))
			}
		}
	case "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Equal":
		if err := need(2); err != nil {
			return err
		}
		if ins[0].dt != ins[1].dt {
			return fmt.Errorf("%w: %s of %s and %s", ErrMalformed, op, ins[0].dt, ins[1].dt)
		}
		out = tBool
		if dt == tStr {
			if op != "Equal" {
				return fmt.Errorf("%w: %s on strings", ErrUnsupported, op)
			}
			if !ins[0].isConst() && !ins[1].isConst() {
				// Unknown strings share one id; only a comparison with known
				// strings is exact.
				return fmt.Errorf("%w: Equal of two computed strings", ErrUnsupported)
			}
		}
		fn = map[string]func(a []float64) float64{
			"Less":           func(a []float64) float64 { return b2f(a[0] < a[1]) },
			"Greater":        func(a []float64) float64 { return b2f(a[0] > a[1]) },
			"LessOrEqual":    func(a []float64) float64 { return b2f(a[0] <= a[1]) },
			"GreaterOrEqual": func(a []float64) float64 { return b2f(a[0] >= a[1]) },
			"Equal":          func(a []float64) float64 { return b2f(a[0] == a[1]) },
		}[op]
	case "And", "Or", "Xor", "Not":
		k := 2
		if op == "Not" {
			k = 1
		}
		if err := need(k); err != nil {
			return err
		}
		for _, v := range ins {
			if v.dt != tBool {
				return fmt.Errorf("%w: %s of %s", ErrMalformed, op, v.dt)
			}
		}
		fn = map[string]func(a []float64) float64{
			"And": func(a []float64) float64 { return b2f(a[0] != 0 && a[1] != 0) },
			"Or":  func(a []float64) float64 { return b2f(a[0] != 0 || a[1] != 0) },
			"Xor": func(a []float64) float64 { return b2f((a[0] != 0) != (a[1] != 0)) },
			"Not": func(a []float64) float64 { return b2f(a[0] == 0) },
		}[op]
	case "Where":
		if err := need(3); err != nil {
			return err
		}
		if ins[0].dt != tBool || ins[1].dt != ins[2].dt {
			return fmt.Errorf("%w: Where(%s, %s, %s)", ErrMalformed, ins[0].dt, ins[1].dt, ins[2].dt)
		}
		out = ins[1].dt
		fn = func(a []float64) float64 {
			if a[0] != 0 {
				return a[1]
			}
			return a[2]
		}
	case "Clip":
		if err := numeric(); err != nil {
			return err
		}
		lo, hi := math.Inf(-1), math.Inf(1)
		if dt == tI64 {
			lo, hi = math.MinInt64, math.MaxInt64
		}
		if a.has("min") {
			lo = float64(a["min"].f)
		}
		if a.has("max") {
			hi = float64(a["max"].f)
		}
		// Optional min and max inputs (opset 11): "" leaves them out.
		var bounds []*value
		for i := 1; i < len(n.inputs) && i < 3; i++ {
			if n.inputs[i] == "" {
				bounds = append(bounds, nil)
				continue
			}
			v := ins[i]
			if !v.isConst() || len(v.konst) != 1 {
				return fmt.Errorf("%w: Clip with a computed or non-scalar bound", ErrUnsupported)
			}
			bounds = append(bounds, v)
		}
		if len(bounds) > 0 && bounds[0] != nil {
			lo = bounds[0].konst[0]
		}
		if len(bounds) > 1 && bounds[1] != nil {
			hi = bounds[1].konst[0]
		}
		ins = ins[:1]
		fn = func(a []float64) float64 {
			x := a[0]
			if x < lo {
				x = lo
			}
			if x > hi {
				x = hi
			}
			return x
		}
	default: // unary
		if err := need(1); err != nil {
			return err
		}
		if err := numeric(); err != nil {
			return err
		}
		var f func(float64) float64
		switch op {
		case "Neg":
			f = func(x float64) float64 { return -x }
		case "Abs":
			f = math.Abs
		case "Identity":
			f = func(x float64) float64 { return x }
		case "Floor":
			f = math.Floor
		case "Ceil":
			f = math.Ceil
		case "Round":
			f = math.RoundToEven
		case "Sign":
			f = func(x float64) float64 {
				switch {
				case x > 0:
					return 1
				case x < 0:
					return -1
				}
				return x
			}
		case "Relu":
			f = func(x float64) float64 {
				if x < 0 {
					return 0
				}
				return x
			}
		case "IsNaN":
			out = tBool
			f = func(x float64) float64 { return b2f(x != x) }
		case "IsInf":
			out = tBool
			pos, neg := a.int("detect_positive", 1) == 1, a.int("detect_negative", 1) == 1
			f = func(x float64) float64 { return b2f((pos && math.IsInf(x, 1)) || (neg && math.IsInf(x, -1))) }
		default:
			if !isFloat(dt) {
				return fmt.Errorf("%w: %s on %s", ErrUnsupported, op, dt)
			}
			switch op {
			case "Log":
				f = math.Log
			case "Exp":
				f = math.Exp
			case "Sqrt":
				f = math.Sqrt
			case "Reciprocal":
				f = func(x float64) float64 { return 1 / x }
			case "Tanh":
				f = math.Tanh
			case "Erf":
				f = math.Erf
			case "Sigmoid":
				f = func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
			default:
				return fmt.Errorf("%w: operator %s is not supported", ErrUnsupported, opName(n))
			}
		}
		fn = func(a []float64) float64 { return f(a[0]) }
	}
	v, err := c.ew(n, ins, out, fn)
	if err != nil {
		return err
	}
	if v != nil && (op == "Identity" || op == "Clip") {
		v.classes = ins[0].classes
	}
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// cast compiles Cast; numbers and bools convert as C casts do (NaN and
// out-of-range floats become math.MinInt64 in int64, as on x86).
func (c *compiler) cast(n *nodeProto, a attrs) error {
	v, err := c.input(n, 0)
	if err != nil {
		return err
	}
	to, ok := dtypeOf(a.int("to", 0))
	if !ok {
		return fmt.Errorf("%w: Cast to type %d", ErrUnsupported, a.int("to", 0))
	}
	out := c.output(n, 0)
	if to == v.dt {
		c.alias(out, v)
		return nil
	}
	if to == tStr || v.dt == tStr {
		return fmt.Errorf("%w: Cast between %s and %s", ErrUnsupported, v.dt, to)
	}
	o, err := c.ew(n, []*value{v}, to, func(a []float64) float64 { return a[0] })
	if err != nil {
		return err
	}
	o.classes = v.classes
	return nil
}

// constant compiles Constant: a constant value.
func (c *compiler) constant(n *nodeProto, a attrs) error {
	name := c.output(n, 0)
	var v *value
	switch {
	case a["value"] != nil && a["value"].t != nil:
		var err error
		if v, err = c.constTensor(name, a["value"].t); err != nil {
			return fmt.Errorf("%w: %v", ErrUnsupported, err)
		}
	case a.has("value_float"):
		v = &value{dt: tF32, konst: []float64{float64(a["value_float"].f)}}
	case a.has("value_floats"):
		v = &value{dt: tF32, konst: a.floats("value_floats")}
		v.kdims = []int64{int64(len(v.konst))}
	case a.has("value_int"):
		v = &value{dt: tI64, konst: []float64{float64(a.int("value_int", 0))}}
	case a.has("value_ints"):
		v = &value{dt: tI64}
		for _, x := range a.ints("value_ints") {
			v.konst = append(v.konst, float64(x))
		}
		v.kdims = []int64{int64(len(v.konst))}
	default:
		return fmt.Errorf("%w: Constant without a value, value_float(s) or value_int(s)", ErrUnsupported)
	}
	v.name, v.buf, v.width = name, -1, len(v.konst)
	c.values[name] = v
	return nil
}

// shapeOp compiles Shape: a constant whose first entry stands for the row
// count, which only Reshape may read.
func (c *compiler) shapeOp(n *nodeProto, a attrs) error {
	v, err := c.input(n, 0)
	if err != nil {
		return err
	}
	if a.has("start") || a.has("end") {
		return fmt.Errorf("%w: Shape with start or end", ErrUnsupported)
	}
	o := &value{name: c.output(n, 0), dt: tI64, buf: -1}
	if v.isConst() {
		for _, d := range v.kdims {
			o.konst = append(o.konst, float64(d))
		}
	} else {
		o.konst = append(o.konst, 0)
		o.symN = true
		for _, d := range v.shape {
			o.konst = append(o.konst, float64(d))
		}
	}
	o.kdims = []int64{int64(len(o.konst))}
	o.width = len(o.konst)
	c.values[o.name] = o
	return nil
}

// constantOfShape compiles ConstantOfShape. Over a Shape output it is the
// same for every row: a constant with a leading 1, which broadcasts over
// rows in the elementwise operators (others refuse a constant operand).
func (c *compiler) constantOfShape(n *nodeProto, a attrs) error {
	sv, err := c.input(n, 0)
	if err != nil {
		return err
	}
	if !sv.isConst() {
		return fmt.Errorf("%w: ConstantOfShape of a computed shape", ErrUnsupported)
	}
	fill, dt := 0.0, tF32
	if x := a["value"]; x != nil && x.t != nil {
		fv, err := c.constTensor("", x.t)
		if err != nil || len(fv.konst) != 1 {
			return fmt.Errorf("%w: ConstantOfShape value: %v", ErrMalformed, err)
		}
		fill, dt = fv.konst[0], fv.dt
	}
	kd := make([]int64, len(sv.konst))
	total := int64(1)
	for i, d := range sv.konst {
		kd[i] = int64(d)
		if i == 0 && sv.symN {
			kd[i] = 1
		}
		if kd[i] < 0 || kd[i] > maxWidth {
			return fmt.Errorf("%w: ConstantOfShape of shape %v", ErrMalformed, sv.konst)
		}
		total *= kd[i]
		if total > maxWidth {
			return fmt.Errorf("%w: ConstantOfShape larger than %d", ErrUnsupported, maxWidth)
		}
	}
	data := make([]float64, total)
	for i := range data {
		data[i] = fill
	}
	name := c.output(n, 0)
	c.values[name] = &value{name: name, dt: dt, buf: -1, konst: data, kdims: kd, width: len(data)}
	return nil
}

// ints reads a constant integer tensor input (axes, shapes, indices).
func (c *compiler) constInts(n *nodeProto, i int, what string) ([]int64, bool, error) {
	if i >= len(n.inputs) || n.inputs[i] == "" {
		return nil, false, nil
	}
	v, err := c.input(n, i)
	if err != nil {
		return nil, false, err
	}
	if !v.isConst() {
		return nil, false, fmt.Errorf("%w: %s %s is computed; only constants are supported", ErrUnsupported, n.opType, what)
	}
	out := make([]int64, len(v.konst))
	for j, x := range v.konst {
		out[j] = int64(x)
	}
	return out, true, nil
}

// normAxis maps an axis of a tensor of full rank r to 0..r-1.
func normAxis(ax int64, r int) (int, bool) {
	if ax < 0 {
		ax += int64(r)
	}
	return int(ax), ax >= 0 && ax < int64(r)
}

// reshape compiles Identity, Flatten, Reshape, Squeeze and Unsqueeze. None
// moves data: a per-row result aliases its input with a new shape, and a
// constant one shares its data.
func (c *compiler) reshape(n *nodeProto, a attrs) error {
	v, err := c.input(n, 0)
	if err != nil {
		return err
	}
	if v.symN {
		return fmt.Errorf("%w: %s of a Shape output", ErrUnsupported, n.opType)
	}
	full := make([]int, 0, rank(v))
	if v.isConst() {
		for _, d := range v.kdims {
			full = append(full, int(d))
		}
	} else {
		full = append(append(full, -1), v.shape...) // -1: the row count
	}
	r := len(full)
	var out []int
	switch n.opType {
	case "Identity":
		out = full
	case "Flatten":
		ax, ok := normAxis(a.int("axis", 1), r+1)
		if !ok {
			return fmt.Errorf("%w: Flatten axis %d of rank %d", ErrMalformed, a.int("axis", 1), r)
		}
		if !v.isConst() && ax != 1 {
			return fmt.Errorf("%w: Flatten axis %d (only 1 keeps rows apart)", ErrUnsupported, ax)
		}
		outer, inner := 1, 1
		for i, d := range full {
			if i < ax {
				outer *= d
			} else {
				inner *= d
			}
		}
		out = []int{outer, inner}
		if !v.isConst() {
			out[0] = -1
		}
	case "Reshape":
		shape, ok, err := c.constInts(n, 1, "shape")
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: Reshape without a shape", ErrMalformed)
		}
		sv := c.values[n.inputs[1]]
		allowZero := a.int("allowzero", 0) == 1
		out = make([]int, len(shape))
		infer := -1
		known := 1
		for i, d := range shape {
			switch {
			case i == 0 && sv.symN:
				out[i] = -1
				continue
			case d == 0 && !allowZero:
				if i >= r {
					return fmt.Errorf("%w: Reshape copies dimension %d of a rank %d tensor", ErrMalformed, i, r)
				}
				out[i] = full[i]
			case d == -1:
				if infer >= 0 {
					return fmt.Errorf("%w: Reshape with two -1", ErrMalformed)
				}
				infer = i
				continue
			case d < 0:
				return fmt.Errorf("%w: Reshape to %v", ErrMalformed, shape)
			default:
				out[i] = int(d)
			}
			if out[i] != -1 {
				known *= out[i]
			}
		}
		if v.isConst() {
			if infer >= 0 {
				if known == 0 || len(v.konst)%known != 0 {
					return fmt.Errorf("%w: Reshape of %d values to %v", ErrMalformed, len(v.konst), shape)
				}
				out[infer] = len(v.konst) / known
			}
		} else {
			// Per row: the row count must stay the first dimension, either
			// copied (0, or a Shape's count) or inferred with the rest
			// multiplying to the row width.
			switch {
			case infer == 0:
				out[0] = -1
			case len(out) == 0 || out[0] != -1:
				return fmt.Errorf("%w: Reshape to %v does not keep one row per input row", ErrUnsupported, shape)
			case infer > 0:
				if known == 0 || v.width%known != 0 {
					return fmt.Errorf("%w: Reshape of rows of %d values to %v", ErrMalformed, v.width, shape)
				}
				out[infer] = v.width / known
			}
			if shapeWidth(out[1:]) != v.width {
				return fmt.Errorf("%w: Reshape to %v does not keep one row per input row of %d values", ErrUnsupported, shape, v.width)
			}
		}
	case "Squeeze", "Unsqueeze":
		axes := a.ints("axes")
		if in, ok, err := c.constInts(n, 1, "axes"); err != nil {
			return err
		} else if ok {
			axes = in
		}
		if n.opType == "Squeeze" {
			drop := map[int]bool{}
			for _, x := range axes {
				ax, ok := normAxis(x, r)
				if !ok || full[ax] != 1 {
					return fmt.Errorf("%w: Squeeze axis %d of shape %v", ErrUnsupported, x, full)
				}
				drop[ax] = true
			}
			for i, d := range full {
				if !drop[i] && (len(axes) > 0 || d != 1) {
					out = append(out, d)
				}
			}
		} else {
			ro := r + len(axes)
			add := map[int]bool{}
			for _, x := range axes {
				ax, ok := normAxis(x, ro)
				if !ok || add[ax] {
					return fmt.Errorf("%w: Unsqueeze axes %v of rank %d", ErrMalformed, axes, r)
				}
				add[ax] = true
			}
			k := 0
			for i := range ro {
				if add[i] {
					out = append(out, 1)
				} else {
					out = append(out, full[k])
					k++
				}
			}
		}
		if !v.isConst() && (len(out) == 0 || out[0] != -1) {
			return fmt.Errorf("%w: %s moves the row dimension", ErrUnsupported, n.opType)
		}
	}
	name := c.output(n, 0)
	if v.isConst() {
		k := *v
		k.name = name
		k.kdims = make([]int64, len(out))
		for i, d := range out {
			k.kdims[i] = int64(d)
		}
		if shapeWidth(out) != len(v.konst) {
			return fmt.Errorf("%w: %s of %d values to %v", ErrMalformed, n.opType, len(v.konst), out)
		}
		c.values[name] = &k
		return nil
	}
	o := c.alias(name, v)
	o.shape = append([]int(nil), out[1:]...)
	return nil
}

// selectStep copies chosen elements of each row: out[j] = in[sel[j]].
type selectStep struct {
	in, out *value
	sel     []int32
}

func (s *selectStep) run(sc *scratch, n int) {
	src, dst := sc.row[:s.in.width], sc.row2[:s.out.width]
	for r := range n {
		loadRow(sc, s.in, r, src)
		for j, k := range s.sel {
			dst[j] = src[k]
		}
		storeRow(sc, s.out, r, dst)
	}
}

// takeAxis selects, along per-row axis p of a per-row value, the positions
// pos (already in range), giving shape outShape.
func (c *compiler) takeAxis(name string, v *value, p int, pos []int, outShape []int) *value {
	outer := shapeWidth(v.shape[:p])
	inner := shapeWidth(v.shape[p+1:])
	dim := v.shape[p]
	var sel []int32
	for o := range outer {
		for _, q := range pos {
			for i := range inner {
				sel = append(sel, int32((o*dim+q)*inner+i))
			}
		}
	}
	identity := len(sel) == v.width
	for j, k := range sel {
		identity = identity && int(k) == j
	}
	if identity {
		o := c.alias(name, v)
		o.shape = outShape
		return o
	}
	o := c.newShaped(name, v.dt, outShape)
	o.classes = v.classes
	c.m.steps = append(c.m.steps, &selectStep{in: v, out: o, sel: sel})
	return o
}

// slice compiles Slice over per-row axes (the row axis must be whole), or
// folds it over a constant.
func (c *compiler) slice(n *nodeProto, a attrs) error {
	v, err := c.input(n, 0)
	if err != nil {
		return err
	}
	starts, ends, axes, steps := a.ints("starts"), a.ints("ends"), a.ints("axes"), []int64(nil)
	if len(n.inputs) > 1 {
		var ok bool
		if starts, ok, err = c.constInts(n, 1, "starts"); err != nil || !ok {
			return fmt.Errorf("%w: Slice starts: %v", ErrUnsupported, err)
		}
		if ends, ok, err = c.constInts(n, 2, "ends"); err != nil || !ok {
			return fmt.Errorf("%w: Slice ends: %v", ErrUnsupported, err)
		}
		if axes, _, err = c.constInts(n, 3, "axes"); err != nil {
			return err
		}
		if steps, _, err = c.constInts(n, 4, "steps"); err != nil {
			return err
		}
	}
	if len(starts) != len(ends) || (axes != nil && len(axes) != len(starts)) || (steps != nil && len(steps) != len(starts)) {
		return fmt.Errorf("%w: Slice with %d starts, %d ends, %d axes, %d steps", ErrMalformed, len(starts), len(ends), len(axes), len(steps))
	}
	if v.symN || v.dt == 0 {
		return fmt.Errorf("%w: Slice of a Shape output", ErrUnsupported)
	}
	var full []int
	if v.isConst() {
		for _, d := range v.kdims {
			full = append(full, int(d))
		}
	} else {
		full = append([]int{-1}, v.shape...)
	}
	r := len(full)
	// Per axis, the positions kept.
	pos := make([][]int, r)
	for i := range starts {
		ax := int64(i)
		if axes != nil {
			ax = axes[i]
		}
		p, ok := normAxis(ax, r)
		if !ok || pos[p] != nil {
			return fmt.Errorf("%w: Slice axis %d of rank %d", ErrMalformed, ax, r)
		}
		step := int64(1)
		if steps != nil {
			step = steps[i]
		}
		if step == 0 {
			return fmt.Errorf("%w: Slice step 0", ErrMalformed)
		}
		if full[p] == -1 {
			if starts[i] == 0 && step == 1 && ends[i] >= math.MaxInt32 {
				continue
			}
			return fmt.Errorf("%w: Slice along the row axis", ErrUnsupported)
		}
		dim := int64(full[p])
		clamp := func(x, lo, hi int64) int64 { return min(max(x, lo), hi) }
		s, e := starts[i], ends[i]
		if s < 0 {
			s += dim
		}
		if e < 0 {
			e += dim
		}
		var kept []int
		if step > 0 {
			s, e = clamp(s, 0, dim), clamp(e, 0, dim)
			for x := s; x < e; x += step {
				kept = append(kept, int(x))
			}
		} else {
			s, e = clamp(s, 0, dim-1), clamp(e, -1, dim-1)
			for x := s; x > e; x += step {
				kept = append(kept, int(x))
			}
		}
		if kept == nil {
			kept = []int{}
		}
		pos[p] = kept
	}
	name := c.output(n, 0)
	if v.isConst() {
		cur := v
		for p := range r {
			if pos[p] != nil {
				cur = takeConst(name, cur, p, pos[p])
			}
		}
		c.values[name] = cur
		return nil
	}
	cur := v
	for p := 1; p < r; p++ {
		if pos[p] == nil {
			continue
		}
		shape := append([]int(nil), cur.shape...)
		shape[p-1] = len(pos[p])
		cur = c.takeAxis(name, cur, p-1, pos[p], shape)
	}
	if cur == v {
		c.alias(name, v)
	}
	return nil
}

// takeConst selects positions pos along axis p of a constant.
func takeConst(name string, v *value, p int, pos []int) *value {
	dims := make([]int, len(v.kdims))
	for i, d := range v.kdims {
		dims[i] = int(d)
	}
	outer, inner := shapeWidth(dims[:p]), shapeWidth(dims[p+1:])
	var data []float64
	for o := range outer {
		for _, q := range pos {
			base := (o*dims[p] + q) * inner
			data = append(data, v.konst[base:base+inner]...)
		}
	}
	k := *v
	k.name, k.konst, k.width = name, data, len(data)
	k.kdims = append([]int64(nil), v.kdims...)
	k.kdims[p] = int64(len(pos))
	return &k
}

// gather compiles Gather: constant indices along a per-row axis, or a
// per-row index into a constant table along its first axis.
func (c *compiler) gather(n *nodeProto, a attrs) error {
	data, err := c.input(n, 0)
	if err != nil {
		return err
	}
	iv, err := c.input(n, 1)
	if err != nil {
		return err
	}
	if data.symN || iv.symN {
		return fmt.Errorf("%w: Gather of a Shape output", ErrUnsupported)
	}
	if iv.dt != tI64 {
		return fmt.Errorf("%w: Gather indices of type %s", ErrMalformed, iv.dt)
	}
	r := rank(data)
	ax, ok := normAxis(a.int("axis", 0), r)
	if !ok {
		return fmt.Errorf("%w: Gather axis %d of rank %d", ErrMalformed, a.int("axis", 0), r)
	}
	name := c.output(n, 0)
	switch {
	case iv.isConst() && !data.isConst():
		if ax == 0 {
			return fmt.Errorf("%w: Gather along the row axis", ErrUnsupported)
		}
		dim := data.shape[ax-1]
		pos := make([]int, len(iv.konst))
		for i, x := range iv.konst {
			k := int64(x)
			if k < 0 {
				k += int64(dim)
			}
			if k < 0 || k >= int64(dim) {
				return fmt.Errorf("%w: Gather index %d out of range [0, %d)", ErrMalformed, int64(x), dim)
			}
			pos[i] = int(k)
		}
		var shape []int
		shape = append(shape, data.shape[:ax-1]...)
		for _, d := range iv.kdims {
			shape = append(shape, int(d))
		}
		shape = append(shape, data.shape[ax:]...)
		c.takeAxis(name, data, ax-1, pos, shape)
		return nil
	case data.isConst() && iv.isConst():
		pos := make([]int, len(iv.konst))
		dim := int(data.kdims[ax])
		for i, x := range iv.konst {
			k := int(x)
			if k < 0 {
				k += dim
			}
			if k < 0 || k >= dim {
				return fmt.Errorf("%w: Gather index %d out of range [0, %d)", ErrMalformed, int(x), dim)
			}
			pos[i] = k
		}
		k := takeConst(name, data, ax, pos)
		var kd []int64
		kd = append(kd, data.kdims[:ax]...)
		kd = append(kd, iv.kdims...)
		kd = append(kd, data.kdims[ax+1:]...)
		k.kdims = kd
		c.values[name] = k
		return nil
	case data.isConst():
		if ax != 0 {
			return fmt.Errorf("%w: Gather from a constant along axis %d with computed indices", ErrUnsupported, ax)
		}
		shape := append([]int(nil), iv.shape...)
		for _, d := range data.kdims[1:] {
			shape = append(shape, int(d))
		}
		inner := 1
		for _, d := range data.kdims[1:] {
			inner *= int(d)
		}
		return c.lookup(name, data, iv, int(data.kdims[0]), inner, shape)
	}
	return fmt.Errorf("%w: Gather with computed indices into a computed tensor", ErrUnsupported)
}

// lookupStep reads, for each index of a row, inner values of a constant
// table: out[j*inner+i] = table[idx[j]*inner+i]. Negative indices count
// from the end; an index out of range fails the call, as in onnxruntime.
type lookupStep struct {
	table    []float64
	dim      int
	inner    int
	idx, out *value
}

func (s *lookupStep) run(sc *scratch, n int) {
	src, dst := sc.row[:s.idx.width], sc.row2[:s.out.width]
	for r := range n {
		loadRow(sc, s.idx, r, src)
		for j, x := range src {
			k := int(x)
			if k < 0 {
				k += s.dim
			}
			if k < 0 || k >= s.dim || x != math.Trunc(x) {
				if sc.err == nil {
					sc.err = fmt.Errorf("index %v out of range [0, %d) in %s", x, s.dim, s.out.name)
				}
				k = 0
			}
			copy(dst[j*s.inner:(j+1)*s.inner], s.table[k*s.inner:(k+1)*s.inner])
		}
		storeRow(sc, s.out, r, dst)
	}
}

func (c *compiler) lookup(name string, table, idx *value, dim, inner int, shape []int) error {
	if dim == 0 {
		return fmt.Errorf("%w: lookup in an empty table", ErrMalformed)
	}
	if shapeWidth(shape) > maxWidth {
		return fmt.Errorf("%w: lookup result wider than %d", ErrUnsupported, maxWidth)
	}
	o := c.newShaped(name, table.dt, shape)
	c.m.steps = append(c.m.steps, &lookupStep{table: table.konst, dim: dim, inner: inner, idx: idx, out: o})
	return nil
}

// concat compiles Concat along a per-row axis, and FeatureVectorizer,
// which casts to float and pads or truncates each input to its
// inputdimensions entry.
func (c *compiler) concat(n *nodeProto, a attrs) error {
	fv := n.opType == "FeatureVectorizer"
	ins, err := c.inputsOf(n)
	if err != nil {
		return err
	}
	allConst := true
	for _, v := range ins {
		allConst = allConst && v.isConst()
		if v.symN {
			return fmt.Errorf("%w: %s of a Shape output", ErrUnsupported, n.opType)
		}
	}
	if allConst && !fv {
		return c.concatConst(n, a, ins)
	}
	if fv {
		dims := a.ints("inputdimensions")
		if len(dims) != len(ins) {
			return fmt.Errorf("%w: FeatureVectorizer has %d inputs and %d inputdimensions", ErrMalformed, len(ins), len(dims))
		}
		s := &concatStep{outer: 1}
		total := 0
		for i, v := range ins {
			if v.isConst() || v.dt == tStr {
				return fmt.Errorf("%w: FeatureVectorizer of %s %q", ErrUnsupported, v.dt, v.name)
			}
			if dims[i] <= 0 || dims[i] > maxWidth {
				return fmt.Errorf("%w: inputdimensions %d", ErrMalformed, dims[i])
			}
			s.ins = append(s.ins, v)
			s.chunks = append(s.chunks, int(dims[i]))
			total += int(dims[i])
			if total > maxWidth {
				return fmt.Errorf("%w: FeatureVectorizer wider than %d", ErrUnsupported, maxWidth)
			}
		}
		s.out = c.newValue(c.output(n, 0), tF32, total)
		c.m.nTmp = max(c.m.nTmp, 1)
		c.m.steps = append(c.m.steps, s)
		return nil
	}
	r := rank(ins[0])
	ax, ok := normAxis(a.int("axis", 1), r)
	if !ok {
		return fmt.Errorf("%w: Concat axis %d of rank %d", ErrMalformed, a.int("axis", 1), r)
	}
	if ax == 0 {
		return fmt.Errorf("%w: Concat along the row axis", ErrUnsupported)
	}
	p := ax - 1
	s := &concatStep{}
	shape := append([]int(nil), ins[0].shape...)
	shape[p] = 0
	for _, v := range ins {
		if v.isConst() {
			return fmt.Errorf("%w: Concat of a constant %q with per-row tensors", ErrUnsupported, v.name)
		}
		if v.dt != ins[0].dt || len(v.shape) != len(ins[0].shape) {
			return fmt.Errorf("%w: Concat of %s%v and %s%v", ErrMalformed, ins[0].dt, ins[0].shape, v.dt, v.shape)
		}
		for d := range v.shape {
			if d != p && v.shape[d] != ins[0].shape[d] {
				return fmt.Errorf("%w: Concat of shapes %v and %v along axis %d", ErrMalformed, ins[0].shape, v.shape, ax)
			}
		}
		shape[p] += v.shape[p]
		s.ins = append(s.ins, v)
		s.chunks = append(s.chunks, shapeWidth(v.shape[p:]))
	}
	if shapeWidth(shape) > maxWidth {
		return fmt.Errorf("%w: Concat wider than %d", ErrUnsupported, maxWidth)
	}
	s.outer = shapeWidth(shape[:p])
	s.out = c.newShaped(c.output(n, 0), ins[0].dt, shape)
	c.m.nTmp = max(c.m.nTmp, 1)
	c.m.steps = append(c.m.steps, s)
	return nil
}

func (c *compiler) concatConst(n *nodeProto, a attrs, ins []*value) error {
	r := len(ins[0].kdims)
	ax, ok := normAxis(a.int("axis", 0), r)
	if !ok {
		return fmt.Errorf("%w: Concat axis %d of rank %d", ErrMalformed, a.int("axis", 0), r)
	}
	dims := make([]int, r)
	for i, d := range ins[0].kdims {
		dims[i] = int(d)
	}
	outer := shapeWidth(dims[:ax])
	total := 0
	var chunks []int
	for _, v := range ins {
		if len(v.kdims) != r || v.dt != ins[0].dt {
			return fmt.Errorf("%w: Concat of constants of shapes %v and %v", ErrMalformed, ins[0].kdims, v.kdims)
		}
		for d := range v.kdims {
			if d != ax && v.kdims[d] != ins[0].kdims[d] {
				return fmt.Errorf("%w: Concat of constants of shapes %v and %v", ErrMalformed, ins[0].kdims, v.kdims)
			}
		}
		total += int(v.kdims[ax])
		chunks = append(chunks, len(v.konst)/max(outer, 1))
	}
	var data []float64
	for o := range outer {
		for i, v := range ins {
			data = append(data, v.konst[o*chunks[i]:(o+1)*chunks[i]]...)
		}
	}
	kd := append([]int64(nil), ins[0].kdims...)
	kd[ax] = int64(total)
	name := c.output(n, 0)
	c.values[name] = &value{name: name, dt: ins[0].dt, buf: -1, konst: data, kdims: kd, width: len(data)}
	return nil
}

// concatStep writes, per row and per outer block, chunks[i] values of each
// input in turn (zero-padded or truncated to chunks[i] for
// FeatureVectorizer, whose inputs may be narrower or wider).
type concatStep struct {
	ins    []*value
	chunks []int
	outer  int
	out    *value
}

func (s *concatStep) run(sc *scratch, n int) {
	dst := sc.row2[:s.out.width]
	for r := range n {
		off := 0
		for o := range s.outer {
			for i, v := range s.ins {
				src := sc.tmp[0][:v.width]
				if o == 0 || s.outer > 1 {
					loadRow(sc, v, r, src)
				}
				w := s.chunks[i]
				part := src[min(o*w, len(src)):min((o+1)*w, len(src))]
				k := copy(dst[off:off+w], part)
				for j := off + k; j < off+w; j++ {
					dst[j] = 0
				}
				off += w
			}
		}
		storeRow(sc, s.out, r, dst)
	}
}

// reduce compiles ReduceSum/Mean/Max/Min/Prod/LogSumExp/L1/L2/SumSquare
// over per-row axes.
func (c *compiler) reduce(n *nodeProto, a attrs) error {
	v, err := c.input(n, 0)
	if err != nil {
		return err
	}
	if v.isConst() || v.dt == tStr || v.dt == tBool {
		return fmt.Errorf("%w: %s of a %s %s", ErrUnsupported, n.opType, map[bool]string{true: "constant", false: "per-row"}[v.isConst()], v.dt)
	}
	axes := a.ints("axes")
	if in, ok, err := c.constInts(n, 1, "axes"); err != nil {
		return err
	} else if ok {
		axes = in
	}
	keep := a.int("keepdims", 1) == 1
	r := rank(v)
	if len(axes) == 0 {
		if a.int("noop_with_empty_axes", 0) == 1 {
			c.alias(c.output(n, 0), v)
			return nil
		}
		return fmt.Errorf("%w: %s over every axis, rows included", ErrUnsupported, n.opType)
	}
	red := make([]bool, r)
	for _, x := range axes {
		ax, ok := normAxis(x, r)
		if !ok {
			return fmt.Errorf("%w: %s axis %d of rank %d", ErrMalformed, n.opType, x, r)
		}
		if ax == 0 {
			return fmt.Errorf("%w: %s over the row axis", ErrUnsupported, n.opType)
		}
		red[ax] = true
	}
	var outShape, kept []int
	for d, x := range v.shape {
		if red[d+1] {
			kept = append(kept, 1)
			if keep {
				outShape = append(outShape, 1)
			}
		} else {
			kept = append(kept, x)
			outShape = append(outShape, x)
		}
	}
	// oidx maps each input element to its output element.
	oidx := make([]int32, v.width)
	ks := strides(kept)
	coord := make([]int, len(v.shape))
	for j := range v.width {
		k := 0
		for d := range coord {
			if !red[d+1] {
				k += coord[d] * ks[d]
			}
		}
		oidx[j] = int32(k)
		for d := len(coord) - 1; d >= 0; d-- {
			coord[d]++
			if coord[d] < v.shape[d] {
				break
			}
			coord[d] = 0
		}
	}
	kind := n.opType[len("Reduce"):]
	switch kind {
	case "Sum", "Mean", "Max", "Min", "Prod", "LogSumExp", "L1", "L2", "SumSquare", "LogSum":
	default:
		return fmt.Errorf("%w: operator %s is not supported", ErrUnsupported, opName(n))
	}
	o := c.newShaped(c.output(n, 0), v.dt, outShape)
	c.m.nTmp = max(c.m.nTmp, 2)
	c.m.steps = append(c.m.steps, &reduceStep{in: v, out: o, oidx: oidx, kind: kind, count: float64(v.width / max(o.width, 1))})
	return nil
}

type reduceStep struct {
	in, out *value
	oidx    []int32
	kind    string
	count   float64
}

func (s *reduceStep) run(sc *scratch, n int) {
	src, dst, mx := sc.row[:s.in.width], sc.row2[:s.out.width], sc.tmp[1][:s.out.width]
	f32 := s.in.dt == tF32
	acc := func(x float64) float64 {
		if f32 {
			return float64(float32(x))
		}
		return x
	}
	for r := range n {
		loadRow(sc, s.in, r, src)
		var init float64
		switch s.kind {
		case "Max":
			init = math.Inf(-1)
		case "Min":
			init = math.Inf(1)
		case "Prod":
			init = 1
		}
		for k := range dst {
			dst[k] = init
		}
		if s.kind == "LogSumExp" {
			for k := range mx {
				mx[k] = math.Inf(-1)
			}
			for j, x := range src {
				k := s.oidx[j]
				mx[k] = math.Max(mx[k], x)
			}
		}
		for j, x := range src {
			k := s.oidx[j]
			switch s.kind {
			case "Sum", "Mean", "LogSum":
				dst[k] = acc(dst[k] + x)
			case "Max":
				if x > dst[k] || x != x {
					dst[k] = x
				}
			case "Min":
				if x < dst[k] || x != x {
					dst[k] = x
				}
			case "Prod":
				dst[k] = acc(dst[k] * x)
			case "L1":
				dst[k] = acc(dst[k] + math.Abs(x))
			case "L2", "SumSquare":
				dst[k] = acc(dst[k] + acc(x*x))
			case "LogSumExp":
				dst[k] = acc(dst[k] + acc(math.Exp(x-mx[k])))
			}
		}
		for k := range dst {
			switch s.kind {
			case "Mean":
				dst[k] /= s.count
			case "L2":
				dst[k] = math.Sqrt(dst[k])
			case "LogSum":
				dst[k] = math.Log(dst[k])
			case "LogSumExp":
				dst[k] = math.Log(dst[k]) + mx[k]
			}
		}
		storeRow(sc, s.out, r, dst)
	}
}

// matmul compiles MatMul and Gemm of a per-row tensor by a constant
// matrix: float32 scores are fused multiply-add chains along the row, as
// MLAS computes them; Gemm then adds beta*C.
func (c *compiler) matmul(n *nodeProto, a attrs) error {
	x, err := c.input(n, 0)
	if err != nil {
		return err
	}
	b, err := c.input(n, 1)
	if err != nil {
		return err
	}
	if x.isConst() || !b.isConst() {
		return fmt.Errorf("%w: %s of a %s by a %s (only per-row by constant)", ErrUnsupported, n.opType,
			map[bool]string{true: "constant", false: "per-row tensor"}[x.isConst()],
			map[bool]string{true: "constant", false: "per-row tensor"}[b.isConst()])
	}
	if !isFloat(x.dt) || !isFloat(b.dt) {
		return fmt.Errorf("%w: %s of %s by %s", ErrUnsupported, n.opType, x.dt, b.dt)
	}
	s := &matmulStep{in: x, alpha: 1}
	var k, m int
	gemm := n.opType == "Gemm"
	switch {
	case len(b.kdims) == 2:
		k, m = int(b.kdims[0]), int(b.kdims[1])
	case len(b.kdims) == 1 && !gemm:
		k, m = int(b.kdims[0]), 1
	default:
		return fmt.Errorf("%w: %s by a constant of shape %v", ErrUnsupported, n.opType, b.kdims)
	}
	w := b.konst
	if gemm {
		if a.int("transA", 0) != 0 {
			return fmt.Errorf("%w: Gemm with transA", ErrUnsupported)
		}
		if a.int("transB", 0) != 0 {
			k, m = m, k
			t := make([]float64, len(w))
			for i := range m {
				for j := range k {
					t[j*m+i] = w[i*k+j]
				}
			}
			w = t
		}
		if len(x.shape) != 1 {
			return fmt.Errorf("%w: Gemm of a rank %d tensor", ErrMalformed, rank(x))
		}
		if a.has("alpha") {
			s.alpha = float64(a["alpha"].f)
		}
		beta := 1.0
		if a.has("beta") {
			beta = float64(a["beta"].f)
		}
		if len(n.inputs) > 2 && n.inputs[2] != "" {
			cv, err := c.input(n, 2)
			if err != nil {
				return err
			}
			if !cv.isConst() {
				return fmt.Errorf("%w: Gemm with a computed C", ErrUnsupported)
			}
			switch {
			case len(cv.konst) == 1:
				s.bias = make([]float64, m)
				for i := range s.bias {
					s.bias[i] = cv.konst[0]
				}
			case len(cv.konst) == m && (len(cv.kdims) == 1 || cv.kdims[0] == 1):
				s.bias = append([]float64(nil), cv.konst...)
			default:
				return fmt.Errorf("%w: Gemm C of shape %v for %d outputs", ErrUnsupported, cv.kdims, m)
			}
			for i := range s.bias {
				s.bias[i] = round(x.dt, beta*s.bias[i])
			}
		}
	}
	if len(x.shape) == 0 || x.shape[len(x.shape)-1] != k {
		return fmt.Errorf("%w: %s of rows of shape %v by %v", ErrMalformed, n.opType, x.shape, b.kdims)
	}
	if k == 0 || m == 0 {
		return fmt.Errorf("%w: %s by an empty matrix", ErrUnsupported, n.opType)
	}
	if len(w) != k*m {
		return fmt.Errorf("%w: %s weights hold %d values, shape %v", ErrMalformed, n.opType, len(w), b.kdims)
	}
	shape := append([]int(nil), x.shape...)
	if len(b.kdims) == 1 {
		shape = shape[:len(shape)-1]
	} else {
		shape[len(shape)-1] = m
	}
	s.w, s.k, s.m = w, k, m
	s.out = c.newShaped(c.output(n, 0), x.dt, shape)
	c.m.steps = append(c.m.steps, s)
	return nil
}

type matmulStep struct {
	in, out *value
	w       []float64 // k x m, row-major
	k, m    int
	alpha   float64
	bias    []float64 // Gemm's beta*C, or nil
}

func (s *matmulStep) run(sc *scratch, n int) {
	src, dst := sc.row[:s.in.width], sc.row2[:s.out.width]
	f32 := s.in.dt == tF32
	outer := s.in.width / s.k
	for r := range n {
		loadRow(sc, s.in, r, src)
		for o := range outer {
			x := src[o*s.k : (o+1)*s.k]
			for j := range s.m {
				var acc float64
				if f32 {
					var a32 float32
					for i, xi := range x {
						a32 = float32(math.FMA(xi, float64(float32(s.w[i*s.m+j])), float64(a32)))
					}
					acc = float64(a32)
					if s.alpha != 1 {
						acc = float64(float32(s.alpha) * a32)
					}
					if s.bias != nil {
						acc = float64(float32(acc) + float32(s.bias[j]))
					}
				} else {
					for i, xi := range x {
						acc = math.FMA(xi, s.w[i*s.m+j], acc)
					}
					acc *= s.alpha
					if s.bias != nil {
						acc += s.bias[j]
					}
				}
				dst[o*s.m+j] = acc
			}
		}
		storeRow(sc, s.out, r, dst)
	}
}

// argmax compiles ArgMax and ArgMin over the last per-row axis.
func (c *compiler) argmax(n *nodeProto, a attrs) error {
	v, err := c.input(n, 0)
	if err != nil {
		return err
	}
	if v.isConst() || v.dt == tStr {
		return fmt.Errorf("%w: %s of a constant or strings", ErrUnsupported, n.opType)
	}
	r := rank(v)
	ax, ok := normAxis(a.int("axis", 0), r)
	if !ok || ax == 0 {
		return fmt.Errorf("%w: %s over axis %d of rank %d (only per-row axes keep rows apart)", ErrUnsupported, n.opType, a.int("axis", 0), r)
	}
	if ax != r-1 {
		return fmt.Errorf("%w: %s over axis %d of rank %d (only the last)", ErrUnsupported, n.opType, ax, r)
	}
	last := a.int("select_last_index", 0) == 1
	shape := append([]int(nil), v.shape[:len(v.shape)-1]...)
	if a.int("keepdims", 1) == 1 {
		shape = append(shape, 1)
	}
	o := c.newShaped(c.output(n, 0), tI64, shape)
	dim := v.shape[len(v.shape)-1]
	if dim == 0 {
		return fmt.Errorf("%w: %s over an empty axis", ErrMalformed, n.opType)
	}
	min := n.opType == "ArgMin"
	c.m.steps = append(c.m.steps, &mapStep{in: v, out: o, fn: func(dst, src []float64) {
		for g := range len(src) / dim {
			row := src[g*dim : (g+1)*dim]
			best := 0
			for j, x := range row {
				better := x > row[best]
				if min {
					better = x < row[best]
				}
				if better || (last && x == row[best]) {
					best = j
				}
			}
			dst[g] = float64(best)
		}
	}})
	return nil
}

// lpNorm compiles LpNormalization (p 1 or 2) over the last axis.
func (c *compiler) lpNorm(n *nodeProto, a attrs) error {
	v, err := c.rowInput(n, 0)
	if err != nil {
		return err
	}
	if !isFloat(v.dt) {
		return fmt.Errorf("%w: LpNormalization of %s", ErrUnsupported, v.dt)
	}
	r := rank(v)
	ax, ok := normAxis(a.int("axis", -1), r)
	if !ok || ax != r-1 || ax == 0 {
		return fmt.Errorf("%w: LpNormalization over axis %d of rank %d", ErrUnsupported, a.int("axis", -1), r)
	}
	p := a.int("p", 2)
	if p != 1 && p != 2 {
		return fmt.Errorf("%w: LpNormalization p=%d", ErrMalformed, p)
	}
	dim := v.shape[len(v.shape)-1]
	if dim == 0 {
		return fmt.Errorf("%w: LpNormalization over an empty axis", ErrUnsupported)
	}
	f32 := v.dt == tF32
	rd := func(x float64) float64 {
		if f32 {
			return float64(float32(x))
		}
		return x
	}
	o := c.newShaped(c.output(n, 0), v.dt, v.shape)
	c.m.steps = append(c.m.steps, &mapStep{in: v, out: o, fn: func(dst, src []float64) {
		for g := range len(src) / dim {
			row := src[g*dim : (g+1)*dim]
			norm := 0.0
			for _, x := range row {
				if p == 1 {
					norm = rd(norm + math.Abs(x))
				} else {
					norm = rd(norm + rd(x*x))
				}
			}
			if p == 2 {
				norm = rd(math.Sqrt(norm))
			}
			for j, x := range row {
				if norm != 0 {
					dst[g*dim+j] = x / norm
				} else {
					dst[g*dim+j] = 0
				}
			}
		}
	}})
	return nil
}
