package node

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/valyala/fastjson"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/tabular"
	"github.com/tally-ml/tally/windows"
)

// APIError is a refused request: Status says whose fault it is (4xx the
// client's, 5xx the node's), Code is stable for programs, Message for people.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string { return e.Message }

func badRequest(code, format string, args ...any) *APIError {
	return &APIError{Status: 400, Code: code, Message: fmt.Sprintf(format, args...)}
}

// lookupWork is the pooled scratch of one lookup request; in steady state a
// lookup allocates nothing.
type lookupWork struct {
	parser   fastjson.Parser
	keys     [][]byte
	keyBuf   []byte
	numBuf   []byte
	ctx      []float64
	ctxOK    []bool
	ctxStr   []string // string request fields (a model's string inputs), into the parsed body
	vals     [][]windows.Value
	runVals  [][]windows.Value // each plan run's read, which vals' parts alias (readLocal)
	tnums    [][]float64
	tstrs    [][]string
	tok      [][]bool
	tfound   []bool // whether each table had a row for its key
	slots    []float64
	slotOK   []bool
	reqVal   []float64
	reqOK    []bool
	statuses []bool
	reads    []Read
	hashes   []uint64        // each view read's key hash (read)
	views    []*windows.View // and its view
	ranges   [][2]int        // and its aggregations there (store.Store.View)
	readKeys [][]byte        // and its key
	spans    []quickSpan     // where quickParse found the values (skeleton.go)
	level    ReadLevel       // a cluster lookup's (parseReadLevel)
	info     ReadInfo        // what its reads reported
}

var lookupPool sync.Pool

func getLookupWork() *lookupWork {
	w, _ := lookupPool.Get().(*lookupWork)
	if w == nil {
		w = &lookupWork{}
	}
	return w
}

// prepare sizes w's scratch for the plan.
func (p *servicePlan) prepare(n *Node, w *lookupWork) {
	w.keys = resize(w.keys, len(p.joinKeys))
	w.ctx = resize(w.ctx, len(p.ctxCols))
	w.ctxOK = resize(w.ctxOK, len(p.ctxCols))
	w.ctxStr = resize(w.ctxStr, len(p.ctxCols))
	w.vals = resize(w.vals, len(p.aggViews))
	w.runVals = resize(w.runVals, len(p.runs))
	w.tnums = resize(w.tnums, len(p.tables))
	w.tstrs = resize(w.tstrs, len(p.tables))
	w.tok = resize(w.tok, len(p.tables))
	w.tfound = resize(w.tfound, len(p.tables))
	for i, t := range p.tables {
		nc := len(n.Repo().Tables[t].Columns)
		w.tnums[i] = resize(w.tnums[i], nc)
		w.tstrs[i] = resize(w.tstrs[i], nc)
		w.tok[i] = resize(w.tok[i], nc)
	}
	w.slots = resize(w.slots, p.maxSlots)
	w.slotOK = resize(w.slotOK, p.maxSlots)
	w.reqVal = resize(w.reqVal, len(p.reqs))
	w.reqOK = resize(w.reqOK, len(p.reqs))
	w.statuses = resize(w.statuses, len(p.outputs))
}

func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// metaOptions are Tecton's metadata_options.
type metaOptions struct {
	names, types, status, effective bool
}

// defaultMeta are the metadata options of a request that sets none.
var defaultMeta = metaOptions{names: true, types: true, status: true}

func parseMetaOptions(params *fastjson.Value) (metaOptions, *APIError) {
	m := defaultMeta
	o, name, msg := option(params, "params.", "metadata_options", "metadataOptions")
	if msg != "" {
		return m, badRequest("INVALID_REQUEST", "%s", msg)
	}
	if o == nil {
		return m, nil
	}
	if o.Type() != fastjson.TypeObject {
		return m, badRequest("INVALID_REQUEST", "%s", wantType("params."+name, "an object", o))
	}
	prefix := "params." + name + "."
	if msg := checkNoDuplicates(o, prefix); msg != "" {
		return m, badRequest("INVALID_REQUEST", "%s", msg)
	}
	var msgs [4]string
	m.names, msgs[0] = boolOption(o, prefix, "include_names", "includeNames", true)
	m.types, msgs[1] = boolOption(o, prefix, "include_data_types", "includeDataTypes", true)
	m.status, msgs[2] = boolOption(o, prefix, "include_serving_status", "includeServingStatus", true)
	m.effective, msgs[3] = boolOption(o, prefix, "include_effective_times", "includeEffectiveTimes", false)
	for _, msg := range msgs {
		if msg != "" {
			return m, badRequest("INVALID_REQUEST", "%s", msg)
		}
	}
	return m, nil
}

// parseParams parses a get-features body with w's parser far enough to
// find its service.
func (n *Node) parseParams(w *lookupWork, body []byte) (*fastjson.Value, *servicePlan, *APIError) {
	root, err := tabular.ParseJSON(&w.parser, body)
	if err != nil {
		return nil, nil, badRequest("MALFORMED_JSON", "request body is not valid JSON: %v", err)
	}
	if where, text := badNumber(root, &w.numBuf, false); text != "" {
		return nil, nil, badRequest("MALFORMED_JSON", "request body is not valid JSON: %s", numberMessage(where, text))
	}
	if msg := checkNoDuplicates(root, ""); msg != "" {
		return nil, nil, badRequest("INVALID_REQUEST", "%s", msg)
	}
	params := root.Get("params")
	if params == nil || params.Type() != fastjson.TypeObject {
		got := ""
		if params != nil {
			got = ", got " + jsonTypeName(params)
		}
		return nil, nil, badRequest("INVALID_REQUEST", `request needs "params": {"feature_service_name": ..., "join_key_map": {...}}%s`, got)
	}
	if msg := checkNoDuplicates(params, "params."); msg != "" {
		return nil, nil, badRequest("INVALID_REQUEST", "%s", msg)
	}
	sv, svName, msg := option(params, "params.", "feature_service_name", "featureServiceName")
	if msg != "" {
		return nil, nil, badRequest("INVALID_REQUEST", "%s", msg)
	}
	if sv == nil {
		return nil, nil, badRequest("INVALID_REQUEST", "params.feature_service_name is required: the name of a feature service")
	}
	if sv.Type() != fastjson.TypeString {
		return nil, nil, badRequest("INVALID_REQUEST", "%s", wantType("params."+svName, "a string", sv))
	}
	name, _ := sv.StringBytes()
	p := n.services[string(name)]
	if p == nil {
		return nil, nil, &APIError{Status: 404, Code: "UNKNOWN_FEATURE_SERVICE", Message: fmt.Sprintf("unknown feature service %q: this node serves %s", name, n.serviceNames())}
	}
	ws, wsName, msg := option(params, "params.", "workspace_name", "workspaceName")
	if msg != "" {
		return nil, nil, badRequest("INVALID_REQUEST", "%s", msg)
	}
	if ws != nil {
		if ws.Type() != fastjson.TypeString {
			return nil, nil, badRequest("INVALID_REQUEST", "%s", wantType("params."+wsName, "a string", ws))
		}
		if s, _ := ws.StringBytes(); string(s) != n.cfg.Workspace {
			return nil, nil, &APIError{Status: 404, Code: "UNKNOWN_WORKSPACE", Message: fmt.Sprintf("workspace %s is not served here: this node serves workspace %q", ws, n.cfg.Workspace)}
		}
	}
	return params, p, nil
}

func (n *Node) serviceNames() string {
	var names []string
	for _, s := range n.Repo().Services {
		names = append(names, s.Name)
	}
	return strings.Join(names, ", ")
}

// readTime returns the read time a request asks for (as_of) or now.
func (n *Node) readTime(params *fastjson.Value, p *servicePlan, now int64, buf *[]byte) (int64, *APIError) {
	v, name, msg := option(params, "params.", "as_of", "asOf")
	if msg != "" {
		return 0, badRequest("INVALID_REQUEST", "%s", msg)
	}
	if v == nil {
		return now, nil
	}
	t, reason := parseTimestamp(v, buf)
	if reason != "" {
		return 0, badRequest("INVALID_REQUEST", "params.%s: %s", name, reason)
	}
	if t > now+n.cfg.MaxFuture.Milliseconds() {
		return 0, badRequest("INVALID_REQUEST", "params.as_of %s is in the future beyond max_future %s", fmtMillis(t), n.cfg.MaxFuture)
	}
	if t < now-p.lateness {
		return 0, badRequest("INVALID_REQUEST", "params.as_of %s is older than the allowed lateness (%s): online reads answer for recent times only; use historical features for the past", fmtMillis(t), time.Duration(p.lateness)*time.Millisecond)
	}
	return t, nil
}

// parseRow reads one row's join_key_map and request_context_map into w. A
// row naming a member twice is refused (a batch row, as a lookup's params).
func (n *Node) parseRow(p *servicePlan, row *fastjson.Value, w *lookupWork) *APIError {
	if row.Type() != fastjson.TypeObject {
		return badRequest("INVALID_REQUEST", "a row must be an object with join_key_map and request_context_map, got %s", jsonTypeName(row))
	}
	if msg := checkNoDuplicates(row, ""); msg != "" {
		return badRequest("INVALID_REQUEST", "%s", msg)
	}
	jkm, jkmName, msg := option(row, "", "join_key_map", "joinKeyMap")
	if msg != "" {
		return badRequest("INVALID_REQUEST", "%s", msg)
	}
	if jkm == nil {
		return badRequest("INVALID_REQUEST", "join_key_map is required: an object with %s", strings.Join(p.joinKeys, ", "))
	}
	if jkm.Type() != fastjson.TypeObject {
		return badRequest("INVALID_REQUEST", "%s", wantType(jkmName, "an object with "+strings.Join(p.joinKeys, ", "), jkm))
	}
	obj, _ := jkm.Object()
	if obj.Len() > n.cfg.Limits.MaxKeys {
		return badRequest("TOO_MANY_KEYS", "join_key_map has %d keys, more than limits.max_keys (%d)", obj.Len(), n.cfg.Limits.MaxKeys)
	}
	w.keyBuf = w.keyBuf[:0]
	for i, k := range p.joinKeys {
		v := obj.Get(k)
		if v == nil || v.Type() == fastjson.TypeNull {
			return badRequest("MISSING_JOIN_KEY", "join_key_map is missing %q: service %s needs %s", k, p.name, strings.Join(p.joinKeys, ", "))
		}
		switch v.Type() {
		case fastjson.TypeString:
			s, _ := v.StringBytes()
			w.keys[i] = s
		case fastjson.TypeNumber:
			x, err := jsonInt(v, &w.numBuf)
			if err != nil {
				return badRequest("INVALID_JOIN_KEY", "join key %q must be a string or an integer, got %s", k, v)
			}
			start := len(w.keyBuf)
			w.keyBuf = strconv.AppendInt(w.keyBuf, x, 10)
			w.keys[i] = w.keyBuf[start:len(w.keyBuf):len(w.keyBuf)]
		default:
			return badRequest("INVALID_JOIN_KEY", "join key %q must be a string or an integer, got %s", k, v.Type())
		}
	}
	if obj.Len() > len(p.joinKeys) {
		unknown, found := unknownMember(obj, func(k []byte) bool { return slices.Contains(p.joinKeys, string(k)) })
		if !found {
			return badRequest("INVALID_REQUEST", "join_key_map: key %q appears twice", duplicateKey(obj))
		}
		return badRequest("UNKNOWN_JOIN_KEY", "join_key_map has unknown key %q: service %s takes %s", unknown, p.name, strings.Join(p.joinKeys, ", "))
	}
	rcm, rcmName, msg := option(row, "", "request_context_map", "requestContextMap")
	if msg != "" {
		return badRequest("INVALID_REQUEST", "%s", msg)
	}
	if len(p.ctxCols) > 0 && rcm == nil {
		return badRequest("MISSING_REQUEST_CONTEXT", "request_context_map is required: service %s needs %s", p.name, ctxNames(p.ctxCols))
	}
	if rcm == nil {
		return nil
	}
	cobj, err := rcm.Object()
	if err != nil {
		return badRequest("INVALID_REQUEST", "%s", wantType(rcmName, "an object", rcm))
	}
	if cobj.Len() > n.cfg.Limits.MaxKeys {
		return badRequest("TOO_MANY_KEYS", "request_context_map has %d keys, more than limits.max_keys (%d)", cobj.Len(), n.cfg.Limits.MaxKeys)
	}
	for i, c := range p.ctxCols {
		v := cobj.Get(c.Name)
		if v == nil {
			return badRequest("MISSING_REQUEST_CONTEXT", "request_context_map is missing %q: service %s needs %s", c.Name, p.name, ctxNames(p.ctxCols))
		}
		switch v.Type() {
		case fastjson.TypeNull:
			w.ctx[i], w.ctxOK[i], w.ctxStr[i] = 0, false, ""
		case fastjson.TypeString:
			if c.Type != features.String {
				return badRequest("INVALID_REQUEST_CONTEXT", "request_context_map.%s must be a number, got %s", c.Name, v.Type())
			}
			b, _ := v.StringBytes()
			// Lives as long as the parsed body, which outlives the request.
			w.ctx[i], w.ctxOK[i], w.ctxStr[i] = 0, true, unsafe.String(unsafe.SliceData(b), len(b))
		case fastjson.TypeNumber:
			if c.Type == features.String {
				return badRequest("INVALID_REQUEST_CONTEXT", "request_context_map.%s must be a string, got %s", c.Name, v)
			}
			f, err := exactFloat(v, &w.numBuf)
			if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return badRequest("INVALID_REQUEST_CONTEXT", "request_context_map.%s must be a finite number, got %s", c.Name, v)
			}
			w.ctx[i], w.ctxOK[i] = f, true
		case fastjson.TypeTrue, fastjson.TypeFalse:
			if c.Type != features.Bool {
				return badRequest("INVALID_REQUEST_CONTEXT", "request_context_map.%s must be %s, got %s", c.Name, ctxWant(c.Type), v.Type())
			}
			w.ctx[i], w.ctxOK[i] = b2f(v.Type() == fastjson.TypeTrue), true
		default:
			return badRequest("INVALID_REQUEST_CONTEXT", "request_context_map.%s must be %s, got %s", c.Name, ctxWant(c.Type), v.Type())
		}
	}
	if cobj.Len() > len(p.ctxCols) {
		unknown, found := unknownMember(cobj, func(k []byte) bool {
			return slices.ContainsFunc(p.ctxCols, func(c features.Column) bool { return c.Name == string(k) })
		})
		if !found {
			return badRequest("INVALID_REQUEST", "request_context_map: key %q appears twice", duplicateKey(cobj))
		}
		return badRequest("UNKNOWN_REQUEST_CONTEXT", "request_context_map has unknown key %q: service %s takes %s", unknown, p.name, ctxNames(p.ctxCols))
	}
	return nil
}

// ctxWant says what a request field of type t takes, for error messages.
func ctxWant(t features.Type) string {
	if t == features.String {
		return "a string"
	}
	return "a number"
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ctxNames lists column names, for error messages.
func ctxNames(cols []features.Column) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	return strings.Join(names, ", ")
}

// LookupReads parses a get-features request body and returns the reads
// it needs, appended to dst, without reading anything. The keys are
// copies, owned by the caller.
func (n *Node) LookupReads(dst []Read, body []byte) ([]Read, *APIError) {
	w := getLookupWork()
	defer lookupPool.Put(w)
	params, p, aerr := n.parseParams(w, body)
	if aerr != nil {
		return dst, aerr
	}
	p.prepare(n, w)
	if aerr := n.parseRow(p, params, w); aerr != nil {
		return dst, aerr
	}
	start := len(dst)
	dst = p.appendReads(dst, w.keys)
	for i := start; i < len(dst); i++ {
		dst[i].Key = bytes.Clone(dst[i].Key)
	}
	return dst, nil
}

// compute plans the reads of the row in w, reads them, then evaluates the
// request features.
func (n *Node) compute(p *servicePlan, w *lookupWork, t int64) *APIError {
	switch {
	case n.cluster != nil:
		w.reads = p.appendReads(w.reads[:0], w.keys)
		if aerr := n.readCluster(w.reads, t, w); aerr != nil {
			return aerr
		}
	case !n.readLocal(p, t, w):
		w.reads = p.appendReads(w.reads[:0], w.keys)
		n.read(w.reads, t, w)
	}
	p.evalRequest(w)
	return nil
}

// evalRequest evaluates the request features of the row in w, whose reads
// are in w.
func (p *servicePlan) evalRequest(w *lookupWork) {
	for r := range p.reqs {
		rp := &p.reqs[r]
		for s, in := range rp.inputs {
			switch in.kind {
			case features.RefAggregate:
				v := &w.vals[in.slot][in.feat]
				w.slots[s], w.slotOK[s] = v.Num, v.Present
			case features.RefTable:
				w.slots[s], w.slotOK[s] = w.tnums[in.slot][in.feat], w.tok[in.slot][in.feat]
			case features.RefRequest:
				w.slots[s], w.slotOK[s] = w.ctx[in.slot], w.ctxOK[in.slot]
			}
		}
		w.reqVal[r], w.reqOK[r] = rp.expr.Eval(w.slots[:len(rp.inputs)], w.slotOK[:len(rp.inputs)])
	}
}

// appendFeatures writes the row's feature values as a JSON array and
// records each output's status in w.statuses.
func (p *servicePlan) appendFeatures(dst []byte, w *lookupWork) []byte {
	dst = append(dst, '[')
	for i := range p.outputs {
		if i > 0 {
			dst = append(dst, ',')
		}
		// A number of a view, the usual output, written here (as
		// appendOutput would) without three calls.
		if o := &p.outputs[i]; o.kind == features.RefAggregate && (o.enc == encFloat || o.enc == encInt) {
			v := &w.vals[o.slot][o.feat]
			ok := v.Present && !math.IsNaN(v.Num) && !math.IsInf(v.Num, 0)
			switch {
			case !ok:
				dst = append(dst, "null"...)
			case o.enc == encInt:
				dst = strconv.AppendInt(dst, int64(v.Num), 10)
			default:
				dst = appendFloat(dst, v.Num)
			}
			w.statuses[i] = ok
			continue
		}
		dst, w.statuses[i] = p.appendOutput(dst, w, i)
	}
	return append(dst, ']')
}

// appendOutput writes output i of the row in w as JSON and reports whether
// it has a value (false: null).
func (p *servicePlan) appendOutput(dst []byte, w *lookupWork, i int) ([]byte, bool) {
	o := &p.outputs[i]
	ok := true
	switch o.kind {
	case features.RefAggregate:
		dst, ok = appendValue(dst, &w.vals[o.slot][o.feat], o.enc)
	case features.RefTable:
		ok = w.tok[o.slot][o.feat]
		switch {
		case !ok:
			dst = append(dst, "null"...)
		case o.enc == encString:
			dst = tabular.AppendJSONString(dst, w.tstrs[o.slot][o.feat])
		default:
			dst, ok = appendNumber(dst, w.tnums[o.slot][o.feat], o.enc)
		}
	case features.RefRequestView:
		ok = w.reqOK[o.slot]
		if ok {
			dst, ok = appendNumber(dst, w.reqVal[o.slot], encFloat)
		} else {
			dst = append(dst, "null"...)
		}
	}
	return dst, ok
}

func appendValue(dst []byte, v *windows.Value, enc encoding) ([]byte, bool) {
	if !v.Present {
		return append(dst, "null"...), false
	}
	switch enc {
	case encString:
		return tabular.AppendJSONString(dst, v.Str), true
	case encFloatList:
		dst = append(dst, '[')
		for i, x := range v.Nums {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst, _ = appendNumber(dst, x, encFloat)
		}
		return append(dst, ']'), true
	case encStringList:
		dst = append(dst, '[')
		for i, s := range v.Strs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = tabular.AppendJSONString(dst, s)
		}
		return append(dst, ']'), true
	}
	return appendNumber(dst, v.Num, enc)
}

func appendNumber(dst []byte, f float64, enc encoding) ([]byte, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...), false
	}
	switch enc {
	case encInt:
		return strconv.AppendInt(dst, int64(f), 10), true
	case encBool:
		return strconv.AppendBool(dst, f != 0), true
	}
	return appendFloat(dst, f), true
}

// metaTexts are a service's metadata texts (its "features" array) with the
// default options for the status patterns seen first: a service's
// responses take few patterns, and the text was a tenth of a lookup.
type metaTexts struct {
	masks []uint64 // bit i: output i is present
	texts []string
}

// maxMetaTexts bounds a service's metaTexts; other patterns are written
// each time.
const maxMetaTexts = 32

func (p *servicePlan) appendMetadata(dst []byte, w *lookupWork, m metaOptions, t int64, withStatus bool) []byte {
	if !withStatus || m != defaultMeta || len(p.outputs) > 64 {
		return p.writeMetadata(dst, w, m, t, withStatus)
	}
	var mask uint64
	for i, ok := range w.statuses {
		if ok {
			mask |= 1 << i
		}
	}
	c := p.metaTexts.Load()
	if c != nil {
		for i, k := range c.masks {
			if k == mask {
				return append(dst, c.texts[i]...)
			}
		}
	}
	start := len(dst)
	dst = p.writeMetadata(dst, w, m, t, withStatus)
	old := c
	if c == nil {
		c = &metaTexts{}
	}
	if len(c.masks) < maxMetaTexts {
		p.metaTexts.CompareAndSwap(old, &metaTexts{masks: append(slices.Clip(c.masks), mask), texts: append(slices.Clip(c.texts), string(dst[start:]))})
	}
	return dst
}

// writeMetadata writes the metadata's "features" array.
func (p *servicePlan) writeMetadata(dst []byte, w *lookupWork, m metaOptions, t int64, withStatus bool) []byte {
	dst = append(dst, `"features":[`...)
	for i := range p.outputs {
		o := &p.outputs[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		if withStatus && m.names && m.types && m.status && !m.effective {
			dst = append(dst, o.fullMeta[b2i(w.statuses[i])]...)
			continue
		}
		sep := false
		switch {
		case m.names && m.types:
			dst = append(dst, o.nameTypeMeta...)
			sep = true
		case m.names:
			dst = append(dst, o.nameMeta...)
			sep = true
		default:
			dst = append(dst, '{')
		}
		if m.types && !m.names {
			dst = append(dst, `"dataType":`...)
			dst = append(dst, o.dtype...)
			sep = true
		}
		if withStatus && m.status {
			if sep {
				dst = append(dst, ',')
			}
			dst = appendStatus(dst, w.statuses[i])
			sep = true
		}
		if withStatus && m.effective {
			if sep {
				dst = append(dst, ',')
			}
			dst = append(dst, `"effectiveTime":"`...)
			dst = appendMillis(dst, t)
			dst = append(dst, '"')
		}
		dst = append(dst, '}')
	}
	return append(dst, ']')
}

func appendStatus(dst []byte, ok bool) []byte {
	if ok {
		return append(dst, `"status":"PRESENT"`...)
	}
	return append(dst, `"status":"MISSING_DATA"`...)
}

// GetFeatures answers a get-features request body, appending the JSON
// response to dst.
func (n *Node) GetFeatures(dst, body []byte) ([]byte, *APIError) {
	w := getLookupWork()
	defer lookupPool.Put(w)
	r, aerr := n.lookupOne(w, body)
	if aerr != nil {
		return dst, aerr
	}
	dst = append(dst, `{"result":{"features":`...)
	dst = r.plan.appendFeatures(dst, w)
	return r.appendTail(dst, w), nil
}

// oneLookup is a parsed and computed single-row request.
type oneLookup struct {
	plan    *servicePlan
	meta    metaOptions
	t, now  int64
	cluster bool // a cluster node's: the metadata reports the read
}

// lookupOne parses a single-row request body into w and computes its
// features: the shared front half of get-features and predict.
func (n *Node) lookupOne(w *lookupWork, body []byte) (oneLookup, *APIError) {
	if p := n.parseLookup(w, body); p != nil {
		r := oneLookup{plan: p, now: n.now(), cluster: n.cluster != nil, meta: defaultMeta}
		r.t = r.now
		return r, n.compute(p, w, r.t)
	}
	return n.lookupParsed(w, body)
}

// lookupParsed is lookupOne for any body, parsed with fastjson.
func (n *Node) lookupParsed(w *lookupWork, body []byte) (oneLookup, *APIError) {
	params, p, aerr := n.parseParams(w, body)
	if aerr != nil {
		return oneLookup{}, aerr
	}
	p.prepare(n, w)
	r := oneLookup{plan: p, now: n.now(), cluster: n.cluster != nil}
	if r.t, aerr = n.readTime(params, p, r.now, &w.numBuf); aerr != nil {
		return r, aerr
	}
	if aerr := n.parseRow(p, params, w); aerr != nil {
		return r, aerr
	}
	if r.meta, aerr = parseMetaOptions(params); aerr != nil {
		return r, aerr
	}
	if aerr := parseReadLevel(params, w); aerr != nil {
		return r, aerr
	}
	if aerr := n.compute(p, w, r.t); aerr != nil {
		return r, aerr
	}
	return r, nil
}

// appendTail closes the result object and appends the metadata.
func (r *oneLookup) appendTail(dst []byte, w *lookupWork) []byte {
	dst = append(dst, `},"metadata":{`...)
	dst = r.plan.appendMetadata(dst, w, r.meta, r.t, true)
	dst = append(dst, `,"serverTime":"`...)
	dst = appendMillis(dst, r.now)
	dst = append(dst, '"')
	if r.cluster {
		dst = appendClusterMeta(dst, w)
	}
	return append(dst, `}}`...)
}

// GetFeaturesBatch answers many rows of one service:
// {"params": {"feature_service_name", "request_data": [{"join_key_map", "request_context_map"}, ...]}}
// -> {"result": [{"features": [...], "statuses": [...]}, ...], "metadata": {"features": [{"name", "dataType"}]}}.
func (n *Node) GetFeaturesBatch(dst, body []byte) ([]byte, *APIError) {
	w := getLookupWork()
	defer lookupPool.Put(w)
	params, p, aerr := n.parseParams(w, body)
	if aerr != nil {
		return dst, aerr
	}
	rows, rowsName, msg := option(params, "params.", "request_data", "requestData")
	if msg != "" {
		return dst, badRequest("INVALID_REQUEST", "%s", msg)
	}
	if rows == nil {
		return dst, badRequest("INVALID_REQUEST", "params.request_data is required: an array of {\"join_key_map\": {...}, \"request_context_map\": {...}}")
	}
	if rows.Type() != fastjson.TypeArray {
		return dst, badRequest("INVALID_REQUEST", "%s", wantType("params."+rowsName, "an array of {\"join_key_map\": {...}, \"request_context_map\": {...}}", rows))
	}
	items, _ := rows.Array()
	if len(items) > n.cfg.Limits.MaxBatch {
		return dst, badRequest("BATCH_TOO_LARGE", "request_data has %d rows, more than limits.max_batch (%d); split it", len(items), n.cfg.Limits.MaxBatch)
	}
	p.prepare(n, w)
	now := n.now()
	t, aerr := n.readTime(params, p, now, &w.numBuf)
	if aerr != nil {
		return dst, aerr
	}
	m, aerr := parseMetaOptions(params)
	if aerr != nil {
		return dst, aerr
	}
	if aerr := parseReadLevel(params, w); aerr != nil {
		return dst, aerr
	}
	var pre *prefetched
	if n.cluster != nil {
		if pre, aerr = n.prefetch(p, items, w, t); aerr != nil {
			return dst, aerr
		}
	}
	start := len(dst)
	dst = append(dst, `{"result":[`...)
	for i, row := range items {
		if aerr := n.parseRow(p, row, w); aerr != nil {
			aerr.Message = fmt.Sprintf("request_data[%d]: %s", i, aerr.Message)
			return dst[:start], aerr
		}
		if pre != nil {
			pre.row(p, w, i)
		} else if aerr := n.compute(p, w, t); aerr != nil {
			return dst[:start], aerr
		}
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"features":`...)
		dst = p.appendFeatures(dst, w)
		if m.status {
			dst = append(dst, `,"statuses":[`...)
			for j, ok := range w.statuses {
				if j > 0 {
					dst = append(dst, ',')
				}
				if ok {
					dst = append(dst, `"PRESENT"`...)
				} else {
					dst = append(dst, `"MISSING_DATA"`...)
				}
			}
			dst = append(dst, ']')
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `],"metadata":{`...)
	dst = p.appendMetadata(dst, w, m, t, false)
	dst = append(dst, `,"serverTime":"`...)
	dst = appendMillis(dst, now)
	dst = append(dst, '"')
	if n.cluster != nil {
		dst = appendClusterMeta(dst, w)
	}
	dst = append(dst, `}}`...)
	return dst, nil
}
