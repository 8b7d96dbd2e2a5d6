package node

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
)

// TestMetadataOptionsShape: each combination of metadata_options gives
// feature objects with exactly the keys asked for (names and data types are
// written from the plan, see output.nameTypeMeta), in valid JSON.
func TestMetadataOptionsShape(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	for mask := range 16 {
		names, types, status, eff := mask&1 != 0, mask&2 != 0, mask&4 != 0, mask&8 != 0
		body := fmt.Sprintf(`{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":"u1","merchant":"m1","country":"FR"},`+
			`"request_context_map":{"amt":1,"lat":2,"long":3},"metadata_options":{"include_names":%v,"include_data_types":%v,"include_serving_status":%v,"include_effective_times":%v}}}`,
			names, types, status, eff)
		out, aerr := n.GetFeatures(nil, []byte(body))
		if aerr != nil {
			t.Fatal(aerr)
		}
		var resp struct {
			Metadata struct {
				Features []map[string]json.RawMessage `json:"features"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(out, &resp); err != nil {
			t.Fatalf("options %04b: %v in %s", mask, err, out)
		}
		var want []string
		for _, k := range []struct {
			on   bool
			name string
		}{{names, "name"}, {types, "dataType"}, {status, "status"}, {eff, "effectiveTime"}} {
			if k.on {
				want = append(want, k.name)
			}
		}
		if len(resp.Metadata.Features) != 18 {
			t.Fatalf("options %04b: %d features", mask, len(resp.Metadata.Features))
		}
		for _, f := range resp.Metadata.Features {
			var got []string
			for k := range f {
				got = append(got, k)
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("options %04b: feature keys %v, want %v", mask, got, want)
			}
		}
		if names && string(resp.Metadata.Features[0]["name"]) != `"user_transaction_counts.amt_count_1m"` {
			t.Fatalf("first name %s", resp.Metadata.Features[0]["name"])
		}
	}
}
