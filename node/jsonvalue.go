package node

import (
	"github.com/valyala/fastjson"

	"github.com/tally-ml/tally/tabular"
)

// appendJSONValue appends v as JSON. fastjson's own MarshalTo writes a
// string holding a control character or a non-printable rune with Go's
// strconv quoting ("\x00", "\v", "\U0010ffff"), which is not JSON: a
// Feast lookup echoing such a join key answered a body no client could
// read (FuzzFeastOnlineFeatures found it). Strings and object keys go
// through tabular.AppendJSONString; numbers keep their text; the rest is
// fastjson's.
func appendJSONValue(dst []byte, v *fastjson.Value) []byte {
	switch v.Type() {
	case fastjson.TypeString:
		return tabular.AppendJSONString(dst, string(v.GetStringBytes()))
	case fastjson.TypeArray:
		dst = append(dst, '[')
		for i, e := range v.GetArray() {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONValue(dst, e)
		}
		return append(dst, ']')
	case fastjson.TypeObject:
		dst = append(dst, '{')
		first := true
		v.GetObject().Visit(func(k []byte, e *fastjson.Value) {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			dst = tabular.AppendJSONString(dst, string(k))
			dst = append(dst, ':')
			dst = appendJSONValue(dst, e)
		})
		return append(dst, '}')
	}
	return v.MarshalTo(dst)
}
