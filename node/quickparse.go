package node

import (
	"encoding/binary"
	"math/bits"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/tally-ml/tally/features"
)

// quickParse reads the common shape of a single-row lookup body,
//
//	{"params": {"feature_service_name": "...", "join_key_map": {...},
//	            "request_context_map": {...}, "workspace_name": "..."}}
//
// (members in any order, workspace_name and an empty request context
// optional), into w without building a parse tree: strings without
// escapes, join keys that are strings or plain non-negative integers,
// context values that are numbers, strings, booleans or null as their
// columns take them. It returns the service's plan, or nil when the body is
// anything else (another option, an escape, a duplicate, an error of any
// kind): then the caller parses it with fastjson, which answers exactly as
// before, errors included. What it accepts it reads as that parser does.
// Parsing the tree took a quarter of a lookup's instructions.
func (n *Node) quickParse(w *lookupWork, body []byte) *servicePlan {
	s := quickScan{b: body}
	w.spans = w.spans[:0]
	if !s.lit('{') {
		return nil
	}
	if k, ok := s.key(); !ok || string(k) != "params" || !s.lit('{') {
		return nil
	}
	var name, ws []byte
	var p *servicePlan
	jkm, rcm := -1, -1
	keysRead, ctxRead := false, false
	for first := true; ; first = false {
		if first && s.lit('}') {
			break
		}
		k, ok := s.key()
		if !ok {
			return nil
		}
		switch string(k) {
		case "feature_service_name":
			if name != nil {
				return nil
			}
			if name, ok = s.str(); !ok {
				return nil
			}
			// The usual order: the service first, then the maps are read
			// in one pass.
			if p = n.services[string(name)]; p == nil {
				return nil
			}
			p.prepare(n, w)
		case "workspace_name":
			if ws != nil {
				return nil
			}
			if ws, ok = s.str(); !ok {
				return nil
			}
		case "join_key_map":
			if jkm >= 0 {
				return nil
			}
			s.ws()
			jkm = s.i
			if p != nil {
				ok = p.quickKeys(w, &s, n.cfg.Limits.MaxKeys)
				keysRead = true
			} else {
				ok = s.skipFlat()
			}
			if !ok {
				return nil
			}
		case "request_context_map":
			if rcm >= 0 {
				return nil
			}
			s.ws()
			rcm = s.i
			if p != nil {
				ok = p.quickContext(w, &s, n.cfg.Limits.MaxKeys)
				ctxRead = true
			} else {
				ok = s.skipFlat()
			}
			if !ok {
				return nil
			}
		default:
			return nil
		}
		if s.lit('}') {
			break
		}
		if !s.lit(',') {
			return nil
		}
	}
	if !s.lit('}') {
		return nil
	}
	if s.ws(); s.i != len(s.b) || name == nil || jkm < 0 {
		return nil
	}
	if ws != nil && string(ws) != n.cfg.Workspace {
		return nil
	}
	if !keysRead && !p.quickKeys(w, &quickScan{b: body, i: jkm}, n.cfg.Limits.MaxKeys) {
		return nil
	}
	if rcm < 0 {
		if len(p.ctxCols) > 0 {
			return nil
		}
	} else if !ctxRead && !p.quickContext(w, &quickScan{b: body, i: rcm}, n.cfg.Limits.MaxKeys) {
		return nil
	}
	w.level, w.info = ReadDefault, ReadInfo{}
	return p
}

// quickKeys reads the join_key_map object at s into w.keys.
func (p *servicePlan) quickKeys(w *lookupWork, s *quickScan, maxKeys int) bool {
	if !s.lit('{') {
		return false
	}
	var seen uint64
	count := 0
	for !s.lit('}') {
		if count > 0 && !s.lit(',') {
			return false
		}
		k, ok := s.key()
		if !ok {
			return false
		}
		i := 0
		for i < len(p.joinKeys) && p.joinKeys[i] != string(k) {
			i++
		}
		if i == len(p.joinKeys) || i >= 64 || seen&(1<<i) != 0 {
			return false
		}
		seen |= 1 << i
		count++
		start := s.peekAt()
		if !quickKey(w, s, i) {
			return false
		}
		w.spans = append(w.spans, quickSpan{start: start, end: s.i, idx: i})
	}
	return count == len(p.joinKeys) && count <= maxKeys
}

// quickKey reads join key i's value at s into w.keys[i]: a string, or a
// canonical non-negative integer literal (its own decimal text, as jsonInt
// and strconv.AppendInt would write it).
func quickKey(w *lookupWork, s *quickScan, i int) bool {
	switch c := s.peek(); {
	case c == '"':
		var ok bool
		w.keys[i], ok = s.str()
		return ok
	case c >= '1' && c <= '9' || c == '0':
		start := s.i
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
		}
		lit := s.b[start:s.i:s.i]
		if len(lit) > 18 || (lit[0] == '0' && len(lit) > 1) {
			return false
		}
		if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
			return false
		}
		w.keys[i] = lit
		return true
	}
	return false
}

// quickContext reads the request_context_map object at s into w.ctx,
// w.ctxOK and w.ctxStr.
func (p *servicePlan) quickContext(w *lookupWork, s *quickScan, maxKeys int) bool {
	if !s.lit('{') {
		return false
	}
	var seen uint64
	count := 0
	for !s.lit('}') {
		if count > 0 && !s.lit(',') {
			return false
		}
		k, ok := s.key()
		if !ok {
			return false
		}
		i := 0
		for i < len(p.ctxCols) && p.ctxCols[i].Name != string(k) {
			i++
		}
		if i == len(p.ctxCols) || i >= 64 || seen&(1<<i) != 0 {
			return false
		}
		seen |= 1 << i
		count++
		start := s.peekAt()
		if !p.quickValue(w, s, i) {
			return false
		}
		w.spans = append(w.spans, quickSpan{start: start, end: s.i, ctx: true, idx: i})
	}
	return count == len(p.ctxCols) && count <= maxKeys
}

// quickValue reads request context column i's value at s into w.ctx[i],
// w.ctxOK[i] and w.ctxStr[i]: a number, a string, a boolean or null, as
// the column takes them.
func (p *servicePlan) quickValue(w *lookupWork, s *quickScan, i int) bool {
	typ := p.ctxCols[i].Type
	switch c := s.peek(); {
	case c == '"':
		if typ != features.String {
			return false
		}
		b, ok := s.str()
		if !ok {
			return false
		}
		// Lives as long as the body, which outlives the request.
		w.ctx[i], w.ctxOK[i], w.ctxStr[i] = 0, true, unsafe.String(unsafe.SliceData(b), len(b))
	case c == 't' || c == 'f':
		if typ != features.Bool {
			return false
		}
		if !s.word() {
			return false
		}
		w.ctx[i], w.ctxOK[i] = b2f(c == 't'), true
	case c == 'n':
		if !s.word() {
			return false
		}
		w.ctx[i], w.ctxOK[i], w.ctxStr[i] = 0, false, ""
	default:
		if typ == features.String {
			return false
		}
		f, ok := s.number()
		if !ok {
			return false
		}
		w.ctx[i], w.ctxOK[i] = f, true
	}
	return true
}

// quickSpan is where quickParse found a value in the body: bytes [start,
// end), join key idx, or request context column idx when ctx.
type quickSpan struct {
	start, end int
	ctx        bool
	idx        int
}

// quickScan walks a JSON body; every method reports false (or leaves the
// position where it failed) on anything outside quickParse's shape.
type quickScan struct {
	b []byte
	i int
}

func (s *quickScan) ws() {
	if s.i < len(s.b) && s.b[s.i] > ' ' {
		return // the usual case, a body without whitespace: inlined
	}
	s.skipWS()
}

// skipWS is ws's loop.
func (s *quickScan) skipWS() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// lit consumes c after any whitespace.
func (s *quickScan) lit(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a string without escapes or raw control characters (bytes
// below 0x20, which RFC 8259 has escaped: tabular.ParseJSON refuses them),
// in valid UTF-8 (which tabular.ParseJSON refuses otherwise too). Only a
// string with a byte of 0x80 or above is checked for that, with
// utf8.Valid: the words read are or'ed together on the way.
func (s *quickScan) str() ([]byte, bool) {
	if !s.lit('"') {
		return nil, false
	}
	rest := s.b[s.i:]
	n := 0
	var seen uint64 // the bytes read, or'ed (the last word's beyond the quote too)
	// Eight bytes at a time: the lowest byte that is a quote, a backslash
	// or a control character ends the string (the tests' false positives
	// lie only above a true one).
	for ; n+8 <= len(rest); n += 8 {
		x := binary.LittleEndian.Uint64(rest[n:])
		seen |= x
		if m := zeroByte(x^quotes) | zeroByte(x^backslashes) | (x-0x20*lowBits)&^x&highBits; m != 0 {
			n += bits.TrailingZeros64(m) / 8
			if rest[n] != '"' {
				return nil, false
			}
			return s.strEnd(rest, n, seen)
		}
	}
	for ; n < len(rest); n++ {
		switch c := rest[n]; {
		case c == '"':
			return s.strEnd(rest, n, seen)
		case c == '\\' || c < 0x20:
			return nil, false
		default:
			seen |= uint64(c)
		}
	}
	return nil, false
}

// strEnd ends str at the quote rest[n], seen the bytes read or'ed: a
// string with a byte of 0x80 or above must be valid UTF-8.
func (s *quickScan) strEnd(rest []byte, n int, seen uint64) ([]byte, bool) {
	if seen&highBits != 0 && !utf8.Valid(rest[:n]) {
		return nil, false
	}
	s.i += n + 1
	return rest[:n:n], true
}

const (
	quotes      = 0x2222222222222222 // '"' in every byte
	backslashes = 0x5c5c5c5c5c5c5c5c // '\\' in every byte
	lowBits     = 0x0101010101010101
	highBits    = 0x8080808080808080
)

// zeroByte has the high bit of x's lowest zero byte set (and maybe of
// bytes above it), and is 0 when x has no zero byte.
func zeroByte(x uint64) uint64 { return (x - lowBits) &^ x & highBits }

// key reads an object member's name and its colon.
func (s *quickScan) key() ([]byte, bool) {
	k, ok := s.str()
	return k, ok && s.lit(':')
}

// peekAt skips whitespace and returns the position reached.
func (s *quickScan) peekAt() int {
	s.ws()
	return s.i
}

// peek returns the next byte after any whitespace, 0 at the end.
func (s *quickScan) peek() byte {
	if s.ws(); s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

// word reads true, false or null.
func (s *quickScan) word() bool {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= 'a' && s.b[s.i] <= 'z' {
		s.i++
	}
	w := string(s.b[start:s.i])
	return w == "true" || w == "false" || w == "null"
}

// skipFlat skips an object whose values are plain strings, numbers, true,
// false or null; a number is only skipped here (the second pass reads it).
func (s *quickScan) skipFlat() bool {
	if !s.lit('{') {
		return false
	}
	for first := true; ; first = false {
		if first && s.lit('}') {
			return true
		}
		if _, ok := s.key(); !ok {
			return false
		}
		switch c := s.peek(); {
		case c == '"':
			if _, ok := s.str(); !ok {
				return false
			}
		case c == 't' || c == 'f' || c == 'n':
			if !s.word() {
				return false
			}
		default:
			// A number, read (and checked) by the second pass.
			start := s.i
			for s.i < len(s.b) && numberChar[s.b[s.i]] {
				s.i++
			}
			if s.i == start {
				return false
			}
		}
		if s.lit('}') {
			return true
		}
		if !s.lit(',') {
			return false
		}
	}
}

// numberChar marks the bytes a JSON number is written with.
var numberChar = [256]bool{'0': true, '1': true, '2': true, '3': true, '4': true, '5': true, '6': true,
	'7': true, '8': true, '9': true, '-': true, '+': true, '.': true, 'e': true, 'E': true}

// exactPow10 are the powers of ten a float64 holds exactly.
var exactPow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// number reads an RFC 8259 number as strconv.ParseFloat would: exactly
// (one correctly rounded operation) when its digits fit 2^53 and its
// decimal exponent is within ±22, else by Eisel-Lemire when its digits fit
// 19, else (or when that cannot decide) by ParseFloat itself. It refuses
// numbers out of float64's range.
func (s *quickScan) number() (float64, bool) {
	b, start := s.b, s.i
	i := s.i
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	var mant uint64
	nd, exp := 0, 0
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			mant = mant*10 + uint64(b[i]-'0')
			nd++
		}
	default:
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		f0 := i
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			mant = mant*10 + uint64(b[i]-'0')
			nd++
			exp--
		}
		if i == f0 {
			return 0, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		eneg := i < len(b) && b[i] == '-'
		if i < len(b) && (b[i] == '-' || b[i] == '+') {
			i++
		}
		e0, e := i, 0
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			if i-e0 < 6 {
				e = e*10 + int(b[i]-'0')
			}
		}
		if i == e0 {
			return 0, false
		}
		if i-e0 >= 6 {
			nd = 100 // beyond the fast path
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	s.i = i
	var f float64
	switch {
	case nd <= 19 && mant < 1<<53 && exp >= -22 && exp <= 22:
		f = float64(mant)
		if exp < 0 {
			f /= exactPow10[-exp]
		} else {
			f *= exactPow10[exp]
		}
		if neg {
			f = -f
		}
	default:
		ok := false
		if nd <= 19 {
			f, ok = eiselLemire64(mant, exp, neg)
		}
		if !ok {
			var err error
			if f, err = strconv.ParseFloat(unsafe.String(&b[start], i-start), 64); err != nil {
				return 0, false
			}
		}
	}
	return f, true
}
