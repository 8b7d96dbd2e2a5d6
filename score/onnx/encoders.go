package onnx

import (
	"fmt"
	"math"
)

// The ai.onnx.ml preprocessing operators: ArrayFeatureExtractor, Imputer,
// Binarizer, LabelEncoder, CategoryMapper, OneHotEncoder.

// arrayFeatureExtractor selects columns of the last axis: constant indices
// into per-row data, or per-row indices into a constant vector (class
// labels, the way converters turn an ArgMax into a label).
func (c *compiler) arrayFeatureExtractor(n *nodeProto) error {
	x, err := c.input(n, 0)
	if err != nil {
		return err
	}
	iv, err := c.input(n, 1)
	if err != nil {
		return err
	}
	if iv.dt != tI64 {
		return fmt.Errorf("%w: ArrayFeatureExtractor indices of type %s", ErrMalformed, iv.dt)
	}
	name := c.output(n, 0)
	switch {
	case !x.isConst() && iv.isConst():
		if len(x.shape) == 0 {
			return fmt.Errorf("%w: ArrayFeatureExtractor of a rank 1 per-row tensor", ErrUnsupported)
		}
		p := len(x.shape) - 1
		dim := x.shape[p]
		pos := make([]int, len(iv.konst))
		for i, f := range iv.konst {
			if f < 0 || f >= float64(dim) {
				return fmt.Errorf("%w: ArrayFeatureExtractor index %v out of range [0, %d)", ErrMalformed, f, dim)
			}
			pos[i] = int(f)
		}
		if len(pos) == 0 {
			return fmt.Errorf("%w: ArrayFeatureExtractor without indices", ErrMalformed)
		}
		shape := append([]int(nil), x.shape...)
		shape[p] = len(pos)
		c.takeAxis(name, x, p, pos, shape)
		return nil
	case x.isConst() && !iv.isConst():
		// onnxruntime's result is [1, N*k] for a 1-D x; per row, k values.
		if len(x.kdims) == 2 && x.kdims[0] != 1 || len(x.kdims) > 2 || len(x.kdims) == 0 {
			return fmt.Errorf("%w: ArrayFeatureExtractor of a constant of shape %v by computed indices", ErrUnsupported, x.kdims)
		}
		var shape []int
		if iv.width > 1 {
			shape = []int{iv.width}
		}
		if err := c.lookup(name, x, iv, len(x.konst), 1, shape); err != nil {
			return err
		}
		// Converters look class labels up this way: the constant is the
		// class list, in score order.
		o := c.values[name]
		for _, f := range x.konst {
			if x.dt == tStr {
				o.classes = append(o.classes, c.m.strs[int(f)])
			} else {
				o.classes = append(o.classes, formatLabels([]int64{int64(f)})...)
			}
		}
		return nil
	case x.isConst():
		return fmt.Errorf("%w: ArrayFeatureExtractor of two constants", ErrUnsupported)
	}
	return fmt.Errorf("%w: ArrayFeatureExtractor with computed indices into a computed tensor", ErrUnsupported)
}

// imputer replaces replaced_value (NaN matches NaN) by the imputed values,
// as onnxruntime picks them: one per column when there are as many as the
// tensor's second dimension, else the first for every value.
func (c *compiler) imputer(n *nodeProto, a attrs) error {
	v, err := c.rowInput(n, 0)
	if err != nil {
		return err
	}
	var imp []float64
	var repl float64
	switch v.dt {
	case tF32, tF64:
		imp = a.floats("imputed_value_floats")
		repl = 0
		if a.has("replaced_value_float") {
			repl = float64(a["replaced_value_float"].f)
		}
	case tI64:
		for _, x := range a.ints("imputed_value_int64s") {
			imp = append(imp, float64(x))
		}
		repl = float64(a.int("replaced_value_int64", 0))
	default:
		return fmt.Errorf("%w: Imputer of %s", ErrUnsupported, v.dt)
	}
	if len(imp) == 0 {
		return fmt.Errorf("%w: Imputer without imputed values", ErrMalformed)
	}
	// onnxruntime cycles through the values over the flattened tensor when
	// there are as many as its second dimension (a row's first axis, the
	// columns of [N, F]; also for higher ranks), else imputes the first
	// everywhere. For [N], that dimension is the batch: refused.
	if len(v.shape) == 0 && len(imp) > 1 {
		return fmt.Errorf("%w: Imputer of one value per row with %d imputed values (onnxruntime cycles them over the batch; give one value, or a [N, 1] input)",
			ErrUnsupported, len(imp))
	}
	stride := 1
	if len(v.shape) > 0 && v.shape[0] == len(imp) {
		stride = len(imp) // a row is a multiple of it: the cycle restarts with each row
	}
	nan := math.IsNaN(repl)
	o := c.newShaped(c.output(n, 0), v.dt, v.shape)
	c.m.steps = append(c.m.steps, &mapStep{in: v, out: o, fn: func(dst, src []float64) {
		for j, x := range src {
			if x == repl || (nan && x != x) {
				x = imp[j%stride]
			}
			dst[j] = x
		}
	}})
	return nil
}

// binarizer maps each value to 1 when above threshold, else 0.
func (c *compiler) binarizer(n *nodeProto, a attrs) error {
	v, err := c.rowInput(n, 0)
	if err != nil {
		return err
	}
	if !isFloat(v.dt) && v.dt != tI64 {
		return fmt.Errorf("%w: Binarizer of %s", ErrUnsupported, v.dt)
	}
	t := 0.0
	if a.has("threshold") {
		t = float64(a["threshold"].f)
	}
	if v.dt == tF32 {
		t = float64(float32(t))
	}
	o := c.newShaped(c.output(n, 0), v.dt, v.shape)
	c.m.steps = append(c.m.steps, &binarizerStep{in: v, out: o, t: t})
	return nil
}

// binarizerStep fails the call on NaN, as onnxruntime does.
type binarizerStep struct {
	in, out *value
	t       float64
}

func (s *binarizerStep) run(sc *scratch, n int) {
	src := sc.row[:s.in.width]
	for r := range n {
		loadRow(sc, s.in, r, src)
		for j, x := range src {
			if x != x && sc.err == nil {
				sc.err = fmt.Errorf("Binarizer %s: input %d is NaN", s.out.name, j)
			}
			src[j] = b2f(x > s.t)
		}
		storeRow(sc, s.out, r, src)
	}
}

// mapping is a compiled LabelEncoder or CategoryMapper: keys to values,
// with a default for any other key. String keys and values are ids.
type mapping struct {
	table map[float64]float64
	dense []float64 // integer keys lo..lo+len-1, when they are dense enough
	lo    float64
	nan   float64 // the value for a NaN key, when has
	has   bool    // a NaN key is present
	def   float64
}

func (mp *mapping) get(x float64) float64 {
	if x != x {
		if mp.has {
			return mp.nan
		}
		return mp.def
	}
	if mp.dense != nil {
		if i := x - mp.lo; i >= 0 && i < float64(len(mp.dense)) && i == math.Trunc(i) {
			return mp.dense[int(i)]
		}
		return mp.def
	}
	if y, ok := mp.table[x]; ok {
		return y
	}
	return mp.def
}

// densify switches integer keys spanning a small range (tree node ids, say)
// to a slice.
func (mp *mapping) densify() {
	if len(mp.table) == 0 {
		return
	}
	lo, hi := math.Inf(1), math.Inf(-1)
	for k := range mp.table {
		if k != math.Trunc(k) || math.IsInf(k, 0) {
			return
		}
		lo, hi = math.Min(lo, k), math.Max(hi, k)
	}
	if hi-lo >= float64(4*len(mp.table)+64) {
		return
	}
	mp.lo = lo
	mp.dense = make([]float64, int(hi-lo)+1)
	for i := range mp.dense {
		mp.dense[i] = mp.def
	}
	for k, v := range mp.table {
		mp.dense[int(k-lo)] = v
	}
}

// labelEncoder compiles LabelEncoder (ai.onnx.ml opsets 1 to 4: string,
// int64, float and tensor keys and values) and
// CategoryMapper.
func (c *compiler) labelEncoder(n *nodeProto, a attrs) error {
	v, err := c.input(n, 0)
	if err != nil {
		return err
	}
	var keys, vals []float64
	var kt, vt dtype
	def := 0.0
	strIDs := func(ss []string) []float64 {
		out := make([]float64, len(ss))
		for i, s := range ss {
			out[i] = float64(c.intern(s))
		}
		return out
	}
	i64s := func(xs []int64) []float64 {
		out := make([]float64, len(xs))
		for i, x := range xs {
			out[i] = float64(x)
		}
		return out
	}
	if n.opType == "CategoryMapper" {
		ss, is := a.strs("cats_strings"), a.ints("cats_int64s")
		if len(ss) != len(is) {
			return fmt.Errorf("%w: CategoryMapper has %d strings and %d integers", ErrMalformed, len(ss), len(is))
		}
		switch v.dt {
		case tStr:
			keys, kt, vals, vt = strIDs(ss), tStr, i64s(is), tI64
			def = float64(a.int("default_int64", -1))
		case tI64:
			keys, kt, vals, vt = i64s(is), tI64, strIDs(ss), tStr
			def = float64(c.intern(a.str("default_string", "_Unused")))
		default:
			return fmt.Errorf("%w: CategoryMapper of %s", ErrMalformed, v.dt)
		}
	} else {
		tensor := func(name string) (*value, error) {
			x := a[name]
			if x == nil || x.t == nil {
				return nil, nil
			}
			v, err := c.constTensor(name, x.t)
			if err != nil {
				return nil, fmt.Errorf("%w: LabelEncoder %s: %v", ErrUnsupported, name, err)
			}
			return v, nil
		}
		kv, err := tensor("keys_tensor")
		if err != nil {
			return err
		}
		vv, err := tensor("values_tensor")
		if err != nil {
			return err
		}
		dv, err := tensor("default_tensor")
		if err != nil {
			return err
		}
		if kv != nil {
			kt, keys = kv.dt, kv.konst
		}
		if vv != nil {
			vt, vals = vv.dt, vv.konst
			switch {
			case dv != nil && len(dv.konst) == 1 && dv.dt == vt:
				def = dv.konst[0]
			case vt == tStr:
				def = float64(c.intern("_Unused"))
			case vt == tI64:
				def = -1
			case isFloat(vt):
				def = math.Copysign(0, -1) // the spec's default_float, -0.0 (a Go literal -0.0 is +0)
			}
		}
		switch {
		case kv != nil:
		case a.has("keys_strings") || a.has("classes_strings"):
			kt = tStr
			keys = strIDs(append(a.strs("keys_strings"), a.strs("classes_strings")...))
		case a.has("keys_int64s"):
			kt, keys = tI64, i64s(a.ints("keys_int64s"))
		case a.has("keys_floats"):
			kt, keys = tF32, a.floats("keys_floats")
		}
		switch {
		case vv != nil:
		case a.has("values_strings"):
			vt, vals = tStr, strIDs(a.strs("values_strings"))
			def = float64(c.intern(a.str("default_string", "_Unused")))
		case a.has("values_int64s"):
			vt, vals = tI64, i64s(a.ints("values_int64s"))
			def = float64(a.int("default_int64", -1))
		case a.has("values_floats"):
			vt, vals = tF32, a.floats("values_floats")
			def = math.Copysign(0, -1) // the spec's default_float, -0.0 (a Go literal -0.0 is +0)
			if a.has("default_float") {
				def = float64(a["default_float"].f)
			}
		}
		if a.has("classes_strings") {
			// Opset 1: strings map to their index, or back.
			vals = nil
			for i := range keys {
				vals = append(vals, float64(i))
			}
			vt = tI64
			def = float64(a.int("default_int64", -1))
			if v.dt == tI64 {
				keys, vals = vals, keys
				kt, vt = tI64, tStr
				def = float64(c.intern(a.str("default_string", "_Unused")))
			}
		}
		if kt == 0 || vt == 0 {
			return fmt.Errorf("%w: LabelEncoder without keys or values", ErrMalformed)
		}
		if len(keys) != len(vals) {
			return fmt.Errorf("%w: LabelEncoder has %d keys and %d values", ErrMalformed, len(keys), len(vals))
		}
		if kt != v.dt && !(isFloat(kt) && isFloat(v.dt)) {
			return fmt.Errorf("%w: LabelEncoder with %s keys of a %s input", ErrMalformed, kt, v.dt)
		}
	}
	mp := &mapping{table: make(map[float64]float64, len(keys)), def: def}
	for i := len(keys) - 1; i >= 0; i-- { // the first of duplicate keys wins
		if k := keys[i]; k != k {
			mp.nan, mp.has = vals[i], true
		} else {
			mp.table[k] = vals[i]
		}
	}
	mp.densify()
	_, err = c.ew(n, []*value{v}, vt, func(x []float64) float64 { return mp.get(x[0]) })
	return err
}

// oneHot compiles OneHotEncoder: [N, shape...] to [N, shape..., C]. A
// category not in the list gives zeros (zeros=1), or fails the call as in
// onnxruntime (zeros=0).
func (c *compiler) oneHot(n *nodeProto, a attrs) error {
	v, err := c.rowInput(n, 0)
	if err != nil {
		return err
	}
	idx := map[float64]int{}
	var ncat int
	switch v.dt {
	case tStr:
		for i, s := range a.strs("cats_strings") {
			id := float64(c.intern(s))
			if _, dup := idx[id]; !dup {
				idx[id] = i
			}
			ncat++
		}
	case tI64, tF32, tF64:
		for i, x := range a.ints("cats_int64s") {
			if _, dup := idx[float64(x)]; !dup {
				idx[float64(x)] = i
			}
			ncat++
		}
	default:
		return fmt.Errorf("%w: OneHotEncoder of %s", ErrUnsupported, v.dt)
	}
	if ncat == 0 {
		return fmt.Errorf("%w: OneHotEncoder without categories", ErrMalformed)
	}
	shape := append(append([]int(nil), v.shape...), ncat)
	if shapeWidth(shape) > maxWidth {
		return fmt.Errorf("%w: OneHotEncoder wider than %d", ErrUnsupported, maxWidth)
	}
	zeros := a.int("zeros", 1) == 1
	isFl := isFloat(v.dt)
	o := c.newShaped(c.output(n, 0), tF32, shape)
	c.m.steps = append(c.m.steps, &oneHotStep{in: v, out: o, idx: idx, ncat: ncat, zeros: zeros, trunc: isFl})
	return nil
}

type oneHotStep struct {
	in, out *value
	idx     map[float64]int
	ncat    int
	zeros   bool
	trunc   bool // float input: the category is the value cast to int64
}

func (s *oneHotStep) run(sc *scratch, n int) {
	src, dst := sc.row[:s.in.width], sc.row2[:s.out.width]
	for r := range n {
		loadRow(sc, s.in, r, src)
		for j := range dst {
			dst[j] = 0
		}
		for j, x := range src {
			if s.trunc {
				x = float64(toInt64(x))
			}
			k, ok := s.idx[x]
			if !ok {
				if !s.zeros && sc.err == nil {
					sc.err = fmt.Errorf("OneHotEncoder %s: a value is not one of its categories", s.out.name)
				}
				continue
			}
			dst[j*s.ncat+k] = 1
		}
		storeRow(sc, s.out, r, dst)
	}
}
