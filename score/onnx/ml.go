package onnx

import (
	"fmt"
	"math"
)

// linear compiles LinearClassifier and LinearRegressor. Scores follow
// onnxruntime's float32 GEMM of the row by the unpacked coefficients (see
// sgemmScore and unpackedBlock; m1Score for a call of one row).
func (c *compiler) linear(n *nodeProto, a attrs) error {
	v, err := c.matrixInput(n, 0)
	if err != nil {
		return err
	}
	if v.dt == tStr {
		return fmt.Errorf("%w: %s of strings", ErrUnsupported, n.opType)
	}
	post, err := a.post()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	coef, inter := a.floats("coefficients"), a.floats("intercepts")
	s := &linearStep{in: v, coef: coef, post: post}
	if n.opType == "LinearRegressor" {
		nt := a.int("targets", 1)
		if nt <= 0 || nt*int64(v.width) != int64(len(coef)) {
			return fmt.Errorf("%w: %d coefficients for %d targets of %d inputs", ErrMalformed, len(coef), nt, v.width)
		}
		s.nt = int(nt)
		s.kb = unpackedBlock(s.nt, v.width)
		if len(inter) == s.nt {
			s.inter = inter
		}
		s.scores = c.newValue(c.output(n, 0), tF32, s.nt)
		c.m.steps = append(c.m.steps, s)
		return nil
	}
	s.nt = len(inter)
	if s.nt == 0 || s.nt*v.width != len(coef) {
		return fmt.Errorf("%w: %d coefficients and %d intercepts for %d inputs", ErrMalformed, len(coef), len(inter), v.width)
	}
	s.inter = inter
	s.kb = unpackedBlock(s.nt, v.width)
	strs := a.strs("classlabels_strings")
	ints := a.ints("classlabels_ints")
	nl := len(ints)
	dt := tI64
	var classes []string
	if len(strs) > 0 {
		nl, dt, classes = len(strs), tStr, strs
		ints = make([]int64, nl)
		for i := range ints {
			ints[i] = c.intern(strs[i])
		}
	} else {
		classes = formatLabels(ints)
	}
	switch {
	case s.nt == 1 && nl == 2:
		s.addSecond = true
		s.pos, s.neg = ints[1], ints[0]
		if post == postProbit {
			return fmt.Errorf("%w: LinearClassifier with one score, two labels and PROBIT", ErrUnsupported)
		}
	case s.nt == 1:
		if dt == tStr {
			return fmt.Errorf("%w: LinearClassifier with one score and %d string labels", ErrUnsupported, nl)
		}
		s.pos, s.neg = 1, 0
	case nl != s.nt:
		return fmt.Errorf("%w: %d class labels for %d scores", ErrMalformed, nl, s.nt)
	}
	s.labels = ints
	s.label = c.newShaped(c.output(n, 0), dt, nil)
	s.label.classes = classes
	w := s.nt
	if s.addSecond {
		w = 2
	}
	if out := c.output(n, 1); out != "" {
		s.scores = c.newValue(out, tF32, w)
		s.scores.classes = classes
	} else {
		s.scores = c.newValue(n.name+"/scores", tF32, w)
	}
	c.m.steps = append(c.m.steps, s)
	return nil
}

type linearStep struct {
	in            *value
	coef, inter   []float64
	nt            int
	kb            int // inputs per block of the SGEMM sum (unpackedBlock)
	post          postTransform
	labels        []int64 // class labels by score (ids for strings); may be empty with one score
	addSecond     bool
	pos, neg      int64
	label, scores *value
}

func (s *linearStep) run(sc *scratch, n int) {
	w := s.in.width
	x := sc.row[:w]
	out := sc.row2[:max(s.nt, 2)]
	for r := range n {
		loadRow(sc, s.in, r, x)
		for k := range s.nt {
			var c0 float32
			if s.inter != nil {
				c0 = float32(s.inter[k])
			}
			if sc.one {
				out[k] = float64(m1Score(x, s.coef[k*w:k*w+w], k, s.nt, c0))
				continue
			}
			if w > s.kb {
				out[k] = float64(sgemmScore(x, s.coef[k*w:k*w+w], 1, s.kb, c0, s.inter != nil, 1))
				continue
			}
			// One block (sgemmScore inlined): the chain, then the intercept.
			var acc float32
			for j, c := range s.coef[k*w : k*w+w] {
				acc = float32(math.FMA(float64(float32(x[j])), c, float64(acc)))
			}
			out[k] = float64(acc + c0)
		}
		if s.label != nil { // a classifier (with one score it may have no labels)
			var l int64
			if s.nt == 1 {
				l = s.neg
				if out[0] > 0 {
					l = s.pos
				}
			} else {
				best := 0
				for k := 1; k < s.nt; k++ {
					if out[k] > out[best] {
						best = k
					}
				}
				l = s.labels[best]
			}
			sc.i64[s.label.buf][r] = l
		}
		switch {
		case s.addSecond:
			out[0], out[1] = 1-out[0], out[0]
		case s.nt == 1:
			if s.post == postProbit {
				out[0] = float64(probit32(float32(out[0])))
			}
		case s.post == postLogistic:
			for k := range s.nt {
				out[k] = 1 / (1 + math.Exp(-out[k]))
			}
		default:
			writeScores(out[:s.nt], s.post, -1)
		}
		storeRow(sc, s.scores, r, out)
	}
}

// trees compiles the three tree ensemble operators. The threshold type
// follows the input's element type, as in onnxruntime: float32 thresholds
// (and float32 accumulation) for float input, float64 for double input.
func (c *compiler) trees(n *nodeProto, a attrs) error {
	v, err := c.matrixInput(n, 0)
	if err != nil {
		return err
	}
	var s *treeSpec
	var labels []int64
	var classes []string
	strLabels := false
	switch n.opType {
	case "TreeEnsembleClassifier":
		strs := a.strs("classlabels_strings")
		if len(strs) > 0 {
			strLabels, classes = true, strs
			labels = make([]int64, len(strs))
			for i := range labels {
				labels[i] = c.intern(strs[i])
			}
		} else {
			labels = a.ints("classlabels_int64s")
			classes = formatLabels(labels)
		}
		if len(labels) < 2 {
			return fmt.Errorf("%w: classifier with %d classes", ErrUnsupported, len(labels))
		}
		s, err = treeSpecV3(a, "class_", len(labels))
		if err == nil {
			s.agg = aggSum // the classifier always sums
			if len(labels) > 2 && len(s.base) > len(labels) {
				err = fmt.Errorf("%d base values for %d classes", len(s.base), len(labels))
			}
		}
	case "TreeEnsembleRegressor":
		s, err = treeSpecV3(a, "target_", int(min(a.int("n_targets", 0), math.MaxInt32)))
	default:
		s, err = treeSpecV5(a)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch v.dt {
	case tF32:
		return addTrees[float32](c, n, v, s, labels, classes, strLabels, tF32)
	case tF64:
		return addTrees[float64](c, n, v, s, labels, classes, strLabels, tF64)
	}
	return fmt.Errorf("%w: %s on %s input", ErrUnsupported, n.opType, v.dt)
}

func addTrees[T float32 | float64](c *compiler, n *nodeProto, v *value, s *treeSpec, labels []int64, classes []string, strLabels bool, dt dtype) error {
	e, err := compileEnsemble[T](s)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if e.maxFeat >= v.width {
		return fmt.Errorf("%w: trees read feature %d of rows with %d", ErrMalformed, e.maxFeat, v.width)
	}
	st := &treeStep[T]{e: e, in: v}
	// Resolve the typed buffer accessor once, here, so that run does not
	// convert through interfaces.
	var z T
	if _, is32 := any(z).(float32); is32 {
		st.get = any(func(sc *scratch, b int) []float32 { return sc.f32[b] }).(func(*scratch, int) []T)
	} else {
		st.get = any(func(sc *scratch, b int) []float64 { return sc.f64[b] }).(func(*scratch, int) []T)
	}
	st.acc = c.newValue(n.name+"/acc", dt, e.nTargets)
	st.has = c.newBools(e.nTargets)
	outDT := tF32
	switch n.opType {
	case "TreeEnsembleClassifier":
		cl := &classifier[T]{ensemble: e, labels: labels, stringLabels: strLabels, allPositive: true}
		ids := map[int64]bool{}
		for i, id := range s.wTarget {
			ids[id] = true
			if s.weights[i] < 0 {
				cl.allPositive = false
			}
		}
		cl.binaryCase = len(labels) == 2 && len(ids) == 1
		st.cls = cl
		ldt := tI64
		if strLabels {
			ldt = tStr
		}
		st.label = c.newShaped(c.output(n, 0), ldt, nil)
		st.label.classes = classes
		out := c.output(n, 1)
		if out == "" {
			out = n.name + "/scores"
		}
		st.scores = c.newValue(out, tF32, len(labels))
		st.scores.classes = classes
	case "TreeEnsemble":
		outDT = dt
		fallthrough
	default:
		st.scores = c.newValue(c.output(n, 0), outDT, e.nTargets)
	}
	c.m.steps = append(c.m.steps, st)
	return nil
}

type treeStep[T float32 | float64] struct {
	e             *ensemble[T]
	cls           *classifier[T]
	in            *value
	get           func(sc *scratch, buf int) []T
	acc           *value
	has           int
	label, scores *value
}

func (s *treeStep[T]) run(sc *scratch, n int) {
	x := s.get(sc, s.in.buf)
	acc := s.get(sc, s.acc.buf)
	has := sc.bools[s.has]
	nt := s.e.nTargets
	s.e.scoreRows(x, s.in.width, n, acc, has)
	out := sc.row[:max(nt, 2)]
	for r := range n {
		a, h := acc[r*nt:r*nt+nt], has[r*nt:r*nt+nt]
		if s.cls != nil {
			sc.i64[s.label.buf][r] = s.cls.finish(a, h, out)
		} else {
			s.e.finishRegression(a, h, out)
		}
		storeRow(sc, s.scores, r, out)
	}
}

// MLAS's SGEMM (onnxruntime's float32 GEMM) sums each score in blocks of
// inputs: a fused multiply-add chain from zero over one block, then added
// to the score so far (C = fma(block, alpha, C)); the first block of a GEMM
// without C starts the score (C = block * alpha). A Gemm's beta*C or a
// linear model's intercepts are C before the first block. The block size
// depends on how onnxruntime calls it: packedBlock for MatMul and Gemm of a
// constant B (packed once at load), unpackedBlock for LinearClassifier and
// LinearRegressor.
const packedBlock = 256 // MLAS_SGEMM_PACKED_STRIDEK

// unpackedBlock is MlasSgemmOperation's K stride for n outputs of k
// inputs: 128, doubled for each halving of its 128-wide N stride that n
// still fits (down to 16), so 1024 for up to 16 outputs; with n >= k it
// only shrinks below k, which changes nothing.
func unpackedBlock(n, k int) int {
	strideN, strideK := 128, 128
	if n < k {
		for strideN > 16 && strideN/2 >= n {
			strideK *= 2
			strideN /= 2
		}
	}
	return strideK
}

// m1Score is score j of nt of one row x by w (its K coefficients), as
// MLAS computes a GEMM of one row (M = 1) by a transposed B, which
// onnxruntime's LinearClassifier, LinearRegressor and SVMRegressor pass:
// MlasSgemmKernelM1TransposeBAvx on x86 with AVX. Eight lanes, lane l
// adding the rounded products of inputs l, l+8, ... in order; the lanes
// reduced as the kernel's block of scores does (blocks of four, then of
// two and one for the last nt mod 4), then C added (c0, or 0 without C).
func m1Score[T float32 | float64](x []float64, w []T, j, nt int, c0 float32) float32 {
	var l [8]float32
	for i, xi := range x {
		l[i%8] = float32(l[i%8] + float32(float32(xi)*float32(w[i])))
	}
	var s float32
	switch {
	case j < nt/4*4:
		s = float32(float32(float32(l[0]+l[1])+l[2])+l[3]) + float32(float32(float32(l[4]+l[5])+l[6])+l[7])
	case j < nt/4*4+nt%4/2*2:
		s = float32(float32(l[0]+l[2])+float32(l[4]+l[6])) + float32(float32(l[1]+l[3])+float32(l[5]+l[7]))
	default:
		s = float32(float32(l[0]+l[1])+float32(l[2]+l[3])) + float32(float32(l[4]+l[5])+float32(l[6]+l[7]))
	}
	return float32(s + c0)
}

// sgemmScore is one float32 score of x by w (w[i*stride]) as MLAS
// computes it, in blocks of kb inputs; c0 is C when hasC.
func sgemmScore(x, w []float64, stride, kb int, c0 float32, hasC bool, alpha float32) float32 {
	c := c0
	for b0 := 0; b0 < len(x); b0 += kb {
		var blk float32
		for i, xi := range x[b0:min(b0+kb, len(x))] {
			blk = float32(math.FMA(float64(float32(xi)), w[(b0+i)*stride], float64(blk)))
		}
		switch {
		case hasC || b0 > 0:
			c = float32(math.FMA(float64(blk), float64(alpha), float64(c)))
		case alpha != 1:
			c = blk * alpha
		default:
			c = blk
		}
	}
	return c
}
