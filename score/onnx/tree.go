package onnx

import (
	"fmt"
	"math"
	"strconv"
)

// Node modes, as compiled. The missing-track flag is or-ed in.
const (
	modeLeaf uint8 = iota
	modeLEQ
	modeLT
	modeGTE
	modeGT
	modeEQ
	modeNEQ
	modeMember // opset 5 only; unrolled into a chain of modeEQ at compile time

	flagMissingTrue uint8 = 0x10
	modeMask        uint8 = 0x0f
)

var modeNames = map[string]uint8{
	"LEAF": modeLeaf, "BRANCH_LEQ": modeLEQ, "BRANCH_LT": modeLT, "BRANCH_GTE": modeGTE,
	"BRANCH_GT": modeGT, "BRANCH_EQ": modeEQ, "BRANCH_NEQ": modeNEQ,
}

type aggregate uint8

const (
	aggAverage aggregate = iota
	aggSum
	aggMin
	aggMax
)

var aggNames = map[string]aggregate{"AVERAGE": aggAverage, "SUM": aggSum, "MIN": aggMin, "MAX": aggMax}

type postTransform uint8

const (
	postNone postTransform = iota
	postLogistic
	postSoftmax
	postSoftmaxZero
	postProbit
)

var postNames = map[string]postTransform{
	"NONE": postNone, "LOGISTIC": postLogistic, "SOFTMAX": postSoftmax,
	"SOFTMAX_ZERO": postSoftmaxZero, "PROBIT": postProbit,
}

// treeSpec is a tree ensemble in the opset 1/3 layout (parallel arrays of
// nodes keyed by tree id and node id, leaf weights keyed the same way), the
// form every variant is converted to before compiling.
type treeSpec struct {
	treeIDs, nodeIDs, featIDs, trueIDs, falseIDs []int64
	modes                                        []uint8
	missing                                      []bool
	thresholds                                   []float64
	wTree, wNode, wTarget                        []int64
	weights                                      []float64
	nTargets                                     int
	base                                         []float64
	agg                                          aggregate
	post                                         postTransform
}

// ensemble is a compiled tree ensemble over threshold type T: nodes of all
// trees in one array, each tree laid out depth-first with a node's false
// child right after it, and leaf weights in one contiguous array.
type ensemble[T float32 | float64] struct {
	nodes    []tnode[T]
	roots    []int32
	wTarget  []int32
	weights  []T
	nTargets int
	base     []T
	origin   T // base[0] when there is exactly one base value
	useBase  bool
	agg      aggregate
	post     postTransform
	// simple: every branch is BRANCH_LEQ (or every one BRANCH_LT) with no
	// missing-value tracks, so evaluation skips the mode switch.
	simple  uint8
	maxFeat int
	// For simple ensembles, fast mirrors nodes for branch-free walks: a
	// branch's kids are {false, true}, a leaf's are itself twice, and
	// walking depth[t] steps from roots[t] always ends on the leaf.
	fast  []fnode[T]
	depth []int32
}

// fnode is a node of the branch-free layout.
type fnode[T float32 | float64] struct {
	thr  T
	feat int32
	kid  [2]int32
}

// tnode is one tree node. For a branch, thr is the threshold, feat the input
// column and next the index of the true child (the false child is the next
// node). For a leaf, thr is its first weight (the only one that counts for a
// single-target ensemble), feat the index of its first weight in
// ensemble.weights and next the number of its weights.
type tnode[T float32 | float64] struct {
	thr  T
	feat int32
	next int32
	mode uint8
}

type nodeKey struct{ tree, node int64 }

// maxTreeDepth bounds the depth of a compiled tree (and so catches cycles).
const maxTreeDepth = 1000

func compileEnsemble[T float32 | float64](s *treeSpec) (*ensemble[T], error) {
	n := len(s.nodeIDs)
	for name, l := range map[string]int{"nodes_treeids": len(s.treeIDs), "nodes_featureids": len(s.featIDs),
		"nodes_truenodeids": len(s.trueIDs), "nodes_falsenodeids": len(s.falseIDs), "nodes_modes": len(s.modes),
		"nodes_values": len(s.thresholds)} {
		if l != n {
			return nil, fmt.Errorf("%s has %d entries, nodes_nodeids has %d", name, l, n)
		}
	}
	if len(s.missing) != 0 && len(s.missing) != n {
		// onnxruntime reads missing tracks only where present; keep that.
		if len(s.missing) > n {
			s.missing = s.missing[:n]
		}
	}
	if len(s.wNode) != len(s.wTree) || len(s.wNode) != len(s.wTarget) || len(s.wNode) != len(s.weights) {
		return nil, fmt.Errorf("leaf weight arrays differ in length (%d ids, %d node ids, %d tree ids, %d weights)",
			len(s.wTarget), len(s.wNode), len(s.wTree), len(s.weights))
	}
	if s.nTargets <= 0 {
		return nil, fmt.Errorf("ensemble has %d targets", s.nTargets)
	}
	if s.nTargets > len(s.weights)+len(s.base)+1 {
		return nil, fmt.Errorf("ensemble claims %d targets but holds %d weights", s.nTargets, len(s.weights))
	}
	index := make(map[nodeKey]int, n)
	for i := range n {
		k := nodeKey{s.treeIDs[i], s.nodeIDs[i]}
		if _, dup := index[k]; dup {
			return nil, fmt.Errorf("node %d in tree %d is already there", k.node, k.tree)
		}
		index[k] = i
	}
	// Leaf weights in the order they are listed, grouped by leaf.
	leafW := make(map[int][]int)
	for j := range s.wNode {
		i, ok := index[nodeKey{s.wTree[j], s.wNode[j]}]
		if !ok {
			return nil, fmt.Errorf("weight %d points at node %d of tree %d, which does not exist", j, s.wNode[j], s.wTree[j])
		}
		if s.modes[i] != modeLeaf {
			continue // onnxruntime ignores weights on branch nodes
		}
		if s.wTarget[j] < 0 || s.wTarget[j] >= int64(s.nTargets) {
			return nil, fmt.Errorf("weight %d is for target %d, the ensemble has %d", j, s.wTarget[j], s.nTargets)
		}
		leafW[i] = append(leafW[i], j)
	}
	e := &ensemble[T]{nTargets: s.nTargets, agg: s.agg, post: s.post, maxFeat: -1}
	e.base = make([]T, len(s.base))
	for i, b := range s.base {
		e.base[i] = T(b)
	}
	if len(s.base) == 1 {
		e.origin = e.base[0]
	}
	e.useBase = len(s.base) == s.nTargets

	leq, lt, other := false, false, false
	// Each tree is copied out depth-first; a node reachable twice is copied
	// twice, so cap the total to keep a hostile DAG from exploding.
	limit := 4*n + 16
	var build func(i, depth int) (int32, error)
	build = func(i, depth int) (int32, error) {
		if depth > maxTreeDepth {
			return 0, fmt.Errorf("tree %d is deeper than %d (or has a cycle)", s.treeIDs[i], maxTreeDepth)
		}
		if len(e.nodes) >= limit {
			return 0, fmt.Errorf("trees share too many nodes")
		}
		pos := int32(len(e.nodes))
		mode := s.modes[i]
		if mode == modeLeaf {
			ws := leafW[i]
			if len(ws) == 0 {
				return 0, fmt.Errorf("leaf %d of tree %d has no weight", s.nodeIDs[i], s.treeIDs[i])
			}
			e.nodes = append(e.nodes, tnode[T]{thr: T(s.weights[ws[0]]), feat: int32(len(e.weights)), next: int32(len(ws))})
			for _, j := range ws {
				e.weights = append(e.weights, T(s.weights[j]))
				e.wTarget = append(e.wTarget, int32(s.wTarget[j]))
			}
			return pos, nil
		}
		f := s.featIDs[i]
		if f < 0 || f > math.MaxInt32 {
			return 0, fmt.Errorf("node %d of tree %d reads feature %d", s.nodeIDs[i], s.treeIDs[i], f)
		}
		if int(f) > e.maxFeat {
			e.maxFeat = int(f)
		}
		flags := mode
		if i < len(s.missing) && s.missing[i] {
			flags |= flagMissingTrue
		}
		switch {
		case flags == modeLEQ:
			leq = true
		case flags == modeLT:
			lt = true
		default:
			other = true
		}
		e.nodes = append(e.nodes, tnode[T]{thr: T(s.thresholds[i]), feat: int32(f), mode: flags})
		tk := nodeKey{s.treeIDs[i], s.trueIDs[i]}
		fk := nodeKey{s.treeIDs[i], s.falseIDs[i]}
		ti, ok1 := index[tk]
		fi, ok2 := index[fk]
		if !ok1 || !ok2 {
			return 0, fmt.Errorf("node %d of tree %d points at a missing child", s.nodeIDs[i], s.treeIDs[i])
		}
		if ti == i || fi == i {
			return 0, fmt.Errorf("node %d of tree %d points at itself", s.nodeIDs[i], s.treeIDs[i])
		}
		if _, err := build(fi, depth+1); err != nil {
			return 0, err
		}
		t, err := build(ti, depth+1)
		if err != nil {
			return 0, err
		}
		e.nodes[pos].next = t
		return pos, nil
	}
	// As onnxruntime: a tree starts wherever the tree id changes in node
	// order, and that first node is its root.
	for i := range n {
		if i > 0 && s.treeIDs[i] == s.treeIDs[i-1] {
			continue
		}
		r, err := build(i, 0)
		if err != nil {
			return nil, err
		}
		e.roots = append(e.roots, r)
	}
	if len(e.roots) == 0 {
		return nil, fmt.Errorf("ensemble has no trees")
	}
	switch {
	case leq && !lt && !other:
		e.simple = modeLEQ
	case lt && !leq && !other:
		e.simple = modeLT
	}
	if e.simple != 0 {
		e.fast = make([]fnode[T], len(e.nodes))
		for i, nd := range e.nodes {
			if nd.mode == modeLeaf {
				e.fast[i] = fnode[T]{kid: [2]int32{int32(i), int32(i)}}
			} else {
				e.fast[i] = fnode[T]{thr: nd.thr, feat: nd.feat, kid: [2]int32{int32(i) + 1, nd.next}}
			}
		}
		var depth func(i int32) int32
		depth = func(i int32) int32 {
			nd := &e.nodes[i]
			if nd.mode == modeLeaf {
				return 0
			}
			return 1 + max(depth(i+1), depth(nd.next))
		}
		for _, r := range e.roots {
			e.depth = append(e.depth, depth(r))
		}
	}
	return e, nil
}

// leaf walks one tree from root for the row x and returns its leaf's index.
func (e *ensemble[T]) leaf(root int32, x []T) int32 {
	nodes := e.nodes
	i := root
	for {
		nd := &nodes[i]
		if nd.mode == modeLeaf {
			return i
		}
		v := x[nd.feat]
		var b bool
		switch nd.mode & modeMask {
		case modeLEQ:
			b = v <= nd.thr
		case modeLT:
			b = v < nd.thr
		case modeGTE:
			b = v >= nd.thr
		case modeGT:
			b = v > nd.thr
		case modeEQ:
			b = v == nd.thr
		case modeNEQ:
			b = v != nd.thr
		}
		if !b && nd.mode&flagMissingTrue != 0 && v != v {
			b = true
		}
		if b {
			i = nd.next
		} else {
			i++
		}
	}
}

// scoreRows accumulates the trees' leaf weights for n rows of width stride
// into acc (n*nTargets) and has (which targets got a weight), in tree order
// per row as onnxruntime does, walking all rows of a block through one tree
// before the next so that the tree stays in cache.
func (e *ensemble[T]) scoreRows(x []T, stride, n int, acc []T, has []bool) {
	nt := e.nTargets
	clear(acc[:n*nt])
	clear(has[:n*nt])
	const block = 128
	var leaves [block]int32
	for b0 := 0; b0 < n; b0 += block {
		b1 := min(n, b0+block)
		for t, root := range e.roots {
			lv := leaves[:b1-b0]
			switch {
			case e.fast != nil && e.simple == modeLEQ:
				e.walkFastLEQ(root, e.depth[t], x, stride, b0, lv)
			case e.fast != nil:
				e.walkFastLT(root, e.depth[t], x, stride, b0, lv)
			default:
				for r := range lv {
					row := x[(b0+r)*stride : (b0+r)*stride+stride]
					lv[r] = e.leaf(root, row)
				}
			}
			for r, li := range lv {
				lf := &e.nodes[li]
				row := b0 + r
				if nt == 1 {
					e.add1(&acc[row], &has[row], lf.thr)
					continue
				}
				a := acc[row*nt : row*nt+nt]
				h := has[row*nt : row*nt+nt]
				w0 := int(lf.feat)
				for k := w0; k < w0+int(lf.next); k++ {
					t := e.wTarget[k]
					e.add1(&a[t], &h[t], e.weights[k])
				}
			}
		}
	}
}

// walkFastLEQ finds the leaf of one tree for len(out) rows starting at row
// r0, four rows at a time so that their independent walks overlap, choosing
// each child by index rather than by branch (splits are unpredictable).
// NaN compares false and takes the false branch.
func (e *ensemble[T]) walkFastLEQ(root, depth int32, x []T, stride, r0 int, out []int32) {
	nodes := e.fast
	r := 0
	for ; r+4 <= len(out); r += 4 {
		base := (r0 + r) * stride
		x0 := x[base : base+stride]
		x1 := x[base+stride : base+2*stride]
		x2 := x[base+2*stride : base+3*stride]
		x3 := x[base+3*stride : base+4*stride]
		i0, i1, i2, i3 := root, root, root, root
		for range depth {
			n0, n1, n2, n3 := &nodes[i0], &nodes[i1], &nodes[i2], &nodes[i3]
			var b0, b1, b2, b3 int
			if x0[n0.feat] <= n0.thr {
				b0 = 1
			}
			if x1[n1.feat] <= n1.thr {
				b1 = 1
			}
			if x2[n2.feat] <= n2.thr {
				b2 = 1
			}
			if x3[n3.feat] <= n3.thr {
				b3 = 1
			}
			i0, i1, i2, i3 = n0.kid[b0], n1.kid[b1], n2.kid[b2], n3.kid[b3]
		}
		out[r], out[r+1], out[r+2], out[r+3] = i0, i1, i2, i3
	}
	for ; r < len(out); r++ {
		base := (r0 + r) * stride
		xr := x[base : base+stride]
		i := root
		for range depth {
			nd := &nodes[i]
			var b int
			if xr[nd.feat] <= nd.thr {
				b = 1
			}
			i = nd.kid[b]
		}
		out[r] = i
	}
}

// walkFastLT finds the leaf of one tree for len(out) rows starting at row
// r0, four rows at a time so that their independent walks overlap, choosing
// each child by index rather than by branch (splits are unpredictable).
// NaN compares false and takes the false branch.
func (e *ensemble[T]) walkFastLT(root, depth int32, x []T, stride, r0 int, out []int32) {
	nodes := e.fast
	r := 0
	for ; r+4 <= len(out); r += 4 {
		base := (r0 + r) * stride
		x0 := x[base : base+stride]
		x1 := x[base+stride : base+2*stride]
		x2 := x[base+2*stride : base+3*stride]
		x3 := x[base+3*stride : base+4*stride]
		i0, i1, i2, i3 := root, root, root, root
		for range depth {
			n0, n1, n2, n3 := &nodes[i0], &nodes[i1], &nodes[i2], &nodes[i3]
			var b0, b1, b2, b3 int
			if x0[n0.feat] < n0.thr {
				b0 = 1
			}
			if x1[n1.feat] < n1.thr {
				b1 = 1
			}
			if x2[n2.feat] < n2.thr {
				b2 = 1
			}
			if x3[n3.feat] < n3.thr {
				b3 = 1
			}
			i0, i1, i2, i3 = n0.kid[b0], n1.kid[b1], n2.kid[b2], n3.kid[b3]
		}
		out[r], out[r+1], out[r+2], out[r+3] = i0, i1, i2, i3
	}
	for ; r < len(out); r++ {
		base := (r0 + r) * stride
		xr := x[base : base+stride]
		i := root
		for range depth {
			nd := &nodes[i]
			var b int
			if xr[nd.feat] < nd.thr {
				b = 1
			}
			i = nd.kid[b]
		}
		out[r] = i
	}
}

func (e *ensemble[T]) add1(acc *T, has *bool, w T) {
	switch e.agg {
	case aggSum, aggAverage:
		*acc += w
	case aggMin:
		if !*has || w < *acc {
			*acc = w
		}
	case aggMax:
		if !*has || w > *acc {
			*acc = w
		}
	}
	*has = true
}

// finishRegression turns one row's accumulators into outputs, as
// onnxruntime's TreeAggregator{Sum,Average,Min,Max}::FinalizeScores[1].
func (e *ensemble[T]) finishRegression(acc []T, has []bool, out []float64) {
	nt := e.nTargets
	ntrees := T(len(e.roots))
	if nt == 1 {
		s := acc[0]
		switch e.agg {
		case aggSum:
			s += e.origin
		case aggAverage:
			s = s/ntrees + e.origin
		default:
			if has[0] {
				s += e.origin
			} else {
				s = e.origin
			}
		}
		if e.post == postProbit {
			out[0] = float64(probit32(float32(s)))
		} else {
			out[0] = float64(s)
		}
		return
	}
	for j := range nt {
		s := acc[j]
		switch e.agg {
		case aggSum:
			if e.useBase {
				s += e.base[j]
			}
		case aggAverage:
			s /= ntrees
			if e.useBase {
				s += e.base[j]
			}
		default:
			v := T(0)
			if e.useBase {
				v = e.base[j]
			}
			if has[j] {
				v += s
			}
			s = v
		}
		if has[j] {
			out[j] = float64(s)
		} else {
			out[j] = 0
		}
	}
	writeScores(out, e.post, -1)
}

// classifier is a compiled TreeEnsembleClassifier: a summing ensemble plus
// onnxruntime's rules for labels and the binary cases.
type classifier[T float32 | float64] struct {
	*ensemble[T]
	labels       []int64 // class_labels_: int labels, or indices of string labels
	binaryCase   bool    // two classes, weights for one class only
	allPositive  bool
	stringLabels bool
}

// finish computes one row's label and class scores (out has room for the
// class count), as TreeAggregatorClassifier::FinalizeScores.
func (c *classifier[T]) finish(acc []T, has []bool, out []float64) int64 {
	nc := c.nTargets
	if nc > 2 {
		for k := range c.base {
			if !has[k] {
				has[k] = true
				acc[k] = c.base[k]
			} else {
				acc[k] += c.base[k]
			}
		}
		best, bestW := -1, T(0)
		for k := range nc {
			if has[k] && (best == -1 || acc[k] > bestW) {
				best, bestW = k, acc[k]
			}
		}
		if best < 0 {
			best = 0
		}
		for k := range nc {
			out[k] = scoreOf(acc[k], has[k])
		}
		writeScores(out[:nc], c.post, -1)
		return c.labels[best]
	}
	add := -1
	size := 2
	switch len(c.base) {
	case 2:
		if has[1] {
			acc[1] = c.base[1] + acc[0]
			acc[0] = -acc[1]
			has[1] = true
		} else {
			acc[1] += c.base[1]
			acc[0] += c.base[0]
		}
	case 1:
		acc[0] += c.base[0]
		if !has[1] {
			size = 1
		}
	case 0:
		add = 3
		if !has[1] {
			size = 1
		}
	}
	var pos T
	switch {
	case size == 2 && has[1]:
		pos = acc[1]
	case has[0]:
		pos = acc[0]
	}
	var label int64
	if c.binaryCase {
		if c.allPositive {
			if pos > 0.5 {
				add, label = 0, c.labels[1]
			} else {
				add, label = 1, c.labels[0]
			}
		} else if pos > 0 {
			add, label = 2, c.labels[1]
		} else {
			add, label = 3, c.labels[0]
		}
	} else if pos > 0 {
		label = c.rawLabel(1)
	} else {
		label = c.rawLabel(0)
	}
	out[0] = scoreOf(acc[0], has[0])
	out[1] = scoreOf(acc[1], has[1])
	if size == 2 {
		writeScores(out[:2], c.post, add)
	} else {
		writeScores(out[:1], c.post, add)
		if len(out) > 1 && (c.post == postProbit || add < 0) {
			out[1] = 0
		}
	}
	return label
}

// rawLabel is what onnxruntime writes as the label when it falls back to a
// class index: the index itself, or that class's string.
func (c *classifier[T]) rawLabel(i int) int64 {
	if c.stringLabels {
		return c.labels[i]
	}
	return int64(i)
}

func scoreOf[T float32 | float64](s T, has bool) float64 {
	if has {
		return float64(s)
	}
	return 0
}

// writeScores applies a post transform in place, as onnxruntime's
// write_scores: transforms compute in float32; a single score is expanded
// to two according to add (the binary conventions) and written to s[0:2],
// so s must have room for two when len(s) == 1 and add >= 0.
func writeScores(s []float64, post postTransform, add int) {
	if len(s) >= 2 {
		switch post {
		case postProbit:
			for i, v := range s {
				s[i] = float64(probit32(float32(v)))
			}
		case postLogistic:
			for i, v := range s {
				s[i] = float64(logistic32(float32(v)))
			}
		case postSoftmax:
			softmax32(s)
		case postSoftmaxZero:
			softmaxZero32(s)
		}
		return
	}
	if len(s) != 1 {
		return
	}
	v := s[0]
	if post == postProbit {
		s[0] = float64(probit32(float32(v)))
		return
	}
	s = s[:2:2]
	switch add {
	case 0, 1:
		s[0], s[1] = 1-v, v
	case 2, 3:
		if post == postLogistic {
			s[0], s[1] = float64(logistic32(float32(-v))), float64(logistic32(float32(v)))
		} else {
			s[0], s[1] = -v, v
		}
	}
}

// logistic32 is onnxruntime's ComputeLogistic, in float32.
func logistic32(v float32) float32 {
	a := v
	if a < 0 {
		a = -a
	}
	e := float32(math.Exp(float64(-a)))
	r := 1 / (1 + e)
	if v < 0 {
		return 1 - r
	}
	return r
}

// probit32 is onnxruntime's ComputeProbit: sqrt(2) * ErfInv(2v-1), with
// its approximation of ErfInv (Winitzki's), in float32.
func probit32(v float32) float32 {
	x := 2*v - 1
	sgn := float32(1)
	if x < 0 {
		sgn = -1
	}
	x = (1 - x) * (1 + x)
	lg := float32(math.Log(float64(x)))
	a := 2/(float32(math.Pi)*0.147) + 0.5*lg
	a2 := 1 / float32(0.147) * lg
	a3 := -a + float32(math.Sqrt(float64(a*a-a2)))
	return float32(math.Sqrt2) * (sgn * float32(math.Sqrt(float64(a3))))
}

func softmax32(s []float64) {
	vmax := float32(-math.MaxFloat32)
	for _, v := range s {
		if float32(v) > vmax {
			vmax = float32(v)
		}
	}
	var sum float32
	for i, v := range s {
		e := float32(math.Exp(float64(float32(v) - vmax)))
		s[i] = float64(e)
		sum += e
	}
	for i, v := range s {
		s[i] = float64(float32(v) / sum)
	}
}

func softmaxZero32(s []float64) {
	vmax := float32(-math.MaxFloat32)
	for _, v := range s {
		if float32(v) > vmax {
			vmax = float32(v)
		}
	}
	expNeg := float32(math.Exp(float64(-vmax)))
	var sum float32
	for i, v := range s {
		f := float32(v)
		if f > 0.0000001 || f < -0.0000001 {
			e := float32(math.Exp(float64(f - vmax)))
			s[i] = float64(e)
			sum += e
		} else {
			s[i] = float64(f * expNeg)
		}
	}
	for i, v := range s {
		s[i] = float64(float32(v) / sum)
	}
}

func formatLabels(ints []int64) []string {
	out := make([]string, len(ints))
	for i, v := range ints {
		out[i] = strconv.FormatInt(v, 10)
	}
	return out
}
