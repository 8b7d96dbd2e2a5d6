package tabular

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// ParseJSON parses b with p, as p.ParseBytes does, but refuses an escape
// RFC 8259 does not define, a \u escape of a UTF-16 surrogate not paired,
// a raw control character (a byte below 0x20) in a string and text that
// is not UTF-8: fastjson, which tally parses JSON with, finds a string's
// end without reading its escapes and decodes them on use as best it can,
// so "\q" read as `\q`, "\u12" as itself and "\ud800" as its six bytes,
// and takes a tab, a NUL or a byte such as 0xff in a string as it is (a
// key of such bytes was stored, and written out later as a string no
// Parquet or Spark reader takes). Every JSON body and line tally reads goes
// through here. A text without a backslash and with every byte in
// 0x20-0x7f (compact ASCII JSON) costs one bytes.IndexByte and one pass 8
// bytes at a time more than the parse; text with multi-byte characters
// one utf8.Valid from the first of them.
func ParseJSON(p *fastjson.Parser, b []byte) (*fastjson.Value, error) {
	if err := checkEscapes(b); err != nil {
		return nil, err
	}
	if err := checkText(b); err != nil {
		return nil, err
	}
	return p.ParseBytes(b)
}

// checkText returns an error naming the first byte of b that is not part
// of valid UTF-8, else the first raw control character inside a string
// (checkControls). One pass 8 bytes at a time finds the first byte outside
// 0x20-0x7f, where most texts have none; the rest is read only when there
// is one.
func checkText(b []byte) error {
	const high = 0x8080808080808080
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		if (below0x20(x) | x&high) != 0 {
			break
		}
	}
	for ; i < len(b) && b[i] >= 0x20 && b[i] < 0x80; i++ {
	}
	if i == len(b) {
		return nil
	}
	// b[:i] is ASCII, so b[i] begins a character.
	if err := checkUTF8(b, i); err != nil {
		return err
	}
	return checkControls(b, i)
}

// checkUTF8 returns an error naming the first byte of b[from:] that is not
// part of valid UTF-8 (RFC 8259 section 8.1: JSON text is UTF-8); from is
// the start of a character.
func checkUTF8(b []byte, from int) error {
	if utf8.Valid(b[from:]) {
		return nil
	}
	i := from + badUTF8(string(b[from:]))
	return fmt.Errorf("invalid UTF-8 (byte 0x%02x) at offset %d: JSON text is UTF-8", b[i], i)
}

// badUTF8 returns the offset of the first byte of s that is not part of
// valid UTF-8, or -1 if s is valid. It is for naming the byte in an error:
// a caller on a hot path checks with utf8.Valid first.
func badUTF8(s string) int {
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return -1
}

// utf8Error returns an error naming the first byte of s, a CSV or Parquet
// string, that is not part of valid UTF-8 (format names the format), or
// nil if s is valid: such a string was read and stored as it was, and no
// Parquet, Delta or Spark reader takes it when tally writes it out.
func utf8Error(s, format string) error {
	if utf8.ValidString(s) {
		return nil
	}
	i := badUTF8(s)
	return fmt.Errorf("invalid UTF-8 (byte 0x%02x) at offset %d: %s text must be UTF-8", s[i], i, format)
}

// checkControls returns an error naming the first raw control character
// (a byte below 0x20) inside a string of b: RFC 8259 has them escaped
// (\t, \n, \u0000). Between tokens, tab, newline and carriage return are
// whitespace, and any other is left to the parser. b[:from] has no byte
// below 0x20 (checkText); most texts have none at all, which a pass 8
// bytes at a time finds; only one that has (pretty-printed JSON) is read
// byte by byte, following its strings.
func checkControls(b []byte, from int) error {
	i := from
	for ; i+8 <= len(b); i += 8 {
		if below0x20(binary.LittleEndian.Uint64(b[i:])) != 0 {
			break
		}
	}
	for ; i < len(b) && b[i] >= 0x20; i++ {
	}
	if i == len(b) {
		return nil
	}
	in := false // inside a string
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			in = !in
		case c == '\\' && in:
			i++ // the escaped byte (checkEscapes checked the escape)
		case c < 0x20 && in:
			return fmt.Errorf("raw control character %s at offset %d in a string: JSON strings have it escaped (%s)", controlName(c), i, controlEscape(c))
		}
	}
	return nil
}

// below0x20 has the high bit of x's lowest byte below 0x20 set (and maybe
// of bytes above it), and is 0 when x has none.
func below0x20(x uint64) uint64 {
	const low, high = 0x0101010101010101, 0x8080808080808080
	return (x - 0x20*low) &^ x & high
}

// controlName names control character c for an error message.
func controlName(c byte) string {
	switch c {
	case '\t':
		return "U+0009 (tab)"
	case '\n':
		return "U+000A (newline)"
	case '\r':
		return "U+000D (carriage return)"
	}
	return fmt.Sprintf("U+%04X", c)
}

// controlEscape is how JSON writes control character c in a string.
func controlEscape(c byte) string {
	switch c {
	case '\b':
		return `\b`
	case '\t':
		return `\t`
	case '\n':
		return `\n`
	case '\f':
		return `\f`
	case '\r':
		return `\r`
	}
	return fmt.Sprintf(`\u%04x`, c)
}

// checkEscapes returns an error naming the first backslash of b that does
// not begin one of RFC 8259's escapes: \" \\ \/ \b \f \n \r \t, or \u and
// four hex digits; or that begins a \u escape of a UTF-16 surrogate that
// is not half of a pair, a high one (\uD800-\uDBFF) then a low one
// (\uDC00-\uDFFF): RFC 8259's grammar takes it, but it is no character,
// and fastjson read a lone "\ud800" as its six bytes of text and
// "\ud800\u0041" as U+FFFD, the A lost. A backslash can only be valid
// inside a string, so b is read from backslash to backslash; one outside a
// string is invalid JSON anyway. A backslash that ends b is left to the
// parser (an unterminated string).
func checkEscapes(b []byte) error {
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\\')
		if j < 0 || i+j+1 >= len(b) {
			return nil
		}
		i += j
		switch b[i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			i += 2
		case 'u':
			k := 0 // hex digits after the \u
			for k < 4 && i+2+k < len(b) && isHex(b[i+2+k]) {
				k++
			}
			if k < 4 {
				return fmt.Errorf("invalid escape %q at offset %d: \\u takes four hex digits", b[i:i+2+k], i)
			}
			switch u := hex4(b[i+2:]); {
			case u >= 0xd800 && u <= 0xdbff:
				if i+12 > len(b) || b[i+6] != '\\' || b[i+7] != 'u' || !isLowSurrogate(b[i+8:i+12]) {
					return fmt.Errorf("unpaired surrogate escape %q at offset %d: a \\uD800-\\uDBFF escape is the first half of a UTF-16 pair and must be followed by a \\uDC00-\\uDFFF one", b[i:i+6], i)
				}
				i += 12
			case u >= 0xdc00 && u <= 0xdfff:
				return fmt.Errorf("unpaired surrogate escape %q at offset %d: a \\uDC00-\\uDFFF escape is the second half of a UTF-16 pair and must follow a \\uD800-\\uDBFF one", b[i:i+6], i)
			default:
				i += 6
			}
		default:
			return fmt.Errorf("invalid escape %q at offset %d: JSON escapes are \\\" \\\\ \\/ \\b \\f \\n \\r \\t and \\uXXXX", b[i:i+2], i)
		}
	}
	return nil
}

// hex4 returns the value of the four hex digits that begin b.
func hex4(b []byte) int {
	u := 0
	for _, c := range b[:4] {
		switch {
		case c <= '9':
			c -= '0'
		case c >= 'a':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		u = u<<4 | int(c)
	}
	return u
}

// isLowSurrogate reports whether b, four bytes, is the hex of a low
// surrogate, DC00-DFFF.
func isLowSurrogate(b []byte) bool {
	for _, c := range b {
		if !isHex(c) {
			return false
		}
	}
	u := hex4(b)
	return u >= 0xdc00 && u <= 0xdfff
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
