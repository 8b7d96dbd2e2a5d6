package node

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tally-ml/tally/features"
)

// groupRepo has three views of one source and key (one group) and
// services that read them in and out of the group's order.
const groupRepo = `
sources:
  - name: clicks
    timestamp: ts
    schema: {user: string, page: string, price: float}
entities:
  - {name: user, join_key: user}
feature_views:
  - name: a
    source: clicks
    entity: user
    aggregations:
      - {column: page, function: count, window: 1h}
      - {column: price, function: last, window: 1h}
  - name: b
    source: clicks
    entity: user
    aggregations:
      - {column: price, function: sum, window: 1h}
      - {column: price, function: max, window: 1d}
      - {column: page, function: last_n, n: 3, window: 1d}
  - name: c
    source: clicks
    entity: user
    aggregations:
      - {column: page, function: distinct_count, window: 1d}
feature_services:
  - {name: abc, features: [a, b, c]}
  - {name: ca, features: [c, a]}
  - {name: ac, features: [a, c]}
  - {name: bonly, features: [b]}
  - {name: bc, features: [b, c]}
`

// A lookup reads a group's views in a row as one read and splits it: every
// service, whatever its order, answers what each view alone answers.
func TestGroupedViewsLookup(t *testing.T) {
	repo, err := features.Load(fstest.MapFS{"repo.yaml": {Data: []byte(groupRepo)}})
	if err != nil {
		t.Fatal(err)
	}
	clk := &testClock{}
	clk.set(t0)
	n, err := New(repo, DefaultConfig(), Options{Clock: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	if got := n.StateOf(0); got != "a+b+c" {
		t.Fatalf("view a's state is %s, want the group a+b+c", got)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var lines []string
	for range 400 {
		lines = append(lines, fmt.Sprintf(`{"user":"u%d","page":"p%d","price":%d.25,"ts":%d}`, rng.IntN(20), rng.IntN(9), rng.IntN(100), t0-rng.Int64N(2*3_600_000)))
	}
	if _, err := n.IngestNDJSON("clicks", []byte(strings.Join(lines, "\n")), false); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, svc := range []string{"abc", "ca", "ac", "bonly", "bc"} {
		for u := range 21 { // u20: never seen
			key := fmt.Sprintf("u%d", u)
			out, aerr := n.GetFeatures(nil, []byte(fmt.Sprintf(`{"params":{"feature_service_name":%q,"join_key_map":{"user":%q}}}`, svc, key)))
			if aerr != nil {
				t.Fatal(aerr)
			}
			got := decodeVector(t, out)
			for i, v := range repo.Views {
				if !strings.Contains(strings.TrimSuffix(svc, "only"), v.Name) {
					continue
				}
				alone := n.ReadView(i, []byte(key), t0, nil)
				for f, feat := range v.Features {
					g, ok := got[feat.FullName]
					if !ok {
						t.Fatalf("%s: no %s in %s", svc, feat.FullName, out)
					}
					w := alone[f]
					var want any
					switch {
					case !w.Present:
						want = nil
					case feat.List:
						want = fmt.Sprint(w.Strs)
						g.v = fmt.Sprint(g.v)
					default:
						want = w.Num
					}
					if fmt.Sprint(g.v) != fmt.Sprint(want) {
						t.Fatalf("service %s, %s[%s] = %v, the view alone %v", svc, feat.FullName, key, g.v, want)
					}
					checked++
				}
			}
		}
	}
	if checked < 300 {
		t.Fatalf("checked %d values", checked)
	}
}
