package onnx

import (
	"fmt"
	"math"
)

// Elementwise operators: numpy broadcasting over per-row tensors and
// constants, folded at load when every input is a constant.

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
	out := c.output(n, 0)
	if a.int("to", 0) == dtInt32 {
		// int32 values are held as int64, as int32 initializers are.
		if v.dt == tStr {
			return fmt.Errorf("%w: Cast between %s and int32", ErrUnsupported, v.dt)
		}
		conv := func(a []float64) float64 { return float64(toInt32(a[0])) }
		if v.dt == tI64 || v.dt == tBool {
			conv = func(a []float64) float64 { return float64(int32(int64(a[0]))) } // wraps, as static_cast does
		}
		o, err := c.ew(n, []*value{v}, tI64, conv)
		if err != nil {
			return err
		}
		o.classes = v.classes
		return nil
	}
	to, ok := dtypeOf(a.int("to", 0))
	if !ok {
		return fmt.Errorf("%w: Cast to type %d", ErrUnsupported, a.int("to", 0))
	}
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

// toInt32 converts a float as onnxruntime's Cast to int32 does on x86: a C
// cast, truncating; NaN and values out of int32's range give
// math.MinInt32, as cvttss2si does.
func toInt32(x float64) int32 {
	if x != x || x >= 2147483648 || x < -2147483648 {
		return math.MinInt32
	}
	return int32(x)
}
