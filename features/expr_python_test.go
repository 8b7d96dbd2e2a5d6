package features

import "testing"

func TestExprPython(t *testing.T) {
	ident := func(name string) string { return "x[" + `"` + name + `"]` }
	for src, want := range map[string]string{
		"request.amt / user_transaction_amounts.amt_mean_1d": `(_v(x["request.amt"]) / _v(x["user_transaction_amounts.amt_mean_1d"]))`,
		"haversine_km(a.b, 2, -c.d, 1e20)":                   `_haversine_km(_v(x["a.b"]), 2.0, (-_v(x["c.d"])), 1e+20)`,
		"if(a.x > 1 && !b.y, floor(a.x), max(1, 2, 3))":      `(float(math.floor(_v(x["a.x"]))) if _t(_f(_t(_f(_v(x["a.x"]) > 1.0)) and _t(_f(not _t(_v(x["b.y"])))))) else max(1.0, 2.0, 3.0))`,
		"a.x - (b.y - 0.5) * 2 || a.x <= 2":                  `_f(_t((_v(x["a.x"]) - ((_v(x["b.y"]) - 0.5) * 2.0))) or _t(_f(_v(x["a.x"]) <= 2.0)))`,
	} {
		got, err := ExprPython(src, ident)
		if err != nil || got != want {
			t.Errorf("ExprPython(%q) =\n %s, %v\nwant\n %s", src, got, err, want)
		}
	}
	if _, err := ExprPython("nope(1)", ident); err == nil {
		t.Error("an unknown function was translated")
	}
}
