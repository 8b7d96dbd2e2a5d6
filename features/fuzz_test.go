package features

import (
	"math"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tally-ml/tally/windows"
)

// go test -run '^$' -fuzz FuzzLoad -fuzztime 20s -fuzzminimizetime 2s ./features/
// (minimizing a new input the size of fraud.yaml takes long at the default
// 60s; the fuzzer shows no progress meanwhile).
func FuzzLoad(f *testing.F) {
	data, err := defaultFS.ReadFile("defaultrepo/fraud.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(base + viewHead + "      - {column: amt, function: last_n, n: 3, window: 40d}\n"))
	f.Add([]byte(base + viewHead + "      - {column: amt, function: cnt, window: 1m}\n"))
	f.Add([]byte("sources:\n  - &s {name: tx, schema: {amt: float}}\n  - *s\n"))
	f.Add([]byte(kafkaRepo))
	f.Add([]byte("a: [\n"))
	f.Add([]byte("---\nentities: []\n---\nsources: ~\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Load(fstest.MapFS{"f.yaml": {Data: data}})
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "f.yaml:") && !strings.HasPrefix(line, "... and ") {
					t.Fatalf("error does not name the file: %q", line)
				}
			}
			return
		}
		checkRoundTrip(t, r)
		for _, v := range r.Views { // what Load accepts, the engine builds
			if _, err := windows.New(v.Spec); err != nil {
				t.Fatalf("view %s: Load accepted it, windows.New refuses it: %v", v.Name, err)
			}
		}
		for _, s := range r.Services {
			if len(s.Features) == 0 {
				t.Fatalf("service %s has no features", s.Name)
			}
			for _, ref := range s.Features {
				if r.FeatureName(ref) == "" {
					t.Fatalf("service %s: bad ref %+v", s.Name, ref)
				}
			}
		}
	})
}

// go test -run '^$' -fuzz FuzzCompileExpr -fuzztime 20s ./features/
func FuzzCompileExpr(f *testing.F) {
	for _, s := range []string{
		"haversine_km(request.lat, request.long, user_profile.home_lat, user_profile.home_long)",
		"request.amt / user_transaction_amounts.amt_mean_1d",
		"if(a > 0 && !b, -c * (d + 1e3), min(a, b, .5) >= 2 || e != 1)",
		"sqrt(abs(a)) - pow(b, 2) / floor(c) + atan2(d, e) * ceil(-a)",
		"((((a))))", "1 < 2 < 3", "f(", "a.b.c", "1e999", "--!-a",
	} {
		f.Add(s, 1.5, -2.0)
	}
	f.Fuzz(func(t *testing.T, src string, x, y float64) {
		var idents []string
		resolve := func(id string) (int, error) {
			idents = append(idents, id)
			return len(idents) - 1, nil
		}
		e, err := CompileExpr(src, resolve)
		if err != nil {
			if _, ok := err.(*ExprError); !ok {
				t.Fatalf("error %T %v is not an *ExprError", err, err)
			}
			return
		}
		slots := make([]float64, len(idents))
		present := make([]bool, len(idents))
		for i := range slots {
			slots[i], present[i] = x+float64(i)*y, i%3 != 2
		}
		v, ok := e.Eval(slots, present)
		if ok && (math.IsNaN(v) || math.IsInf(v, 0)) {
			t.Fatalf("%q = %v, ok", src, v)
		}
		e.Eval(nil, nil) // too few slots: not ok, never a panic

		// The canonical form compiles to the same thing.
		n := len(idents)
		idents = idents[:0]
		again, err := CompileExpr(e.String(), resolve)
		if err != nil {
			t.Fatalf("%q: canonical form %q does not compile: %v", src, e.String(), err)
		}
		if again.String() != e.String() || len(idents) != n {
			t.Fatalf("%q: canonical form %q recompiles to %q", src, e.String(), again.String())
		}
		v2, ok2 := again.Eval(slots, present)
		if ok2 != ok || ok && v2 != v {
			t.Fatalf("%q: %v, %v; canonical form %q: %v, %v", src, v, ok, e.String(), v2, ok2)
		}
	})
}

// go test -run '^$' -fuzz FuzzParseDuration -fuzztime 20s ./features/
// A duration parses into (0, MaxDuration] or is refused, and FormatWindow
// writes it back to the same value.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"500ms", "1h30m", "365d", "36500d", "36501d", "0s", "1000000d", "9223372036854775807ms", "1d1d", "5", "m", "1h-1m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := ParseDuration(s)
		if err != nil {
			return
		}
		if ms <= 0 || ms > MaxDuration {
			t.Fatalf("%q = %d ms, out of (0, %d]", s, ms, MaxDuration)
		}
		back, err := ParseDuration(FormatWindow(ms))
		if err != nil || back != ms {
			t.Fatalf("%q = %d ms, written %q, read back %d, %v", s, ms, FormatWindow(ms), back, err)
		}
	})
}
