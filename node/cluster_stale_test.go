package node

import (
	"strings"
	"testing"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/store"
)

// staleCluster answers every read from st as a replica that never heard
// from a leader (StaleMs -1).
type staleCluster struct{ st *store.Store }

func (staleCluster) WriteEvents(string, []*store.Batch, int64, bool) (int, int, error) {
	return 0, 0, nil
}
func (staleCluster) RequestApplied(string, []*store.Batch) ([]GroupShare, error) { return nil, nil }
func (staleCluster) WriteTable(string, *store.Table, []store.TableRow, bool, int64) error {
	return nil
}
func (c staleCluster) Read(_ ReadLevel, reads []Read, t int64, out ReadOut) (ReadInfo, error) {
	v, tb := 0, 0
	for _, r := range reads {
		ReadStore(c.st, r, t, out, v, tb)
		if r.Table {
			tb++
		} else {
			v++
		}
	}
	return ReadInfo{StaleMs: -1}, nil
}
func (staleCluster) Err() error { return nil }

// TestStaleMsOfAReplicaThatNeverHeardFromALeader: a read answered by a
// replica that never heard from its leader reports "staleMs":-1 (README
// "What an answer says about its read"); it was folded with max into the
// answer's 0 and reported 0, as fresh as a leader's read.
func TestStaleMsOfAReplicaThatNeverHeardFromALeader(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.New(repo, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(repo, DefaultConfig(), Options{Cluster: staleCluster{st}, RepoFS: features.DefaultFS()})
	if err != nil {
		t.Fatal(err)
	}
	n.SetReady(true)
	body := []byte(`{"params":{"feature_service_name":"fraud_detection","read_level":"local","join_key_map":{"user_id":"u1","merchant":"m1","country":"FR"},"request_context_map":{"amt":1,"lat":1,"long":2}}}`)
	out, aerr := n.GetFeatures(nil, body)
	if aerr != nil {
		t.Fatal(aerr)
	}
	if !strings.Contains(string(out), `"staleMs":-1`) {
		t.Fatalf("want staleMs -1 in the answer's cluster metadata: %s", out[strings.LastIndex(string(out), `"cluster"`):])
	}
}
