package node

import (
	"math"
	"strconv"
	"sync/atomic"
	"time"
)

// appendFloat appends f as strconv.AppendFloat(dst, f, 'g', -1, 64) does,
// byte for byte: the shortest text that parses back to f, in positional
// form for decimal exponents in [-4, 6) and in exponent form outside. f must
// be finite.
//
// It costs about a third of strconv's 'g': integers below 10^6 (most
// counts, sums of whole amounts) are written as integers, and the others
// take strconv's shortest digits (dragonbox.go) as one integer, written two
// digits at a time (strconv's layout appends them one byte at a time).
// Response encoding was a third of a lookup's instructions.
func appendFloat(dst []byte, f float64) []byte {
	if f > -1e6 && f < 1e6 {
		if i := int64(f); float64(i) == f {
			if i == 0 && math.Signbit(f) {
				return append(dst, "-0"...)
			}
			return strconv.AppendInt(dst, i, 10)
		}
	}
	pow10Once.Do(initPow10)
	b := math.Float64bits(f)
	if b>>63 != 0 {
		dst = append(dst, '-')
	}
	exp := int(b>>float64MantBits) & (1<<11 - 1)
	mant := b & (1<<float64MantBits - 1)
	denorm := exp == 0
	if denorm {
		exp++
	} else {
		mant |= 1 << float64MantBits
	}
	digits, exp10 := dboxShortest(mant, exp+float64Bias-float64MantBits, denorm)
	var buf [20]byte
	i := len(buf)
	for digits >= 100 {
		q := digits / 100
		r := digits - q*100
		i -= 2
		buf[i], buf[i+1] = twoDigits[2*r], twoDigits[2*r+1]
		digits = q
	}
	if digits >= 10 {
		i -= 2
		buf[i], buf[i+1] = twoDigits[2*digits], twoDigits[2*digits+1]
	} else {
		i--
		buf[i] = byte('0' + digits)
	}
	d := buf[i:]
	nd := len(d)
	e := nd + exp10 - 1 // the decimal exponent of the first digit
	switch {
	case e < -4 || e >= 6:
		dst = append(dst, d[0])
		if nd > 1 {
			dst = append(dst, '.')
			dst = append(dst, d[1:]...)
		}
		dst = append(dst, 'e')
		if e < 0 {
			dst = append(dst, '-')
			e = -e
		} else {
			dst = append(dst, '+')
		}
		if e >= 100 {
			dst = append(dst, byte('0'+e/100))
			e %= 100
		}
		return append(dst, twoDigits[2*e], twoDigits[2*e+1])
	case e < 0:
		dst = append(dst, "0.0000"[:1-e]...)
		return append(dst, d...)
	case nd <= e+1:
		dst = append(dst, d...)
		return append(dst, "000000"[:e+1-nd]...)
	}
	dst = append(dst, d[:e+1]...)
	dst = append(dst, '.')
	return append(dst, d[e+1:]...)
}

// twoDigits holds "00" to "99".
const twoDigits = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"

// millisText is one epoch millisecond and its RFC 3339 text.
type millisText struct {
	ms   int64
	text string
}

// lastMillis is the last millisecond appendMillis formatted: a response's
// serverTime is mostly the same millisecond as the previous one's.
var lastMillis atomic.Pointer[millisText]

// appendMillis appends epoch milliseconds ms as RFC 3339 text in UTC with
// the fewest fraction digits (time.RFC3339Nano).
func appendMillis(dst []byte, ms int64) []byte {
	if c := lastMillis.Load(); c != nil && c.ms == ms {
		return append(dst, c.text...)
	}
	start := len(dst)
	dst = time.UnixMilli(ms).UTC().AppendFormat(dst, time.RFC3339Nano)
	lastMillis.Store(&millisText{ms: ms, text: string(dst[start:])})
	return dst
}
