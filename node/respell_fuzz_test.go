package node

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// spellLookup writes a get-features body for user with request context
// amt, lat, long, spelled as flags choose; every spelling means the same
// request (RFC 8259), so every one must be answered alike.
//
//	bit 0: the user's characters as \u escapes (surrogate pairs above U+FFFF)
//	bit 1: the members in another order
//	bit 2: whitespace around every token
//	bit 3: the numbers with exponents (1.25e1), in shortest form otherwise
//	bit 4: a user of plain digits as a JSON integer
//	bit 5: camelCase member names (featureServiceName, joinKeyMap, ...)
//	bit 6: workspace_name "default" named
//	bit 7: member names with their first letter as a \u escape
func spellLookup(user string, amt, lat, long float64, flags uint8) []byte {
	ws := ""
	if flags&4 != 0 {
		ws = " \n\t"
	}
	str := func(s string) string {
		if flags&1 == 0 {
			var b strings.Builder
			b.WriteByte('"')
			for _, r := range s {
				switch {
				case r == '"' || r == '\\':
					b.WriteByte('\\')
					b.WriteRune(r)
				case r < 0x20:
					fmt.Fprintf(&b, `\u%04x`, r)
				default:
					b.WriteRune(r)
				}
			}
			b.WriteByte('"')
			return b.String()
		}
		var b strings.Builder
		b.WriteByte('"')
		for _, r := range s {
			if r > 0xffff {
				r -= 0x10000
				fmt.Fprintf(&b, `\u%04X\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
				continue
			}
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		b.WriteByte('"')
		return b.String()
	}
	num := func(f float64) string {
		if flags&8 != 0 {
			return strconv.FormatFloat(f, 'e', -1, 64)
		}
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	key := str(user)
	if flags&16 != 0 && user != "" && len(user) <= 18 && strings.Trim(user, "0123456789") == "" && (user == "0" || user[0] != '0') {
		key = user
	}
	name := func(snake, camel string) string {
		if flags&32 != 0 {
			return `"` + camel + `"`
		}
		return `"` + snake + `"`
	}
	member := func(k, v string) string {
		if flags&128 != 0 {
			k = fmt.Sprintf(`"\u%04x`, k[1]) + k[2:]
		}
		return ws + k + ws + ":" + ws + v + ws
	}
	obj := func(ms ...string) string { return "{" + strings.Join(ms, ",") + "}" }
	jkm := []string{member(`"user_id"`, key), member(`"merchant"`, str("m1")), member(`"country"`, str("FR"))}
	rcm := []string{member(`"amt"`, num(amt)), member(`"lat"`, num(lat)), member(`"long"`, num(long))}
	params := []string{
		member(name("feature_service_name", "featureServiceName"), str("fraud_detection")),
		member(name("join_key_map", "joinKeyMap"), obj(jkm...)),
		member(name("request_context_map", "requestContextMap"), obj(rcm...)),
	}
	if flags&64 != 0 {
		params = append(params, member(name("workspace_name", "workspaceName"), str("default")))
	}
	if flags&2 != 0 {
		jkm[0], jkm[2] = jkm[2], jkm[0]
		rcm[0], rcm[1] = rcm[1], rcm[0]
		params[0], params[len(params)-1] = params[len(params)-1], params[0]
		params = []string{member(name("feature_service_name", "featureServiceName"), str("fraud_detection"))}
		if flags&64 != 0 {
			params = append(params, member(name("workspace_name", "workspaceName"), str("default")))
		}
		params = append([]string{member(name("request_context_map", "requestContextMap"), obj(rcm...)),
			member(name("join_key_map", "joinKeyMap"), obj(jkm...))}, params...)
	}
	return []byte(ws + `{` + member(`"params"`, obj(params...)) + `}` + ws)
}

// FuzzLookupRespelled checks the lookup path a node serves requests by
// (parseLookup: its learned skeletons, quickParse, else fastjson) against
// itself: a body and any re-spelling of it (escapes, member order,
// whitespace, number forms, an integer key for a key of digits, camelCase
// names, the default workspace named) get the same answer, byte for byte,
// or the same refusal. The node learns the shapes of the bodies it reads as
// it goes, so later bodies take the skeletons' path.
func FuzzLookupRespelled(f *testing.F) {
	f.Add("alice", 12.5, 48.8, 2.3, uint8(0), uint8(255))
	f.Add("7", 0.0, 0.0, 0.0, uint8(16), uint8(1))
	f.Add("ålice ✓ 😀", -1.5e-7, 1e300, -0.0, uint8(2), uint8(13))
	f.Add("a\"b\\c\x01", 12345678901234567890123.5, 48.800000000000000710542735760100185871124267578125, 2.3, uint8(4), uint8(40))
	f.Add("0", 1e-320, 5e-324, math.MaxFloat64, uint8(0), uint8(16))
	n := quickTestNode(f)
	f.Fuzz(func(t *testing.T, user string, amt, lat, long float64, a, b uint8) {
		if !utf8.ValidString(user) || math.IsNaN(amt) || math.IsInf(amt, 0) || math.IsNaN(lat) || math.IsInf(lat, 0) || math.IsNaN(long) || math.IsInf(long, 0) {
			return // no JSON spelling, or not one meaning
		}
		// answer is the body's answer, or "refused <status> <code>".
		answer := func(flags uint8) string {
			out, aerr := n.GetFeatures(nil, spellLookup(user, amt, lat, long, flags))
			if aerr != nil {
				return fmt.Sprintf("refused %d %s", aerr.Status, aerr.Code)
			}
			return string(out)
		}
		outA, outB := answer(a), answer(b)
		if outA != outB {
			t.Fatalf("two spellings of one lookup answered differently:\n%s\n -> %s\n%s\n -> %s", spellLookup(user, amt, lat, long, a), outA, spellLookup(user, amt, lat, long, b), outB)
		}
		// The same body again, now maybe read by a skeleton it taught.
		if again := answer(a); again != outA {
			t.Fatalf("one body answered differently the second time:\n%s\n -> %s\n -> %s", spellLookup(user, amt, lat, long, a), outA, again)
		}
	})
}
