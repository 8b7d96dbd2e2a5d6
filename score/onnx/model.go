package onnx

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/tally-ml/tally/score"
)

// Errors Load and Parse wrap.
var (
	// ErrMalformed: the bytes are not a well-formed ONNX ModelProto, or
	// the model's own attributes contradict each other.
	ErrMalformed = errors.New("malformed onnx model")
	// ErrUnsupported: the model is well formed but uses an operator, type or
	// shape this evaluator does not implement. The message names it.
	ErrUnsupported = errors.New("unsupported onnx model")
)

const (
	// maxFileSize bounds what Load reads.
	maxFileSize = 1 << 30
	// maxWidth bounds the values per row of any tensor in the graph.
	maxWidth = 1 << 20
	// chunkRows is how many rows Score evaluates between context checks; it
	// also bounds the scratch memory a call holds.
	chunkRows = 1024
)

type dtype uint8

const (
	tF32 dtype = iota + 1
	tF64
	tI64
	tStr  // ids into Model.strs, held in int64 buffers
	tBool // 0 or 1, held in int64 buffers
)

func (d dtype) String() string {
	return [...]string{"?", "float", "double", "int64", "string", "bool"}[d]
}

func dtypeOf(elem int64) (dtype, bool) {
	switch elem {
	case dtFloat:
		return tF32, true
	case dtDouble:
		return tF64, true
	case dtInt64:
		return tI64, true
	case dtString:
		return tStr, true
	case dtBool:
		return tBool, true
	}
	return 0, false
}

// value is one named tensor of the graph. A per-row value has shape
// [N, shape...]: per row, width (the product of shape) values of type dt,
// held in scratch buffer buf of that type. Constants (initializers, and
// what the compiler folds from them) have buf -1, their full shape in kdims
// and their data in konst (string ids for strings).
type value struct {
	name    string
	dt      dtype
	width   int
	shape   []int // per-row dimensions after N
	buf     int
	classes []string // class labels, for labels and class scores
	konst   []float64
	kdims   []int64
	symN    bool // a Shape output: konst[0] stands for the row count
	seqMap  bool // a ZipMap output: seq(map(label, float))
}

func (v *value) isConst() bool { return v.buf < 0 }

// step is one compiled operator, run over n rows.
type step interface {
	run(sc *scratch, n int)
}

// scratch holds one Score call's buffers; Models pool them.
type scratch struct {
	f32   [][]float32
	f64   [][]float64
	i64   [][]int64
	bools [][]bool
	row   []float64
	row2  []float64
	tmp   [][]float64 // per-operand rows of the general operators
	args  []float64
	strs  []string // the call's string inputs
	err   error    // set by a step that meets an input it cannot score
	one   bool     // the Score call has one row (MLAS's M = 1 kernels)
}

// Model is a loaded ONNX-ML graph, compiled for row-wise evaluation. It is
// immutable after Load and safe for concurrent use.
type Model struct {
	desc     Description
	inputs   []*value // numeric graph inputs, fed from rows
	sinputs  []*value // string graph inputs, fed from strs
	width    int
	names    []string
	snames   []string
	strs     []string         // every string the graph knows, by id
	strIDs   map[string]int64 // and back
	classIdx []int64          // string id -> index in classes, or -1
	nTmp     int
	steps    []step
	label    *value
	probs    *value
	scalar   *value
	classes  []string
	bufSizes [4][]int // per dtype: width of each buffer
	nbools   []int
	maxW     int // widest value in the graph
	pool     sync.Pool
}

var (
	_ score.Scorer       = (*Model)(nil)
	_ score.StringScorer = (*Model)(nil)
)

// Load reads and compiles the .onnx file at path.
func Load(path string) (*Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load onnx model: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("load onnx model %s: %w", path, err)
	}
	if st.Size() > maxFileSize {
		return nil, fmt.Errorf("load onnx model %s: %d bytes is over the %d byte limit: %w", path, st.Size(), maxFileSize, ErrUnsupported)
	}
	data := make([]byte, st.Size())
	if _, err := ioReadFull(f, data); err != nil {
		return nil, fmt.Errorf("load onnx model %s: %w", path, err)
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("load onnx model %s: %w", path, err)
	}
	return m, nil
}

// Parse decodes and compiles a serialized ModelProto. It never panics on
// hostile input and allocates memory proportional to len(data).
func Parse(data []byte) (m *Model, err error) {
	defer func() {
		// Compilation indexes attribute arrays whose lengths it has checked;
		// a missed check must surface as an error, not take the process down.
		if r := recover(); r != nil {
			m, err = nil, fmt.Errorf("%w: %v", ErrMalformed, r)
		}
	}()
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%w: %d bytes is over the %d byte limit", ErrUnsupported, len(data), maxFileSize)
	}
	mp, err := parseModel(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if mp.graph == nil {
		return nil, fmt.Errorf("%w: no graph", ErrMalformed)
	}
	return compile(mp)
}

type compiler struct {
	m      *Model
	values map[string]*value
	opsets map[string]int64
	ops    map[string]int
	// addAfter maps a MatMul's output to the Add that alone consumes it,
	// which onnxruntime may fuse into a Gemm (see matmul); fused holds the
	// Adds whose bias a MatMul step has taken.
	addAfter map[string]*nodeProto
	fused    map[*nodeProto]bool
	// users maps each value to the nodes that read it (graph outputs
	// count as a nil node); scanT holds the distances a Scan computed,
	// rows first, for the Transpose that must follow it (see scan).
	users map[string][]*nodeProto
	scanT map[string]*value
}

func compile(mp *modelProto) (*Model, error) {
	m := &Model{}
	c := &compiler{m: m, values: map[string]*value{}, opsets: map[string]int64{}, ops: map[string]int{}}
	m.desc.IRVersion = mp.irVersion
	m.desc.Producer = mp.producer
	for _, o := range mp.opsets {
		d := o.domain
		if d == "" {
			d = "ai.onnx"
		}
		c.opsets[d] = o.version
	}
	m.desc.Opsets = c.opsets
	g := mp.graph
	inits := map[string]bool{}
	m.strIDs = map[string]int64{}
	for _, t := range g.initializers {
		v, err := c.constTensor(t.name, t)
		if err != nil {
			return nil, fmt.Errorf("%w: initializer %q: %v", ErrUnsupported, t.name, err)
		}
		c.values[t.name] = v
		inits[t.name] = true
	}
	for _, in := range g.inputs {
		if inits[in.name] {
			continue
		}
		v, info, err := c.graphInput(in)
		if err != nil {
			return nil, err
		}
		if v.dt == tStr {
			m.sinputs = append(m.sinputs, v)
			if v.width == 1 {
				m.snames = append(m.snames, v.name)
			} else {
				for j := range v.width {
					m.snames = append(m.snames, fmt.Sprintf("%s[%d]", v.name, j))
				}
			}
		} else {
			m.inputs = append(m.inputs, v)
			m.width += v.width
		}
		m.desc.Inputs = append(m.desc.Inputs, info)
	}
	if len(m.inputs)+len(m.sinputs) == 0 {
		return nil, fmt.Errorf("%w: graph has no inputs", ErrMalformed)
	}
	if m.width > maxWidth {
		return nil, fmt.Errorf("%w: %d values per row is over the %d limit", ErrUnsupported, m.width, maxWidth)
	}
	named := true
	for _, v := range m.inputs {
		named = named && v.width == 1
	}
	if named {
		for _, v := range m.inputs {
			m.names = append(m.names, v.name)
		}
	}
	c.findMatMulAdds(g)
	for i, n := range g.nodes {
		if err := c.node(n); err != nil {
			name := n.name
			if name == "" {
				name = fmt.Sprintf("#%d", i)
			}
			return nil, fmt.Errorf("node %s (%s): %w", name, opName(n), err)
		}
	}
	for _, o := range g.outputs {
		v := c.values[o.name]
		if v == nil {
			return nil, fmt.Errorf("%w: output %q is not computed by the graph", ErrMalformed, o.name)
		}
		if v.isConst() {
			return nil, fmt.Errorf("%w: output %q is a constant, not one value per row", ErrUnsupported, o.name)
		}
		m.desc.Outputs = append(m.desc.Outputs, describeValue(v, o))
		switch {
		case (v.dt == tI64 || v.dt == tStr) && v.width == 1 && m.label == nil:
			m.label = v
		case (v.dt == tF32 || v.dt == tF64) && m.probs == nil && m.scalar == nil:
			m.probs = v
		}
	}
	if m.probs != nil && m.probs.width == 1 {
		// One float per row is a value: a regressor's, or beside a label a
		// decision function or an anomaly score, not class scores.
		m.scalar, m.probs = m.probs, nil
	}
	if m.label == nil && m.probs == nil && m.scalar == nil {
		return nil, fmt.Errorf("%w: no output gives a label, class scores or a value", ErrUnsupported)
	}
	switch {
	case m.probs != nil && m.probs.classes != nil:
		m.classes = m.probs.classes
	case m.label != nil && m.label.classes != nil:
		m.classes = m.label.classes
	}
	m.desc.Classes = m.classes
	m.desc.NumInputs = m.width
	m.desc.StringInputs = m.snames
	m.classIdx = make([]int64, len(m.strs))
	for i := range m.classIdx {
		m.classIdx[i] = -1
	}
	for k, s := range m.classes {
		if id, ok := m.strIDs[s]; ok && m.classIdx[id] < 0 {
			m.classIdx[id] = int64(k)
		}
	}
	for op, n := range c.ops {
		m.desc.Operators = append(m.desc.Operators, OperatorUse{Op: op, Count: n, Supported: true})
	}
	sort.Slice(m.desc.Operators, func(i, j int) bool { return m.desc.Operators[i].Op < m.desc.Operators[j].Op })
	if m.direct() {
		// Score hands the caller's rows to the steps as this buffer.
		m.bufSizes[tF32-1][m.inputs[0].buf] = 0
	}
	m.pool.New = func() any { return &scratch{} }
	return m, nil
}

// findMatMulAdds fills c.addAfter: a MatMul whose output feeds only an
// Add, and is no graph output, is what onnxruntime's MatMulAddFusion turns
// into a Gemm.
func (c *compiler) findMatMulAdds(g *graphProto) {
	uses := map[string]int{}
	for _, n := range g.nodes {
		for _, in := range n.inputs {
			uses[in]++
		}
	}
	for _, o := range g.outputs {
		uses[o.name] += 2
	}
	c.addAfter, c.fused = map[string]*nodeProto{}, map[*nodeProto]bool{}
	c.users, c.scanT = map[string][]*nodeProto{}, map[string]*value{}
	for _, n := range g.nodes {
		for _, in := range n.inputs {
			c.users[in] = append(c.users[in], n)
		}
	}
	for _, o := range g.outputs {
		c.users[o.name] = append(c.users[o.name], nil)
	}
	for _, n := range g.nodes {
		if opName(n) == "ai.onnx:Add" && len(n.inputs) == 2 && len(n.outputs) == 1 {
			for _, in := range n.inputs {
				if uses[in] == 1 {
					c.addAfter[in] = n
				}
			}
		}
	}
}

func opName(n *nodeProto) string {
	d := n.domain
	if d == "" {
		d = "ai.onnx"
	}
	return d + ":" + n.opType
}

func (c *compiler) graphInput(in *valueInfoProto) (*value, TensorInfo, error) {
	t := in.typ
	if t == nil || t.kind != "tensor" {
		return nil, TensorInfo{}, fmt.Errorf("%w: input %q is not a tensor", ErrUnsupported, in.name)
	}
	dt, ok := dtypeOf(t.elem)
	if !ok || dt == tBool {
		return nil, TensorInfo{}, fmt.Errorf("%w: input %q has element type %d; float, double, int64 and string are supported", ErrUnsupported, in.name, t.elem)
	}
	if !t.hasDims || len(t.dims) == 0 {
		return nil, TensorInfo{}, fmt.Errorf("%w: input %q has shape %s; it must be [N, ...] with one row per example", ErrUnsupported, in.name, shapeString(t))
	}
	width := 1
	var shape []int
	for i, d := range t.dims {
		if i == 0 {
			continue
		}
		if d <= 0 {
			return nil, TensorInfo{}, fmt.Errorf("%w: input %q has shape %s; every dimension but the first must be known", ErrUnsupported, in.name, shapeString(t))
		}
		if int64(width)*d > maxWidth {
			return nil, TensorInfo{}, fmt.Errorf("%w: input %q is wider than %d", ErrUnsupported, in.name, maxWidth)
		}
		width *= int(d)
		shape = append(shape, int(d))
	}
	v := c.newShaped(in.name, dt, shape)
	return v, TensorInfo{Name: in.name, Type: "tensor(" + dt.String() + ")", Shape: shapeString(t)}, nil
}

func shapeString(t *typeProto) string {
	if t == nil || !t.hasDims {
		return "?"
	}
	parts := make([]string, len(t.dims))
	for i, d := range t.dims {
		switch {
		case t.params[i] != "":
			parts[i] = t.params[i]
		case d < 0:
			parts[i] = "?"
		default:
			parts[i] = fmt.Sprint(d)
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func describeValue(v *value, o *valueInfoProto) TensorInfo {
	info := TensorInfo{Name: v.name, Type: "tensor(" + v.dt.String() + ")", Shape: fmt.Sprintf("[N, %d]", v.width)}
	if o.typ != nil && o.typ.kind == "tensor" {
		info.Shape = shapeString(o.typ)
	}
	if v.seqMap {
		info.Type = "seq(map(label, float))"
		info.Shape = "[N]"
	}
	return info
}

// newValue adds a per-row value of shape [N, width].
func (c *compiler) newValue(name string, dt dtype, width int) *value {
	return c.newShaped(name, dt, []int{width})
}

// newShaped adds a per-row value of shape [N, shape...].
func (c *compiler) newShaped(name string, dt dtype, shape []int) *value {
	k := dt
	if k == tStr || k == tBool {
		k = tI64
	}
	width := 1
	for _, d := range shape {
		width *= d
	}
	c.m.maxW = max(c.m.maxW, width)
	sizes := &c.m.bufSizes[k-1]
	*sizes = append(*sizes, width)
	v := &value{name: name, dt: dt, width: width, shape: shape, buf: len(*sizes) - 1}
	c.values[name] = v
	return v
}

// intern returns the id of string s, adding it to the model's table.
func (c *compiler) intern(s string) int64 {
	if id, ok := c.m.strIDs[s]; ok {
		return id
	}
	id := int64(len(c.m.strs))
	c.m.strs = append(c.m.strs, s)
	c.m.strIDs[s] = id
	return id
}

// constTensor converts a TensorProto (an initializer or a Constant) to a
// constant value; strings are interned.
func (c *compiler) constTensor(name string, t *tensorProto) (*value, error) {
	v := &value{name: name, buf: -1, kdims: t.dims}
	if t.dataType == dtString {
		if t.external {
			return nil, fmt.Errorf("external tensor data is not supported")
		}
		n, err := numElems(t.dims, int64(len(t.stringData))+1)
		if err != nil {
			return nil, err
		}
		if n != int64(len(t.stringData)) {
			return nil, fmt.Errorf("tensor holds %d strings, shape %v needs %d", len(t.stringData), t.dims, n)
		}
		v.dt = tStr
		for _, b := range t.stringData {
			v.konst = append(v.konst, float64(c.intern(string(b))))
		}
	} else {
		data, err := t.floats64()
		if err != nil {
			return nil, err
		}
		v.konst = data
		switch t.dataType {
		case dtDouble:
			v.dt = tF64
		case dtInt64, dtInt32, dtInt8, dtUint8:
			v.dt = tI64
		case dtBool:
			v.dt = tBool
		default:
			v.dt = tF32
		}
	}
	v.width = len(v.konst)
	return v, nil
}

func (c *compiler) newBools(width int) int {
	c.m.nbools = append(c.m.nbools, width)
	return len(c.m.nbools) - 1
}

// alias makes name another view of v's buffer.
func (c *compiler) alias(name string, v *value) *value {
	a := *v
	a.name = name
	c.values[name] = &a
	return &a
}

func (c *compiler) input(n *nodeProto, i int) (*value, error) {
	if i >= len(n.inputs) || n.inputs[i] == "" {
		return nil, fmt.Errorf("%w: input %d is missing", ErrMalformed, i)
	}
	v := c.values[n.inputs[i]]
	if v == nil {
		return nil, fmt.Errorf("%w: input %q is not defined before use", ErrMalformed, n.inputs[i])
	}
	return v, nil
}

func (c *compiler) output(n *nodeProto, i int) string {
	if i < len(n.outputs) {
		return n.outputs[i]
	}
	return ""
}

func ioReadFull(f *os.File, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := f.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// NumInputs is the number of numeric values per row.
func (m *Model) NumInputs() int { return m.width }

// Inputs names the columns when the model has one numeric input per
// feature, nil otherwise. The caller must not modify the slice.
func (m *Model) Inputs() []string { return m.names }

// StringInputs names the string values of a row, nil when the model has
// none: each string input's name, or name[0], name[1], ... for an input of
// several values per row ([N, k]). Such a model scores with ScoreStrings.
// The caller must not modify the slice.
func (m *Model) StringInputs() []string { return m.snames }

// direct reports whether Score can hand the caller's rows to the steps.
func (m *Model) direct() bool {
	return len(m.inputs) == 1 && m.inputs[0].dt == tF32
}

// Classes lists the class labels in Probabilities order, nil when the model
// has none (regressors, or classifiers whose labels are bare indices). The
// caller must not modify the slice.
func (m *Model) Classes() []string { return m.classes }

// Score evaluates n rows (row-major, NumInputs() values each, NaN missing)
// and writes out[0:n]. For each prediction it reuses the backing array of
// out[i].Probabilities when it has room, so a caller that keeps its out
// slice between calls scores without allocating; the returned slices belong
// to the caller and are not retained by the Model. Score checks ctx before
// each block of rows and returns an error wrapping score.ErrUnavailable
// when it is done, and score.ErrBadInput when rows or out do not fit.
func (m *Model) Score(ctx context.Context, rows []float32, n int, out []Prediction) error {
	if len(m.sinputs) > 0 {
		return fmt.Errorf("score: the model takes string inputs %v; use ScoreStrings: %w", m.snames, score.ErrBadInput)
	}
	return m.ScoreStrings(ctx, rows, nil, n, out)
}

// ScoreStrings is Score for models with string inputs: strs holds
// n*len(StringInputs()) values, row-major in StringInputs order. A string
// the model does not know (no category, key or label in the graph equals
// it) scores as any unknown category does in onnxruntime.
func (m *Model) ScoreStrings(ctx context.Context, rows []float32, strs []string, n int, out []Prediction) error {
	ns := len(m.snames)
	if n < 0 || len(rows) < n*m.width || len(out) < n || len(strs) < n*ns {
		return fmt.Errorf("score %d rows of %d values and %d strings (%d values, %d strings given, %d outputs): %w",
			n, m.width, ns, len(rows), len(strs), len(out), score.ErrBadInput)
	}
	sc := m.pool.Get().(*scratch)
	defer m.pool.Put(sc)
	sc.one = n == 1
	for off := 0; off < n; off += chunkRows {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("score rows %d..%d: %v: %w", off, n, err, score.ErrUnavailable)
		}
		k := min(chunkRows, n-off)
		sc.strs, sc.err = strs[off*ns:(off+k)*ns], nil
		m.run(sc, rows[off*m.width:(off+k)*m.width], k)
		err := sc.err
		if err == nil {
			m.emit(sc, k, out[off:off+k]) // an output may be the caller's rows
		}
		sc.strs, sc.err = nil, nil
		if m.direct() {
			sc.f32[m.inputs[0].buf] = nil // do not keep the caller's rows
		}
		if err != nil {
			return fmt.Errorf("score rows %d..%d: %v: %w", off, off+k, err, score.ErrBadInput)
		}
	}
	return nil
}

// Prediction is score.Prediction, named here for brevity.
type Prediction = score.Prediction

func (m *Model) run(sc *scratch, rows []float32, n int) {
	sc.ensure(m, n)
	if m.direct() {
		sc.f32[m.inputs[0].buf] = rows[:n*m.width]
	} else {
		col := 0
		for _, in := range m.inputs {
			w := in.width
			for r := range n {
				src := rows[r*m.width+col : r*m.width+col+w]
				switch in.dt {
				case tF32:
					copy(sc.f32[in.buf][r*w:], src)
				case tF64:
					dst := sc.f64[in.buf][r*w : r*w+w]
					for j, x := range src {
						dst[j] = float64(x)
					}
				default:
					dst := sc.i64[in.buf][r*w : r*w+w]
					for j, x := range src {
						f := float64(x)
						if (f != f || f >= 9.223372036854775807e18 || f < -9.223372036854775808e18) && sc.err == nil {
							// No int64 holds it: a missing feature (NaN)
							// cannot reach an int64 input as a number.
							sc.err = fmt.Errorf("input %q: value %v (row %d) is not an int64; a missing value cannot feed an int64 input", in.name, x, r)
						}
						dst[j] = toInt64(f)
					}
				}
			}
			col += w
		}
	}
	ns, col := len(m.snames), 0
	for _, in := range m.sinputs {
		w := in.width
		dst := sc.i64[in.buf][:n*w]
		for r := range n {
			for j, s := range sc.strs[r*ns+col : r*ns+col+w] {
				id, ok := m.strIDs[s]
				if !ok {
					id = -1
				}
				dst[r*w+j] = id
			}
		}
		col += w
	}
	for _, s := range m.steps {
		s.run(sc, n)
	}
}

func (sc *scratch) ensure(m *Model, n int) {
	grow32 := func(bs [][]float32, sizes []int) [][]float32 {
		for len(bs) < len(sizes) {
			bs = append(bs, nil)
		}
		for i, w := range sizes {
			if cap(bs[i]) < n*w || len(bs[i]) < n*w {
				if cap(bs[i]) >= n*w {
					bs[i] = bs[i][:n*w]
				} else {
					bs[i] = make([]float32, n*w, max(n, 16)*w)
				}
			}
		}
		return bs
	}
	sc.f32 = grow32(sc.f32, m.bufSizes[tF32-1])
	for len(sc.f64) < len(m.bufSizes[tF64-1]) {
		sc.f64 = append(sc.f64, nil)
	}
	for i, w := range m.bufSizes[tF64-1] {
		if len(sc.f64[i]) < n*w {
			sc.f64[i] = make([]float64, max(n, 16)*w)
		}
	}
	for len(sc.i64) < len(m.bufSizes[tI64-1]) {
		sc.i64 = append(sc.i64, nil)
	}
	for i, w := range m.bufSizes[tI64-1] {
		if len(sc.i64[i]) < n*w {
			sc.i64[i] = make([]int64, max(n, 16)*w)
		}
	}
	for len(sc.bools) < len(m.nbools) {
		sc.bools = append(sc.bools, nil)
	}
	for i, w := range m.nbools {
		if len(sc.bools[i]) < n*w {
			sc.bools[i] = make([]bool, max(n, 16)*w)
		}
	}
	need := 2 * max(m.maxW, 2)
	if len(sc.row) < need {
		sc.row = make([]float64, need)
		sc.row2 = make([]float64, need)
	}
	if len(sc.tmp) < m.nTmp {
		sc.tmp = make([][]float64, m.nTmp)
		sc.args = make([]float64, m.nTmp)
	}
	need = max(need, flatBlock)
	for i := range sc.tmp {
		if len(sc.tmp[i]) < need {
			sc.tmp[i] = make([]float64, need)
		}
	}
}

func (m *Model) emit(sc *scratch, n int, out []Prediction) {
	for i := range n {
		p := &out[i]
		p.HasLabel, p.Label, p.LabelString, p.HasValue, p.Value = false, 0, "", false, 0
		if m.label != nil {
			l := sc.i64[m.label.buf][i]
			p.HasLabel, p.Label = true, l
			if m.label.dt == tStr {
				p.Label = -1
				if l >= 0 && l < int64(len(m.strs)) {
					p.LabelString, p.Label = m.strs[l], m.classIdx[l]
				}
			}
		}
		if m.probs != nil {
			w := m.probs.width
			p.Probabilities = p.Probabilities[:0]
			if m.probs.dt == tF32 {
				p.Probabilities = append(p.Probabilities, sc.f32[m.probs.buf][i*w:i*w+w]...)
			} else {
				for _, x := range sc.f64[m.probs.buf][i*w : i*w+w] {
					p.Probabilities = append(p.Probabilities, float32(x))
				}
			}
		} else {
			p.Probabilities = p.Probabilities[:0]
		}
		if v := m.scalar; v != nil {
			p.HasValue = true
			if v.dt == tF32 {
				p.Value = float64(sc.f32[v.buf][i])
			} else {
				p.Value = sc.f64[v.buf][i]
			}
		}
	}
}

// loadRow reads row r of v as float64 into dst (len v.width).
func loadRow(sc *scratch, v *value, r int, dst []float64) {
	loadFlat(sc, v, r*v.width, dst[:v.width])
}

// loadFlat reads len(dst) values of v from element off (row-major over
// rows) as float64.
func loadFlat(sc *scratch, v *value, off int, dst []float64) {
	switch v.dt {
	case tF32:
		for j, x := range sc.f32[v.buf][off : off+len(dst)] {
			dst[j] = float64(x)
		}
	case tF64:
		copy(dst, sc.f64[v.buf][off:off+len(dst)])
	default:
		for j, x := range sc.i64[v.buf][off : off+len(dst)] {
			dst[j] = float64(x)
		}
	}
}

// storeRow writes src (len v.width) to row r of v, rounding to v's type.
func storeRow(sc *scratch, v *value, r int, src []float64) {
	storeFlat(sc, v, r*v.width, src[:v.width])
}

// storeFlat writes src to v from element off, rounding to v's type.
func storeFlat(sc *scratch, v *value, off int, src []float64) {
	switch v.dt {
	case tF32:
		d := sc.f32[v.buf][off : off+len(src)]
		for j, x := range src {
			d[j] = float32(x)
		}
	case tF64:
		copy(sc.f64[v.buf][off:off+len(src)], src)
	case tBool:
		d := sc.i64[v.buf][off : off+len(src)]
		for j, x := range src {
			d[j] = 0
			if x != 0 {
				d[j] = 1
			}
		}
	default:
		d := sc.i64[v.buf][off : off+len(src)]
		for j, x := range src {
			d[j] = toInt64(x)
		}
	}
}

// toInt64 converts as a C cast does on x86 for in-range values, and maps
// NaN and out-of-range values to math.MinInt64 as cvttsd2si does.
func toInt64(x float64) int64 {
	if x != x || x >= 9.223372036854775807e18 || x < -9.223372036854775808e18 {
		return math.MinInt64
	}
	return int64(x)
}
