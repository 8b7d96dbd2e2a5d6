package features

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

// testVars resolves a, b, c, x, y, z and dotted names of the default repo's
// request view to slots 0..n in order of first use.
type testVars struct{ names []string }

func (v *testVars) resolve(ident string) (int, error) {
	switch ident {
	case "a", "b", "c", "x", "y", "z", "request.lat", "request.long", "user_profile.home_lat", "user_profile.home_long":
	default:
		return 0, fmt.Errorf("unknown identifier %s", ident)
	}
	for i, n := range v.names {
		if n == ident {
			return i, nil
		}
	}
	v.names = append(v.names, ident)
	return len(v.names) - 1, nil
}

func mustCompile(t *testing.T, src string) (*Expr, *testVars) {
	t.Helper()
	v := &testVars{}
	e, err := CompileExpr(src, v.resolve)
	if err != nil {
		t.Fatalf("CompileExpr(%q): %v", src, err)
	}
	return e, v
}

// eval evaluates src with the named variables set.
func eval(t *testing.T, src string, vars map[string]float64) (float64, bool) {
	t.Helper()
	e, v := mustCompile(t, src)
	slots := make([]float64, len(v.names))
	present := make([]bool, len(v.names))
	for i, n := range v.names {
		slots[i], present[i] = vars[n]
	}
	return e.Eval(slots, present)
}

func TestExprValues(t *testing.T) {
	vars := map[string]float64{"a": 2, "b": 3, "c": 4, "x": 0}
	for _, tc := range []struct {
		src  string
		want float64
	}{
		{"1 + 2 * 3", 7},
		{"(1 + 2) * 3", 9},
		{"10 - 4 - 3", 3},
		{"24 / 4 / 2", 3},
		{"-a * b", -6},
		{"-(a + b)", -5},
		{"- -a", 2},
		{"2 * -a", -4},
		{"a + b * c", 14},
		{"a * b + c", 10},
		{"a < b", 1},
		{"a >= b", 0},
		{"a == 2", 1},
		{"a != 2", 0},
		{"a + 1 == b", 1},
		{"a < b && b < c", 1},
		{"a > b || b < c", 1},
		{"a > b || b > c", 0},
		{"!x", 1},
		{"!a", 0},
		{"!x && a", 1},
		{"1 || 0 && 0", 1}, // && binds tighter than ||
		{"if(a > b, 10, 20)", 20},
		{"if(a < b, 10, 20)", 10},
		{"sqrt(16)", 4},
		{"abs(-3.5)", 3.5},
		{"log(exp(2))", 2},
		{"pow(2, 10)", 1024},
		{"min(c, a, b)", 2},
		{"max(a, c, b)", 4},
		{"floor(2.7) + ceil(2.2)", 5},
		{"radians(180)", math.Pi},
		{"sin(0) + cos(0)", 1},
		{"tan(0)", 0},
		{"asin(1)", math.Pi / 2},
		{"acos(1)", 0},
		{"atan(1)", math.Pi / 4},
		{"atan2(1, 1)", math.Pi / 4},
		{"1e3 + .5 + 2.5e-1", 1000.75},
		{"a*b-c/a", 4},
	} {
		got, ok := eval(t, tc.src, vars)
		if !ok || math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("%s = %v, %v; want %v", tc.src, got, ok, tc.want)
		}
	}
}

func TestHaversine(t *testing.T) {
	src := "haversine_km(request.lat, request.long, user_profile.home_lat, user_profile.home_long)"
	for _, tc := range []struct {
		name                   string
		lat1, lon1, lat2, lon2 float64
		km                     float64
	}{
		{"Paris-London", 48.8566, 2.3522, 51.5074, -0.1278, 343.5},
		{"New York-Los Angeles", 40.7128, -74.0060, 34.0522, -118.2437, 3935.7},
		{"same point", 10, 20, 10, 20, 0},
		{"antipodes", 0, 0, 0, 180, math.Pi * EarthRadiusKm},
	} {
		got, ok := eval(t, src, map[string]float64{
			"request.lat": tc.lat1, "request.long": tc.lon1, "user_profile.home_lat": tc.lat2, "user_profile.home_long": tc.lon2,
		})
		if !ok || math.Abs(got-tc.km) > 0.5 {
			t.Errorf("%s: %v km, %v; want %v", tc.name, got, ok, tc.km)
		}
	}
}

func TestExprNotOK(t *testing.T) {
	vars := map[string]float64{"a": 2, "x": 0} // b is absent
	for _, src := range []string{
		"a / x",       // +Inf
		"x / x",       // NaN
		"-a / x",      // -Inf
		"log(x)",      // -Inf
		"sqrt(-a)",    // NaN
		"b",           // missing
		"a + b",       // missing
		"if(a, b, 1)", // reads b
		"pow(10, 400)",
	} {
		if v, ok := eval(t, src, vars); ok {
			t.Errorf("%s = %v, ok; want not ok", src, v)
		}
	}
	// Lazy branches: what is not read cannot be missing.
	for _, src := range []string{"if(a, 1, b)", "if(x, b, 1)", "x && b || 1", "a || b", "if(x, a / x, 0) + 1"} {
		if _, ok := eval(t, src, vars); !ok {
			t.Errorf("%s: not ok; want ok (missing input only in a branch not taken)", src)
		}
	}
	// Slots out of range or a nil expression are not ok, never a panic.
	e, _ := mustCompile(t, "a + b")
	if _, ok := e.Eval([]float64{1}, nil); ok {
		t.Error("Eval with too few slots: ok")
	}
	if _, ok := e.Eval([]float64{1, 2}, nil); !ok {
		t.Error("Eval with nil present: not ok")
	}
	if _, ok := (*Expr)(nil).Eval(nil, nil); ok {
		t.Error("nil Expr: ok")
	}
}

func TestExprErrors(t *testing.T) {
	deep := strings.Repeat("(", MaxExprDepth+2) + "a" + strings.Repeat(")", MaxExprDepth+2)
	long := "a" + strings.Repeat(" + a", MaxExprOps)
	for _, tc := range []struct {
		src  string
		col  int
		want string
	}{
		{"", 1, "expected a number, an identifier"},
		{"a +", 4, "found the end of the expression"},
		{"a + * b", 5, `found "*"`},
		{"(a + b", 7, `expected ")" to close the ( at column 1`},
		{"a b", 3, "expected an operator or the end"},
		{"a = b", 3, "compare with =="},
		{"a & b", 3, "use && or ||"},
		{"a # b", 3, "unexpected character '#'"},
		{"foo(a)", 1, "unknown function foo: use one of haversine_km, sqrt"},
		{"sqrt(a, b)", 1, "sqrt takes one argument, got 2"},
		{"haversine_km(a, b)", 1, "haversine_km takes 4 arguments, got 2"},
		{"min(a)", 1, "min takes two or more arguments"},
		{"sqrt(a", 7, "to close the call of sqrt"},
		{"a + nope", 5, "unknown identifier nope"},
		{"a < b < c", 7, "comparisons do not chain"},
		{"1e999", 1, "out of range"},
		{"1.5.2", 4, "unexpected '.' after number 1.5"},
		{"2x", 2, "unexpected 'x' after number 2"},
		{"request.", 9, `expected a name after "request."`},
		{deep, 1, "nested more than"},
		{long, 1, "too long"},
		{strings.Repeat("a+", MaxExprLen), MaxExprLen + 1, "longer than"},
		{"-" + strings.Repeat("-", MaxExprDepth+1) + "a", 1, "nested more than"},
	} {
		v := &testVars{}
		_, err := CompileExpr(tc.src, v.resolve)
		var ee *ExprError
		if !errors.As(err, &ee) {
			t.Errorf("CompileExpr(%.40q): %v; want an *ExprError", tc.src, err)
			continue
		}
		if (tc.col != 1 || ee.Col == 1) && ee.Col != tc.col || !strings.Contains(ee.Msg, tc.want) {
			t.Errorf("CompileExpr(%.40q): column %d: %s; want column %d: ...%s...", tc.src, ee.Col, ee.Msg, tc.col, tc.want)
		}
	}
}

func TestExprString(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"a+b*c", "a + b * c"},
		{"(a+b)*c", "(a + b) * c"},
		{"a-(b-c)", "a - (b - c)"},
		{"(a-b)-c", "a - b - c"},
		{"-(a*b)", "-(a * b)"},
		{"(a<b)==(b<c)", "(a < b) == (b < c)"},
		{"!(a&&b)||c", "!(a && b) || c"},
		{"a||(b||c)", "a || (b || c)"},
		{"if(a,b,c)", "if(a, b, c)"},
		{"1e21+0.5", "1e+21 + 0.5"},
	} {
		e, _ := mustCompile(t, tc.src)
		if e.String() != tc.want {
			t.Errorf("%q.String() = %q; want %q", tc.src, e.String(), tc.want)
		}
		again, _ := mustCompile(t, e.String())
		if again.String() != e.String() {
			t.Errorf("%q: String does not round-trip: %q -> %q", tc.src, e.String(), again.String())
		}
	}
}

func TestExprEvalAllocs(t *testing.T) {
	e, v := mustCompile(t, "if(a > 0 && !x, haversine_km(request.lat, request.long, user_profile.home_lat, user_profile.home_long) / a, min(b, c, 1))")
	slots := make([]float64, len(v.names))
	present := make([]bool, len(v.names))
	for i := range slots {
		slots[i], present[i] = float64(i+1), true
	}
	var sink float64
	if n := testing.AllocsPerRun(1000, func() {
		x, _ := e.Eval(slots, present)
		sink += x
	}); n != 0 {
		t.Errorf("Eval allocates %v times per run; want 0", n)
	}
	_ = sink
}

func BenchmarkExprEval(b *testing.B) {
	e, err := CompileExpr("haversine_km(request.lat, request.long, user_profile.home_lat, user_profile.home_long)", (&testVars{}).resolve)
	if err != nil {
		b.Fatal(err)
	}
	slots := []float64{48.8566, 2.3522, 51.5074, -0.1278}
	present := []bool{true, true, true, true}
	b.ReportAllocs()
	for b.Loop() {
		e.Eval(slots, present)
	}
}

// min and max of many arguments fold pairwise, holding two values at a
// time: they were refused as needing one stack slot per argument
// ("expression needs 40 stack slots") though they compile and run in two.
func TestMinMaxOfManyArguments(t *testing.T) {
	var args []string
	for i := range 40 {
		args = append(args, fmt.Sprint(i+3))
	}
	for _, fn := range []string{"min", "max"} {
		e, err := CompileExpr(fn+"("+strings.Join(args, ", ")+")", nil)
		if err != nil {
			t.Fatalf("%s of 40 numbers: %v", fn, err)
		}
		want := 3.0
		if fn == "max" {
			want = 42
		}
		if v, ok := e.Eval(nil, nil); !ok || v != want {
			t.Errorf("%s = %v, %v; want %v", fn, v, ok, want)
		}
	}
	// Deep arguments still count: each beyond the first sits on one value.
	deep := strings.Repeat("(1 + ", 31) + "1" + strings.Repeat(")", 31)
	if _, err := CompileExpr("min(1, "+deep+")", nil); err == nil || !strings.Contains(err.Error(), "stack slots") {
		t.Errorf("min(1, <needs 32>): %v, want the stack limit", err)
	}
}

// TestExprNonFiniteInside: only an expression's result is checked for
// NaN and infinity (README, "Missing data"); inside it, numbers follow IEEE
// 754 as Python's do: an infinite ratio compares above any number, a
// comparison with NaN is false, and if() takes NaN as true (not zero).
func TestExprNonFiniteInside(t *testing.T) {
	vars := map[string]float64{"a": 2, "x": 0}
	for _, tc := range []struct {
		src  string
		want float64
	}{
		{"a / x > 3", 1},      // +Inf > 3
		{"-a / x < -3", 1},    // -Inf < -3
		{"x / x > 3", 0},      // NaN > 3
		{"x / x == x / x", 0}, // NaN == NaN
		{"x / x != x / x", 1},
		{"if(x / x, 1, 2)", 1}, // NaN is not zero
		{"if(x > 0, a / x, 0)", 0},
	} {
		v, ok := eval(t, tc.src, vars)
		if !ok || v != tc.want {
			t.Errorf("%s = %v, %v; want %v, true", tc.src, v, ok, tc.want)
		}
	}
}
