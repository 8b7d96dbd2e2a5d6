package cluster

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
)

// TestClusterRetryOfAnAppliedRequestPastItsWindows: in a cluster, a retry
// of a request every group applied its share of, whose events the node
// would now refuse (its clock moved past every window they count in), is
// answered 200 as a retry (accepted, placing nothing), on the JSON and the
// bulk paths, as on a single node (node's
// TestRetryOfAnAppliedRequestPastItsWindows). It was answered 400 "nothing
// was ingested": the cluster path asked no group about the request's id.
// A new request of the same events is still refused and changes nothing,
// and so is the retry of a request only some of whose groups applied their
// share.
func TestClusterRetryOfAnAppliedRequestPastItsWindows(t *testing.T) {
	cs, _ := openTestCluster(t, nil, 2, 2, 1) // group g on node g only: n0 asks group 1 over the cluster port
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	var clk atomic.Int64
	clk.Store(now)
	nd, err := node.New(repo, node.DefaultConfig(), node.Options{Cluster: cs[0], RepoFS: features.DefaultFS(), Clock: clk.Load})
	if err != nil {
		t.Fatal(err)
	}
	nd.SetReady(true)
	sp := nd.SourceNamed([]byte("transactions"))
	oldest := now - sp.MaxWindow - sp.Src.Lateness + 1000 // the oldest an event may be, and a second

	m := cs[0].Map()
	keyIn := func(prefix string, g int) string {
		for i := 0; ; i++ {
			if k := fmt.Sprintf("%s%d", prefix, i); m.GroupOfKey([]byte(k)) == g {
				return k
			}
		}
	}
	// line is an event whose keys all belong to group g.
	line := func(g int) string {
		return fmt.Sprintf(`{"user_id":%q,"merchant":%q,"category":"c","amt":5,"country":%q,"lat":1,"long":2,"timestamp":%d}`,
			keyIn("retry-u", g), keyIn("retry-m", g), keyIn("retry-c", g), oldest)
	}
	body := func(groups ...int) []byte {
		var recs []string
		for _, g := range groups {
			recs = append(recs, `{"record":`+line(g)+`}`)
		}
		return []byte(`{"records":{"transactions":[` + strings.Join(recs, ",") + `]}}`)
	}
	applies := func() [2]uint64 {
		return [2]uint64{cs[0].group(0).fsm.applies.Load(), cs[1].group(1).fsm.applies.Load()}
	}

	if res, err := nd.IngestJSONAs("k1", body(0, 1)); err != nil || res.Accepted != 2 {
		t.Fatalf("first write: %+v, %v", res, err)
	}
	// A partly applied request: group 0 applied its share of k3 (k3/s0),
	// group 1 did not (its proposal failed: the client was answered 503).
	if _, err := nd.IngestJSONAs("k3", body(0)); err != nil {
		t.Fatalf("group 0's share of k3: %v", err)
	}

	clk.Store(now + 2000)
	before := applies()
	res, err := nd.IngestJSONAs("k1", body(0, 1))
	if err != nil || res.Accepted != 2 || res.TooLate != 0 || res.Deferred != 0 {
		t.Fatalf("retry of an applied request: %+v, %v; want accepted 2, placing nothing", res, err)
	}
	bulk := []byte(line(0) + "\n" + line(1) + "\n")
	if res, err := nd.IngestNDJSONAs("k1", "transactions", bulk, false); err != nil || res.Accepted != 2 {
		t.Fatalf("a bulk retry under the applied key: %+v, %v", res, err)
	}
	if _, err := nd.IngestJSONAs("k2", body(0, 1)); err == nil {
		t.Error("a request never applied, its events past every window, was accepted")
	}
	if _, err := nd.IngestJSONAs("k3", body(0, 1)); err == nil {
		t.Error("the retry of a request group 1 never applied its share of, its events past every window, was accepted")
	}
	if after := applies(); after != before {
		t.Errorf("the groups applied %v entries, then %v: the retries and refusals changed the state", before, after)
	}
}
