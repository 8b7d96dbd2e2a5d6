package onnx

import (
	"fmt"
	"math"
)

// node compiles one graph node into steps (or aliases).
func (c *compiler) node(n *nodeProto) error {
	a := newAttrs(n)
	op := opName(n)
	var err error
	switch op {
	case "ai.onnx:Identity", "ai.onnx:Flatten", "ai.onnx:Reshape":
		err = c.reshape(n, a)
	case "ai.onnx:Cast":
		err = c.cast(n, a)
	case "ai.onnx:Add", "ai.onnx:Sub", "ai.onnx:Mul", "ai.onnx:Div":
		err = c.binary(n)
	case "ai.onnx:Sigmoid", "ai.onnx:Softmax":
		err = c.unary(n, a)
	case "ai.onnx:Concat", "ai.onnx.ml:FeatureVectorizer":
		err = c.concat(n, a)
	case "ai.onnx:ArgMax":
		err = c.argmax(n, a)
	case "ai.onnx.ml:ZipMap":
		err = c.zipmap(n, a)
	case "ai.onnx.ml:Scaler":
		err = c.scaler(n, a)
	case "ai.onnx.ml:Normalizer":
		err = c.normalizer(n, a)
	case "ai.onnx.ml:LinearClassifier", "ai.onnx.ml:LinearRegressor":
		err = c.linear(n, a)
	case "ai.onnx.ml:TreeEnsembleClassifier", "ai.onnx.ml:TreeEnsembleRegressor", "ai.onnx.ml:TreeEnsemble":
		err = c.trees(n, a)
	default:
		return fmt.Errorf("%w: operator %s is not supported", ErrUnsupported, op)
	}
	if err != nil {
		return err
	}
	c.ops[op]++
	return nil
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

// reshape handles Identity, Flatten and Reshape, which never move data for
// a [N, width] tensor: the result aliases the input.
func (c *compiler) reshape(n *nodeProto, a attrs) error {
	v, err := c.rowInput(n, 0)
	if err != nil {
		return err
	}
	switch n.opType {
	case "Flatten":
		if ax := a.int("axis", 1); ax != 1 {
			return fmt.Errorf("%w: Flatten axis %d (only 1 keeps rows apart)", ErrUnsupported, ax)
		}
	case "Reshape":
		shape, err := c.input(n, 1)
		if err != nil {
			return err
		}
		if !shape.isConst() {
			return fmt.Errorf("%w: Reshape with a computed shape", ErrUnsupported)
		}
		if !reshapeKeepsRows(shape.konst, v.width) {
			return fmt.Errorf("%w: Reshape to %v does not keep one row per input row of width %d", ErrUnsupported, shape.konst, v.width)
		}
	}
	c.alias(c.output(n, 0), v)
	return nil
}

// reshapeKeepsRows reports whether a Reshape target keeps [N, width] rows:
// [-1, width], [0, width], [-1] or [0] for width 1, and trailing 1s.
func reshapeKeepsRows(shape []float64, width int) bool {
	if len(shape) == 0 {
		return false
	}
	if shape[0] != -1 && shape[0] != 0 {
		return false
	}
	prod := 1.0
	for _, d := range shape[1:] {
		if d <= 0 {
			return false
		}
		prod *= d
	}
	return prod == float64(width)
}

func (c *compiler) cast(n *nodeProto, a attrs) error {
	v, err := c.rowInput(n, 0)
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
	o := c.newValue(out, to, v.width)
	o.classes = v.classes
	c.m.steps = append(c.m.steps, &mapStep{in: v, out: o, fn: func(dst, src []float64) { copy(dst, src) }})
	return nil
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

// binary compiles Add/Sub/Mul/Div between per-row tensors of one width, or
// a per-row tensor and a constant broadcast along the row.
func (c *compiler) binary(n *nodeProto) error {
	x, err := c.input(n, 0)
	if err != nil {
		return err
	}
	y, err := c.input(n, 1)
	if err != nil {
		return err
	}
	if x.isConst() && y.isConst() {
		return fmt.Errorf("%w: %s of two constants", ErrUnsupported, n.opType)
	}
	row := x
	if x.isConst() {
		row = y
	}
	if row.dt == tStr {
		return fmt.Errorf("%w: %s on strings", ErrUnsupported, n.opType)
	}
	w := row.width
	for _, v := range []*value{x, y} {
		switch {
		case v.isConst():
			if len(v.konst) != 1 && len(v.konst) != w {
				return fmt.Errorf("%w: %s with a constant of %d values on rows of %d", ErrUnsupported, n.opType, len(v.konst), w)
			}
		case v.width != w || v.dt != row.dt:
			return fmt.Errorf("%w: %s of %s[%d] and %s[%d]", ErrUnsupported, n.opType, row.dt, w, v.dt, v.width)
		}
	}
	o := c.newValue(c.output(n, 0), row.dt, w)
	c.m.steps = append(c.m.steps, &binaryStep{op: n.opType[0], x: x, y: y, out: o})
	return nil
}

type binaryStep struct {
	op        byte // 'A', 'S', 'M', 'D'
	x, y, out *value
}

func operand(sc *scratch, v *value, r int, buf []float64) []float64 {
	if v.isConst() {
		if len(v.konst) == 1 {
			for j := range buf {
				buf[j] = v.konst[0]
			}
			return buf
		}
		return v.konst
	}
	loadRow(sc, v, r, buf)
	return buf
}

func (s *binaryStep) run(sc *scratch, n int) {
	w := s.out.width
	a, b := sc.row[:w], sc.row2[:w]
	for r := range n {
		xa := operand(sc, s.x, r, a)
		yb := operand(sc, s.y, r, b)
		dst := a
		for j := range w {
			u, v := xa[j], yb[j]
			var z float64
			switch s.op {
			case 'A':
				z = u + v
			case 'S':
				z = u - v
			case 'M':
				z = u * v
			default:
				if s.out.dt == tI64 {
					if v == 0 {
						z = 0
					} else {
						z = float64(toInt64(u) / toInt64(v))
					}
				} else {
					z = u / v
				}
			}
			dst[j] = z
		}
		storeRow(sc, s.out, r, dst)
	}
}

func (c *compiler) unary(n *nodeProto, a attrs) error {
	v, err := c.rowInput(n, 0)
	if err != nil {
		return err
	}
	if v.dt != tF32 && v.dt != tF64 {
		return fmt.Errorf("%w: %s on %s", ErrUnsupported, n.opType, v.dt)
	}
	o := c.newValue(c.output(n, 0), v.dt, v.width)
	o.classes = v.classes
	var fn func(dst, src []float64)
	if n.opType == "Sigmoid" {
		fn = func(dst, src []float64) {
			for j, x := range src {
				dst[j] = 1 / (1 + math.Exp(-x))
			}
		}
	} else {
		ax := a.int("axis", -1)
		if ax != -1 && ax != 1 {
			return fmt.Errorf("%w: Softmax over axis %d", ErrUnsupported, ax)
		}
		fn = func(dst, src []float64) {
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
	}
	c.m.steps = append(c.m.steps, &mapStep{in: v, out: o, fn: fn})
	return nil
}

// concat compiles Concat (axis 1) and FeatureVectorizer; the latter casts
// to float and pads or truncates each input to its inputdimensions entry.
func (c *compiler) concat(n *nodeProto, a attrs) error {
	fv := n.opType == "FeatureVectorizer"
	dims := a.ints("inputdimensions")
	if fv && len(dims) != len(n.inputs) {
		return fmt.Errorf("%w: FeatureVectorizer has %d inputs and %d inputdimensions", ErrMalformed, len(n.inputs), len(dims))
	}
	if !fv {
		if ax := a.int("axis", 1); ax != 1 && ax != -1 {
			return fmt.Errorf("%w: Concat along axis %d", ErrUnsupported, ax)
		}
	}
	var ins []*value
	var widths []int
	total := 0
	for i := range n.inputs {
		v, err := c.rowInput(n, i)
		if err != nil {
			return err
		}
		w := v.width
		if fv {
			if dims[i] <= 0 || dims[i] > maxWidth {
				return fmt.Errorf("%w: inputdimensions %d", ErrMalformed, dims[i])
			}
			w = int(dims[i])
		} else if len(ins) > 0 && v.dt != ins[0].dt {
			return fmt.Errorf("%w: Concat of %s and %s", ErrUnsupported, ins[0].dt, v.dt)
		}
		if v.dt == tStr {
			return fmt.Errorf("%w: %s of strings", ErrUnsupported, n.opType)
		}
		ins = append(ins, v)
		widths = append(widths, w)
		total += w
		if total > maxWidth {
			return fmt.Errorf("%w: %s wider than %d", ErrUnsupported, n.opType, maxWidth)
		}
	}
	if len(ins) == 0 {
		return fmt.Errorf("%w: %s without inputs", ErrMalformed, n.opType)
	}
	dt := ins[0].dt
	if fv {
		dt = tF32
	}
	o := c.newValue(c.output(n, 0), dt, total)
	c.m.steps = append(c.m.steps, &concatStep{ins: ins, widths: widths, out: o})
	return nil
}

type concatStep struct {
	ins    []*value
	widths []int
	out    *value
}

func (s *concatStep) run(sc *scratch, n int) {
	dst := sc.row2[:s.out.width]
	for r := range n {
		off := 0
		for i, v := range s.ins {
			src := sc.row[:v.width]
			loadRow(sc, v, r, src)
			w := s.widths[i]
			k := copy(dst[off:off+w], src)
			for j := off + k; j < off+w; j++ {
				dst[j] = 0
			}
			off += w
		}
		storeRow(sc, s.out, r, dst)
	}
}

func (c *compiler) argmax(n *nodeProto, a attrs) error {
	v, err := c.rowInput(n, 0)
	if err != nil {
		return err
	}
	if ax := a.int("axis", 0); ax != 1 && ax != -1 {
		return fmt.Errorf("%w: ArgMax over axis %d (only 1 keeps rows apart)", ErrUnsupported, ax)
	}
	if v.dt == tStr {
		return fmt.Errorf("%w: ArgMax of strings", ErrUnsupported)
	}
	last := a.int("select_last_index", 0) == 1
	o := c.newValue(c.output(n, 0), tI64, 1)
	c.m.steps = append(c.m.steps, &mapStep{in: v, out: o, fn: func(dst, src []float64) {
		best := 0
		for j, x := range src {
			if x > src[best] || (last && x == src[best]) {
				best = j
			}
		}
		dst[0] = float64(best)
	}})
	return nil
}

// zipmap aliases the class scores; the output is marked as a sequence of
// maps and carries the class labels.
func (c *compiler) zipmap(n *nodeProto, a attrs) error {
	v, err := c.rowInput(n, 0)
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
	v, err := c.rowInput(n, 0)
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
	v, err := c.rowInput(n, 0)
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
