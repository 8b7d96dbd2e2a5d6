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
// It costs about half of strconv's 'g': integers below 10^6 (most counts,
// sums of whole amounts) are written as integers, and the others take
// strconv's shortest digits in its 'e' form, which copies them at once,
// and lay them out here (strconv's positional layout appends them one byte
// at a time). Response encoding was a third of a lookup's instructions.
func appendFloat(dst []byte, f float64) []byte {
	if f > -1e6 && f < 1e6 {
		if i := int64(f); float64(i) == f {
			if i == 0 && math.Signbit(f) {
				return append(dst, "-0"...)
			}
			return strconv.AppendInt(dst, i, 10)
		}
	}
	var buf [32]byte
	e := strconv.AppendFloat(buf[:0], f, 'e', -1, 64)
	// e is [-]d[.ddd]e±dd[d].
	k := len(e) - 4
	if e[k] != 'e' {
		k-- // three exponent digits
	}
	exp := int(e[k+2]-'0')*10 + int(e[k+3]-'0')
	if k+4 < len(e) {
		exp = exp*10 + int(e[k+4]-'0')
	}
	if e[k+1] == '-' {
		exp = -exp
	}
	if exp < -4 || exp >= 6 {
		return append(dst, e...) // 'g' writes the same exponent form
	}
	if e[0] == '-' {
		dst = append(dst, '-')
		e = e[1:]
		k--
	}
	// The digits: e[0], then e[2:k] after the point, if any.
	var digits [20]byte
	digits[0] = e[0]
	nd := 1
	if k > 1 {
		nd += copy(digits[1:], e[2:k])
	}
	if exp < 0 {
		dst = append(dst, "0.0000"[:1-exp]...)
		return append(dst, digits[:nd]...)
	}
	// exp+1 integer digits (padded with zeros), then the rest.
	if nd <= exp+1 {
		dst = append(dst, digits[:nd]...)
		return append(dst, "000000"[:exp+1-nd]...)
	}
	dst = append(dst, digits[:exp+1]...)
	dst = append(dst, '.')
	return append(dst, digits[exp+1:nd]...)
}

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
