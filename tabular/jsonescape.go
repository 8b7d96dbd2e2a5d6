package tabular

import (
	"bytes"
	"fmt"

	"github.com/valyala/fastjson"
)

// ParseJSON parses b with p, as p.ParseBytes does, but refuses an escape
// RFC 8259 does not define: fastjson, which tally parses JSON with, finds a
// string's end without reading its escapes and decodes them on use as best
// it can, so "\q" read as `\q` and "\u12" as itself. Every JSON body and
// line tally reads goes through here. A text without a backslash costs one
// bytes.IndexByte more than the parse.
func ParseJSON(p *fastjson.Parser, b []byte) (*fastjson.Value, error) {
	if err := checkEscapes(b); err != nil {
		return nil, err
	}
	return p.ParseBytes(b)
}

// checkEscapes returns an error naming the first backslash of b that does
// not begin one of RFC 8259's escapes: \" \\ \/ \b \f \n \r \t, or \u and
// four hex digits. A backslash can only be valid inside a string, so b is
// read from backslash to backslash; one outside a string is invalid JSON
// anyway. A backslash that ends b is left to the parser (an unterminated
// string).
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
			i += 6
		default:
			return fmt.Errorf("invalid escape %q at offset %d: JSON escapes are \\\" \\\\ \\/ \\b \\f \\n \\r \\t and \\uXXXX", b[i:i+2], i)
		}
	}
	return nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
