package client_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/node"
)

// TestDecodeFeaturesMatchesGetFeatures: the bytes LookupJSON returns decode
// to the answer GetFeatures gives for the same request, batch included; an
// answer whose values and names do not line up is refused.
func TestDecodeFeaturesMatchesGetFeatures(t *testing.T) {
	tn := startNode(t, node.DefaultConfig(), "")
	c := newClient(t, tn.addr, client.Options{})
	ctx := context.Background()
	now := time.Now().UnixMilli()
	if _, err := c.Ingest(ctx, "transactions", []client.Record{txn("u1", "m1", 10, now-2000), txn("u1", "m2", 20, now-1000)}); err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"u1","merchant":"m1","country":"FR"},"request_context_map":{"amt":80,"lat":51.5,"long":-0.12}}}`)
	raw, err := c.LookupJSON(ctx, client.PathGetFeatures, body)
	if err != nil {
		t.Fatal(err)
	}
	got, err := client.DecodeFeatures(raw)
	if err != nil {
		t.Fatal(err)
	}
	want, err := c.GetFeatures(ctx, lookup("u1"))
	if err != nil {
		t.Fatal(err)
	}
	got.Metadata.ServerTime, want.Metadata.ServerTime = "", ""
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %+v\nGetFeatures %+v", got, want)
	}
	if v, ok := got.Get("user_transaction_amounts.amt_sum_1h"); !ok || v != 30.0 {
		t.Fatalf("amt_sum_1h = %v (%v), want 30", v, ok)
	}

	batch := []byte(`{"params":{"feature_service_name":"fraud_detection","request_data":[{"join_key_map":{"user_id":"u1","merchant":"m1","country":"FR"},"request_context_map":{"amt":1,"lat":0,"long":0}}]}}`)
	raw, err = c.LookupJSON(ctx, client.PathGetFeaturesBatch, batch)
	if err != nil {
		t.Fatal(err)
	}
	b, err := client.DecodeBatchFeatures(raw)
	if err != nil || len(b.Result) != 1 || b.Result[0].Features[0] != 2.0 || len(b.Result[0].Statuses) != len(b.Result[0].Features) {
		t.Fatalf("batch: %+v %v", b, err)
	}

	for _, bad := range []string{
		`{"result":{"features":[1,2]},"metadata":{"features":[{"name":"a"}]}}`,
		`{"result":{"features":[1]`,
		`[]`,
	} {
		if f, err := client.DecodeFeatures([]byte(bad)); err == nil {
			t.Errorf("DecodeFeatures(%s) = %+v, want an error", bad, f)
		}
	}
	if _, err := client.DecodeBatchFeatures([]byte(`{"result":{}}`)); err == nil {
		t.Error("a batch answer whose result is not a list decoded")
	}
}
