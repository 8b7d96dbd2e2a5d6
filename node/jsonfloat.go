package node

import (
	"encoding/binary"
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
// counts, sums of whole amounts) are written as integers, hundredths below
// 10^6 (amounts in cents, their sums) as such, and the others
// take strconv's shortest digits (dragonbox.go) as one integer, written
// eight digits at a time into their final layout (strconv's appends them
// one byte at a time).
// Response encoding was a third of a lookup's instructions.
func appendFloat(dst []byte, f float64) []byte {
	if f > -1e6 && f < 1e6 {
		if i := int64(f); float64(i) == f {
			if i == 0 && math.Signbit(f) {
				return append(dst, "-0"...)
			}
			return strconv.AppendInt(dst, i, 10)
		}
		// Hundredths (amounts, their sums, maxima and lasts): when f is the
		// double nearest c/100, the text of c/100 is the shortest that
		// parses back to f, since any other text of at most two decimals
		// differs by 0.01 or more, far beyond f's precision below 10^6.
		// (f*100 landing on the integer is a cheap first test; the
		// division decides. A hundredth whose product rounds off an
		// integer, such as 0.07, takes the general path.)
		x := f * 100
		if c := int64(x); float64(c) == x && float64(c)/100 == f {
			return appendHundredths(dst, c)
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
	// The digits go right-aligned into buf, eight at a time, leaving room
	// before them for "0.000" or the point.
	var buf [32]byte
	i := putDigits(&buf, digits)
	nd := len(buf) - i
	e := nd + exp10 - 1 // the decimal exponent of the first digit
	switch {
	case e < -4 || e >= 6:
		d := buf[i:]
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
		i -= 1 - e
		copy(buf[i:], "0.000"[:1-e])
	case nd <= e+1:
		dst = append(dst, buf[i:]...)
		return append(dst, "000000"[:e+1-nd]...)
	default: // the point after the first e+1 digits
		for j := i; j <= i+e; j++ {
			buf[j-1] = buf[j]
		}
		i--
		buf[i+e+1] = '.'
	}
	return append(dst, buf[i:]...)
}

// appendHundredths appends c/100 in positional form, c not a multiple of
// 100: the integer part, the point, and one or two decimals (a trailing
// zero dropped), as strconv's shortest 'g' writes it.
func appendHundredths(dst []byte, c int64) []byte {
	if c < 0 {
		dst = append(dst, '-')
		c = -c
	}
	dst = strconv.AppendInt(dst, c/100, 10)
	r := c % 100
	dst = append(dst, '.', byte('0'+r/10))
	if r%10 != 0 {
		dst = append(dst, byte('0'+r%10))
	}
	return dst
}

// putDigits writes the decimal digits of d right-aligned at the end of buf
// and returns the index of the first.
func putDigits(buf *[32]byte, d uint64) int {
	i := len(buf)
	for d >= 1e8 {
		q := d / 1e8
		r := uint32(d - q*1e8)
		hi, lo := r/10000, r%10000
		i -= 8
		binary.LittleEndian.PutUint64(buf[i:], uint64(digitPairs[hi/100])|uint64(digitPairs[hi%100])<<16|
			uint64(digitPairs[lo/100])<<32|uint64(digitPairs[lo%100])<<48)
		d = q
	}
	r := uint32(d)
	for r >= 100 {
		q := r / 100
		i -= 2
		binary.LittleEndian.PutUint16(buf[i:], digitPairs[r-q*100])
		r = q
	}
	if r >= 10 {
		i -= 2
		binary.LittleEndian.PutUint16(buf[i:], digitPairs[r])
	} else {
		i--
		buf[i] = byte('0' + r)
	}
	return i
}

// digitPairs holds "00" to "99" as little-endian uint16s.
var digitPairs = func() (t [100]uint16) {
	for i := range t {
		t[i] = uint16('0'+i/10) | uint16('0'+i%10)<<8
	}
	return t
}()

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
