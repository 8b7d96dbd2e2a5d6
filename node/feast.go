package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"iter"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/tabular"
)

// Feast's feature-server API (feast 0.67, feast/feature_server.py), so that
// Feast clients reach tally by changing a URL:
//
//   - POST /get-online-features {"features": ["view:feature", ...]} or
//     {"feature_service": name}, {"entities": {column: [values...]}} (join
//     keys and request-time inputs, one value per entity row),
//     "full_feature_names" -> {"metadata": {"feature_names": [...]},
//     "results": [{"values", "statuses", "event_timestamps"}, ...]}: one
//     result per column, the join keys first, then the features in request
//     order, each with one value per entity row.
//   - POST /push {"push_source_name": source, "df": {column: [values...]},
//     "to": "online"}: the rows are events of the tally source of that name.
//   - POST /write-to-online-store {"feature_view_name": "<source>_events",
//     "df": {...}}: what the Feast SDK's FeatureStore.push sends through the
//     remote online store (one events view per source in the generated repo).
//   - GET /health: 200.
//
// Errors are Feast's: a request of the wrong shape is a 422 with FastAPI's
// {"detail": [{"type", "loc", "msg"}]}; any other refusal is the JSON string
// of {"module", "class", "message"} that the Feast SDK turns back into the
// named feast.errors exception, with that exception's status.

// FeastError is a refused Feast request.
type FeastError struct {
	Status  int
	Class   string // feast.errors class; "" for a 422 validation error
	Message string
	Loc     []string // the field at fault, for a 422
}

func (e *FeastError) Error() string { return e.Message }

func feastInvalid(loc []string, format string, args ...any) *FeastError {
	return &FeastError{Status: 422, Message: fmt.Sprintf(format, args...), Loc: loc}
}

func feastFault(status int, class, format string, args ...any) *FeastError {
	return &FeastError{Status: status, Class: class, Message: fmt.Sprintf(format, args...)}
}

// body returns the response body of e in Feast's shapes.
func (e *FeastError) body() []byte {
	if e.Class == "" {
		loc := append([]string{"body"}, e.Loc...)
		b, _ := json.Marshal(map[string]any{"detail": []map[string]any{{"type": "value_error", "loc": loc, "msg": e.Message}}})
		return b
	}
	inner, _ := json.Marshal(map[string]string{"module": "feast.errors", "class": e.Class, "message": e.Message})
	b, _ := json.Marshal(string(inner))
	return b
}

func writeFeastError(ctx *fasthttp.RequestCtx, e *FeastError) {
	ctx.SetStatusCode(e.Status)
	ctx.SetContentType("application/json")
	ctx.SetBody(e.body())
}

// feastPlan is a servicePlan with Feast's names for its outputs.
type feastPlan struct {
	p     *servicePlan
	short []string // "amt_count_1m"
	full  []string // "user_transaction_counts__amt_count_1m"
	views []string // the views read, in first-use order (version metadata)
}

// feastPlans caches the plans of feature lists already asked for. The cache
// is bounded: beyond maxFeastPlans distinct lists, plans are built per
// request (correct, slower), so clients cannot grow the node's memory.
type feastPlans struct {
	mu sync.RWMutex
	m  map[string]*feastPlan
}

func (c *feastPlans) get(key []byte) *feastPlan {
	c.mu.RLock()
	fp := c.m[string(key)] // no copy of key: a map index by string(bytes)
	c.mu.RUnlock()
	return fp
}

func (c *feastPlans) put(key string, fp *feastPlan) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]*feastPlan{}
	}
	if len(c.m) < maxFeastPlans {
		c.m[key] = fp
	}
	c.mu.Unlock()
}

const maxFeastPlans = 1024

func (n *Node) feastCache() *feastPlans { return &n.feast }

// The Feast endpoints' metrics routes (kept here, not in metrics.go's list,
// so the Feast API is one file).
func init() { metricRoutes = append(metricRoutes, "feast-get-online-features", "feast-push") }

// refNames returns the name of the view, table or request view ref is in and
// the feature's name within it.
func refNames(r *features.Repo, ref features.Ref) (view, feat string) {
	switch ref.Kind {
	case features.RefAggregate:
		v := r.Views[ref.View]
		return v.Name, v.Features[ref.Feature].Name
	case features.RefTable:
		t := r.Tables[ref.View]
		return t.Name, t.Features[ref.Feature].Name
	case features.RefRequestView:
		q := r.Requests[ref.View]
		return q.Name, q.Features[ref.Feature].Name
	}
	return "", ""
}

func newFeastPlan(r *features.Repo, p *servicePlan, refs []features.Ref) *feastPlan {
	fp := &feastPlan{p: p}
	for _, ref := range refs {
		v, f := refNames(r, ref)
		fp.short = append(fp.short, f)
		fp.full = append(fp.full, v+"__"+f)
		if !slices.Contains(fp.views, v) {
			fp.views = append(fp.views, v)
		}
	}
	return fp
}

// feastServicePlan returns the plan of the feature service called name.
func (n *Node) feastServicePlan(nameb []byte, kb *[]byte) (*feastPlan, *FeastError) {
	c := n.feastCache()
	*kb = append(append((*kb)[:0], "\x00service\x00"...), nameb...)
	if fp := c.get(*kb); fp != nil {
		return fp, nil
	}
	name := string(nameb)
	s, ok := n.Repo().Service(name)
	if !ok {
		return nil, feastFault(404, "FeatureServiceNotFoundException", "Feature service %s does not exist in project %s (this node serves %s)", name, n.cfg.Workspace, n.serviceNames())
	}
	fp := newFeastPlan(n.Repo(), n.services[name], s.Features)
	c.put(string(*kb), fp)
	return fp, nil
}

// feastFeaturesPlan returns the plan of a list of "view:feature" references.
func (n *Node) feastFeaturesPlan(list *fastjson.Value, kb *[]byte) (*feastPlan, *FeastError) {
	items, err := list.Array()
	if err != nil {
		return nil, feastInvalid([]string{"features"}, "features must be a list of \"feature_view:feature\" strings, got %s", jsonTypeName(list))
	}
	if len(items) == 0 {
		return nil, feastInvalid([]string{"features"}, "features is empty: name at least one \"feature_view:feature\", or a feature_service")
	}
	*kb = (*kb)[:0]
	for i, it := range items {
		s, err := it.StringBytes()
		if err != nil {
			return nil, feastInvalid([]string{"features", strconv.Itoa(i)}, "features[%d] must be a string, got %s", i, jsonTypeName(it))
		}
		*kb = append(*kb, s...)
		*kb = append(*kb, 0)
	}
	c := n.feastCache()
	if fp := c.get(*kb); fp != nil {
		return fp, nil
	}
	r := n.Repo()
	svc := &features.Service{Name: "features"}
	for _, it := range items {
		s, _ := it.StringBytes()
		ref, ferr := n.feastRef(string(s))
		if ferr != nil {
			return nil, ferr
		}
		svc.Features = append(svc.Features, ref)
	}
	if msg := serviceInputs(r, svc); msg != "" {
		return nil, feastFault(400, "FeastError", "%s", msg)
	}
	p, err := newServicePlan(n, svc)
	if err != nil {
		return nil, feastFault(400, "FeastError", "features: %v", err)
	}
	fp := newFeastPlan(r, p, svc.Features)
	c.put(string(*kb), fp)
	return fp, nil
}

// feastRef resolves "view:feature" (Feast's form) or "view.feature" (tally's).
func (n *Node) feastRef(s string) (features.Ref, *FeastError) {
	r := n.Repo()
	view, feat, ok := strings.Cut(s, ":")
	if !ok {
		view, feat, ok = strings.Cut(s, ".")
	}
	if !ok || view == "" || feat == "" {
		return features.Ref{}, feastFault(400, "FeastError", "Invalid feature reference '%s'. Expected format: '<feature_view>:<feature>'", s)
	}
	if strings.Contains(view, "@") {
		return features.Ref{}, feastFault(400, "FeastError", "Invalid feature reference '%s': tally's views have no versions; name the view without '@'", s)
	}
	if ref, ok := r.Feature(view + "." + feat); ok {
		return ref, nil
	}
	var known []string
	if !findView(r, view, &known) {
		return features.Ref{}, feastFault(404, "FeatureViewNotFoundException", "Feature view %s does not exist in project %s", view, n.cfg.Workspace)
	}
	return features.Ref{}, feastFault(404, "FeastObjectNotFoundException", "Feature %s not found in projection %s (it has %s)", feat, view, strings.Join(known, ", "))
}

// findView reports whether a view, table or request view is called name,
// listing its feature names in known.
func findView(r *features.Repo, name string, known *[]string) bool {
	add := func(fs []features.Feature) {
		for _, f := range fs {
			*known = append(*known, f.Name)
		}
	}
	if v, ok := r.View(name); ok {
		add(v.Features)
		return true
	}
	if t, ok := r.Table(name); ok {
		add(t.Features)
		return true
	}
	if q, ok := r.RequestView(name); ok {
		for _, f := range q.Features {
			*known = append(*known, f.Name)
		}
		return true
	}
	return false
}

// serviceInputs fills s.JoinKeys and s.RequestContext from s.Features, as
// the repo loader does for a declared service; it returns why not, or "".
func serviceInputs(r *features.Repo, s *features.Service) string {
	addKey := func(e *features.Entity) {
		if e != nil && !slices.Contains(s.JoinKeys, e.JoinKey) {
			s.JoinKeys = append(s.JoinKeys, e.JoinKey)
		}
	}
	used := map[int]bool{}
	for _, ref := range s.Features {
		switch ref.Kind {
		case features.RefAggregate:
			addKey(r.Views[ref.View].Entity)
		case features.RefTable:
			addKey(r.Tables[ref.View].Entity)
		case features.RefRequestView:
			rv := r.Requests[ref.View]
			for _, in := range rv.Features[ref.Feature].Inputs {
				switch in.Kind {
				case features.RefAggregate:
					addKey(r.Views[in.View].Entity)
				case features.RefTable:
					addKey(r.Tables[in.View].Entity)
				}
			}
			if used[ref.View] {
				continue
			}
			used[ref.View] = true
			for _, c := range rv.RequestSchema {
				i := slices.IndexFunc(s.RequestContext, func(x features.Column) bool { return x.Name == c.Name })
				if i < 0 {
					s.RequestContext = append(s.RequestContext, c)
				} else if s.RequestContext[i].Type != c.Type {
					return fmt.Sprintf("request field %q has two types among the features asked for (%s and %s): ask for them in two requests", c.Name, s.RequestContext[i].Type, c.Type)
				}
			}
		}
	}
	return ""
}

// feastWork is the pooled scratch of one get-online-features request.
type feastWork struct {
	parser fastjson.Parser
	keyCol []*fastjson.Value // per join key of the plan: its column (array)
	ctxCol []*fastjson.Value // per request field of the plan
	order  []string          // join key columns in request order
	orderV []*fastjson.Value
	vals   [][]byte // per output: the values column, JSON
	stats  [][]byte // per output: the statuses column
	ts     [][]byte // per output: the event_timestamps column
	tsBuf  []byte
	key    []byte // the plan cache's key
	num    []byte // badNumber's scratch
	body   []byte // the body with Infinity written 1e999999 (feastInfinity)
}

var feastPool = sync.Pool{New: func() any { return &feastWork{} }}

const feastEpoch = `"1970-01-01T00:00:00Z"`

// FeastOnlineFeatures answers a Feast POST /get-online-features body,
// appending the JSON response to dst. Values are read at the node's clock,
// as get-features reads them, and are the same values: a window over no
// events (an unknown entity included) is PRESENT 0 for count, sum and
// distinct_count and NULL_VALUE for the others; a table without a row for
// the key is NOT_FOUND; a request-time feature that cannot be computed is
// NULL_VALUE. tally never answers OUTSIDE_MAX_AGE: its windows bound age.
//
// A NaN, which Python's json writes for pandas' missing value, is null in a
// float or int column of request data, as in Feast, whose server turns
// every entities column into Values first (feast/utils.py,
// _prepare_entities_to_read_from_online_store; type_map.py makes a
// pd.isnull value an empty Value), so that its on-demand views see a NaN
// as they see null: the request-time features it feeds are NULL_VALUE. A
// NaN in a join key, or in a string or bool column, is refused naming its
// column and row, as Feast's writes refuse it there (feastIngest); one in
// a member nothing reads is taken.
//
// Infinity and -Infinity, which Python's json writes for an infinite float
// (and reads, as it reads 1e999), are taken too: Feast types a request
// data column by its values, and a float column's inf is a double its
// on-demand views compute with. So here they are an infinite number in a
// float column of request data (a request-time feature whose result is
// not finite is NULL_VALUE, as any such result is), and refused naming
// their column and row in a join key or an int, string or bool column. Any
// other number RFC 8259 does not write (nan, inf, 01), anywhere in the
// body, is Feast's 422.
func (n *Node) FeastOnlineFeatures(dst, body []byte) ([]byte, *FeastError) {
	fw := feastPool.Get().(*feastWork)
	defer feastPool.Put(fw)
	if bytes.Contains(body, []byte("Infinity")) {
		fw.body = feastInfinity(fw.body[:0], body)
		body = fw.body
	}
	root, err := tabular.ParseJSON(&fw.parser, body)
	if err != nil {
		return dst, feastInvalid(nil, "JSON decode error: %v", err)
	}
	if where, text := badNumber(root, &fw.num, true); text != "" {
		return dst, feastInvalid(nil, "JSON decode error: %s", numberMessage(where, text))
	}
	if root.Type() != fastjson.TypeObject {
		return dst, feastInvalid(nil, "the body must be an object with \"entities\" and \"features\" or \"feature_service\", got %s", jsonTypeName(root))
	}
	if msg := checkNoDuplicates(root, ""); msg != "" {
		return dst, feastInvalid(nil, "%s", msg)
	}
	full, ferr := feastBool(root, "full_feature_names")
	if ferr != nil {
		return dst, ferr
	}
	verMeta, ferr := feastBool(root, "include_feature_view_version_metadata")
	if ferr != nil {
		return dst, ferr
	}
	var fp *feastPlan
	if sv := root.Get("feature_service"); sv != nil && sv.Type() != fastjson.TypeNull {
		name, err := sv.StringBytes()
		if err != nil {
			return dst, feastInvalid([]string{"feature_service"}, "feature_service must be a string, got %s", jsonTypeName(sv))
		}
		fp, ferr = n.feastServicePlan(name, &fw.key)
	} else if fl := root.Get("features"); fl != nil && fl.Type() != fastjson.TypeNull {
		fp, ferr = n.feastFeaturesPlan(fl, &fw.key)
	} else {
		return dst, feastInvalid([]string{"features"}, "name the features: \"features\": [\"feature_view:feature\", ...] or \"feature_service\": name")
	}
	if ferr != nil {
		return dst, ferr
	}
	p := fp.p
	names := fp.short
	if full {
		names = fp.full
	} else if dup := firstDuplicate(names); dup != "" {
		return dst, feastFault(400, "FeatureNameCollisionError", "Duplicate features named %s found. To resolve this collision, either use the full feature name by setting 'full_feature_names=True', or ensure that the features in question have different names.", dup)
	}

	ents := root.Get("entities")
	if ents == nil || ents.Type() != fastjson.TypeObject {
		got := "nothing"
		if ents != nil {
			got = jsonTypeName(ents)
		}
		return dst, feastInvalid([]string{"entities"}, "entities must be an object of columns, {\"join_key\": [values...]}, got %s", got)
	}
	eobj, _ := ents.Object()
	if msg := checkNoDuplicates(ents, "entities."); msg != "" {
		return dst, feastInvalid([]string{"entities"}, "%s", msg)
	}
	if eobj.Len() > n.cfg.Limits.MaxKeys {
		return dst, feastFault(400, "FeastError", "entities has %d columns, more than limits.max_keys (%d)", eobj.Len(), n.cfg.Limits.MaxKeys)
	}
	fw.keyCol = resize(fw.keyCol, len(p.joinKeys))
	fw.ctxCol = resize(fw.ctxCol, len(p.ctxCols))
	clear(fw.keyCol)
	clear(fw.ctxCol)
	fw.order, fw.orderV = fw.order[:0], fw.orderV[:0]
	rows := -1
	var verr *FeastError
	eobj.Visit(func(k []byte, v *fastjson.Value) {
		if verr != nil {
			return
		}
		arr, err := v.Array()
		if err != nil {
			verr = feastInvalid([]string{"entities", string(k)}, "entities.%s must be a list of values, one per entity row, got %s", k, jsonTypeName(v))
			return
		}
		if rows >= 0 && len(arr) != rows {
			verr = feastFault(400, "FeastError", "All entity rows must have the same columns: entities.%s has %d values, the columns before it %d", k, len(arr), rows)
			return
		}
		rows = len(arr)
		if i := slices.Index(p.joinKeys, string(k)); i >= 0 {
			fw.keyCol[i] = v
			fw.order = append(fw.order, p.joinKeys[i])
			fw.orderV = append(fw.orderV, v)
			return
		}
		if i := slices.IndexFunc(p.ctxCols, func(c features.Column) bool { return c.Name == string(k) }); i >= 0 {
			fw.ctxCol[i] = v
			return
		}
		want := strings.Join(p.joinKeys, ", ")
		if len(p.ctxCols) > 0 {
			want += " (join keys) and " + ctxNames(p.ctxCols) + " (request data)"
		}
		verr = feastFault(404, "EntityNotFoundException", "Entity %s does not exist in project %s: these features take %s", k, n.cfg.Workspace, want)
	})
	if verr != nil {
		return dst, verr
	}
	var missing []string
	for i, c := range fw.keyCol {
		if c == nil {
			missing = append(missing, p.joinKeys[i])
		}
	}
	if len(missing) > 0 {
		return dst, feastFault(400, "FeastError", "Missing join key values for keys: %s: these features need %s", strings.Join(missing, ", "), strings.Join(p.joinKeys, ", "))
	}
	for i, c := range fw.ctxCol {
		if c == nil {
			missing = append(missing, p.ctxCols[i].Name)
		}
	}
	if len(missing) > 0 {
		return dst, feastFault(404, "RequestDataNotFoundInEntityRowsException", "Required request data source features %s not found in the entity rows, but required by feature views", strings.Join(missing, ", "))
	}
	if rows < 0 {
		rows = 0
	}
	if rows > n.cfg.Limits.MaxBatch {
		return dst, feastFault(400, "FeastError", "entities has %d rows, more than limits.max_batch (%d); split it", rows, n.cfg.Limits.MaxBatch)
	}

	w := getLookupWork()
	defer lookupPool.Put(w)
	// Feast has no read level: the default, not a pooled get-features'.
	w.level, w.info = ReadDefault, ReadInfo{}
	p.prepare(n, w)
	no := len(p.outputs)
	fw.vals, fw.stats, fw.ts = resize(fw.vals, no), resize(fw.stats, no), resize(fw.ts, no)
	t := n.now()
	fw.tsBuf = appendFeastTime(fw.tsBuf[:0], t)
	for i := 0; i < no; i++ {
		fw.vals[i], fw.stats[i], fw.ts[i] = fw.vals[i][:0], fw.stats[i][:0], fw.ts[i][:0]
	}
	for row := 0; row < rows; row++ {
		w.keyBuf = w.keyBuf[:0]
		for j, col := range fw.keyCol {
			v := col.GetArray()[row]
			switch v.Type() {
			case fastjson.TypeString:
				w.keys[j], _ = v.StringBytes()
			case fastjson.TypeNumber:
				x, err := jsonInt(v, &w.numBuf)
				if err != nil {
					if string(w.numBuf) == "NaN" {
						return dst, feastFault(400, "FeastError", "entities.%s[%d]: NaN (pandas' missing value) is not a key: %s is a join key, which every row needs", p.joinKeys[j], row, p.joinKeys[j])
					}
					if inf := infinityText(w.numBuf); inf != "" {
						return dst, feastFault(400, "FeastError", "entities.%s[%d]: %s is not a key: %s is a join key, a string or an integer", p.joinKeys[j], row, inf, p.joinKeys[j])
					}
					return dst, feastFault(400, "FeastError", "entities.%s[%d] must be a string or an integer, got %s", p.joinKeys[j], row, v)
				}
				start := len(w.keyBuf)
				w.keyBuf = strconv.AppendInt(w.keyBuf, x, 10)
				w.keys[j] = w.keyBuf[start:len(w.keyBuf):len(w.keyBuf)]
			default:
				return dst, feastFault(400, "FeastError", "entities.%s[%d] must be a string or an integer, got %s", p.joinKeys[j], row, jsonTypeName(v))
			}
		}
		for j, col := range fw.ctxCol {
			v := col.GetArray()[row]
			c := p.ctxCols[j]
			switch v.Type() {
			case fastjson.TypeNull:
				w.ctx[j], w.ctxOK[j], w.ctxStr[j] = 0, false, ""
			case fastjson.TypeString:
				if c.Type != features.String {
					return dst, feastFault(400, "FeastError", "entities.%s[%d] must be %s, got a string", c.Name, row, ctxWant(c.Type))
				}
				b, _ := v.StringBytes()
				// Lives as long as the parsed body, which outlives the request.
				w.ctx[j], w.ctxOK[j], w.ctxStr[j] = 0, true, unsafe.String(unsafe.SliceData(b), len(b))
			case fastjson.TypeNumber:
				f, err := exactFloat(v, &w.numBuf)
				switch {
				case err != nil && string(w.numBuf) == "NaN":
					if c.Type != features.Float && c.Type != features.Int {
						return dst, feastFault(400, "FeastError", "entities.%s[%d]: NaN (pandas' missing value) is a missing value only in a float or int column, and %s is a %s column: send null for a missing value", c.Name, row, c.Name, c.Type)
					}
					w.ctx[j], w.ctxOK[j], w.ctxStr[j] = 0, false, ""
				case math.IsInf(f, 0): // Infinity, or a number past float64's range (ParseFloat's ErrRange)
					if c.Type != features.Float {
						return dst, feastFault(400, "FeastError", "entities.%s[%d]: %s is a number only a float column takes, and %s is %s column", c.Name, row, infinityText(w.numBuf), c.Name, aColumn(c.Type))
					}
					w.ctx[j], w.ctxOK[j] = f, true
				case c.Type == features.String:
					return dst, feastFault(400, "FeastError", "entities.%s[%d] must be a string, got %s", c.Name, row, v)
				case err != nil || math.IsNaN(f) || math.IsInf(f, 0):
					return dst, feastFault(400, "FeastError", "entities.%s[%d] must be a finite number, got %s", c.Name, row, v)
				default:
					w.ctx[j], w.ctxOK[j] = f, true
				}
			case fastjson.TypeTrue, fastjson.TypeFalse:
				if c.Type != features.Bool {
					return dst, feastFault(400, "FeastError", "entities.%s[%d] must be %s, got a boolean", c.Name, row, ctxWant(c.Type))
				}
				w.ctx[j], w.ctxOK[j] = b2f(v.Type() == fastjson.TypeTrue), true
			default:
				return dst, feastFault(400, "FeastError", "entities.%s[%d] must be %s, got %s", c.Name, row, ctxWant(c.Type), jsonTypeName(v))
			}
		}
		if aerr := n.compute(p, w, t); aerr != nil {
			// A cluster read that failed: nothing was read for this row.
			return dst, feastFault(aerr.Status, "FeastError", "%s: %s", aerr.Code, aerr.Message)
		}
		for i := range p.outputs {
			sep := row > 0
			if sep {
				fw.vals[i] = append(fw.vals[i], ',')
				fw.stats[i] = append(fw.stats[i], ',')
				fw.ts[i] = append(fw.ts[i], ',')
			}
			var ok bool
			fw.vals[i], ok = p.appendOutput(fw.vals[i], w, i)
			o := &p.outputs[i]
			switch {
			case ok:
				fw.stats[i] = append(fw.stats[i], `"PRESENT"`...)
				fw.ts[i] = append(fw.ts[i], fw.tsBuf...)
			case o.kind == features.RefTable && !w.tfound[o.slot]:
				fw.stats[i] = append(fw.stats[i], `"NOT_FOUND"`...)
				fw.ts[i] = append(fw.ts[i], feastEpoch...)
			default:
				fw.stats[i] = append(fw.stats[i], `"NULL_VALUE"`...)
				fw.ts[i] = append(fw.ts[i], fw.tsBuf...)
			}
		}
	}

	dst = append(dst, `{"metadata":{"feature_names":[`...)
	for i, k := range fw.order {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = tabular.AppendJSONString(dst, k)
	}
	for i, name := range names {
		if i > 0 || len(fw.order) > 0 {
			dst = append(dst, ',')
		}
		dst = tabular.AppendJSONString(dst, name)
	}
	dst = append(dst, ']')
	if verMeta {
		dst = append(dst, `,"feature_view_metadata":[`...)
		for i, v := range fp.views {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"name":`...)
			dst = tabular.AppendJSONString(dst, v)
			dst = append(dst, `,"version":0}`...)
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `},"results":[`...)
	for i, col := range fw.orderV {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"values":`...)
		dst = appendJSONValue(dst, col)
		dst = append(dst, `,"statuses":[`...)
		for r := 0; r < rows; r++ {
			if r > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `"PRESENT"`...)
		}
		dst = append(dst, `],"event_timestamps":[`...)
		for r := 0; r < rows; r++ {
			if r > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, feastEpoch...)
		}
		dst = append(dst, "]}"...)
	}
	for i := range p.outputs {
		if i > 0 || len(fw.orderV) > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"values":[`...)
		dst = append(dst, fw.vals[i]...)
		dst = append(dst, `],"statuses":[`...)
		dst = append(dst, fw.stats[i]...)
		dst = append(dst, `],"event_timestamps":[`...)
		dst = append(dst, fw.ts[i]...)
		dst = append(dst, "]}"...)
	}
	return append(dst, "]}"...), nil
}

// feastBool reads the optional boolean name of obj (absent or null: false).
func feastBool(obj *fastjson.Value, name string) (bool, *FeastError) {
	switch v := obj.Get(name); {
	case v == nil:
		return false, nil
	case v.Type() == fastjson.TypeTrue:
		return true, nil
	case v.Type() == fastjson.TypeFalse, v.Type() == fastjson.TypeNull:
		return false, nil
	default:
		return false, feastInvalid([]string{name}, "%s must be true or false, got %s", name, jsonTypeName(v))
	}
}

// appendFeastTime writes ms as Feast writes a timestamp: RFC 3339 in UTC,
// with milliseconds only when there are some.
func appendFeastTime(dst []byte, ms int64) []byte {
	dst = append(dst, '"')
	t := time.UnixMilli(ms).UTC()
	if ms%1000 == 0 {
		dst = t.AppendFormat(dst, "2006-01-02T15:04:05Z")
	} else {
		dst = t.AppendFormat(dst, "2006-01-02T15:04:05.000Z")
	}
	return append(dst, '"')
}

func firstDuplicate(names []string) string {
	for i, a := range names {
		if slices.Contains(names[:i], a) {
			return a
		}
	}
	return ""
}

// FeastPush answers a Feast POST /push body: the rows of df are events of
// the tally source named push_source_name, ingested as one all-or-nothing
// request (as /api/v1/ingest/bulk). "to" is "online" (the default) or
// "online_and_offline" (tally's log is its offline store); "offline" alone is
// refused: tally has no offline-only write.
func (n *Node) FeastPush(body []byte) (IngestResult, *FeastError) {
	var pr fastjson.Parser
	root, err := tabular.ParseJSON(&pr, body)
	if err != nil {
		return IngestResult{}, feastDecodeError(body, err)
	}
	if ferr := feastBadNumber(root); ferr != nil {
		return IngestResult{}, ferr
	}
	if root.Type() != fastjson.TypeObject {
		return IngestResult{}, feastInvalid(nil, "the body must be an object with \"push_source_name\" and \"df\", got %s", jsonTypeName(root))
	}
	if msg := checkNoDuplicates(root, ""); msg != "" {
		return IngestResult{}, feastInvalid(nil, "%s", msg)
	}
	nv := root.Get("push_source_name")
	if nv == nil {
		return IngestResult{}, feastInvalid([]string{"push_source_name"}, "push_source_name is required: the tally source the rows are events of")
	}
	name, err := nv.StringBytes()
	if err != nil {
		return IngestResult{}, feastInvalid([]string{"push_source_name"}, "push_source_name must be a string, got %s", jsonTypeName(nv))
	}
	if to := root.Get("to"); to != nil && to.Type() != fastjson.TypeNull {
		s, err := to.StringBytes()
		if err != nil {
			return IngestResult{}, feastInvalid([]string{"to"}, "to must be a string, got %s", jsonTypeName(to))
		}
		switch string(s) {
		case "online", "online_and_offline":
		case "offline":
			return IngestResult{}, feastFault(400, "FeastError", "to \"offline\" is not supported: tally has one store; push \"online\" (the events reach historical features too), or backfill with /api/v1/import")
		default:
			return IngestResult{}, feastFault(400, "FeastError", "%s is not a supported push format. Please specify one of these ['online', 'offline', 'online_and_offline'].", s)
		}
	}
	sp := n.SourceNamed(name)
	if sp == nil {
		return IngestResult{}, feastFault(422, "PushSourceNotFoundException", "Unable to find push source '%s'. This node's sources are %s.", name, n.sourceNames())
	}
	return n.feastIngest(sp, root.Get("df"))
}

// FeastWriteToOnlineStore answers POST /write-to-online-store, which the
// Feast SDK's FeatureStore.push sends through the remote online store for
// each feature view over the push source: the generated repo's
// "<source>_events" view, whose rows are the source's events.
func (n *Node) FeastWriteToOnlineStore(body []byte) (IngestResult, *FeastError) {
	var pr fastjson.Parser
	root, err := tabular.ParseJSON(&pr, body)
	if err != nil {
		return IngestResult{}, feastDecodeError(body, err)
	}
	if ferr := feastBadNumber(root); ferr != nil {
		return IngestResult{}, ferr
	}
	if root.Type() != fastjson.TypeObject {
		return IngestResult{}, feastInvalid(nil, "the body must be an object with \"feature_view_name\" and \"df\", got %s", jsonTypeName(root))
	}
	if msg := checkNoDuplicates(root, ""); msg != "" {
		return IngestResult{}, feastInvalid(nil, "%s", msg)
	}
	nv := root.Get("feature_view_name")
	if nv == nil {
		return IngestResult{}, feastInvalid([]string{"feature_view_name"}, "feature_view_name is required")
	}
	name, err := nv.StringBytes()
	if err != nil {
		return IngestResult{}, feastInvalid([]string{"feature_view_name"}, "feature_view_name must be a string, got %s", jsonTypeName(nv))
	}
	src, ok := strings.CutSuffix(string(name), FeastEventsSuffix)
	sp := n.SourceNamed([]byte(src))
	if !ok || sp == nil {
		return IngestResult{}, feastFault(404, "FeatureViewNotFoundException", "Feature view %s does not exist in project %s: tally takes writes only to the events view of a source (%s), whose rows are events; its feature views are computed", name, n.cfg.Workspace, n.sourceNames()+" + "+FeastEventsSuffix)
	}
	return n.feastIngest(sp, root.Get("df"))
}

// feastBadNumber refuses, as Feast's 422, a number RFC 8259 does not write
// anywhere in root, the body of a Feast write, members it does not read
// included (as lookups do), but NaN: Python's json module writes pandas'
// missing value so, and feastIngest reads it. (Feast's SDK itself sends
// null: its remote online store turns NaN into a null value and posts with
// requests, whose json= refuses NaN.)
func feastBadNumber(root *fastjson.Value) *FeastError {
	var buf []byte
	if where, text := badNumber(root, &buf, true); text != "" {
		return feastInvalid(nil, "JSON decode error: %s", numberMessage(where, text))
	}
	return nil
}

// feastDecodeError is Feast's 422 for a write's body that does not parse.
// Python's json writes an infinite float as Infinity, which Feast stores;
// tally's windows take finite numbers only, so it is refused, saying so.
func feastDecodeError(body []byte, err error) *FeastError {
	if at := bareInfinity(body); at >= 0 {
		tok := "Infinity"
		if body[at] == '-' {
			tok = "-Infinity"
		}
		return feastInvalid(nil, "JSON decode error: %s at offset %d: tally takes finite numbers only (a window cannot sum an infinite one): send a finite number, or null (or NaN in a float or int column) for a missing value", tok, at)
	}
	return feastInvalid(nil, "JSON decode error: %v", err)
}

// bareInfinities yields the span [at, end) of each Infinity and -Infinity
// in body outside a string (at on the minus sign), as Python's json writes
// an infinite float.
func bareInfinities(body []byte) iter.Seq2[int, int] {
	return func(yield func(at, end int) bool) {
		in, esc := false, false
		for i := 0; i < len(body); i++ {
			switch c := body[i]; {
			case esc:
				esc = false
			case in && c == '\\':
				esc = true
			case c == '"':
				in = !in
			case !in && c == 'I' && bytes.HasPrefix(body[i:], []byte("Infinity")):
				at := i
				if i > 0 && body[i-1] == '-' {
					at--
				}
				if !yield(at, i+len("Infinity")) {
					return
				}
				i += len("Infinity") - 1
			}
		}
	}
}

// bareInfinity returns the offset of the first Infinity or -Infinity in
// body outside a string, or -1.
func bareInfinity(body []byte) int {
	for at := range bareInfinities(body) {
		return at
	}
	return -1
}

// feastInfinity appends body to dst with each Infinity and -Infinity that
// stands as a JSON value written 1e999999 (-1e999999), a number of the same
// length that RFC 8259 takes and that reads as an infinite float, as
// Python's json reads both: offsets in error messages stay the body's. An
// Infinity that touches other text (1Infinity, "Infinity" in a string) is
// left as it is.
func feastInfinity(dst, body []byte) []byte {
	start := len(dst)
	dst = append(dst, body...)
	b := dst[start:]
	for at, end := range bareInfinities(b) {
		if (at == 0 || jsonDelim(b[at-1])) && (end == len(b) || jsonDelim(b[end])) {
			copy(b[end-len("Infinity"):], "1e999999")
		}
	}
	return dst
}

// jsonDelim reports whether c may stand next to a JSON value: whitespace
// or a structural character.
func jsonDelim(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', ',', ':', '[', ']', '{', '}':
		return true
	}
	return false
}

// infinityText names an infinite number as Python's json writes it
// ("Infinity" or "-Infinity") when text, a JSON number, reads as one; "".
func infinityText(text []byte) string {
	f, _ := strconv.ParseFloat(string(text), 64)
	switch {
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return ""
}

// aColumn is "a string", "an int", ...: the type's name with its article.
func aColumn(t features.Type) string {
	if t == features.Int {
		return "an int"
	}
	return "a " + t.String()
}

// FeastEventsSuffix names the events view of a source in a generated Feast
// repo: "<source>_events".
const FeastEventsSuffix = "_events"

// feastIngest ingests the columnar df as events of sp's source. Feast's own
// columns are mapped: "event_timestamp" is the source's timestamp when the
// df lacks that column, and "created" is dropped. A timestamp without a
// zone (what pandas writes for a naive UTC time) is read as UTC.
//
// A df is a pandas DataFrame as Python's json writes it: a missing value
// in a float column, and in an int column (which pandas then makes float),
// is NaN, and the int column's values are floats (1.0). Feast stores such a
// NaN as a null value (feast/type_map.py, _convert_scalar_values_to_proto:
// pd.isnull), so here a NaN in a float or int column that is no join key
// is null, which every aggregation ignores (counted in
// tally_feast_nan_values_total), and a float with no fraction in an int
// column is that integer. A NaN in any other column (a string, a bool, a
// join key, the timestamp) is refused naming its column and row; tally's
// own ingest refuses NaN everywhere.
func (n *Node) feastIngest(sp *store.Source, df *fastjson.Value) (IngestResult, *FeastError) {
	src := sp.Src
	if df == nil || df.Type() != fastjson.TypeObject {
		got := "nothing"
		if df != nil {
			got = jsonTypeName(df)
		}
		return IngestResult{}, feastInvalid([]string{"df"}, "df must be an object of columns, {\"column\": [values...]}, got %s", got)
	}
	if msg := checkNoDuplicates(df, "df."); msg != "" {
		return IngestResult{}, feastInvalid([]string{"df"}, "%s", msg)
	}
	obj, _ := df.Object()
	hasTS := obj.Get(src.Timestamp) != nil
	type col struct {
		name  string
		vals  []*fastjson.Value
		ts    bool
		typ   features.Type // 0: the timestamp, or a column the source lacks
		key   bool
		nanOK bool // NaN is null: a float or int column, no join key
	}
	var cols []col
	rows := -1
	var ferr *FeastError
	obj.Visit(func(k []byte, v *fastjson.Value) {
		if ferr != nil {
			return
		}
		arr, err := v.Array()
		if err != nil {
			ferr = feastInvalid([]string{"df", string(k)}, "df.%s must be a list of values, one per row, got %s", k, jsonTypeName(v))
			return
		}
		if rows >= 0 && len(arr) != rows {
			ferr = feastFault(400, "DataFrameSerializationError", "df: every column needs one value per row: df.%s has %d values, the columns before it %d", k, len(arr), rows)
			return
		}
		rows = len(arr)
		name := string(k)
		switch {
		case name == "created":
			return
		case name == "event_timestamp" && !hasTS:
			name = src.Timestamp
		}
		c := col{name: name, vals: arr, ts: name == src.Timestamp}
		if i, ok := sp.ColIndex[name]; ok && !c.ts {
			c.typ, c.key = src.Columns[i].Type, sp.IsKey[i]
			c.nanOK = !c.key && (c.typ == features.Float || c.typ == features.Int)
		}
		cols = append(cols, c)
	})
	if ferr != nil {
		return IngestResult{}, ferr
	}
	if rows > n.cfg.Limits.MaxRecords {
		return IngestResult{}, feastFault(400, "FeastError", "df has %d rows, more than limits.max_records (%d); split it", rows, n.cfg.Limits.MaxRecords)
	}
	var b, num []byte
	nans := 0
	for r := 0; r < rows; r++ {
		b = append(b, '{')
		for i, c := range cols {
			if i > 0 {
				b = append(b, ',')
			}
			b = tabular.AppendJSONString(b, c.name)
			b = append(b, ':')
			v := c.vals[r]
			switch v.Type() {
			case fastjson.TypeString:
				if c.ts {
					s, _ := v.StringBytes()
					b = tabular.AppendJSONString(b, utcTimestamp(string(s)))
					continue
				}
			case fastjson.TypeNumber:
				if c.typ == 0 && !c.ts {
					break // a column the source lacks: the ingest refuses it
				}
				text, ok := jsonNumber(v, &num)
				if !ok && string(text) == "NaN" {
					if !c.nanOK {
						return IngestResult{}, feastNaN(src.Name, c.name, r, c.ts, c.key, c.typ)
					}
					b = append(b, "null"...)
					nans++
					continue
				}
				if ok && c.typ == features.Int && !c.key {
					if x, whole := wholeFloat(text); whole {
						b = strconv.AppendInt(b, x, 10)
						continue
					}
				}
			}
			b = appendJSONValue(b, v)
		}
		b = append(b, "}\n"...)
	}
	res, err := n.IngestNDJSON(src.Name, b, false)
	if err != nil {
		if ie, ok := err.(*IngestError); ok {
			return res, feastFault(400, "FeastError", "%s: %s", ie.Code, ie.Message)
		}
		return res, feastFault(503, "FeastError", "NOT_DURABLE: %v", err)
	}
	n.metrics.feastNaN.Add(nans)
	return res, nil
}

// feastNaN refuses a NaN in row r of a df column that cannot be missing or
// is not a number, in the ingest's words (INVALID_RECORDS, source[row]).
func feastNaN(source, name string, r int, ts, key bool, typ features.Type) *FeastError {
	why := fmt.Sprintf("a missing value only in a float or int column, and %s is a %s column: send null for a missing value", name, typ)
	switch {
	case ts:
		why = "not a timestamp: every row needs its event timestamp"
	case key:
		why = fmt.Sprintf("not a key: %s is a join key, which every row needs", name)
	}
	return feastFault(400, "FeastError", "INVALID_RECORDS: nothing was ingested; %s[%d]: %s: NaN (pandas' missing value) is %s", source, r, name, why)
}

// wholeFloat reads text, an RFC 8259 number with a fraction or an exponent
// (1.0, 2e3: pandas' int column holding a missing value), as the integer it
// is, within the range a float64 holds every integer of. An integer literal
// or a number with a fraction is false: the ingest reads or refuses it.
func wholeFloat(text []byte) (int64, bool) {
	if !bytes.ContainsAny(text, ".eE") {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(text), 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

// utcTimestamp makes the ISO time pandas writes ("2026-11-27 02:25:21.5",
// "2026-11-27T02:25:21") RFC 3339 in UTC; other text is left for the
// ingest's own check to refuse.
func utcTimestamp(s string) string {
	if len(s) < 19 || s[4] != '-' || s[7] != '-' || s[13] != ':' {
		return s
	}
	if s[10] == ' ' {
		s = s[:10] + "T" + s[11:]
	}
	if s[10] != 'T' {
		return s
	}
	rest := s[19:]
	if strings.HasSuffix(rest, "Z") || strings.ContainsAny(rest, "+-") {
		return s
	}
	return s + "Z"
}

// feastRoutes serves Feast's endpoints; it reports false for other paths.
func (s *Server) feastRoutes(ctx *fasthttp.RequestCtx, path []byte) (route string, ok bool) {
	switch {
	case bytes.Equal(path, pathFeastOnline):
		if s.allow(ctx, ScopeRead, true) {
			bp := bufPool.Get().(*[]byte)
			out, ferr := s.n.FeastOnlineFeatures((*bp)[:0], ctx.PostBody())
			if ferr != nil {
				writeFeastError(ctx, ferr)
			} else {
				ctx.SetContentType("application/json")
				ctx.SetBody(out)
			}
			*bp = out
			bufPool.Put(bp)
		}
		return "feast-get-online-features", true
	case bytes.Equal(path, pathFeastPush), bytes.Equal(path, pathFeastWrite):
		if s.allow(ctx, ScopeIngest, true) {
			var ferr *FeastError
			if bytes.Equal(path, pathFeastPush) {
				_, ferr = s.n.FeastPush(ctx.PostBody())
			} else {
				_, ferr = s.n.FeastWriteToOnlineStore(ctx.PostBody())
			}
			if ferr != nil {
				writeFeastError(ctx, ferr)
			}
		}
		return "feast-push", true
	case bytes.Equal(path, pathFeastHealth):
		if !ctx.IsGet() {
			writeError(ctx, &APIError{Status: 405, Code: "METHOD_NOT_ALLOWED", Message: "use GET"})
		}
		return "other", true
	}
	return "", false
}

var (
	pathFeastOnline = []byte("/get-online-features")
	pathFeastPush   = []byte("/push")
	pathFeastWrite  = []byte("/write-to-online-store")
	pathFeastHealth = []byte("/health")
)
