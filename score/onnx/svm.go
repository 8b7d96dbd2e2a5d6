package onnx

import (
	"fmt"
	"math"
)

// svm compiles SVMClassifier with support vectors (what skl2onnx makes of
// SVC and NuSVC), with the RBF or LINEAR kernel and no post transform. The
// arithmetic is onnxruntime's: the kernel of each support vector in float32
// (RBF: a sequential sum of rounded squares, then exp; LINEAR: a fused
// multiply-add chain, as its GEMM), the pairwise decision values summed in
// float64 from float32 products, probabilities by libsvm's pairwise
// coupling in float32, the label by pairwise votes.
func (c *compiler) svm(n *nodeProto, a attrs) error {
	v, err := c.matrixInput(n, 0)
	if err != nil {
		return err
	}
	if v.dt == tStr || v.dt == tBool {
		return fmt.Errorf("%w: %s of %s", ErrUnsupported, n.opType, v.dt)
	}
	if post := a.str("post_transform", "NONE"); post != "NONE" {
		return fmt.Errorf("%w: %s with post_transform %s", ErrUnsupported, n.opType, post)
	}
	s := &svmStep{in: v}
	if err := s.svmKernel.init(n, a, v.width); err != nil {
		return err
	}
	s.coef = f32s(a.floats("coefficients"))
	s.rho = f32s(a.floats("rho"))
	if len(s.coef) == 0 || len(s.rho) == 0 {
		return fmt.Errorf("%w: %s without coefficients or rho", ErrMalformed, n.opType)
	}
	strs := a.strs("classlabels_strings")
	labels := a.ints("classlabels_ints")
	var classes []string
	dt := tI64
	if len(strs) > 0 {
		dt, classes = tStr, strs
		labels = make([]int64, len(strs))
		for i := range labels {
			labels[i] = c.intern(strs[i])
		}
	} else {
		classes = formatLabels(labels)
	}
	k := len(labels)
	if k < 2 || k > 1<<16 {
		return fmt.Errorf("%w: SVMClassifier with %d classes", ErrUnsupported, k)
	}
	per := a.ints("vectors_per_class")
	if len(per) == 0 {
		return fmt.Errorf("%w: SVMClassifier without support vectors (linear mode)", ErrUnsupported)
	}
	if len(per) != k {
		return fmt.Errorf("%w: %d vectors_per_class for %d classes", ErrMalformed, len(per), k)
	}
	for _, p := range per {
		if p < 0 || int64(s.nv)+p > int64(len(s.sv)) {
			return fmt.Errorf("%w: vectors_per_class %v for %d support vector values", ErrMalformed, per, len(s.sv))
		}
		s.start = append(s.start, s.nv)
		s.nv += int(p)
	}
	s.start = append(s.start, s.nv)
	s.k = k
	nc := k * (k - 1) / 2
	if len(s.sv) != s.nv*s.nf || len(s.coef) < (k-1)*s.nv || len(s.rho) < nc {
		return fmt.Errorf("%w: SVMClassifier has %d support vector values, %d coefficients and %d rho for %d vectors of %d features and %d classes",
			ErrMalformed, len(s.sv), len(s.coef), len(s.rho), s.nv, s.nf, k)
	}
	s.probA, s.probB = f32s(a.floats("prob_a")), f32s(a.floats("prob_b"))
	if len(s.probA) != len(s.probB) || (len(s.probA) > 0 && len(s.probA) < nc) {
		return fmt.Errorf("%w: %d prob_a and %d prob_b for %d class pairs", ErrMalformed, len(s.probA), len(s.probB), nc)
	}
	s.labels = labels
	c.m.maxW = max(c.m.maxW, s.nv, nc)
	c.m.nTmp = max(c.m.nTmp, 3)
	s.label = c.newShaped(c.output(n, 0), dt, nil)
	s.label.classes = classes
	w := k // probabilities, or the two scores of one pair
	if len(s.probA) == 0 && k > 2 {
		w = nc // one decision value per pair
	}
	out := c.output(n, 1)
	if out == "" {
		out = n.name + "/scores"
	}
	s.scores = c.newValue(out, tF32, w)
	if w == k {
		s.scores.classes = classes
	}
	c.m.steps = append(c.m.steps, s)
	return nil
}

func f32s(x []float64) []float32 {
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = float32(v)
	}
	return out
}

// svmKernel is the kernel of SVMClassifier and SVMRegressor: nv support
// vectors of nf features.
type svmKernel struct {
	nf, nv int
	rbf    bool
	gamma  float32
	sv     []float32
}

// init reads the kernel attributes of n, for rows of nf features; the
// support vectors are read, nv is left to the caller.
func (k *svmKernel) init(n *nodeProto, a attrs, nf int) error {
	k.nf = nf
	switch kt := a.str("kernel_type", "LINEAR"); kt {
	case "RBF":
		k.rbf = true
	case "LINEAR":
	default:
		return fmt.Errorf("%w: %s with kernel %s (RBF and LINEAR are supported)", ErrUnsupported, n.opType, kt)
	}
	if kp := a.floats("kernel_params"); len(kp) > 0 {
		if len(kp) < 3 {
			return fmt.Errorf("%w: %s has %d kernel_params, 3 are needed", ErrMalformed, n.opType, len(kp))
		}
		k.gamma = float32(kp[0])
	}
	k.sv = f32s(a.floats("support_vectors"))
	return nil
}

type svmStep struct {
	in *value
	svmKernel
	coef, rho    []float32
	k            int
	start        []int // first support vector of each class, and nv
	probA, probB []float32
	labels       []int64
	label        *value
	scores       *value
}

func (s *svmStep) run(sc *scratch, n int) {
	x := sc.row[:s.nf]
	kern := sc.tmp[0][:s.nv]
	out := sc.row2[:s.scores.width]
	for r := range n {
		loadRow(sc, s.in, r, x)
		s.kernels(x, kern, sc.one)
		sc.i64[s.label.buf][r] = s.classify(sc, kern, out)
		storeRow(sc, s.scores, r, out)
	}
}

// kernels writes the kernel of x with each support vector (float32
// values); one: the call has one row, so onnxruntime's linear-kernel GEMM
// takes MLAS's M = 1 kernel (m1Score).
func (s *svmKernel) kernels(x []float64, kern []float64, one bool) {
	for v := range kern {
		sv := s.sv[v*s.nf : v*s.nf+s.nf]
		var sum float32
		if s.rbf {
			for j, y := range sv {
				d := float32(x[j]) - y
				sum += float32(d * d)
			}
			kern[v] = float64(expf(-s.gamma * sum))
			continue
		}
		if one {
			kern[v] = float64(m1Score(x, sv, v, len(kern), 0))
			continue
		}
		for j, y := range sv {
			sum = float32(math.FMA(x[j], float64(y), float64(sum)))
		}
		kern[v] = float64(sum)
	}
}

// classify writes the scores of one row and returns its label: the class
// with most pairwise votes (the first on a tie), as onnxruntime.
func (s *svmStep) classify(sc *scratch, kern []float64, out []float64) int64 {
	k := s.k
	votes := sc.tmp[1][:k]
	dec := sc.tmp[2][:k*(k-1)/2]
	for i := range votes {
		votes[i] = 0
	}
	idx := 0
	for i := 0; i < k-1; i++ {
		for j := i + 1; j < k; j++ {
			var sum float64
			ci := s.coef[(j-1)*s.nv:]
			for m := s.start[i]; m < s.start[i+1]; m++ {
				sum += float64(ci[m] * float32(kern[m]))
			}
			cj := s.coef[i*s.nv:]
			for m := s.start[j]; m < s.start[j+1]; m++ {
				sum += float64(cj[m] * float32(kern[m]))
			}
			sum += float64(s.rho[idx])
			dec[idx] = float64(float32(sum))
			if sum > 0 {
				votes[i]++
			} else {
				votes[j]++
			}
			idx++
		}
	}
	best := 0
	for i, v := range votes {
		if v > votes[best] {
			best = i
		}
	}
	switch {
	case len(s.probA) > 0:
		svmProbabilities(k, dec, s.probA, s.probB, out[:k])
	case k == 2:
		out[0], out[1] = -dec[0], dec[0]
	default:
		copy(out, dec)
	}
	return s.labels[best]
}

// svmProbabilities is libsvm's pairwise coupling (Wu, Lin and Weng 2004,
// method 2) as onnxruntime computes it, in float32: Platt's sigmoid of each
// pairwise decision value, clipped to [1e-7, 1-1e-7], then at most 100
// rounds of the fixed-point iteration.
func svmProbabilities(k int, dec []float64, probA, probB []float32, p []float64) {
	var ra, qa [16 * 16]float32
	var qpa, pa [16]float32
	var r, q, qp, pp []float32
	if k <= 16 {
		r, q, qp, pp = ra[:k*k], qa[:k*k], qpa[:k], pa[:k]
	} else { // beyond what the scratch arrays hold: rare enough to allocate
		r, q, qp, pp = make([]float32, k*k), make([]float32, k*k), make([]float32, k), make([]float32, k)
	}
	idx := 0
	for i := 0; i < k-1; i++ {
		for j := i + 1; j < k; j++ {
			v := 1 - logistic32(float32(dec[idx])*probA[idx]+probB[idx])
			v = min(max(v, 1e-7), 1-1e-7)
			r[i*k+j], r[j*k+i] = v, 1-v
			idx++
		}
	}
	eps := 0.005 / float32(k)
	for i := range k {
		pp[i] = 1 / float32(k)
		for j := range i {
			q[i*k+i] += r[j*k+i] * r[j*k+i]
			q[i*k+j] = q[j*k+i]
		}
		for j := i + 1; j < k; j++ {
			q[i*k+i] += r[j*k+i] * r[j*k+i]
			q[i*k+j] = -r[j*k+i] * r[i*k+j]
		}
	}
	for range 100 {
		var pQp float32
		for i := range k {
			qp[i] = 0
			for j := range k {
				qp[i] += float32(q[i*k+j] * pp[j])
			}
			pQp += float32(pp[i] * qp[i])
		}
		var maxErr float32
		for i := range k {
			if e := float32(math.Abs(float64(qp[i] - pQp))); e > maxErr {
				maxErr = e
			}
		}
		if maxErr < eps {
			break
		}
		for i := range k {
			diff := (-qp[i] + pQp) / q[i*k+i]
			pp[i] += diff
			pQp = (pQp + diff*float32(float32(diff*q[i*k+i])+float32(2*qp[i]))) / (1 + diff) / (1 + diff)
			for j := range k {
				qp[j] = (qp[j] + float32(diff*q[i*k+j])) / (1 + diff)
				pp[j] /= 1 + diff
			}
		}
	}
	for i := range k {
		p[i] = float64(pp[i])
	}
}

// svr compiles SVMRegressor (what skl2onnx makes of SVR, NuSVR and
// OneClassSVM) as onnxruntime computes it: the kernel of each support
// vector in float32 (svmKernel), then one float32 SGEMM score of the
// kernels by the coefficients from rho (blocks of unpackedBlock, or
// m1Score for a call of one row); without support vectors, that score of
// the row itself. onnxruntime ignores
// post_transform here; one_class answers 1 for a positive score, else -1.
func (c *compiler) svr(n *nodeProto, a attrs) error {
	v, err := c.matrixInput(n, 0)
	if err != nil {
		return err
	}
	if v.dt == tStr || v.dt == tBool {
		return fmt.Errorf("%w: %s of %s", ErrUnsupported, n.opType, v.dt)
	}
	s := &svrStep{in: v, oneClass: a.int("one_class", 0) != 0}
	if err := s.svmKernel.init(n, a, v.width); err != nil {
		return err
	}
	coef := f32s(a.floats("coefficients"))
	rho := a.floats("rho")
	if len(coef) == 0 || len(rho) == 0 {
		return fmt.Errorf("%w: %s without coefficients or rho", ErrMalformed, n.opType)
	}
	s.rho = float32(rho[0])
	nv := a.int("n_supports", 0)
	switch {
	case nv < 0 || nv > int64(len(s.sv)):
		return fmt.Errorf("%w: %s with n_supports %d", ErrMalformed, n.opType, nv)
	case nv == 0: // linear mode: the coefficients are the weights of the row
		s.rbf, s.sv = false, nil
		if len(coef) != v.width {
			return fmt.Errorf("%w: %s has %d coefficients for %d features", ErrMalformed, n.opType, len(coef), v.width)
		}
		s.kb = unpackedBlock(1, v.width)
	default:
		s.nv = int(nv)
		if len(s.sv) != s.nv*s.nf || len(coef) != s.nv {
			return fmt.Errorf("%w: %s has %d support vector values and %d coefficients for %d vectors of %d features",
				ErrMalformed, n.opType, len(s.sv), len(coef), s.nv, s.nf)
		}
		s.kb = unpackedBlock(1, s.nv)
		c.m.maxW = max(c.m.maxW, s.nv)
		c.m.nTmp = max(c.m.nTmp, 1)
	}
	s.coef64 = make([]float64, len(coef))
	for i, x := range coef {
		s.coef64[i] = float64(x)
	}
	s.out = c.newValue(c.output(n, 0), tF32, 1)
	c.m.steps = append(c.m.steps, s)
	return nil
}

type svrStep struct {
	in *value
	svmKernel
	coef64   []float64 // float32 values
	rho      float32
	kb       int
	oneClass bool
	out      *value
}

func (s *svrStep) run(sc *scratch, n int) {
	x := sc.row[:s.nf]
	for r := range n {
		loadRow(sc, s.in, r, x)
		dot := x
		if s.nv > 0 {
			dot = sc.tmp[0][:s.nv]
			s.kernels(x, dot, sc.one)
		}
		// With support vectors the GEMM starts from rho; the linear mode
		// passes rho as C only when it is not 0.
		var y float32
		if sc.one {
			c0 := s.rho
			if s.rho == 0 && s.nv == 0 {
				c0 = 0
			}
			y = m1Score(dot, s.coef64, 0, 1, c0)
		} else {
			y = sgemmScore(dot, s.coef64, 1, s.kb, s.rho, s.rho != 0 || s.nv > 0, 1)
		}
		if s.oneClass && y > 0 {
			y = 1
		} else if s.oneClass {
			y = -1
		}
		sc.f32[s.out.buf][r] = y
	}
}
