package onnx

import (
	"math"
	"math/big"
	"testing"
)

// exp2Tab32[i] is 2^(i/32) rounded to nearest: check it against a
// 200-bit root of 2^i.
func TestExp2Tab32(t *testing.T) {
	for i, bits := range exp2Tab32 {
		y := new(big.Float).SetPrec(200).SetFloat64(math.Exp2(float64(i) / 32))
		for range 8 { // Newton on y^32 = 2^i
			p := new(big.Float).SetPrec(200).SetInt64(1)
			for range 31 {
				p.Mul(p, y)
			}
			f := new(big.Float).SetPrec(200).Mul(p, y)
			f.Sub(f, new(big.Float).SetPrec(200).SetMantExp(big.NewFloat(1), i))
			f.Quo(f, p.Mul(p, big.NewFloat(32)))
			y.Sub(y, f)
		}
		want, _ := y.Float64()
		if got := math.Float64frombits(bits + uint64(i)<<47); got != want {
			t.Errorf("exp2Tab32[%d] gives %v, 2^(%d/32) is %v", i, got, i, want)
		}
	}
}

// expf agrees with glibc on values checked against libm, including the
// cases where glibc is not the correctly rounded result.
func TestExpf(t *testing.T) {
	for _, c := range []struct{ x, want float32 }{
		{0, 1}, {1, math.E}, {-1, 0.36787945}, {88.72, 3.3931806e+38},
		{89, float32(math.Inf(1))}, {-104, 0}, {float32(math.Inf(-1)), 0},
		// glibc, not float32(math.Exp(x)) (1.0312734e-07 and 2375545)
		{-16.08730125427246, 1.0312735e-07}, {14.680737495422363, 2375545.25},
	} {
		if got := expf(c.x); got != c.want {
			t.Errorf("expf(%v) = %v, want %v", c.x, got, c.want)
		}
	}
	if !math.IsNaN(float64(expf(float32(math.NaN())))) {
		t.Error("expf(NaN) is not NaN")
	}
}
