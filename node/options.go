package node

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/tally-ml/tally/tabular"
)

// Request options are typed strictly: an option of the wrong JSON type is
// refused (400, naming the field and the type it wants), never read as its
// default; JSON null is the same as leaving the option out. fastjson parses
// numbers leniently (01, +1, .5, 1., inf, nan); every number tally reads
// goes through jsonNumber, which holds them to RFC 8259, and a lookup body,
// whose members it does not read are ignored, is checked whole (badNumber).

// jsonTypeName names a JSON value's type for an error message.
func jsonTypeName(v *fastjson.Value) string {
	switch v.Type() {
	case fastjson.TypeTrue, fastjson.TypeFalse:
		return "a boolean"
	case fastjson.TypeNumber:
		return "a number"
	case fastjson.TypeString:
		return "a string"
	case fastjson.TypeArray:
		return "an array"
	case fastjson.TypeObject:
		return "an object"
	}
	return "null"
}

// option returns the value of the option spelled snake or camel in obj
// (nil if absent or null) and the spelling found, for error messages. An
// object giving both spellings, even one of them null, is refused: msg
// names them (prefix before each, e.g. "params."), and v is nil. Which of
// the two would be read is not for a client to guess, as for a key given
// twice (checkNoDuplicates).
func option(obj *fastjson.Value, prefix, snake, camel string) (v *fastjson.Value, name, msg string) {
	sv, cv := obj.Get(snake), obj.Get(camel)
	switch {
	case sv != nil && cv != nil:
		return nil, snake, fmt.Sprintf("%s%s and %s%s are one option given twice: give one of them", prefix, snake, prefix, camel)
	case sv != nil && sv.Type() != fastjson.TypeNull:
		return sv, snake, ""
	case cv != nil && cv.Type() != fastjson.TypeNull:
		return cv, camel, ""
	}
	return nil, snake, ""
}

// wantType is the message for option field holding v where want (e.g.
// "true or false") belongs.
func wantType(field, want string, v *fastjson.Value) string {
	return fmt.Sprintf("%s must be %s, got %s", field, want, jsonTypeName(v))
}

// boolOption reads an optional boolean: def when absent or null, a message
// naming field when it is not true or false.
func boolOption(obj *fastjson.Value, prefix, snake, camel string, def bool) (bool, string) {
	v, name, msg := option(obj, prefix, snake, camel)
	if v == nil {
		return def, msg
	}
	switch v.Type() {
	case fastjson.TypeTrue:
		return true, ""
	case fastjson.TypeFalse:
		return false, ""
	}
	return def, wantType(prefix+name, "true or false", v)
}

// duplicateKey returns a key that appears more than once in o, or "".
// Quadratic, for small objects; it allocates only the key it returns.
func duplicateKey(o *fastjson.Object) string {
	dup := ""
	i := 0
	o.Visit(func(k []byte, _ *fastjson.Value) {
		j := 0
		o.Visit(func(k2 []byte, _ *fastjson.Value) {
			if j < i && dup == "" && string(k) == string(k2) {
				dup = string(k)
			}
			j++
		})
		i++
	})
	return dup
}

// checkNoDuplicates refuses an object of options that names a key twice
// (which value would win is not something a client should have to guess).
func checkNoDuplicates(v *fastjson.Value, where string) string {
	o, err := v.Object()
	if err != nil {
		return ""
	}
	if d := duplicateKey(o); d != "" {
		return fmt.Sprintf("%sfield %q appears twice", where, d)
	}
	return ""
}

// jsonNumber returns the text of number v in *buf (scratch), or false if
// the text is not a number as RFC 8259 writes it: an optional minus, an
// integer part without leading zeros, an optional fraction and exponent.
func jsonNumber(v *fastjson.Value, buf *[]byte) ([]byte, bool) {
	*buf = v.MarshalTo((*buf)[:0])
	return *buf, tabular.IsJSONNumber(*buf)
}

// badNumber returns the first number at any depth of v whose text RFC 8259
// does not write, and where it is (".extra", ".a[1].b"; "" for v itself),
// or "" for text. fastjson keeps a number's text unread until asked (and takes
// 01, +1, .5, 1., 1.2.3, inf and nan), so a member nothing reads, as a
// lookup ignores those it does not know, was taken as it was. nan takes
// NaN, as Python's json module writes a missing float (a client posting a
// pandas DataFrame to Feast's writes sends it). One pass over the parsed values, with *buf as
// scratch; it allocates only for its answer.
func badNumber(v *fastjson.Value, buf *[]byte, nan bool) (where, text string) {
	switch v.Type() {
	case fastjson.TypeNumber:
		if b, ok := jsonNumber(v, buf); !ok && !(nan && string(b) == "NaN") {
			return "", string(b)
		}
	case fastjson.TypeArray:
		for i, e := range v.GetArray() {
			if w, t := badNumber(e, buf, nan); t != "" {
				return "[" + strconv.Itoa(i) + "]" + w, t
			}
		}
	case fastjson.TypeObject:
		o, _ := v.Object()
		o.Visit(func(k []byte, e *fastjson.Value) {
			if text != "" {
				return
			}
			if w, t := badNumber(e, buf, nan); t != "" {
				where, text = "."+string(k)+w, t
			}
		})
	}
	return where, text
}

// numberMessage says that text, found at where (badNumber), is not a JSON
// number.
func numberMessage(where, text string) string {
	if where != "" {
		where = strings.TrimPrefix(where, ".") + ": "
	}
	return fmt.Sprintf("%s%s is not a number as RFC 8259 writes it (no leading zeros, + or bare point; e.g. 0.5, -12, 1e3)", where, text)
}

// jsonInt reads number v as an int64: an RFC 8259 integer literal (no
// fraction or exponent) within range.
func jsonInt(v *fastjson.Value, buf *[]byte) (int64, error) {
	b, ok := jsonNumber(v, buf)
	if !ok || len(b) == 0 {
		return 0, strconv.ErrSyntax
	}
	// At most 18 digits, no fraction or exponent (an epoch-ms timestamp):
	// no overflow is possible, so the digits are summed here; strconv's
	// general parser was a tenth of a bulk ingest's instructions.
	neg, d := b[0] == '-', b
	if neg {
		d = b[1:]
	}
	if len(d) <= 18 {
		var n int64
		for _, c := range d {
			if c < '0' || c > '9' { // a fraction or an exponent
				return strconv.ParseInt(unsafe.String(&b[0], len(b)), 10, 64)
			}
			n = n*10 + int64(c-'0')
		}
		if neg {
			n = -n
		}
		return n, nil
	}
	return strconv.ParseInt(unsafe.String(&b[0], len(b)), 10, 64)
}

// QueryBool reads an optional boolean query parameter: absent or empty is
// false; anything but true or false is a 400 naming it.
func QueryBool(args interface{ Peek(string) []byte }, name string) (bool, *APIError) {
	switch v := string(args.Peek(name)); v {
	case "", "false":
		return false, nil
	case "true":
		return true, nil
	default:
		return false, badRequest("INVALID_REQUEST", "?%s=%s: must be true or false", name, v)
	}
}

// A write reads the options it knows and nothing else, so a misspelled one
// ("dryrun", "?dryrun=true", "?as-of=...") would be read as left out and
// its default taken: a dry run that writes, rows valid from now. So a
// write's body member or query parameter it does not read is refused
// (unknownMember, checkQuery), as is a query parameter given twice (which
// of the two is read is not for a client to guess). Lookups are not held
// to this: Tecton's and Feast's clients send members tally has no use for.

// unknownMember returns the name of the first member of o for which known
// is false; ok is false when there is none. (A member may be named "": the
// name alone cannot say there is none.) known is given the name as o holds
// it, so that it can look the name up without allocating; it must not keep
// it. unknownMember allocates only for its answer.
func unknownMember(o *fastjson.Object, known func(name []byte) bool) (name string, ok bool) {
	o.Visit(func(k []byte, _ *fastjson.Value) {
		if !ok && !known(k) {
			name, ok = string(k), true
		}
	})
	return name, ok
}

// checkQuery refuses a query parameter of a write to endpoint that is not
// one of known, or that is given twice.
func checkQuery(args *fasthttp.Args, endpoint string, known ...string) *APIError {
	var aerr *APIError
	seen := make([]string, 0, 4)
	args.VisitAll(func(k, _ []byte) {
		switch {
		case aerr != nil:
		case !slices.Contains(known, string(k)):
			takes := "no query parameter"
			if len(known) > 0 {
				takes = strings.Join(known, ", ")
			}
			aerr = badRequest("INVALID_REQUEST", "unknown query parameter %q: %s takes %s; nothing was read", k, endpoint, takes)
		case slices.Contains(seen, string(k)):
			aerr = badRequest("INVALID_REQUEST", "query parameter %q is given twice: give it once; nothing was read", k)
		default:
			seen = append(seen, string(k))
		}
	})
	return aerr
}
