package tabular

import (
	"io"
	"math"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// Shared text encoders for the CSV and NDJSON writers. They append to a
// byte slice so that writing a row allocates nothing.

// rfc3339Millis is RFC 3339 with exactly three fractional digits; with a UTC
// time it ends in "Z".
const rfc3339Millis = "2006-01-02T15:04:05.000Z07:00"

func appendTimestamp(b []byte, ms int64) []byte {
	return time.UnixMilli(ms).UTC().AppendFormat(b, rfc3339Millis)
}

// appendCSVFloat writes v as strconv.FormatFloat(v, 'g', -1, 64) does, with
// +Inf spelled "+Inf" (FormatFloat already writes "+Inf", "-Inf", "NaN").
func appendCSVFloat(b []byte, v float64) []byte {
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// appendJSONFloat writes v as a JSON number that always reads back as a
// float: a '.' or an exponent is added where 'g' formatting left none, so
// that an NDJSON reader does not infer Int64 for a Float64 column. NaN and
// ±Inf have no JSON form and are written as null.
func appendJSONFloat(b []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(b, "null"...)
	}
	start := len(b)
	b = strconv.AppendFloat(b, v, 'g', -1, 64)
	for _, c := range b[start:] {
		if c == '.' || c == 'e' {
			return b
		}
	}
	return append(b, ".0"...)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD,
// as encoding/json does; U+2028 and U+2029 are escaped so the output is also
// valid JavaScript.
func AppendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		// Eight bytes at a time while none needs a look (the names of a
		// lookup response's metadata are most of its bytes).
		for i+8 <= len(s) {
			w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
				uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
			if !jsonPlain8(w) {
				break
			}
			i += 8
		}
		if i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// jsonPlain8 reports whether none of the eight bytes of w is below 0x20, a
// quote, a backslash or non-ASCII: they are copied as they are.
func jsonPlain8(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	zero := func(x uint64) uint64 { return (x - ones) & ^x & highs } // a zero byte in x
	return (w-ones*0x20)&^w&highs|zero(w^(ones*'"'))|zero(w^(ones*'\\'))|w&highs == 0
}

// appendCSVField writes one CSV field, quoted when encoding/csv would quote
// it (so that encoding/csv and other RFC 4180 readers read it back as is).
func appendCSVField(b []byte, s string) []byte {
	if !csvNeedsQuotes(s) {
		return append(b, s...)
	}
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			b = append(b, s[start:i+1]...)
			b = append(b, '"')
			start = i + 1
		}
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// csvNeedsQuotes follows encoding/csv's Writer: quote a field holding the
// delimiter, a quote, CR or LF, a field starting with white space (which
// some readers trim), and `\.` (which ends data in PostgreSQL's COPY).
func csvNeedsQuotes(s string) bool {
	if s == "" {
		return false
	}
	if s == `\.` {
		return true
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ',', '"', '\r', '\n':
			return true
		}
	}
	r, _ := utf8.DecodeRuneInString(s)
	return unicode.IsSpace(r)
}

// textOut is the buffered output of the text writers (CSV, NDJSON): rows
// are appended to buf, written out once it holds flushAt bytes; the first
// error sticks, and Close flushes and closes.
type textOut struct {
	w   io.Writer
	buf []byte
	c   io.Closer
	err error
}

func newTextOut(w io.Writer, c io.Closer) textOut {
	return textOut{w: w, c: c, buf: make([]byte, 0, flushAt+4096)}
}

func (o *textOut) flush() error {
	if len(o.buf) > 0 {
		_, err := o.w.Write(o.buf)
		o.buf = o.buf[:0]
		if err != nil {
			o.err = err
			return err
		}
	}
	return nil
}

// Close flushes what is buffered and closes the file, if the writer owns one.
func (o *textOut) Close() error {
	if o.err == ErrClosed {
		return ErrClosed
	}
	err := o.err
	if err == nil {
		err = o.flush()
	}
	o.err = ErrClosed
	return closeBoth(err, o.c)
}
