package node

import (
	"strconv"
	"testing"

	"github.com/valyala/fastjson"
)

// TestJSONIntMatchesStrconv: jsonInt's digit loop (up to 18 digits) answers
// what strconv.ParseInt does, and longer, fractional, exponent and
// non-RFC 8259 literals keep strconv's answer or are refused.
func TestJSONIntMatchesStrconv(t *testing.T) {
	var buf []byte
	for _, s := range []string{"0", "-0", "7", "-7", "1795564800000", "-1795564800000", "999999999999999999", "-999999999999999999",
		"1000000000000000000", "9223372036854775807", "-9223372036854775808", "9223372036854775808", "1.0", "1e3", "-1E3", "0.5"} {
		v, err := fastjson.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		got, gerr := jsonInt(v, &buf)
		want, werr := strconv.ParseInt(s, 10, 64)
		if got != want || (gerr == nil) != (werr == nil) {
			t.Errorf("jsonInt(%s) = %d, %v; strconv %d, %v", s, got, gerr, want, werr)
		}
	}
	for _, s := range []string{"01", "-01", "+1"} { // fastjson reads them; RFC 8259 does not
		if v, err := fastjson.Parse(s); err == nil {
			if _, err := jsonInt(v, &buf); err == nil {
				t.Errorf("jsonInt(%s) accepted", s)
			}
		}
	}
}
