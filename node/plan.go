package node

import (
	"fmt"
	"math"
	"sync/atomic"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/ring"
	"github.com/tally-ml/tally/tabular"
	"github.com/tally-ml/tally/windows"
)

// A lookup is planned once per feature service (servicePlan): which views
// and tables it reads, with which join key, which request features it
// evaluates, and how it writes each output. Per request, the plan gives
// the reads (appendReads: what a router places), then they are read
// (read), then the request features are evaluated (lookup.go).

// encoding is how a feature's value is written in JSON.
type encoding uint8

const (
	encFloat encoding = iota
	encInt
	encString
	encBool
	encFloatList
	encStringList
)

// output is one feature of a service response.
type output struct {
	kind  features.RefKind
	slot  int // position in servicePlan.aggViews / tables / reqs
	feat  int // aggregation or column index within it
	enc   encoding
	name  string
	dtype string // JSON of the dataType object
	// nameMeta is `{"name":<name as JSON>` and nameTypeMeta adds
	// `,"dataType":<dtype>`: a response's metadata is mostly these, written
	// once here instead of escaped per request.
	nameMeta, nameTypeMeta string
	// fullMeta[0] and [1] are the whole metadata object of the default
	// options (name, type and status) for a missing and a present value.
	fullMeta [2]string
}

type inputRef struct {
	kind features.RefKind
	slot int // aggViews/tables position, or request-context index
	feat int
}

type reqPlan struct {
	expr   *features.Expr
	inputs []inputRef
}

// servicePlan is a compiled feature service: which views and tables to read
// (each once, with which join key), which expressions to evaluate, and how
// to write each output.
type servicePlan struct {
	name     string
	joinKeys []string
	ctxCols  []features.Column
	aggViews []int // repo view index
	aggKey   []int // join key index of each aggView
	tables   []int // repo table index
	tableKey []int
	reqs     []reqPlan
	outputs  []output
	lateness int64 // smallest lateness of the sources read: bounds as_of
	maxSlots int
	runs     []readRun  // the feature views by store group (localRuns)
	model    *modelPlan // nil: the service has no model
	// metaTexts caches metadata texts by status pattern (appendMetadata).
	metaTexts atomic.Pointer[metaTexts]
}

func newServicePlan(n *Node, s *features.Service) (*servicePlan, error) {
	r := n.Repo()
	p := &servicePlan{name: s.Name, joinKeys: s.JoinKeys, ctxCols: s.RequestContext, lateness: math.MaxInt64}
	keyIndex := func(jk string) (int, error) {
		for i, k := range p.joinKeys {
			if k == jk {
				return i, nil
			}
		}
		return 0, fmt.Errorf("join key %s is not among the service's join keys %v", jk, p.joinKeys)
	}
	aggSlot := func(view int) (int, error) {
		for i, v := range p.aggViews {
			if v == view {
				return i, nil
			}
		}
		k, err := keyIndex(r.Views[view].Entity.JoinKey)
		if err != nil {
			return 0, err
		}
		p.aggViews = append(p.aggViews, view)
		p.aggKey = append(p.aggKey, k)
		p.lateness = min(p.lateness, r.Views[view].Source.Lateness)
		return len(p.aggViews) - 1, nil
	}
	tableSlot := func(t int) (int, error) {
		for i, v := range p.tables {
			if v == t {
				return i, nil
			}
		}
		k, err := keyIndex(r.Tables[t].Entity.JoinKey)
		if err != nil {
			return 0, err
		}
		p.tables = append(p.tables, t)
		p.tableKey = append(p.tableKey, k)
		return len(p.tables) - 1, nil
	}
	ctxIndex := func(name string) (int, error) {
		for i, c := range p.ctxCols {
			if c.Name == name {
				return i, nil
			}
		}
		return 0, fmt.Errorf("request field %s is not in the service's request context", name)
	}
	for _, ref := range s.Features {
		o := output{kind: ref.Kind, feat: ref.Feature, name: r.FeatureName(ref)}
		var err error
		switch ref.Kind {
		case features.RefAggregate:
			o.slot, err = aggSlot(ref.View)
			o.enc = aggEncoding(r.Views[ref.View].Spec, ref.Feature)
		case features.RefTable:
			o.slot, err = tableSlot(ref.View)
			o.enc = typeEncoding(r.Tables[ref.View].Columns[ref.Feature].Type)
		case features.RefRequestView:
			rf := r.Requests[ref.View].Features[ref.Feature]
			rp := reqPlan{expr: rf.Expr}
			for _, in := range rf.Inputs {
				ir := inputRef{kind: in.Kind, feat: in.Feature}
				switch in.Kind {
				case features.RefAggregate:
					ir.slot, err = aggSlot(in.View)
				case features.RefTable:
					ir.slot, err = tableSlot(in.View)
				case features.RefRequest:
					ir.slot, err = ctxIndex(r.Requests[ref.View].RequestSchema[in.View].Name)
				default:
					err = fmt.Errorf("request feature %s: unsupported input", o.name)
				}
				if err != nil {
					return nil, err
				}
				rp.inputs = append(rp.inputs, ir)
			}
			p.maxSlots = max(p.maxSlots, len(rp.inputs))
			p.reqs = append(p.reqs, rp)
			o.slot = len(p.reqs) - 1
			o.enc = encFloat
		default:
			err = fmt.Errorf("feature %s: unsupported kind", o.name)
		}
		if err != nil {
			return nil, err
		}
		o.dtype = dataTypeJSON(o.enc)
		o.nameMeta = string(tabular.AppendJSONString([]byte(`{"name":`), o.name))
		o.nameTypeMeta = o.nameMeta + `,"dataType":` + o.dtype
		o.fullMeta[0] = string(appendStatus([]byte(o.nameTypeMeta+","), false)) + "}"
		o.fullMeta[1] = string(appendStatus([]byte(o.nameTypeMeta+","), true)) + "}"
		p.outputs = append(p.outputs, o)
	}
	if p.lateness == math.MaxInt64 {
		p.lateness = 0
	}
	p.runs = p.localRuns(n)
	return p, nil
}

// readRun is a run of a plan's feature views that one read of the store
// answers: views of one group read for one join key, whose aggregations
// follow each other there (a service's card-holder views).
type readRun struct {
	first, n int // p.aggViews[first : first+n]
	key      int // their join key, an index in p.joinKeys
	aggs     int // their aggregations, together
}

// localRuns splits p's feature views, in order, into runs by the store's
// groups (which a store keeps from Open on).
func (p *servicePlan) localRuns(n *Node) []readRun {
	var runs []readRun
	for i, v := range p.aggViews {
		gv, from, to := n.View(v)
		if k := len(runs) - 1; k >= 0 {
			r := &runs[k]
			if prev, _, pto := n.View(p.aggViews[i-1]); prev == gv && pto == from && p.aggKey[i] == r.key {
				r.n++
				r.aggs += to - from
				continue
			}
		}
		runs = append(runs, readRun{first: i, n: 1, key: p.aggKey[i], aggs: to - from})
	}
	return runs
}

// readLocal reads the plan's views and tables from this node's store at
// time t into w (what read does with appendReads' reads, by the plan's
// runs), and reports false, having read nothing, if the store's groups are
// no longer the ones the runs were made for.
func (n *Node) readLocal(p *servicePlan, t int64, w *lookupWork) bool {
	keys := w.keys
	hs, vs := w.hashes[:0], w.views[:0]
	for _, r := range p.runs {
		gv, from, _ := n.View(p.aggViews[r.first])
		if last, _, to := n.View(p.aggViews[r.first+r.n-1]); last != gv || to-from != r.aggs {
			return false
		}
		hs, vs = append(hs, ring.Hash(keys[r.key])), append(vs, gv)
	}
	w.hashes, w.views = hs, vs
	for i, tb := range p.tables {
		w.tfound[i] = n.Table(tb).GetAt(keys[p.tableKey[i]], t, w.tnums[i], w.tstrs[i], w.tok[i])
	}
	for ri, r := range p.runs {
		_, from, _ := n.View(p.aggViews[r.first])
		all := vs[ri].ReadRange(hs[ri], keys[r.key], t, from, from+r.aggs, w.runVals[ri][:0])
		w.runVals[ri] = all
		off := 0
		for j := r.first; j < r.first+r.n; j++ {
			_, jfrom, jto := n.View(p.aggViews[j])
			k := jto - jfrom
			// Each view's Values are its part of the run's, capped, not
			// copied: an append to a part (the view-by-view read, after a
			// regroup) moves it instead of overwriting the next part.
			w.vals[j] = all[off : off+k : off+k]
			off += k
		}
	}
	return true
}

func aggEncoding(spec windows.Spec, i int) encoding {
	a := spec.Aggregations[i]
	str := spec.Columns[a.Column].Kind == windows.String
	switch a.Func {
	case windows.Count, windows.DistinctCount:
		return encInt
	case windows.LastN, windows.LastDistinctN:
		if str {
			return encStringList
		}
		return encFloatList
	case windows.Last:
		if str {
			return encString
		}
	}
	return encFloat
}

func typeEncoding(t features.Type) encoding {
	switch t {
	case features.String:
		return encString
	case features.Int:
		return encInt
	case features.Bool:
		return encBool
	}
	return encFloat
}

func dataTypeJSON(e encoding) string {
	switch e {
	case encInt:
		return `{"type":"int64"}`
	case encString:
		return `{"type":"string"}`
	case encBool:
		return `{"type":"bool"}`
	case encFloatList:
		return `{"type":"array","elementType":{"type":"float64"}}`
	case encStringList:
		return `{"type":"array","elementType":{"type":"string"}}`
	}
	return `{"type":"float64"}`
}

// A Read is one (view, key) pair a lookup needs: a feature view or a
// table view of the repo, and the join key value to read it at. A lookup
// is planned (its reads), then read, then evaluated; a router places a
// request by the keys of its reads (a key's partition decides its group)
// before anything is read.
type Read struct {
	Table bool   // a table view (Repo.Tables), else a feature view (Repo.Views)
	View  int    // index in Repo.Views or Repo.Tables
	Key   []byte // the join key value
}

// appendReads appends the reads of a row whose join key values are keys
// (in the order of p.joinKeys): each feature view of the plan, then each
// table, once.
func (p *servicePlan) appendReads(dst []Read, keys [][]byte) []Read {
	for i, v := range p.aggViews {
		dst = append(dst, Read{View: v, Key: keys[p.aggKey[i]]})
	}
	for i, t := range p.tables {
		dst = append(dst, Read{Table: true, View: t, Key: keys[p.tableKey[i]]})
	}
	return dst
}

// read reads what appendReads planned into w: feature views at time t into
// w.vals, tables' rows valid at t into w.tnums, w.tstrs, w.tok and
// w.tfound, each in plan order.
func (n *Node) read(reads []Read, t int64, w *lookupWork) {
	// The views of one join key value share its hash.
	var hkey []byte
	var h uint64
	hs, vs, rs, ks := w.hashes[:0], w.views[:0], w.ranges[:0], w.readKeys[:0]
	for i := range reads {
		r := &reads[i]
		if r.Table {
			continue
		}
		if hkey == nil || string(hkey) != string(r.Key) {
			hkey, h = r.Key, ring.Hash(r.Key)
		}
		gv, from, to := n.View(r.View)
		hs, vs, rs, ks = append(hs, h), append(vs, gv), append(rs, [2]int{from, to}), append(ks, r.Key)
	}
	w.hashes, w.views, w.ranges, w.readKeys = hs, vs, rs, ks
	tb := 0
	for _, r := range reads {
		if r.Table {
			w.tfound[tb] = n.Table(r.View).GetAt(r.Key, t, w.tnums[tb], w.tstrs[tb], w.tok[tb])
			tb++
		}
	}
	for v := 0; v < len(vs); {
		// Views of one group read in a row for one key, whose
		// aggregations follow each other there (a service's card-holder
		// views), are one read, split.
		end := v + 1
		for end < len(vs) && vs[end] == vs[v] && hs[end] == hs[v] && rs[end][0] == rs[end-1][1] && string(ks[end]) == string(ks[v]) {
			end++
		}
		all := vs[v].ReadRange(hs[v], ks[v], t, rs[v][0], rs[end-1][1], w.vals[v][:0])
		off := rs[v][1] - rs[v][0]
		for j := v + 1; j < end; j++ {
			// Each Value's lists are its own (a read allocates them), so
			// copying the Values shares nothing the next read overwrites.
			k := rs[j][1] - rs[j][0]
			w.vals[j] = append(w.vals[j][:0], all[off:off+k]...)
			off += k
		}
		w.vals[v] = all[:rs[v][1]-rs[v][0]]
		v = end
	}
}
