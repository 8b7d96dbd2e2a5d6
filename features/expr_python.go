package features

import (
	"strconv"
	"strings"
)

// PythonPrelude defines what ExprPython's output calls: a missing input
// raises _Missing (the feature is then null, as Eval's ok = false), _t is
// truth (non-zero), _f a boolean as 1.0 or 0.0, and _haversine_km is
// haversine_km with the same earth radius.
const PythonPrelude = `import math


class _Missing(Exception):
    pass


def _v(x):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        raise _Missing()
    return float(x)


def _t(x):
    return x != 0


def _f(b):
    return 1.0 if b else 0.0


def _haversine_km(lat1, lon1, lat2, lon2):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    sdp = math.sin((p2 - p1) / 2)
    sdl = math.sin(math.radians(lon2 - lon1) / 2)
    a = sdp * sdp + math.cos(p1) * math.cos(p2) * sdl * sdl
    return 2 * ` + "6371.0088" + ` * math.asin(math.sqrt(min(1.0, a)))


def _eval(fn):
    """fn's value, or None where tally answers null: a missing input read, or
    a result that is not a finite number (Python raises where Go gives NaN or
    an infinity)."""
    try:
        v = float(fn())
    except (_Missing, ZeroDivisionError, ValueError, OverflowError):
        return None
    return v if math.isfinite(v) else None
`

var pyFuncs = map[opcode]string{
	opSqrt: "math.sqrt", opAbs: "abs", opLog: "math.log", opExp: "math.exp", opFloor: "math.floor", opCeil: "math.ceil",
	opRadians: "math.radians", opSin: "math.sin", opCos: "math.cos", opTan: "math.tan", opAsin: "math.asin",
	opAcos: "math.acos", opAtan: "math.atan", opAtan2: "math.atan2", opPow: "math.pow", opMin: "min", opMax: "max",
	opHaversine: "_haversine_km",
}

// ExprPython translates the request-time expression src into a Python
// expression with Eval's semantics (given PythonPrelude in scope): ident
// returns the Python expression reading an identifier's value (None when
// missing), which is wrapped in _v; if(), && and || are lazy as in Eval.
// Pass the result to _eval(lambda: ...) to get Eval's null for missing
// inputs and non-finite results. It fails where CompileExpr would.
func ExprPython(src string, ident func(name string) string) (string, error) {
	slots := 0
	p := parser{src: src, slotOf: map[string]int{}, resolve: func(string) (int, error) { slots++; return slots - 1, nil }}
	p.next()
	root := p.parseOr(0)
	if p.err == nil && p.tok.kind != tEOF {
		p.fail(p.tok.pos, "expected an operator or the end of the expression, found %s", p.tok.describe())
	}
	if p.err != nil {
		return "", p.err
	}
	var b strings.Builder
	pyFormat(&b, root, ident)
	return b.String(), nil
}

// pyFormat writes n fully parenthesized, so Python's precedence never
// matters.
func pyFormat(b *strings.Builder, n *node, ident func(string) string) {
	switch n.op {
	case opConst:
		s := strconv.FormatFloat(n.k, 'g', -1, 64)
		if !strings.ContainsAny(s, ".e") {
			s += ".0"
		}
		b.WriteString(s)
		return
	case opSlot:
		b.WriteString("_v(" + ident(n.name) + ")")
		return
	case opNeg:
		b.WriteString("(-")
		pyFormat(b, n.kids[0], ident)
		b.WriteString(")")
		return
	case opNot:
		b.WriteString("_f(not _t(")
		pyFormat(b, n.kids[0], ident)
		b.WriteString("))")
		return
	case opAnd, opOr:
		op := " and "
		if n.op == opOr {
			op = " or "
		}
		b.WriteString("_f(_t(")
		pyFormat(b, n.kids[0], ident)
		b.WriteString(")" + op + "_t(")
		pyFormat(b, n.kids[1], ident)
		b.WriteString("))")
		return
	case opIf:
		b.WriteString("(")
		pyFormat(b, n.kids[1], ident)
		b.WriteString(" if _t(")
		pyFormat(b, n.kids[0], ident)
		b.WriteString(") else ")
		pyFormat(b, n.kids[2], ident)
		b.WriteString(")")
		return
	}
	if fn, ok := pyFuncs[n.op]; ok && n.name != "" {
		if n.op == opFloor || n.op == opCeil {
			b.WriteString("float(")
			defer b.WriteString(")")
		}
		b.WriteString(fn + "(")
		for i, k := range n.kids {
			if i > 0 {
				b.WriteString(", ")
			}
			pyFormat(b, k, ident)
		}
		b.WriteString(")")
		return
	}
	bo := binOps[n.op]
	cmp := bo.prec == precCmp
	if cmp {
		b.WriteString("_f")
	}
	b.WriteString("(")
	pyFormat(b, n.kids[0], ident)
	b.WriteString(" " + bo.text + " ")
	pyFormat(b, n.kids[1], ident)
	b.WriteString(")")
}
