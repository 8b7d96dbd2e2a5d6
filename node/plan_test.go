package node

import (
	"reflect"
	"strings"
	"testing"

	"github.com/tally-ml/tally/features"
)

// TestLookupReadsNameEveryViewOnceWithItsKey: the reads a lookup plans,
// before reading, hold each feature view and table the service's features
// come from, once each, keyed by the request's value of its entity's join
// key; a bad request is refused as get-features refuses it.
func TestLookupReadsNameEveryViewOnceWithItsKey(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	body := lookupBody("u1", "m7", "FR", 10, 1, 2)
	reads, aerr := n.LookupReads(nil, body)
	if aerr != nil {
		t.Fatal(aerr)
	}
	r := n.Repo()
	want := map[string]string{"user_id": "u1", "merchant": "m7", "country": "FR"}
	seen := map[[2]int]bool{}
	for _, rd := range reads {
		var joinKey string
		if rd.Table {
			joinKey = r.Tables[rd.View].Entity.JoinKey
		} else {
			joinKey = r.Views[rd.View].Entity.JoinKey
		}
		if string(rd.Key) != want[joinKey] {
			t.Errorf("read %+v: key %q, want %q (join key %s)", rd, rd.Key, want[joinKey], joinKey)
		}
		k := [2]int{rd.View, 0}
		if rd.Table {
			k[1] = 1
		}
		if seen[k] {
			t.Errorf("read %+v planned twice", rd)
		}
		seen[k] = true
	}
	svc, _ := r.Service("fraud_detection")
	for _, ref := range svc.Features {
		switch ref.Kind {
		case features.RefAggregate:
			if !seen[[2]int{ref.View, 0}] {
				t.Errorf("feature view %s not read", r.Views[ref.View].Name)
			}
		case features.RefTable:
			if !seen[[2]int{ref.View, 1}] {
				t.Errorf("table %s not read", r.Tables[ref.View].Name)
			}
		}
	}
	if len(reads) < 3 {
		t.Fatalf("%d reads: %+v", len(reads), reads)
	}
	bad := []byte(`{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"u1"}}}`)
	_, want1 := n.GetFeatures(nil, bad)
	_, got := n.LookupReads(nil, bad)
	if want1 == nil || got == nil || got.Code != want1.Code || got.Message != want1.Message {
		t.Fatalf("bad request: LookupReads %v, get-features %v", got, want1)
	}
}

// TestReadLocalMatchesRead: the plan's runs read what the reads of
// appendReads read one view at a time, values and tables, for card
// holders busy, quiet and unknown; the default service's card-holder views
// are one run.
func TestReadLocalMatchesRead(t *testing.T) {
	n := quickTestNode(t)
	p := n.services["fraud_detection"]
	if len(p.runs) != len(p.aggViews)-2 || p.runs[0].n != 3 {
		t.Fatalf("runs %+v of %d views: want the three card-holder views as one run, the others alone", p.runs, len(p.aggViews))
	}
	for _, u := range []string{"alice", "7", "nobody"} {
		body := []byte(strings.Replace(quickBody, `"alice"`, `"`+u+`"`, 1))
		a, b := &lookupWork{}, &lookupWork{}
		if n.quickParse(a, body) != p || n.quickParse(b, body) != p {
			t.Fatal("quickParse left the body")
		}
		if !n.readLocal(p, t0, a) {
			t.Fatal("readLocal refused the store's own groups")
		}
		n.read(p.appendReads(nil, b.keys), t0, b)
		if !reflect.DeepEqual(a.vals, b.vals) || !reflect.DeepEqual(a.tnums, b.tnums) || !reflect.DeepEqual(a.tok, b.tok) || !reflect.DeepEqual(a.tfound, b.tfound) {
			t.Fatalf("%s: readLocal read\n%v %v\nread read\n%v %v", u, a.vals, a.tnums, b.vals, b.tnums)
		}
	}
	// Runs made for other groups are refused, and the lookup reads view
	// by view.
	saved := p.runs
	defer func() { p.runs = saved }()
	p.runs = []readRun{{first: 0, n: 1, key: saved[0].key, aggs: saved[0].aggs}}
	if n.readLocal(p, t0, &lookupWork{keys: [][]byte{[]byte("alice"), []byte("m1"), []byte("FR")}}) {
		t.Fatal("readLocal took runs that are not the store's groups")
	}
	if _, aerr := n.GetFeatures(nil, []byte(quickBody)); aerr != nil {
		t.Fatal(aerr)
	}
}
