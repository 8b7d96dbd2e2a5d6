package node

import (
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
