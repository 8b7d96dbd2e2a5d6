package features

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Compile-time bounds of an expression. They keep evaluation on a fixed-size
// stack, so Eval never allocates and never grows.
const (
	MaxExprLen   = 4096 // bytes of source
	MaxExprOps   = 512  // instructions of the compiled program
	MaxExprDepth = 32   // values on the evaluation stack, and nesting of the source
	maxSlots     = 1 << 16
)

// Expr is a compiled request-time expression: a flat postfix program over a
// bounded value stack. It is immutable and safe for concurrent use.
type Expr struct {
	prog  []instr
	slots int    // 1 + the largest slot read
	src   string // canonical source (String)
}

type instr struct {
	op  opcode
	arg int32   // slot, or jump target
	k   float64 // constant
}

type opcode uint8

const (
	opConst opcode = iota + 1
	opSlot
	opNeg
	opNot
	opAdd
	opSub
	opMul
	opDiv
	opLt
	opLe
	opGt
	opGe
	opEq
	opNe
	opAnd // AST only; compiles to opJzKeep ... opTruth
	opOr  // AST only; compiles to opJnzKeep ... opTruth
	opIf  // AST only; compiles to opJz ... opJmp ...
	opJz
	opJmp
	opJzKeep
	opJnzKeep
	opTruth
	opSqrt
	opAbs
	opLog
	opExp
	opFloor
	opCeil
	opRadians
	opSin
	opCos
	opTan
	opAsin
	opAcos
	opAtan
	opPow
	opMin
	opMax
	opAtan2
	opHaversine
)

// funcs are the callable functions: name -> opcode and arity (-1: two or more).
var funcs = []struct {
	name  string
	op    opcode
	arity int
}{
	{"haversine_km", opHaversine, 4},
	{"sqrt", opSqrt, 1}, {"abs", opAbs, 1}, {"log", opLog, 1}, {"exp", opExp, 1},
	{"pow", opPow, 2}, {"min", opMin, -1}, {"max", opMax, -1},
	{"floor", opFloor, 1}, {"ceil", opCeil, 1}, {"radians", opRadians, 1},
	{"sin", opSin, 1}, {"cos", opCos, 1}, {"tan", opTan, 1},
	{"asin", opAsin, 1}, {"acos", opAcos, 1}, {"atan", opAtan, 1}, {"atan2", opAtan2, 2},
	{"if", opIf, 3},
}

func funcNames() string {
	names := make([]string, len(funcs))
	for i, f := range funcs {
		names[i] = f.name
	}
	return strings.Join(names, ", ")
}

// ExprError is a compile error at byte column Col (1-based) of the source.
type ExprError struct {
	Col int
	Msg string
	Err error // the resolver's error, if it caused this one
}

func (e *ExprError) Error() string { return fmt.Sprintf("column %d: %s", e.Col, e.Msg) }
func (e *ExprError) Unwrap() error { return e.Err }

// CompileExpr compiles src. resolve maps each distinct identifier
// ("request.amt", "user_profile.home_lat") to the slot Eval reads it from;
// it is called once per distinct identifier, in order of first appearance.
// Its error is reported with the identifier's column.
//
// The grammar, loosest binding first:
//
//	expr    = and { "||" and }
//	and     = cmp { "&&" cmp }
//	cmp     = sum [ ("<" | "<=" | ">" | ">=" | "==" | "!=") sum ]   (no chaining)
//	sum     = product { ("+" | "-") product }
//	product = unary { ("*" | "/") unary }
//	unary   = ("-" | "!") unary | primary
//	primary = number | ident | name "(" expr { "," expr } ")" | "(" expr ")"
//
// Numbers are decimal (1, 0.5, .5, 1e-3); identifiers are dotted names.
func CompileExpr(src string, resolve func(ident string) (slot int, err error)) (*Expr, error) {
	if len(src) > MaxExprLen {
		return nil, &ExprError{Col: MaxExprLen + 1, Msg: fmt.Sprintf("expression longer than %d bytes: split it into several request features", MaxExprLen)}
	}
	p := parser{src: src, resolve: resolve, slotOf: map[string]int{}}
	p.next()
	root := p.parseOr(0)
	if p.err == nil && p.tok.kind != tEOF {
		p.fail(p.tok.pos, "expected an operator or the end of the expression, found %s", p.tok.describe())
	}
	if p.err != nil {
		return nil, p.err
	}
	if d := need(root); d > MaxExprDepth {
		return nil, &ExprError{Col: 1, Msg: fmt.Sprintf("expression needs %d stack slots, more than %d: simplify it", d, MaxExprDepth)}
	}
	e := &Expr{}
	e.compile(root)
	if len(e.prog) > MaxExprOps {
		return nil, &ExprError{Col: 1, Msg: fmt.Sprintf("expression compiles to %d operations, more than %d: split it into several request features", len(e.prog), MaxExprOps)}
	}
	for _, s := range p.slotOf {
		e.slots = max(e.slots, s+1)
	}
	var b strings.Builder
	format(&b, root, 0)
	e.src = b.String()
	if len(e.src) > MaxExprLen { // so that String compiles again
		return nil, &ExprError{Col: 1, Msg: fmt.Sprintf("expression longer than %d bytes in canonical form (%d, with a space around each binary operator): split it into several request features", MaxExprLen, len(e.src))}
	}
	return e, nil
}

// String returns the expression in canonical form: minimal parentheses,
// single spaces around binary operators. CompileExpr of it gives the same
// program.
func (e *Expr) String() string { return e.src }

// Slots returns how many slots Eval reads at most: 1 + the largest slot.
func (e *Expr) Slots() int { return e.slots }

// Eval evaluates the expression with slot i holding slots[i]; present[i]
// false means slot i has no value (present nil: all present). ok is false if
// the evaluation reads a slot that is not present (or out of range), or if
// the result is NaN or infinite. if(), && and || evaluate lazily, so a slot
// in a branch not taken is not read. Zero is false, anything else true;
// comparisons and logic give 1 or 0. Eval allocates nothing.
func (e *Expr) Eval(slots []float64, present []bool) (v float64, ok bool) {
	if e == nil {
		return 0, false
	}
	var st [MaxExprDepth]float64
	sp := 0
	prog := e.prog
	for pc := 0; pc < len(prog); pc++ {
		in := &prog[pc]
		switch in.op {
		case opConst:
			st[sp] = in.k
			sp++
		case opSlot:
			s := int(in.arg)
			if s >= len(slots) || present != nil && (s >= len(present) || !present[s]) {
				return 0, false
			}
			st[sp] = slots[s]
			sp++
		case opNeg:
			st[sp-1] = -st[sp-1]
		case opNot:
			st[sp-1] = b2f(st[sp-1] == 0)
		case opTruth:
			st[sp-1] = b2f(st[sp-1] != 0)
		case opJz:
			sp--
			if st[sp] == 0 {
				pc = int(in.arg) - 1
			}
		case opJmp:
			pc = int(in.arg) - 1
		case opJzKeep:
			if st[sp-1] == 0 {
				pc = int(in.arg) - 1
			} else {
				sp--
			}
		case opJnzKeep:
			if st[sp-1] != 0 {
				st[sp-1] = 1
				pc = int(in.arg) - 1
			} else {
				sp--
			}
		case opSqrt:
			st[sp-1] = math.Sqrt(st[sp-1])
		case opAbs:
			st[sp-1] = math.Abs(st[sp-1])
		case opLog:
			st[sp-1] = math.Log(st[sp-1])
		case opExp:
			st[sp-1] = math.Exp(st[sp-1])
		case opFloor:
			st[sp-1] = math.Floor(st[sp-1])
		case opCeil:
			st[sp-1] = math.Ceil(st[sp-1])
		case opRadians:
			st[sp-1] *= math.Pi / 180
		case opSin:
			st[sp-1] = math.Sin(st[sp-1])
		case opCos:
			st[sp-1] = math.Cos(st[sp-1])
		case opTan:
			st[sp-1] = math.Tan(st[sp-1])
		case opAsin:
			st[sp-1] = math.Asin(st[sp-1])
		case opAcos:
			st[sp-1] = math.Acos(st[sp-1])
		case opAtan:
			st[sp-1] = math.Atan(st[sp-1])
		case opHaversine:
			sp -= 3
			st[sp-1] = haversineKm(st[sp-1], st[sp], st[sp+1], st[sp+2])
		default: // binary
			sp--
			a, b := st[sp-1], st[sp]
			var r float64
			switch in.op {
			case opAdd:
				r = a + b
			case opSub:
				r = a - b
			case opMul:
				r = a * b
			case opDiv:
				r = a / b
			case opLt:
				r = b2f(a < b)
			case opLe:
				r = b2f(a <= b)
			case opGt:
				r = b2f(a > b)
			case opGe:
				r = b2f(a >= b)
			case opEq:
				r = b2f(a == b)
			case opNe:
				r = b2f(a != b)
			case opPow:
				r = math.Pow(a, b)
			case opMin:
				r = min(a, b)
			case opMax:
				r = max(a, b)
			case opAtan2:
				r = math.Atan2(a, b)
			}
			st[sp-1] = r
		}
	}
	v = st[0]
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// EarthRadiusKm is the mean earth radius haversine_km uses.
const EarthRadiusKm = 6371.0088

// haversineKm is the great-circle distance between two points given in
// degrees.
func haversineKm(lat1, lon1, lat2, lon2 float64) float64 {
	const rad = math.Pi / 180
	p1, p2 := lat1*rad, lat2*rad
	sdp := math.Sin((p2 - p1) / 2)
	sdl := math.Sin((lon2 - lon1) * rad / 2)
	a := sdp*sdp + math.Cos(p1)*math.Cos(p2)*sdl*sdl
	return 2 * EarthRadiusKm * math.Asin(math.Sqrt(min(1, a)))
}

// node is the syntax tree CompileExpr builds, then flattens.
type node struct {
	op   opcode
	k    float64
	slot int
	name string // identifier or function name
	kids []*node
}

func need(n *node) int {
	switch n.op {
	case opConst, opSlot:
		return 1
	case opIf:
		return max(need(n.kids[0]), need(n.kids[1]), need(n.kids[2]))
	case opMin, opMax: // folded pairwise: each further argument sits on one value
		d := need(n.kids[0])
		for _, k := range n.kids[1:] {
			d = max(d, 1+need(k))
		}
		return d
	}
	d := 0
	for i, k := range n.kids {
		d = max(d, i+need(k))
	}
	return d
}

func (e *Expr) emit(op opcode, arg int, k float64) int {
	e.prog = append(e.prog, instr{op: op, arg: int32(arg), k: k})
	return len(e.prog) - 1
}

func (e *Expr) compile(n *node) {
	switch n.op {
	case opConst:
		e.emit(opConst, 0, n.k)
	case opSlot:
		e.emit(opSlot, n.slot, 0)
	case opAnd, opOr:
		e.compile(n.kids[0])
		jump := opJnzKeep
		if n.op == opAnd {
			jump = opJzKeep
		}
		j := e.emit(jump, 0, 0)
		e.compile(n.kids[1])
		e.emit(opTruth, 0, 0)
		e.prog[j].arg = int32(len(e.prog))
	case opIf:
		e.compile(n.kids[0])
		jz := e.emit(opJz, 0, 0)
		e.compile(n.kids[1])
		jmp := e.emit(opJmp, 0, 0)
		e.prog[jz].arg = int32(len(e.prog))
		e.compile(n.kids[2])
		e.prog[jmp].arg = int32(len(e.prog))
	case opMin, opMax:
		e.compile(n.kids[0])
		for _, k := range n.kids[1:] {
			e.compile(k)
			e.emit(n.op, 0, 0)
		}
	default:
		for _, k := range n.kids {
			e.compile(k)
		}
		e.emit(n.op, 0, 0)
	}
}

// Precedence levels, loosest first.
const (
	precOr = iota + 1
	precAnd
	precCmp
	precSum
	precProduct
	precUnary
	precPrimary
)

var binOps = map[opcode]struct {
	text string
	prec int
}{
	opOr: {"||", precOr}, opAnd: {"&&", precAnd},
	opLt: {"<", precCmp}, opLe: {"<=", precCmp}, opGt: {">", precCmp}, opGe: {">=", precCmp}, opEq: {"==", precCmp}, opNe: {"!=", precCmp},
	opAdd: {"+", precSum}, opSub: {"-", precSum}, opMul: {"*", precProduct}, opDiv: {"/", precProduct},
}

func prec(n *node) int {
	if b, ok := binOps[n.op]; ok && n.name == "" {
		return b.prec
	}
	if n.op == opNeg || n.op == opNot {
		return precUnary
	}
	return precPrimary
}

// format writes n so that it parses back to the same tree: a child is
// parenthesized when it binds looser than its place needs.
func format(b *strings.Builder, n *node, min int) {
	p := prec(n)
	if p < min {
		b.WriteByte('(')
		defer b.WriteByte(')')
	}
	switch {
	case n.op == opConst:
		b.WriteString(strconv.FormatFloat(n.k, 'g', -1, 64))
	case n.op == opSlot:
		b.WriteString(n.name)
	case n.name != "": // call
		b.WriteString(n.name)
		b.WriteByte('(')
		for i, k := range n.kids {
			if i > 0 {
				b.WriteString(", ")
			}
			format(b, k, 0)
		}
		b.WriteByte(')')
	case n.op == opNeg || n.op == opNot:
		if n.op == opNeg {
			b.WriteByte('-')
		} else {
			b.WriteByte('!')
		}
		format(b, n.kids[0], precUnary)
	default:
		left := p
		if p == precCmp {
			left = p + 1 // comparisons do not chain
		}
		format(b, n.kids[0], left)
		b.WriteByte(' ')
		b.WriteString(binOps[n.op].text)
		b.WriteByte(' ')
		format(b, n.kids[1], p+1)
	}
}

type tokKind uint8

const (
	tEOF tokKind = iota
	tNum
	tIdent
	tOp // operators and punctuation: text in tok.text
)

type token struct {
	kind tokKind
	pos  int // 1-based column
	text string
	num  float64
}

func (t token) describe() string {
	switch t.kind {
	case tEOF:
		return "the end of the expression"
	case tNum:
		return "number " + t.text
	case tIdent:
		return "identifier " + t.text
	}
	return strconv.Quote(t.text)
}

type parser struct {
	src     string
	i       int
	tok     token
	err     *ExprError
	resolve func(string) (int, error)
	slotOf  map[string]int
	nodes   int
}

func (p *parser) fail(pos int, format string, args ...any) {
	if p.err == nil {
		p.err = &ExprError{Col: pos, Msg: fmt.Sprintf(format, args...)}
	}
	p.tok = token{kind: tEOF, pos: len(p.src) + 1}
	p.i = len(p.src)
}

func isIdentStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool      { return c >= '0' && c <= '9' }

func (p *parser) next() {
	if p.err != nil {
		return
	}
	s := p.src
	for p.i < len(s) && (s[p.i] == ' ' || s[p.i] == '\t' || s[p.i] == '\n' || s[p.i] == '\r') {
		p.i++
	}
	start := p.i
	if start == len(s) {
		p.tok = token{kind: tEOF, pos: start + 1}
		return
	}
	c := s[start]
	switch {
	case isIdentStart(c):
		j := start
		for {
			for j < len(s) && (isIdentStart(s[j]) || isDigit(s[j])) {
				j++
			}
			if j+1 < len(s) && s[j] == '.' && isIdentStart(s[j+1]) {
				j++
				continue
			}
			break
		}
		if j < len(s) && s[j] == '.' {
			p.fail(j+2, "expected a name after %q", s[start:j+1])
			return
		}
		p.tok = token{kind: tIdent, pos: start + 1, text: s[start:j]}
		p.i = j
	case isDigit(c) || c == '.' && start+1 < len(s) && isDigit(s[start+1]):
		j := start
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		if j < len(s) && s[j] == '.' {
			j++
			for j < len(s) && isDigit(s[j]) {
				j++
			}
		}
		if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
			k := j + 1
			if k < len(s) && (s[k] == '+' || s[k] == '-') {
				k++
			}
			if k < len(s) && isDigit(s[k]) {
				for k < len(s) && isDigit(s[k]) {
					k++
				}
				j = k
			}
		}
		if j < len(s) && (isIdentStart(s[j]) || s[j] == '.') {
			p.fail(j+1, "unexpected %q after number %s", s[j], s[start:j])
			return
		}
		v, err := strconv.ParseFloat(s[start:j], 64)
		if err != nil {
			p.fail(start+1, "number %s is out of range", s[start:j])
			return
		}
		p.tok = token{kind: tNum, pos: start + 1, text: s[start:j], num: v}
		p.i = j
	default:
		two := ""
		if start+1 < len(s) {
			two = s[start : start+2]
		}
		switch two {
		case "<=", ">=", "==", "!=", "&&", "||":
			p.tok = token{kind: tOp, pos: start + 1, text: two}
			p.i = start + 2
			return
		}
		switch c {
		case '+', '-', '*', '/', '(', ')', ',', '<', '>', '!':
			p.tok = token{kind: tOp, pos: start + 1, text: s[start : start+1]}
			p.i = start + 1
			return
		case '=':
			p.fail(start+1, "unexpected \"=\": compare with ==")
		case '&', '|':
			p.fail(start+1, "unexpected %q: use && or ||", c)
		default:
			p.fail(start+1, "unexpected character %q", rune(c))
		}
	}
}

func (p *parser) isOp(text string) bool { return p.tok.kind == tOp && p.tok.text == text }

func (p *parser) newNode(n node) *node {
	p.nodes++
	if p.nodes > MaxExprOps {
		p.fail(p.tok.pos, "expression too long: more than %d operations; split it into several request features", MaxExprOps)
	}
	return &n
}

func (p *parser) parseOr(depth int) *node {
	if depth > MaxExprDepth {
		p.fail(p.tok.pos, "expression nested more than %d deep: simplify it", MaxExprDepth)
		return &node{op: opConst}
	}
	n := p.parseAnd(depth)
	for p.isOp("||") {
		p.next()
		n = p.newNode(node{op: opOr, kids: []*node{n, p.parseAnd(depth)}})
	}
	return n
}

func (p *parser) parseAnd(depth int) *node {
	n := p.parseCmp(depth)
	for p.isOp("&&") {
		p.next()
		n = p.newNode(node{op: opAnd, kids: []*node{n, p.parseCmp(depth)}})
	}
	return n
}

var cmpOps = map[string]opcode{"<": opLt, "<=": opLe, ">": opGt, ">=": opGe, "==": opEq, "!=": opNe}

func (p *parser) parseCmp(depth int) *node {
	n := p.parseSum(depth)
	if op, ok := cmpOps[p.tok.text]; ok && p.tok.kind == tOp {
		p.next()
		n = p.newNode(node{op: op, kids: []*node{n, p.parseSum(depth)}})
		if _, ok := cmpOps[p.tok.text]; ok && p.tok.kind == tOp {
			p.fail(p.tok.pos, "comparisons do not chain: write a < b && b < c")
		}
	}
	return n
}

func (p *parser) parseSum(depth int) *node {
	n := p.parseProduct(depth)
	for p.isOp("+") || p.isOp("-") {
		op := opSub
		if p.tok.text == "+" {
			op = opAdd
		}
		p.next()
		n = p.newNode(node{op: op, kids: []*node{n, p.parseProduct(depth)}})
	}
	return n
}

func (p *parser) parseProduct(depth int) *node {
	n := p.parseUnary(depth)
	for p.isOp("*") || p.isOp("/") {
		op := opDiv
		if p.tok.text == "*" {
			op = opMul
		}
		p.next()
		n = p.newNode(node{op: op, kids: []*node{n, p.parseUnary(depth)}})
	}
	return n
}

func (p *parser) parseUnary(depth int) *node {
	if p.isOp("-") || p.isOp("!") {
		if depth > MaxExprDepth {
			p.fail(p.tok.pos, "expression nested more than %d deep: simplify it", MaxExprDepth)
			return &node{op: opConst}
		}
		op := opNot
		if p.tok.text == "-" {
			op = opNeg
		}
		p.next()
		return p.newNode(node{op: op, kids: []*node{p.parseUnary(depth + 1)}})
	}
	return p.parsePrimary(depth)
}

func (p *parser) parsePrimary(depth int) *node {
	t := p.tok
	switch {
	case t.kind == tNum:
		p.next()
		return p.newNode(node{op: opConst, k: t.num})
	case t.kind == tIdent:
		p.next()
		if p.isOp("(") {
			return p.parseCall(t, depth)
		}
		slot, ok := p.slotOf[t.text]
		if !ok {
			var err error
			if p.resolve == nil {
				err = errors.New("no identifiers are defined here")
			} else {
				slot, err = p.resolve(t.text)
			}
			if err == nil && (slot < 0 || slot >= maxSlots) {
				err = fmt.Errorf("slot %d out of range", slot)
			}
			if err != nil {
				if p.err == nil {
					p.err = &ExprError{Col: t.pos, Msg: err.Error(), Err: err}
				}
				p.fail(t.pos, "")
				return &node{op: opConst}
			}
			p.slotOf[t.text] = slot
		}
		return p.newNode(node{op: opSlot, slot: slot, name: t.text})
	case p.isOp("("):
		p.next()
		n := p.parseOr(depth + 1)
		p.expect(")", "to close the ( at column "+strconv.Itoa(t.pos))
		return n
	}
	p.fail(t.pos, "expected a number, an identifier, a function call or (, found %s", t.describe())
	return &node{op: opConst}
}

func (p *parser) expect(text, why string) {
	if !p.isOp(text) {
		p.fail(p.tok.pos, "expected %q %s, found %s", text, why, p.tok.describe())
		return
	}
	p.next()
}

func (p *parser) parseCall(name token, depth int) *node {
	fi := -1
	for i, f := range funcs {
		if f.name == name.text {
			fi = i
		}
	}
	if fi < 0 {
		p.fail(name.pos, "unknown function %s: use one of %s", name.text, funcNames())
		return &node{op: opConst}
	}
	f := funcs[fi]
	p.next() // (
	n := p.newNode(node{op: f.op, name: f.name})
	for p.err == nil {
		n.kids = append(n.kids, p.parseOr(depth+1))
		if !p.isOp(",") {
			break
		}
		p.next()
	}
	p.expect(")", "to close the call of "+f.name+" at column "+strconv.Itoa(name.pos))
	switch {
	case p.err != nil:
	case f.arity < 0 && len(n.kids) < 2:
		p.fail(name.pos, "%s takes two or more arguments, got %d", f.name, len(n.kids))
	case f.arity >= 0 && len(n.kids) != f.arity:
		args := strconv.Itoa(f.arity) + " arguments"
		if f.arity == 1 {
			args = "one argument"
		}
		p.fail(name.pos, "%s takes %s, got %d", f.name, args, len(n.kids))
	}
	return n
}
