package tabular

import (
	"fmt"
	"math"
	"strconv"
)

// ParseNumber reads a number written as text in a CSV field: the one syntax
// every tally reader of text numbers accepts (table uploads, spines,
// imports). It is decimal: an optional sign, digits, an optional fraction
// (a point and at least one digit), and an optional exponent (e or E, an
// optional sign, digits), e.g. 12, -0.5, +3, 007, 1.5e-3. Outside that, it
// accepts only "NaN", "Inf", "+Inf" and "-Inf", exactly as the CSV writer
// writes them (callers decide what a non-finite value means: tables refuse
// it, a spine's request context reads NaN as null). Go's wider syntax (1_000,
// 0x1p3, .5, 5., infinity) is refused. Surrounding spaces are the caller's to
// trim. A value beyond the float64 range is an error.
func ParseNumber(s string) (float64, error) {
	switch s {
	case "NaN":
		return math.NaN(), nil
	case "Inf", "+Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	}
	if !decimalSyntax(s) {
		return 0, fmt.Errorf("%q is not a decimal number (want digits, an optional sign, fraction and exponent, e.g. -12.5e3)", s)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is beyond the range of a 64-bit float", s)
	}
	return f, nil
}

// decimalSyntax reports whether s is [+-]digits[.digits][(e|E)[+-]digits].
func decimalSyntax(s string) bool {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := func() bool {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i > start
	}
	if !digits() {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	return i == len(s)
}

// IsJSONNumber reports whether s is a number as RFC 8259 writes it: an
// optional minus, an integer part without leading zeros, an optional
// fraction and an optional exponent. fastjson, which tally parses JSON
// with, also takes 01, +1, .5, 1., 1e, inf and nan; every number tally
// reads from JSON is held to this instead.
func IsJSONNumber(s []byte) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	return i == len(s)
}
