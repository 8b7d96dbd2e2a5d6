package onnx

import (
	"fmt"
	"math"
)

// Nearest neighbours, as skl2onnx exports KNeighborsClassifier and
// KNeighborsRegressor: a Scan over the training rows computing each input
// row's distance to each of them (squared Euclidean, Manhattan, or the
// Minkowski sum of p-th powers), a Transpose back to one row per input
// row, Sqrt or Pow 1/p, TopK of the smallest, and ArrayFeatureExtractor
// of the neighbours' labels or targets (with weights='distance', the
// Reciprocal of the distances weighs them).

// scan compiles the one Scan this evaluator knows: a constant [M, F]
// scanned row by row against an unchanged [N, F] state, the body a
// distance over the features (scanDistance), its scan output ([M, N])
// read only by a Transpose with perm [1, 0]. The distances are computed
// rows first, in float32 as onnxruntime's body computes them, and handed
// to that Transpose. Any other Scan, or any other subgraph, is refused.
func (c *compiler) scan(n *nodeProto, a attrs) error {
	refuse := func(why string, args ...any) error {
		return fmt.Errorf("%w: Scan %s (only skl2onnx's Euclidean, Manhattan and Minkowski distances to constant rows are supported)",
			ErrUnsupported, fmt.Sprintf(why, args...))
	}
	if a.int("num_scan_inputs", 0) != 1 || len(n.inputs) != 2 || len(n.outputs) != 2 {
		return refuse("with %d inputs, %d outputs and %d scan inputs", len(n.inputs), len(n.outputs), a.int("num_scan_inputs", 0))
	}
	for _, name := range []string{"scan_input_axes", "scan_output_axes", "scan_input_directions", "scan_output_directions"} {
		for _, x := range a.ints(name) {
			if x != 0 {
				return refuse("with %s %v", name, a.ints(name))
			}
		}
	}
	x, err := c.matrixInput(n, 0)
	if err != nil {
		return err
	}
	t, err := c.input(n, 1)
	if err != nil {
		return err
	}
	if x.dt != tF32 || !t.isConst() || t.dt != tF32 || len(t.kdims) != 2 || int(t.kdims[1]) != x.width || t.kdims[0] < 1 {
		return refuse("of a %s per-row tensor of width %d by %s of shape %v", x.dt, x.width, t.dt, t.kdims)
	}
	body := a["body"]
	if body == nil || body.g == nil {
		return fmt.Errorf("%w: Scan without a body", ErrMalformed)
	}
	g, err := parseGraph(body.g)
	if err != nil {
		return fmt.Errorf("%w: Scan body: %v", ErrMalformed, err)
	}
	metric, err := scanDistance(g)
	if err != nil {
		return refuse("%v", err)
	}
	out := n.outputs[1]
	users := c.users[out]
	for _, u := range users {
		if u == nil || opName(u) != "ai.onnx:Transpose" {
			return refuse("whose distances are read by another operator than Transpose")
		}
		if p := newAttrs(u).ints("perm"); len(p) != 0 && (len(p) != 2 || p[0] != 1 || p[1] != 0) {
			return refuse("whose distances are transposed by perm %v", p)
		}
	}
	if n.outputs[0] != "" {
		c.alias(n.outputs[0], x)
	}
	m := int(t.kdims[0])
	d := c.newShaped(out+"/transposed", tF32, []int{m})
	delete(c.values, d.name) // only the Transpose reads it
	c.scanT[out] = d
	train := make([]float32, len(t.konst))
	for i, v := range t.konst {
		train[i] = float32(v)
	}
	c.m.nTmp = max(c.m.nTmp, 1)
	c.m.steps = append(c.m.steps, &distStep{in: x, out: d, train: train, metric: metric})
	return nil
}

// distMetric is what a Scan body computes from the difference of an
// input row and a training row.
type distMetric struct {
	abs bool    // Abs then ReduceSum (Eigen's sum); else ReduceSumSquare (in order)
	pow float32 // with abs, each |difference| raised to pow first; 0: not
}

// scanDistance reads a Scan body that passes its state through and scans
// out, over axis 1 with keepdims 0, one of skl2onnx's distances:
// ReduceSumSquare(Sub(state, row)) (Euclidean, squared),
// ReduceSum(Abs(Sub(state, row))) (Manhattan) or
// ReduceSum(Pow(Abs(Sub(state, row)), p)) with a constant scalar p > 0
// (Minkowski, p-th power).
func scanDistance(g *graphProto) (distMetric, error) {
	var dm distMetric
	if len(g.inputs) != 2 || len(g.outputs) != 2 {
		return dm, fmt.Errorf("body with %d inputs and %d outputs", len(g.inputs), len(g.outputs))
	}
	state, row := g.inputs[0].name, g.inputs[1].name
	made := map[string]*nodeProto{}
	for _, nd := range g.nodes {
		for _, o := range nd.outputs {
			made[o] = nd
		}
	}
	inits := map[string]*tensorProto{}
	for _, t := range g.initializers {
		inits[t.name] = t
	}
	// through follows Identity nodes back to the value they copy.
	through := func(name string) (string, *nodeProto) {
		for {
			nd := made[name]
			if nd == nil || opName(nd) != "ai.onnx:Identity" || len(nd.inputs) != 1 {
				return name, nd
			}
			name = nd.inputs[0]
		}
	}
	// konst is the value of a body initializer or Constant node.
	konst := func(name string) ([]float64, bool) {
		if t := inits[name]; t != nil {
			v, err := t.floats64()
			return v, err == nil
		}
		if nd := made[name]; nd != nil && opName(nd) == "ai.onnx:Constant" {
			if at := newAttrs(nd)["value"]; at != nil && at.t != nil {
				v, err := at.t.floats64()
				return v, err == nil
			}
		}
		return nil, false
	}
	if name, _ := through(g.outputs[0].name); name != state {
		return dm, fmt.Errorf("body that changes its state")
	}
	_, red := through(g.outputs[1].name)
	if red == nil || len(red.inputs) == 0 || (opName(red) != "ai.onnx:ReduceSumSquare" && opName(red) != "ai.onnx:ReduceSum") {
		return dm, fmt.Errorf("body that does not end in ReduceSumSquare or ReduceSum")
	}
	ra := newAttrs(red)
	axes := ra.ints("axes")
	if len(red.inputs) > 1 && red.inputs[1] != "" {
		v, ok := konst(red.inputs[1])
		if !ok {
			return dm, fmt.Errorf("body reducing over computed axes")
		}
		axes = axes[:0]
		for _, f := range v {
			axes = append(axes, int64(f))
		}
	}
	if len(axes) != 1 || (axes[0] != 1 && axes[0] != -1) || ra.int("keepdims", 1) != 0 {
		return dm, fmt.Errorf("body reducing over axes %v, keepdims %d", axes, ra.int("keepdims", 1))
	}
	_, sub := through(red.inputs[0])
	if opName(red) == "ai.onnx:ReduceSum" {
		dm.abs = true
		if sub != nil && opName(sub) == "ai.onnx:Pow" && len(sub.inputs) == 2 {
			p, ok := konst(sub.inputs[1])
			if !ok || len(p) != 1 || !(p[0] > 0) || math.IsInf(p[0], 0) {
				return dm, fmt.Errorf("body raising to the power %q (only a constant scalar p > 0)", sub.inputs[1])
			}
			dm.pow = float32(p[0])
			_, sub = through(sub.inputs[0])
		}
		if sub == nil || opName(sub) != "ai.onnx:Abs" || len(sub.inputs) != 1 {
			return dm, fmt.Errorf("body summing something else than absolute differences")
		}
		_, sub = through(sub.inputs[0])
	}
	if sub == nil || opName(sub) != "ai.onnx:Sub" || len(sub.inputs) != 2 {
		return dm, fmt.Errorf("body reducing something else than a difference")
	}
	a, _ := through(sub.inputs[0])
	b, _ := through(sub.inputs[1])
	if !(a == state && b == row) && !(a == row && b == state) {
		return dm, fmt.Errorf("body subtracting %q and %q", sub.inputs[0], sub.inputs[1])
	}
	return dm, nil
}

// distStep writes each row's distances to the training rows.
type distStep struct {
	in, out *value
	train   []float32 // M x F
	metric  distMetric
}

func (s *distStep) run(sc *scratch, n int) {
	f := s.in.width
	x, dst := sc.row[:f], sc.row2[:s.out.width]
	terms := sc.tmp[0][:f]
	for r := range n {
		loadRow(sc, s.in, r, x)
		for m := range dst {
			t := s.train[m*f : m*f+f]
			if !s.metric.abs {
				// ReduceSumSquare: onnxruntime adds the rounded squares in order.
				var sum float32
				for j, v := range t {
					d := float32(x[j]) - v
					sum += float32(d * d) // rounded: no fused multiply-add
				}
				dst[m] = float64(sum)
				continue
			}
			for j, v := range t {
				terms[j] = float64(powf32(float32(math.Abs(float64(float32(x[j])-v))), s.metric.pow))
			}
			// ReduceSum over the body's [N, F] tensor: row r's run starts
			// r*F floats in (chunks of rows keep that offset's alignment).
			dst[m] = float64(eigenSum32(terms, r*f))
		}
		storeRow(sc, s.out, r, dst)
	}
}

// powf32 is onnxruntime's float32 Pow by a scalar exponent p: x*x for 2,
// x*x*x for 3 (rounded after each product), else powf; p = 0 means none.
func powf32(x, p float32) float32 {
	switch p {
	case 0:
		return x
	case 2:
		return x * x
	case 3:
		return float32(x*x) * x
	}
	return float32(math.Pow(float64(x), float64(p)))
}

// transpose compiles Transpose that keeps the row axis first (perm[0] =
// 0), the one after a Scan (see scan), and folds it over constants.
func (c *compiler) transpose(n *nodeProto, a attrs) error {
	if d := c.scanT[n.inputs[0]]; d != nil && len(n.inputs) == 1 {
		c.alias(c.output(n, 0), d)
		return nil
	}
	v, err := c.input(n, 0)
	if err != nil {
		return err
	}
	r := rank(v)
	perm := a.ints("perm")
	if len(perm) == 0 {
		for i := r - 1; i >= 0; i-- {
			perm = append(perm, int64(i))
		}
	}
	if len(perm) != r {
		return fmt.Errorf("%w: Transpose perm %v of rank %d", ErrMalformed, perm, r)
	}
	seen := make([]bool, r)
	for _, p := range perm {
		if p < 0 || int(p) >= r || seen[p] {
			return fmt.Errorf("%w: Transpose perm %v", ErrMalformed, perm)
		}
		seen[p] = true
	}
	var in []int
	if v.isConst() {
		for _, d := range v.kdims {
			in = append(in, int(d))
		}
	} else {
		if perm[0] != 0 {
			return fmt.Errorf("%w: Transpose perm %v moves the row axis", ErrUnsupported, perm)
		}
		in = append([]int{1}, v.shape...)
	}
	out := make([]int, r)
	for i, p := range perm {
		out[i] = in[p]
	}
	// sel[j]: the input element of output element j.
	is := strides(in)
	sel := make([]int32, shapeWidth(out))
	coord := make([]int, r)
	for j := range sel {
		k := 0
		for i, p := range perm {
			k += coord[i] * is[p]
		}
		sel[j] = int32(k)
		for i := r - 1; i >= 0; i-- {
			coord[i]++
			if coord[i] < out[i] {
				break
			}
			coord[i] = 0
		}
	}
	name := c.output(n, 0)
	if v.isConst() {
		k := &value{name: name, dt: v.dt, buf: -1, konst: make([]float64, len(sel))}
		for j, s := range sel {
			k.konst[j] = v.konst[s]
		}
		for _, d := range out {
			k.kdims = append(k.kdims, int64(d))
		}
		k.width = len(k.konst)
		c.values[name] = k
		return nil
	}
	o := c.newShaped(name, v.dt, out[1:])
	c.m.steps = append(c.m.steps, &selectStep{in: v, out: o, sel: sel})
	return nil
}

// topK compiles TopK over the last per-row axis with a constant k, as
// onnxruntime selects: for k = 1 the first best value; otherwise a heap of
// the k best, the worst on top, filled from the last slot back and then
// replaced by each later value strictly better than the top, then emptied
// from the top into the output from its end (sorted), or read in heap
// order (sorted = 0). Ties go to the lower index; NaN is never better, so
// a row of NaNs gives the heap's own order. When k is large for the axis
// (k >= 4 and log2(k)/log2(n) >= 0.725), onnxruntime runs libstdc++'s
// nth_element and, when sorted, sort instead (stdsort.go): the same k
// values in the same order for rows without NaN, another order with
// sorted = 0 or NaNs.
func (c *compiler) topK(n *nodeProto, a attrs) error {
	v, err := c.rowInput(n, 0)
	if err != nil {
		return err
	}
	if !isFloat(v.dt) && v.dt != tI64 {
		return fmt.Errorf("%w: TopK of %s", ErrUnsupported, v.dt)
	}
	r := rank(v)
	ax, ok := normAxis(a.int("axis", -1), r)
	if !ok || ax == 0 {
		return fmt.Errorf("%w: TopK over axis %d of rank %d (only per-row axes keep rows apart)", ErrUnsupported, a.int("axis", -1), r)
	}
	if ax != r-1 {
		return fmt.Errorf("%w: TopK over axis %d of rank %d (only the last)", ErrUnsupported, ax, r)
	}
	ks, ok, err := c.constInts(n, 1, "k")
	if err != nil {
		return err
	}
	if !ok || len(ks) != 1 {
		return fmt.Errorf("%w: TopK with a computed k", ErrUnsupported)
	}
	dim := v.shape[len(v.shape)-1]
	k := ks[0]
	if k < 1 || k > int64(dim) {
		return fmt.Errorf("%w: TopK k=%d over an axis of %d", ErrMalformed, k, dim)
	}
	shape := append([]int(nil), v.shape...)
	shape[len(shape)-1] = int(k)
	s := &topKStep{in: v, dim: dim, k: int(k), largest: a.int("largest", 1) != 0, sorted: a.int("sorted", 1) != 0,
		// onnxruntime's choice between its heap and nth_element (top_k.cc).
		heap: k != 1 && (k < 4 || math.Log2(float64(k))/math.Log2(float64(dim)) < 0.725)}
	if name := c.output(n, 0); name != "" {
		s.vals = c.newShaped(name, v.dt, shape)
	}
	if name := c.output(n, 1); name != "" {
		s.idx = c.newShaped(name, tI64, shape)
	}
	c.m.nTmp = max(c.m.nTmp, 1)
	c.m.steps = append(c.m.steps, s)
	return nil
}

type topKStep struct {
	in              *value
	dim, k          int
	largest, sorted bool
	heap            bool // onnxruntime keeps a heap (else nth_element); k = 1 scans
	vals, idx       *value
}

func (s *topKStep) run(sc *scratch, n int) {
	src := sc.row[:s.in.width]
	groups := s.in.width / s.dim
	w := groups * s.k
	vals, idx := sc.row2[:w], sc.row2[w:2*w]
	heap := sc.tmp[0][:s.dim]
	for r := range n {
		loadRow(sc, s.in, r, src)
		for g := range groups {
			x := src[g*s.dim : (g+1)*s.dim]
			out := idx[g*s.k : (g+1)*s.k]
			s.selectRow(x, heap, out)
			for j, i := range out {
				vals[g*s.k+j] = x[int(i)]
			}
		}
		if s.vals != nil {
			storeRow(sc, s.vals, r, vals)
		}
		if s.idx != nil {
			storeRow(sc, s.idx, r, idx)
		}
	}
}

// selectRow writes the indices of x's k best values to out (float64s),
// as onnxruntime's TopK finds them, using heap (len(x) slots).
func (s *topKStep) selectRow(x, heap, out []float64) {
	if s.k != 1 && !s.heap {
		for i := range heap {
			heap[i] = float64(i)
		}
		o := topOrder{x: x, largest: s.largest}
		stdNthElement(heap, s.k-1, o)
		if s.sorted {
			stdSort(heap[:s.k], o)
		}
		copy(out, heap[:s.k])
		return
	}
	heap = heap[:s.k]
	// better: value a (at index i) beats value b (at index j).
	better := func(i, j int) bool {
		a, b := x[i], x[j]
		if s.largest {
			return a > b || (a == b && i < j)
		}
		return a < b || (a == b && i < j)
	}
	if s.k == 1 {
		best := 0
		for i := 1; i < len(x); i++ {
			if (s.largest && x[i] > x[best]) || (!s.largest && x[i] < x[best]) {
				best = i
			}
		}
		out[0] = float64(best)
		return
	}
	k := s.k
	// down moves the entry at i down the heap of size m while a child is
	// worse, the worst of the three rising.
	down := func(i, m int) {
		for {
			l, rt := 2*i+1, 2*i+2
			h := func(p int) int { return int(heap[p]) }
			switch {
			case rt < m:
				beatsL := better(h(i), h(l))
				if beatsL && better(h(rt), h(l)) {
					heap[i], heap[l] = heap[l], heap[i]
					i = l
				} else if beatsL || better(h(i), h(rt)) {
					heap[i], heap[rt] = heap[rt], heap[i]
					i = rt
				} else {
					return
				}
			case l < m && better(h(i), h(l)):
				heap[i], heap[l] = heap[l], heap[i]
				i = l
			default:
				return
			}
		}
	}
	for j := range k {
		heap[k-1-j] = float64(j)
		down(k-1-j, k)
	}
	top := x[int(heap[0])]
	for j := k; j < len(x); j++ {
		if (s.largest && x[j] > top) || (!s.largest && x[j] < top) {
			heap[0] = float64(j)
			down(0, k)
			top = x[int(heap[0])]
		}
	}
	if !s.sorted {
		copy(out, heap)
		return
	}
	for j := range k {
		out[k-1-j] = heap[0]
		heap[0] = heap[k-1-j]
		down(0, k-1-j)
	}
}
