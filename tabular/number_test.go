package tabular

import (
	"math"
	"strconv"
	"strings"
	"testing"
)

func TestParseNumber(t *testing.T) {
	for in, want := range map[string]float64{
		"0": 0, "12": 12, "-0.5": -0.5, "+3": 3, "007": 7, "1.5e-3": 1.5e-3, "2E+2": 200, "-1e0": -1,
		"4.77744228926317e+07": 4.77744228926317e+07,
		"+Inf":                 math.Inf(1), "Inf": math.Inf(1), "-Inf": math.Inf(-1),
	} {
		got, err := ParseNumber(in)
		if err != nil || got != want {
			t.Errorf("ParseNumber(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if f, err := ParseNumber("NaN"); err != nil || !math.IsNaN(f) {
		t.Errorf("ParseNumber(NaN) = %v, %v", f, err)
	}
	for _, in := range []string{"", "1_000", "0x1p3", "0x10", ".5", "5.", "-", "+", "1e", "1e+", "inf", "nan", "infinity",
		"Infinity", " 1", "1 ", "1,5", "1e400", "--1", "1.2.3", "0b101"} {
		if f, err := ParseNumber(in); err == nil {
			t.Errorf("ParseNumber(%q) = %v, want an error", in, f)
		}
	}
}

// FuzzParseNumber checks that what ParseNumber accepts strconv reads the
// same, and that it never accepts Go-only syntax.
func FuzzParseNumber(f *testing.F) {
	for _, s := range []string{"1", "-0.5e3", "1_000", "0x1p3", ".5", "NaN", "+Inf", "1e400", "007"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseNumber(s)
		if err != nil {
			return
		}
		if strings.ContainsAny(s, "_xXpP") {
			t.Fatalf("accepted %q", s)
		}
		want, _ := strconv.ParseFloat(s, 64)
		if !(got == want || (math.IsNaN(got) && math.IsNaN(want))) {
			t.Fatalf("ParseNumber(%q) = %v, strconv %v", s, got, want)
		}
	})
}

func TestIsJSONNumber(t *testing.T) {
	for _, ok := range []string{"0", "-0", "12", "-1.5", "1e5", "1E+5", "2.5e-3", "0.0"} {
		if !IsJSONNumber([]byte(ok)) {
			t.Errorf("%s refused", ok)
		}
	}
	for _, bad := range []string{"", "01", "+1", ".5", "1.", "-", "1e", "1e+", "-01", "00", "inf", "nan", "NaN", "0x10", "1_0", "- 1"} {
		if IsJSONNumber([]byte(bad)) {
			t.Errorf("%q accepted", bad)
		}
	}
}

// NDJSON input holds numbers to RFC 8259, whatever the column's type.
func TestNDJSONLenientNumbersRefused(t *testing.T) {
	for _, in := range []string{
		`{"a":01}`, `{"a":+1}`, `{"a":1.5}` + "\n" + `{"a":.5}`, `{"a":1.5}` + "\n" + `{"a":inf}`,
		`{"a":[1,01]}`, `{"a":null}` + "\n" + `{"a":-01}`,
	} {
		err := readErr(NDJSON, []byte(in))
		if err == nil || !strings.Contains(err.Error(), "not a JSON number") {
			t.Errorf("%s: %v", in, err)
		}
	}
}
