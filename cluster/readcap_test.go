package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/node"
)

// TestPeerReadCap: a read sub-request (POST /v1/read, from an
// authenticated peer) held as many reads as its body's 64 MiB allow,
// about 20 million, and each was read and answered: a few MiB of request
// made the node read and allocate gigabytes. A request of more than
// maxPeerReads reads is refused before any is read, with 400 saying so;
// one of exactly maxPeerReads is answered.
func TestPeerReadCap(t *testing.T) {
	cs, _ := openTestCluster(t, nil, 1, 1, 1)
	c := cs[0]
	ask := func(n int) ([]byte, error) {
		reads := make([]node.Read, n)
		idx := make([]int, n)
		for i := range reads {
			reads[i], idx[i] = node.Read{View: 0, Key: []byte(fmt.Sprintf("u%d", i))}, i
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return c.call(ctx, http.MethodPost, c.cfg.ClusterAddr, "/v1/read?group=0&level=default", appendReads(nil, time.Now().UnixMilli(), reads, idx))
	}
	_, err := ask(maxPeerReads + 1)
	var re *errRPC
	if !errors.As(err, &re) || re.status != http.StatusBadRequest || !strings.Contains(err.Error(), fmt.Sprintf("more than the %d", maxPeerReads)) {
		t.Fatalf("a read sub-request of %d reads (cap %d): %v; want 400 saying it holds more than the cap", maxPeerReads+1, maxPeerReads, err)
	}
	if _, err := ask(maxPeerReads); err != nil {
		t.Fatalf("a read sub-request of exactly the cap (%d): %v", maxPeerReads, err)
	}
}

// TestBatchLookupAboveThePeerReadCap: a batch lookup whose reads for one
// group are more than a peer read request may hold is split into requests
// of at most maxPeerReads each, and answers what the group's leader
// answers from its own replica.
func TestBatchLookupAboveThePeerReadCap(t *testing.T) {
	saved := maxPeerReads
	t.Cleanup(func() { maxPeerReads = saved }) // after the nodes close: they read it
	maxPeerReads = 7
	_, fronts := openTestCluster(t, nil, 2, 1, 1) // group 0 on n0 only: n1 reads it all remotely
	const users = 60
	now := time.Now().UnixMilli()
	var events, rows []string
	for i := range users {
		events = append(events, fmt.Sprintf(`{"user_id":"u%d","merchant":"m%d","category":"c","amt":%d,"country":"FR","lat":1,"long":2,"timestamp":%d}`, i, i%5, i+1, now-1000))
		rows = append(rows, fmt.Sprintf(`{"join_key_map":{"user_id":"u%d","merchant":"m%d","country":"FR"},"request_context_map":{"amt":1,"lat":1,"long":2}}`, i, i%5))
	}
	if _, err := fronts[0].IngestNDJSONAs("w1", "transactions", []byte(strings.Join(events, "\n")), false); err != nil {
		t.Fatal(err)
	}
	body := []byte(fmt.Sprintf(`{"params":{"feature_service_name":"fraud_detection","request_data":[%s]}}`, strings.Join(rows, ",")))
	var got [2]*client.BatchFeatures
	for i, nd := range fronts {
		out, aerr := nd.GetFeaturesBatch(nil, body)
		if aerr != nil {
			t.Fatalf("n%d: batch lookup of %d rows: %v", i, users, aerr)
		}
		f, err := client.DecodeBatchFeatures(out)
		if err != nil {
			t.Fatal(err)
		}
		got[i] = f
	}
	if len(got[1].Result) != users || !reflect.DeepEqual(got[0].Result, got[1].Result) {
		t.Fatalf("batch lookup through n1 (remote, split) differs from n0 (the leader, local):\n n1 %v\n n0 %v", got[1].Result, got[0].Result)
	}
	col := -1
	for i, m := range got[1].Metadata.Features {
		if m.Name == "user_transaction_counts.amt_count_1h" {
			col = i
		}
	}
	if col < 0 || got[1].Result[users-1].Features[col] != 1.0 {
		t.Fatalf("row %d: amt_count_1h (column %d) is not 1: %v", users-1, col, got[1].Result[users-1])
	}
}
