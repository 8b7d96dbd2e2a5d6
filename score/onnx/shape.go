package onnx

import (
	"fmt"
	"math"
)

// Shape and indexing operators: Constant, Shape, ConstantOfShape, Reshape
// and its kin, Slice, Gather, Concat. Most move no data or select
// elements of each row by indices fixed at load.

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
		// axis is in [-r, r]; a negative one counts from the back (r + axis).
		ax64 := a.int("axis", 1)
		if ax64 < 0 {
			ax64 += int64(r)
		}
		if ax64 < 0 || ax64 > int64(r) {
			return fmt.Errorf("%w: Flatten axis %d of rank %d", ErrMalformed, a.int("axis", 1), r)
		}
		ax := int(ax64)
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
