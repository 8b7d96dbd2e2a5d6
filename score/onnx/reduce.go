package onnx

import (
	"fmt"
	"math"
)

// Operators that combine values within a row: reductions, MatMul and
// Gemm, ArgMax/ArgMin, LpNormalization.

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
	s := &reduceStep{in: v, out: o, oidx: oidx, kind: kind, count: float64(v.width / max(o.width, 1))}
	if (kind == "Sum" || kind == "Mean") && v.dt == tF32 {
		// Reduced axes that end the shape make onnxruntime's fast "KR"
		// reduction: an Eigen sum of each contiguous run (eigenSum32).
		first := len(red)
		for first > 1 && red[first-1] {
			first--
		}
		trailing := first < len(red)
		for d := 1; d < first; d++ {
			trailing = trailing && !red[d]
		}
		if trailing {
			s.run32 = v.width / max(o.width, 1)
		}
	}
	c.m.steps = append(c.m.steps, s)
	return nil
}

// eigenSum32 is the float32 sum of x as Eigen's vectorized reduction
// computes it with SSE (what onnxruntime's x86 build runs): from the first
// element on a 16-byte boundary (x[0] sits off floats past one), packets of
// four summed into two accumulators, which are added, then one more packet,
// the horizontal sum (a0+a2)+(a1+a3), then the elements before the
// boundary and after the last packet, in order. Fewer than four elements
// from the boundary are summed in order.
func eigenSum32(x []float64, off int) float32 {
	const p = 4
	n := len(x)
	start := min((p-off%p)%p, n)
	size := (n - start) / p * p
	if size == 0 {
		var s float32
		for i, v := range x {
			if i == 0 {
				s = float32(v)
			} else {
				s += float32(v)
			}
		}
		return s
	}
	size2 := (n - start) / (2 * p) * (2 * p)
	var a, b [p]float32
	for j := range p {
		a[j] = float32(x[start+j])
	}
	if size > p {
		for j := range p {
			b[j] = float32(x[start+p+j])
		}
		for i := start + 2*p; i < start+size2; i += 2 * p {
			for j := range p {
				a[j] += float32(x[i+j])
				b[j] += float32(x[i+p+j])
			}
		}
		for j := range p {
			a[j] += b[j]
		}
		if size > size2 {
			for j := range p {
				a[j] += float32(x[start+size2+j])
			}
		}
	}
	s := (a[0] + a[2]) + (a[1] + a[3])
	for _, v := range x[:start] {
		s += float32(v)
	}
	for _, v := range x[start+size:] {
		s += float32(v)
	}
	return s
}

type reduceStep struct {
	in, out *value
	oidx    []int32
	kind    string
	count   float64
	run32   int // > 0: a float32 Sum or Mean of contiguous runs this long (eigenSum32)
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
		if s.run32 > 0 {
			// Run k of row r starts at element (r*len(dst)+k)*run32 of
			// onnxruntime's batch: chunks start at multiples of 4 floats,
			// so the row's index in the chunk gives the same alignment.
			for k := range dst {
				sum := eigenSum32(src[k*s.run32:(k+1)*s.run32], (r*len(dst)+k)*s.run32)
				if s.kind == "Mean" {
					sum /= float32(s.run32)
				}
				dst[k] = float64(sum)
			}
			storeRow(sc, s.out, r, dst)
			continue
		}
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
				if f32 {
					dst[k] = float64(float32(dst[k]) + expf(float32(x-mx[k])))
				} else {
					dst[k] += math.Exp(x - mx[k])
				}
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
				if f32 { // the float32 log, then the float32 sum
					dst[k] = float64(float32(math.Log(dst[k])) + float32(mx[k]))
				} else {
					dst[k] = math.Log(dst[k]) + mx[k]
				}
			}
		}
		storeRow(sc, s.out, r, dst)
	}
}

// matmul compiles MatMul and Gemm of a per-row tensor by a constant
// matrix: float32 scores as MLAS computes them with B packed (sgemmScore,
// packedBlock), starting from Gemm's beta*C.
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
	if add := c.addAfter[c.output(n, 0)]; !gemm && add != nil && x.dt == tF32 && len(x.shape) == 1 && len(b.kdims) == 2 {
		// onnxruntime fuses MatMul and a bias Add of [m] or [1, m] into a
		// Gemm, which starts each score from the bias: add it here.
		other := add.inputs[0]
		if other == c.output(n, 0) {
			other = add.inputs[1]
		}
		if bv := c.values[other]; bv != nil && bv.isConst() && bv.dt == tF32 && len(bv.konst) == m &&
			(len(bv.kdims) == 1 || len(bv.kdims) == 2 && bv.kdims[0] == 1) {
			s.bias = bv.konst
			c.fused[add] = true
		}
	}
	if x.dt == tF32 {
		w32 := make([]float64, len(w))
		for i, v := range w {
			w32[i] = float64(float32(v))
		}
		w = w32
	}
	s.w, s.k, s.m = w, k, m
	// MatMul by a vector: a GEMM per row, unpacked (onnxruntime packs
	// only a 2-D B), which MLAS hands to its M = 1 kernel (gemvScore).
	s.gemv = !gemm && len(b.kdims) == 1 && x.dt == tF32
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
	gemv    bool      // float32 by a 1-D constant: gemvScore
}

func (s *matmulStep) run(sc *scratch, n int) {
	src, dst := sc.row[:s.in.width], sc.row2[:s.out.width]
	f32 := s.in.dt == tF32
	outer := s.in.width / s.k
	for r := range n {
		loadRow(sc, s.in, r, src)
		if s.gemv {
			for o := range outer {
				dst[o] = float64(gemvScore(src[o*s.k:(o+1)*s.k], s.w))
			}
			storeRow(sc, s.out, r, dst)
			continue
		}
		for o := range outer {
			x := src[o*s.k : (o+1)*s.k]
			for j := range s.m {
				var acc float64
				if f32 {
					var c0 float32
					if s.bias != nil {
						c0 = float32(s.bias[j])
					}
					if s.k > packedBlock || s.alpha != 1 {
						acc = float64(sgemmScore(x, s.w[j:], s.m, packedBlock, c0, s.bias != nil, float32(s.alpha)))
					} else {
						// One block (sgemmScore inlined): the chain, then C.
						var a32 float32
						for i, xi := range x {
							a32 = float32(math.FMA(xi, s.w[i*s.m+j], float64(a32)))
						}
						acc = float64(a32 + c0)
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

// gemvScore is x times w (both K long) as onnxruntime computes a float32
// MatMul by a 1-D B: one GEMM of M = N = 1 per row (MatMulComputeHelper
// sets M to 1 when an input is 1-D and broadcasts over the rows), which
// MLAS hands to MlasSgemmKernelM1Avx on x86 with AVX: the inputs in groups
// of four, each group's rounded products added in order and the group
// added to the sum so far, then a group of two, then one; C (zero) comes
// first, so a -0 sum is +0.
func gemvScore(x, w []float64) float32 {
	prod := func(k int) float32 { return float32(float32(x[k]) * float32(w[k])) }
	k := len(x)
	var c float32
	j := 0
	for ; j+4 <= k; j += 4 {
		t := float32(float32(float32(prod(j)+prod(j+1))+prod(j+2)) + prod(j+3))
		c = float32(t + c)
	}
	if k-j >= 2 {
		c = float32(float32(prod(j)+prod(j+1)) + c)
		j += 2
	}
	if j < k {
		c = float32(prod(j) + c)
	}
	return c
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
