// Copyright 2025 The Go Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

package node

// The shortest decimal digits of a float64 by the Dragonbox algorithm of
// Junekey Jeon, as Go's strconv computes them (internal/strconv/ftoadbox.go
// and math.go of Go 1.26, float64 only), returning the digits as an integer
// and a decimal exponent instead of formatting them: appendFloat writes them
// without strconv's generic layout. And the Eisel-Lemire parse of a decimal
// mantissa and exponent (atofeisel.go), which quickScan.number calls on the
// digits it has read instead of strconv reading them again. The powers of
// ten are computed once, as strconv's generator (pow10gen.go) computes its
// table. TestAppendFloatMatchesStrconv, FuzzAppendFloat,
// TestQuickNumberMatchesStrconv and FuzzQuickNumber hold them to strconv.

import (
	"math"
	"math/big"
	"math/bits"
	"sync"
)

// uint128 is a 128-bit unsigned integer.
type uint128 struct{ Hi, Lo uint64 }

const (
	pow10Min        = -348
	pow10Max        = 347
	float64MantBits = 52
	float64Bias     = -1023
	maxUint64       = 1<<64 - 1
)

// pow10Tab holds the 128-bit mantissas of 10^e for e in [pow10Min,
// pow10Max], scaled so that the high bit is set, truncated.
var (
	pow10Tab  [pow10Max - pow10Min + 1]uint128
	pow10Once sync.Once
)

func initPow10() {
	ten := big.NewInt(10)
	b1p64 := new(big.Int).Lsh(big.NewInt(1), 64)
	for e := pow10Min; e <= pow10Max; e++ {
		var d *big.Int
		if e >= 0 {
			p := new(big.Int).Exp(ten, big.NewInt(int64(e)), nil)
			if n := p.BitLen(); n > 128 {
				d = p.Rsh(p, uint(n-128))
			} else {
				d = p.Lsh(p, uint(128-n))
			}
		} else {
			// 2^s / 10^-e is in [2^127, 2^128) for s = 127 + bitlen(10^-e).
			p := new(big.Int).Exp(ten, big.NewInt(int64(-e)), nil)
			d = new(big.Int).Quo(new(big.Int).Lsh(big.NewInt(1), uint(127+p.BitLen())), p)
		}
		hi, lo := new(big.Int).DivMod(d, b1p64, new(big.Int))
		pow10Tab[e-pow10Min] = uint128{hi.Uint64(), lo.Uint64()}
	}
}

// pow10 returns the 128-bit mantissa and binary exponent of 10^e:
// 10^e = mant/2^128 * 2^exp.
func pow10(e int) (mant uint128, exp int) {
	return pow10Tab[e-pow10Min], 1 + mulLog2_10(e)
}

// mulLog10_2 returns floor(x * log10(2)) for x in [-1600, 1600].
func mulLog10_2(x int) int { return (x * 78913) >> 18 }

// mulLog2_10 returns floor(x * log2(10)) for x in [-500, 500].
func mulLog2_10(x int) int { return (x * 108853) >> 15 }

// trimZeros returns x without its trailing decimal zeros and how many
// there were.
func trimZeros(x uint64) (uint64, int) {
	const (
		div1e8m  = 0xc767074b22e90e21
		div1e8le = maxUint64 / 100000000
		div1e4m  = 0xd288ce703afb7e91
		div1e4le = maxUint64 / 10000
		div1e2m  = 0x8f5c28f5c28f5c29
		div1e2le = maxUint64 / 100
		div1e1m  = 0xcccccccccccccccd
		div1e1le = maxUint64 / 10
	)
	p := 0
	for d := bits.RotateLeft64(x*div1e8m, -8); d <= div1e8le; d = bits.RotateLeft64(x*div1e8m, -8) {
		x = d
		p += 8
	}
	if d := bits.RotateLeft64(x*div1e4m, -4); d <= div1e4le {
		x = d
		p += 4
	}
	if d := bits.RotateLeft64(x*div1e2m, -2); d <= div1e2le {
		x = d
		p += 2
	}
	if d := bits.RotateLeft64(x*div1e1m, -1); d <= div1e1le {
		x = d
		p++
	}
	return x, p
}

// dboxShortest returns the shortest decimal digits of the float64 with
// mantissa mant (with its implicit bit, if normal) and binary exponent exp
// (value = mant * 2^exp), as digits * 10^exp10.
func dboxShortest(mant uint64, exp int, denorm bool) (digits uint64, exp10 int) {
	if mant == 1<<float64MantBits && !denorm {
		// Algorithm 5.6 (page 24).
		k0 := -mulLog10_2MinusLog10_4Over3(exp)
		φ, β := dboxPow64(k0, exp)
		xi, zi := dboxRange64(φ, β)
		if exp != 2 && exp != 3 {
			xi++
		}
		q := zi / 10
		if xi <= q*10 {
			q, zeros := trimZeros(q)
			return q, -k0 + 1 + zeros
		}
		yru := dboxRoundUp64(φ, β)
		if exp == -77 && yru%2 != 0 {
			yru--
		} else if yru < xi {
			yru++
		}
		return yru, -k0
	}

	// κ = 2 for float64 (section 5.1.3)
	const (
		κ     = 2
		p10κ  = 100       // 10**κ
		p10κ1 = p10κ * 10 // 10**(κ+1)
	)

	// Algorithm 5.2 (page 15).
	k0 := -mulLog10_2(exp)
	φ, β := dboxPow64(κ+k0, exp)
	zi, exact := dboxMulPow64(uint64(mant*2+1)<<β, φ)
	s, r := zi/p10κ1, uint32(zi%p10κ1)
	δi := dboxDelta64(φ, β)

	if r < δi {
		if r != 0 || !exact || mant%2 == 0 {
			s, zeros := trimZeros(s)
			return s, -k0 + 1 + zeros
		}
		s--
		r = p10κ * 10
	} else if r == δi {
		parity, exact := dboxParity64(uint64(mant*2-1), φ, β)
		if parity || (exact && mant%2 == 0) {
			s, zeros := trimZeros(s)
			return s, -k0 + 1 + zeros
		}
	}

	// Algorithm 5.4 (page 18).
	D := r + p10κ/2 - δi/2
	t, ρ := D/p10κ, D%p10κ
	yru := 10*s + uint64(t)
	if ρ == 0 {
		parity, exact := dboxParity64(mant*2, φ, β)
		if parity != ((D-p10κ/2)%2 != 0) || exact && yru%2 != 0 {
			yru--
		}
	}
	return yru, -k0
}

// uadd128 returns the full 128 bits of u + n.
func uadd128(u uint128, n uint64) uint128 {
	sum := u.Lo + n
	if sum < u.Lo {
		u.Hi++
	}
	u.Lo = sum
	return u
}

// umul192Upper128 returns the upper 128 bits (out of 192 bits) of x * y.
func umul192Upper128(x uint64, y uint128) uint128 {
	hi, lo := bits.Mul64(x, y.Hi)
	t, _ := bits.Mul64(x, y.Lo)
	return uadd128(uint128{hi, lo}, t)
}

// umul192Lower128 returns the lower 128 bits (out of 192 bits) of x * y.
func umul192Lower128(x uint64, y uint128) uint128 {
	high := x * y.Hi
	hlHi, hlLo := bits.Mul64(x, y.Lo)
	return uint128{high + hlHi, hlLo}
}

// dboxMulPow64 computes x^(i), y^(i), z^(i) from φ̃k and reports whether
// x^(f), y^(f), z^(f) == 0 (section 5.2.1).
func dboxMulPow64(u uint64, phi uint128) (intPart uint64, isInt bool) {
	r := umul192Upper128(u, phi)
	return r.Hi, r.Lo == 0
}

// dboxParity64 computes the parity of x^(i), y^(i), z^(i) from φ̃k and
// reports whether x^(f), y^(f), z^(f) == 0 (section 5.2.1).
func dboxParity64(mant2 uint64, phi uint128, beta int) (parity bool, isInt bool) {
	r := umul192Lower128(mant2, phi)
	parity = ((r.Hi >> (64 - beta)) & 1) != 0
	isInt = ((r.Hi << beta) | (r.Lo >> (64 - beta))) == 0
	return
}

// dboxDelta64 returns δ^(i) from φ̃k.
func dboxDelta64(φ uint128, β int) uint32 {
	return uint32(φ.Hi >> (64 - 1 - β))
}

// mulLog10_2MinusLog10_4Over3 computes floor(e*log10(2)-log10(4/3))
// (section 6.3).
func mulLog10_2MinusLog10_4Over3(e int) int {
	return (e*631305 - 261663) >> 21
}

// dboxRange64 returns the left and right endpoints.
func dboxRange64(φ uint128, β int) (left, right uint64) {
	left = (φ.Hi - (φ.Hi >> (float64MantBits + 2))) >> (64 - float64MantBits - 1 - β)
	right = (φ.Hi + (φ.Hi >> (float64MantBits + 1))) >> (64 - float64MantBits - 1 - β)
	return left, right
}

// dboxRoundUp64 computes the round up of y (y^(ru)).
func dboxRoundUp64(phi uint128, beta int) uint64 {
	return (phi.Hi>>(128/2-float64MantBits-2-beta) + 1) / 2
}

// dboxPow64 returns φ̃̃k.
func dboxPow64(k, e int) (φ uint128, β int) {
	φ, e1 := pow10(k)
	if k < 0 || k > 55 {
		φ.Lo++
	}
	return φ, e + e1 - 1
}

// eiselLemire64 returns man * 10^exp10 (negated if neg), correctly
// rounded, by the Eisel-Lemire algorithm as Go's strconv computes it
// (internal/strconv/atofeisel.go); ok is false when it cannot decide (the
// caller then asks strconv.ParseFloat). man must be exact (no digit
// dropped).
func eiselLemire64(man uint64, exp10 int, neg bool) (f float64, ok bool) {
	if man == 0 {
		if neg {
			f = math.Float64frombits(0x8000000000000000) // Negative zero.
		}
		return f, true
	}
	if exp10 < pow10Min || exp10 > pow10Max {
		return 0, false
	}
	pow10Once.Do(initPow10)
	pow, exp2 := pow10(exp10)

	// Normalization.
	clz := bits.LeadingZeros64(man)
	man <<= uint(clz)
	retExp2 := uint64(exp2+63-float64Bias) - uint64(clz)

	// Multiplication.
	xHi, xLo := bits.Mul64(man, pow.Hi)

	// Wider Approximation.
	if xHi&0x1FF == 0x1FF && xLo+man < man {
		yHi, yLo := bits.Mul64(man, pow.Lo)
		mergedHi, mergedLo := xHi, xLo+yHi
		if mergedLo < xLo {
			mergedHi++
		}
		if mergedHi&0x1FF == 0x1FF && mergedLo+1 == 0 && yLo+man < man {
			return 0, false
		}
		xHi, xLo = mergedHi, mergedLo
	}

	// Shifting to 54 Bits.
	msb := xHi >> 63
	retMantissa := xHi >> (msb + 9)
	retExp2 -= 1 ^ msb

	// Half-way Ambiguity.
	if xLo == 0 && xHi&0x1FF == 0 && retMantissa&3 == 1 {
		return 0, false
	}

	// From 54 to 53 Bits.
	retMantissa += retMantissa & 1
	retMantissa >>= 1
	if retMantissa>>53 > 0 {
		retMantissa >>= 1
		retExp2++
	}
	// Zero or underflow: subnormal; 0x7FF or above: Inf/NaN.
	if retExp2-1 >= 0x7FF-1 {
		return 0, false
	}
	retBits := retExp2<<float64MantBits | retMantissa&(1<<float64MantBits-1)
	if neg {
		retBits |= 0x8000000000000000
	}
	return math.Float64frombits(retBits), true
}
