package node

import (
	"fmt"
	"math"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/tabular"
)

// PointReader reads one feature service's vector for given join keys,
// request context and read time from the node's state: the lookup path of
// get-features without the JSON, for point-in-time joins (package history)
// on a node that replays the log with ReplayTimed. The values are the ones
// get-features would return: null exactly where it reports a feature
// missing, numbers bit for bit. Not safe for concurrent use.
type PointReader struct {
	n    *Node
	p    *servicePlan
	w    *lookupWork
	cols []tabular.Column
}

// PointReader returns a reader for service, or an error naming the services.
func (n *Node) PointReader(service string) (*PointReader, error) {
	p := n.services[service]
	if p == nil {
		return nil, fmt.Errorf("unknown feature service %q: this node serves %s", service, n.serviceNames())
	}
	r := &PointReader{n: n, p: p, w: &lookupWork{}}
	p.prepare(n, r.w)
	for _, o := range p.outputs {
		r.cols = append(r.cols, tabular.Column{Name: o.name, Type: encodingType(o.enc)})
	}
	return r, nil
}

func encodingType(e encoding) tabular.Type {
	switch e {
	case encInt:
		return tabular.Int64
	case encString:
		return tabular.String
	case encBool:
		return tabular.Bool
	case encFloatList:
		return tabular.Float64List
	case encStringList:
		return tabular.StringList
	}
	return tabular.Float64
}

// JoinKeys are the service's join keys, in the order Read takes them.
func (r *PointReader) JoinKeys() []string { return r.p.joinKeys }

// RequestContext are the service's request-context columns, in the order
// Read takes them.
func (r *PointReader) RequestContext() []features.Column { return r.p.ctxCols }

// Features are the service's output columns, named as get-features names them.
func (r *PointReader) Features() []tabular.Column { return r.cols }

// Read computes the vector read at time t into dst (len(Features())). keys
// follow JoinKeys (an integer key is its decimal text, as get-features reads
// it); ctx and ctxOK follow RequestContext (ctxOK false: null).
func (r *PointReader) Read(keys [][]byte, ctx []float64, ctxOK []bool, t int64, dst []tabular.Value) {
	w, p := r.w, r.p
	copy(w.keys, keys)
	copy(w.ctx, ctx)
	copy(w.ctxOK, ctxOK)
	r.n.compute(p, w, t) // a PointReader's node has no cluster: no error
	for i := range p.outputs {
		o := &p.outputs[i]
		d := &dst[i]
		switch o.kind {
		case features.RefAggregate:
			v := &w.vals[o.slot][o.feat]
			switch {
			case !v.Present:
				*d = tabular.Value{Null: true}
			case o.enc == encString:
				*d = tabular.Value{Str: v.Str}
			case o.enc == encFloatList:
				*d = tabular.Value{Nums: append(d.Nums[:0], v.Nums...)}
			case o.enc == encStringList:
				*d = tabular.Value{Strs: append(d.Strs[:0], v.Strs...)}
			default:
				setNumber(d, v.Num, o.enc)
			}
		case features.RefTable:
			switch {
			case !w.tok[o.slot][o.feat]:
				*d = tabular.Value{Null: true}
			case o.enc == encString:
				*d = tabular.Value{Str: w.tstrs[o.slot][o.feat]}
			default:
				setNumber(d, w.tnums[o.slot][o.feat], o.enc)
			}
		case features.RefRequestView:
			if w.reqOK[o.slot] {
				setNumber(d, w.reqVal[o.slot], encFloat)
			} else {
				*d = tabular.Value{Null: true}
			}
		}
	}
}

// setNumber stores f as get-features writes it: NaN and infinities are null.
func setNumber(d *tabular.Value, f float64, enc encoding) {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		*d = tabular.Value{Null: true}
	case enc == encInt:
		*d = tabular.Value{Int: int64(f)}
	case enc == encBool:
		*d = tabular.Value{Bool: f != 0}
	default:
		*d = tabular.Value{Num: f}
	}
}
