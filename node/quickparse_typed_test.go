package node

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tally-ml/tally/features"
)

// typedRepo has request context columns of every type and two join keys,
// so quickParse's readers of strings, booleans, nulls and numbers are
// compared with fastjson's for every column type.
const typedRepo = `
sources:
  - name: tx
    schema: {user_id: string, shop: string, amt: float}
entities:
  - {name: user, join_key: user_id}
  - {name: shop, join_key: shop}
feature_views:
  - name: spend
    source: tx
    entity: user
    aggregations:
      - {column: amt, function: sum, window: 1h}
  - name: shop_spend
    source: tx
    entity: shop
    aggregations:
      - {column: amt, function: count, window: 1h}
request_views:
  - name: req
    request_schema: {s: string, b: bool, f: float, i: int}
    features:
      - {name: f2, expression: request.f * 2}
      - {name: i2, expression: request.i + 1}
      - {name: b2, expression: request.b * 3}
feature_services:
  - name: typed
    features: [spend, shop_spend, req]
`

const typedBody = `{"params":{"feature_service_name":"typed","join_key_map":{"user_id":"u1","shop":7},"request_context_map":{"s":"x","b":true,"f":1.5,"i":3}}}`

func typedTestNode(t testing.TB) *Node {
	repo, err := features.Load(fstest.MapFS{"repo.yaml": {Data: []byte(typedRepo)}})
	if err != nil {
		t.Fatal(err)
	}
	// A fixed clock: responses compared byte for byte carry serverTime.
	n, err := New(repo, DefaultConfig(), Options{Clock: func() int64 { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// parsedRow is what a parse of a single-row lookup put into its work.
type parsedRow struct {
	keys   []string
	ctx    []float64
	ctxOK  []bool
	ctxStr []string
}

func rowOf(w *lookupWork) parsedRow {
	var r parsedRow
	for _, k := range w.keys {
		r.keys = append(r.keys, string(k))
	}
	r.ctx = append(r.ctx, w.ctx...)
	r.ctxOK = append(r.ctxOK, w.ctxOK...)
	r.ctxStr = append(r.ctxStr, w.ctxStr...)
	return r
}

func (a parsedRow) equal(b parsedRow) bool {
	if len(a.keys) != len(b.keys) || len(a.ctx) != len(b.ctx) {
		return false
	}
	for i := range a.keys {
		if a.keys[i] != b.keys[i] {
			return false
		}
	}
	for i := range a.ctx {
		if math.Float64bits(a.ctx[i]) != math.Float64bits(b.ctx[i]) || a.ctxOK[i] != b.ctxOK[i] || a.ctxStr[i] != b.ctxStr[i] {
			return false
		}
	}
	return true
}

// checkTypedParse: a body quickParse (or the skeleton learned from
// typedBody) takes is one the fastjson path takes too, read into the same
// keys and request context (strings included, which only a model reads),
// and answered with the same bytes.
func checkTypedParse(t *testing.T, n *Node, k *lookupSkeleton, body []byte) {
	t.Helper()
	slow := &lookupWork{}
	params, p, aerr := n.parseParams(slow, body)
	if aerr == nil {
		p.prepare(n, slow)
		aerr = n.parseRow(p, params, slow)
	}
	for _, via := range []string{"quick", "skeleton"} {
		w := &lookupWork{}
		var qp *servicePlan
		if via == "quick" {
			qp = n.quickParse(w, body)
		} else if k.read(n, w, body) {
			qp = k.plan
		}
		if qp == nil {
			continue
		}
		if aerr != nil {
			t.Fatalf("%s took %q, which fastjson refuses: %v", via, body, aerr)
		}
		if qp != p {
			t.Fatalf("%s read %q as service %s, fastjson as %s", via, body, qp.name, p.name)
		}
		if got, want := rowOf(w), rowOf(slow); !got.equal(want) {
			t.Fatalf("%s read %q as %+v, fastjson as %+v", via, body, got, want)
		}
	}
	if _, _, accepted := lookupVia(n, body, true); accepted {
		quick, qerr, _ := lookupVia(n, body, true)
		slowOut, serr, _ := lookupVia(n, body, false)
		if (qerr == nil) != (serr == nil) || !bytes.Equal(quick, slowOut) {
			t.Fatalf("%q:\nquick %v %s\nslow  %v %s", body, qerr, quick, serr, slowOut)
		}
	}
}

func TestQuickParseTypedContext(t *testing.T) {
	n := typedTestNode(t)
	k := skeletonOf(t, n, typedBody)
	r := strings.NewReplacer
	for _, body := range []string{
		typedBody,
		r(`"s":"x"`, `"s":null`).Replace(typedBody),
		r(`"s":"x"`, `"s":""`).Replace(typedBody),
		r(`"s":"x"`, `"s":1`).Replace(typedBody),
		r(`"s":"x"`, `"s":true`).Replace(typedBody),
		r(`"b":true`, `"b":false`).Replace(typedBody),
		r(`"b":true`, `"b":null`).Replace(typedBody),
		r(`"b":true`, `"b":1`).Replace(typedBody),
		r(`"b":true`, `"b":"true"`).Replace(typedBody),
		r(`"i":3`, `"i":true`).Replace(typedBody),
		r(`"i":3`, `"i":3.5`).Replace(typedBody),
		r(`"i":3`, `"i":"3"`).Replace(typedBody),
		r(`"f":1.5`, `"f":nan`).Replace(typedBody),
		r(`"f":1.5`, `"f":-inf`).Replace(typedBody),
		r(`"shop":7`, `"shop":"7"`).Replace(typedBody),
		r(`"shop":7`, `"shop":-7`).Replace(typedBody),
		r(`"shop":7`, `"shop":7e0`).Replace(typedBody),
		r(`"shop":7`, `"shop":123456789012345678`).Replace(typedBody),
		r(`"shop":7`, `"shop":1234567890123456789`).Replace(typedBody),
	} {
		checkTypedParse(t, n, k, []byte(body))
	}
}

func FuzzQuickParseTyped(f *testing.F) {
	f.Add([]byte(typedBody))
	f.Add([]byte(strings.Replace(typedBody, `"s":"x"`, `"s":null`, 1)))
	f.Add([]byte(strings.Replace(typedBody, `"b":true`, `"b":false`, 1)))
	f.Add([]byte(`{"params":{"request_context_map":{"i":-0.0e-3,"f":null,"b":0,"s":"é"},"join_key_map":{"shop":"s","user_id":0},"feature_service_name":"typed"}}`))
	n := typedTestNode(f)
	k := skeletonOf(f, n, typedBody)
	f.Fuzz(func(t *testing.T, body []byte) { checkTypedParse(t, n, k, body) })
}

// TestFeastStringRequestData: Feast's request data types a string column
// as get-features does: a string (or null) is taken, a number refused.
func TestFeastStringRequestData(t *testing.T) {
	n := typedTestNode(t)
	body := func(s string) []byte {
		return []byte(`{"feature_service":"typed","entities":{"user_id":["u1"],"shop":["x"],"s":[` + s + `],"b":[true],"f":[1.5],"i":[3]}}`)
	}
	for _, s := range []string{`"x"`, `""`, `null`} {
		if _, ferr := n.FeastOnlineFeatures(nil, body(s)); ferr != nil {
			t.Errorf("s = %s: %v", s, ferr)
		}
	}
	for _, s := range []string{`5`, `true`, `{}`} {
		if _, ferr := n.FeastOnlineFeatures(nil, body(s)); ferr == nil || ferr.Status != 400 {
			t.Errorf("s = %s: %v, want a 400", s, ferr)
		}
	}
	// get-features agrees.
	for s, ok := range map[string]bool{`"x"`: true, `""`: true, `null`: true, `5`: false, `true`: false} {
		b := strings.Replace(typedBody, `"s":"x"`, `"s":`+s, 1)
		if _, aerr := n.GetFeatures(nil, []byte(b)); (aerr == nil) != ok {
			t.Errorf("get-features s = %s: %v", s, aerr)
		}
	}
}
