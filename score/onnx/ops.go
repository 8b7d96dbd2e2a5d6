package onnx

import (
	"fmt"
	"math"
)

// compilers maps each supported operator ("domain:op") to its compiler.
var compilers = map[string]func(c *compiler, n *nodeProto, a attrs) error{}

func init() {
	add := func(fn func(c *compiler, n *nodeProto, a attrs) error, ops ...string) {
		for _, op := range ops {
			compilers[op] = fn
		}
	}
	add((*compiler).reshape, "ai.onnx:Identity", "ai.onnx:Flatten", "ai.onnx:Reshape", "ai.onnx:Squeeze", "ai.onnx:Unsqueeze")
	add((*compiler).cast, "ai.onnx:Cast")
	add((*compiler).constant, "ai.onnx:Constant")
	add((*compiler).shapeOp, "ai.onnx:Shape")
	add((*compiler).constantOfShape, "ai.onnx:ConstantOfShape")
	add((*compiler).elementwise, "ai.onnx:Add", "ai.onnx:Sub", "ai.onnx:Mul", "ai.onnx:Div", "ai.onnx:Pow", "ai.onnx:Mod",
		"ai.onnx:Max", "ai.onnx:Min", "ai.onnx:Sum", "ai.onnx:Mean",
		"ai.onnx:Less", "ai.onnx:Greater", "ai.onnx:LessOrEqual", "ai.onnx:GreaterOrEqual", "ai.onnx:Equal",
		"ai.onnx:And", "ai.onnx:Or", "ai.onnx:Xor", "ai.onnx:Not", "ai.onnx:Where", "ai.onnx:Clip",
		"ai.onnx:Neg", "ai.onnx:Abs", "ai.onnx:Floor", "ai.onnx:Ceil", "ai.onnx:Round", "ai.onnx:Sign",
		"ai.onnx:Relu", "ai.onnx:IsNaN", "ai.onnx:IsInf", "ai.onnx:Log", "ai.onnx:Exp", "ai.onnx:Sqrt",
		"ai.onnx:Reciprocal", "ai.onnx:Tanh", "ai.onnx:Erf", "ai.onnx:Sigmoid")
	add((*compiler).softmax, "ai.onnx:Softmax")
	add((*compiler).concat, "ai.onnx:Concat", "ai.onnx.ml:FeatureVectorizer")
	add((*compiler).slice, "ai.onnx:Slice")
	add((*compiler).gather, "ai.onnx:Gather")
	add((*compiler).matmul, "ai.onnx:MatMul", "ai.onnx:Gemm")
	add((*compiler).reduce, "ai.onnx:ReduceSum", "ai.onnx:ReduceMean", "ai.onnx:ReduceMax", "ai.onnx:ReduceMin",
		"ai.onnx:ReduceProd", "ai.onnx:ReduceLogSumExp", "ai.onnx:ReduceLogSum", "ai.onnx:ReduceL1",
		"ai.onnx:ReduceL2", "ai.onnx:ReduceSumSquare")
	add((*compiler).argmax, "ai.onnx:ArgMax", "ai.onnx:ArgMin")
	add((*compiler).lpNorm, "ai.onnx:LpNormalization")
	add((*compiler).zipmap, "ai.onnx.ml:ZipMap")
	add((*compiler).scaler, "ai.onnx.ml:Scaler")
	add((*compiler).normalizer, "ai.onnx.ml:Normalizer")
	add(func(c *compiler, n *nodeProto, _ attrs) error { return c.arrayFeatureExtractor(n) }, "ai.onnx.ml:ArrayFeatureExtractor")
	add((*compiler).imputer, "ai.onnx.ml:Imputer")
	add((*compiler).binarizer, "ai.onnx.ml:Binarizer")
	add((*compiler).labelEncoder, "ai.onnx.ml:LabelEncoder", "ai.onnx.ml:CategoryMapper")
	add((*compiler).oneHot, "ai.onnx.ml:OneHotEncoder")
	add((*compiler).linear, "ai.onnx.ml:LinearClassifier", "ai.onnx.ml:LinearRegressor")
	add((*compiler).svm, "ai.onnx.ml:SVMClassifier")
	add((*compiler).svr, "ai.onnx.ml:SVMRegressor")
	add((*compiler).scan, "ai.onnx:Scan")
	add((*compiler).transpose, "ai.onnx:Transpose")
	add((*compiler).topK, "ai.onnx:TopK")
	add((*compiler).trees, "ai.onnx.ml:TreeEnsembleClassifier", "ai.onnx.ml:TreeEnsembleRegressor", "ai.onnx.ml:TreeEnsemble")
}

// node compiles one graph node into steps (or aliases, or constants).
func (c *compiler) node(n *nodeProto) error {
	op := opName(n)
	fn := compilers[op]
	if c.fused[n] {
		fn = func(c *compiler, n *nodeProto, _ attrs) error {
			// The MatMul before it added the bias.
			for _, in := range n.inputs {
				if v := c.values[in]; v != nil && !v.isConst() {
					c.alias(n.outputs[0], v)
				}
			}
			return nil
		}
	}
	if fn == nil {
		return fmt.Errorf("%w: operator %s is not supported", ErrUnsupported, op)
	}
	if err := fn(c, n, newAttrs(n)); err != nil {
		return err
	}
	for _, name := range n.outputs {
		if v := c.values[name]; v != nil && !v.isConst() && v.width == 0 {
			return fmt.Errorf("%w: %s output %q is empty", ErrUnsupported, op, name)
		}
	}
	c.ops[op]++
	return nil
}

// matrixInput is a per-row input of shape [N, C]: what the ai.onnx.ml
// operators read as one row of C features (they would read [N] as one row
// of N values, mixing rows, and other ranks differently).
func (c *compiler) matrixInput(n *nodeProto, i int) (*value, error) {
	v, err := c.rowInput(n, i)
	if err != nil {
		return nil, err
	}
	if len(v.shape) != 1 {
		return nil, fmt.Errorf("%w: %s of a tensor of rank %d; [N, C] is supported", ErrUnsupported, n.opType, rank(v))
	}
	return v, nil
}

func (c *compiler) rowInput(n *nodeProto, i int) (*value, error) {
	v, err := c.input(n, i)
	if err != nil {
		return nil, err
	}
	if v.isConst() {
		return nil, fmt.Errorf("%w: input %q is a constant; a per-row tensor is expected", ErrUnsupported, v.name)
	}
	return v, nil
}

// mapStep applies fn row by row, reading and writing through float64.
type mapStep struct {
	in, out *value
	fn      func(dst, src []float64)
}

func (s *mapStep) run(sc *scratch, n int) {
	src, dst := sc.row[:s.in.width], sc.row2[:s.out.width]
	for r := range n {
		loadRow(sc, s.in, r, src)
		s.fn(dst, src)
		storeRow(sc, s.out, r, dst)
	}
}

// softmax compiles Softmax over the last axis of an [N, C] tensor.
func (c *compiler) softmax(n *nodeProto, a attrs) error {
	v, err := c.matrixInput(n, 0)
	if err != nil {
		return err
	}
	if v.dt != tF32 && v.dt != tF64 {
		return fmt.Errorf("%w: %s on %s", ErrUnsupported, n.opType, v.dt)
	}
	if ax := a.int("axis", -1); ax != -1 && ax != 1 {
		return fmt.Errorf("%w: Softmax over axis %d", ErrUnsupported, ax)
	}
	o := c.newValue(c.output(n, 0), v.dt, v.width)
	o.classes = v.classes
	fn := func(dst, src []float64) {
		m := math.Inf(-1)
		for _, x := range src {
			m = math.Max(m, x)
		}
		sum := 0.0
		for j, x := range src {
			dst[j] = math.Exp(x - m)
			sum += dst[j]
		}
		for j := range dst {
			dst[j] /= sum
		}
	}
	c.m.steps = append(c.m.steps, &mapStep{in: v, out: o, fn: fn})
	return nil
}

// zipmap aliases the class scores; the output is marked as a sequence of
// maps and carries the class labels.
func (c *compiler) zipmap(n *nodeProto, a attrs) error {
	v, err := c.matrixInput(n, 0)
	if err != nil {
		return err
	}
	labels := a.strs("classlabels_strings")
	if len(labels) == 0 {
		labels = formatLabels(a.ints("classlabels_int64s"))
	}
	if len(labels) != v.width {
		return fmt.Errorf("%w: ZipMap has %d labels for %d scores", ErrMalformed, len(labels), v.width)
	}
	if v.dt != tF32 {
		return fmt.Errorf("%w: ZipMap of %s", ErrUnsupported, v.dt)
	}
	o := c.alias(c.output(n, 0), v)
	o.classes = labels
	o.seqMap = true
	return nil
}

func (c *compiler) scaler(n *nodeProto, a attrs) error {
	v, err := c.matrixInput(n, 0)
	if err != nil {
		return err
	}
	off, scale := a.floats("offset"), a.floats("scale")
	for _, p := range [][]float64{off, scale} {
		if len(p) != 1 && len(p) != v.width {
			return fmt.Errorf("%w: Scaler has %d offsets and %d scales for rows of %d", ErrMalformed, len(off), len(scale), v.width)
		}
	}
	o := c.newValue(c.output(n, 0), tF32, v.width)
	at := func(p []float64, j int) float32 {
		if len(p) == 1 {
			return float32(p[0])
		}
		return float32(p[j])
	}
	c.m.steps = append(c.m.steps, &mapStep{in: v, out: o, fn: func(dst, src []float64) {
		for j, x := range src {
			dst[j] = float64((float32(x) - at(off, j)) * at(scale, j))
		}
	}})
	return nil
}

// normalizer follows onnxruntime's float32 arithmetic exactly.
func (c *compiler) normalizer(n *nodeProto, a attrs) error {
	v, err := c.matrixInput(n, 0)
	if err != nil {
		return err
	}
	norm := a.str("norm", "MAX")
	var fn func(dst, src []float64)
	switch norm {
	case "MAX":
		fn = func(dst, src []float64) {
			m := float32(-math.MaxFloat32)
			for _, x := range src {
				m = max(m, float32(x))
			}
			for j, x := range src {
				if m != 0 {
					dst[j] = float64(float32(x) / m)
				} else {
					dst[j] = float64(float32(x))
				}
			}
		}
	case "L1":
		fn = func(dst, src []float64) {
			var sum float32
			for _, x := range src {
				sum += float32(math.Abs(x))
			}
			for j, x := range src {
				if sum != 0 {
					dst[j] = float64(float32(x) / sum)
				} else {
					dst[j] = float64(float32(x))
				}
			}
		}
	case "L2":
		fn = func(dst, src []float64) {
			var sum float32
			for j, x := range src {
				sq := float32(x * x)
				if v.dt == tF32 {
					sq = float32(x) * float32(x)
				}
				dst[j] = float64(sq)
				sum += sq
			}
			for j, x := range src {
				if sum == 0 {
					dst[j] = float64(float32(x))
					continue
				}
				r := float32(math.Sqrt(float64(float32(dst[j]) / sum)))
				if x < 0 {
					r = -r
				}
				dst[j] = float64(r)
			}
		}
	default:
		return fmt.Errorf("%w: Normalizer norm %q", ErrMalformed, norm)
	}
	o := c.newValue(c.output(n, 0), tF32, v.width)
	c.m.steps = append(c.m.steps, &mapStep{in: v, out: o, fn: fn})
	return nil
}
