package node

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tally-ml/tally/features"
)

// auditTableRepo has a table of every column type and a request view over
// its number.
const auditTableRepo = `
sources:
  - name: tx
    schema: {user_id: string, amt: float}
entities:
  - {name: user, join_key: user_id}
feature_views:
  - name: spend
    source: tx
    entity: user
    aggregations:
      - {column: amt, function: sum, window: 1h}
table_views:
  - name: profile
    entity: user
    schema: {n: int, ok: bool, x: float, s: string}
request_views:
  - name: req
    request_schema: {f: float}
    features:
      - {name: nf, expression: profile.n + request.f}
feature_services:
  - name: svc
    features: [spend, profile, req]
`

func auditTableNode(t testing.TB) *Node {
	t.Helper()
	repo, err := features.Load(fstest.MapFS{"repo.yaml": {Data: []byte(auditTableRepo)}})
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(repo, DefaultConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestTableIntOutOfRange: an int column holds int64 values; a number beyond
// int64's range is refused at upload, never answered as another integer.
func TestTableIntOutOfRange(t *testing.T) {
	n := auditTableNode(t)
	for _, c := range []struct {
		f    TableFormat
		body string
	}{
		{CSV, "user_id,n\nu1,1e20\n"},
		{NDJSON, `{"user_id":"u1","n":1e20}`},
		{CSV, "user_id,n\nu1,-1e19\n"},
		{CSV, "user_id,n\nu1,9223372036854775808\n"},
	} {
		_, aerr := n.UploadTable("profile", c.f, []byte(c.body), false)
		if aerr == nil {
			out, _ := n.GetFeatures(nil, []byte(`{"params":{"feature_service_name":"svc","join_key_map":{"user_id":"u1"},"request_context_map":{"f":1}}}`))
			t.Errorf("upload %q accepted; lookup: %s", c.body, out)
			continue
		}
		if aerr.Status != 400 || !strings.Contains(aerr.Message, "int64") {
			t.Errorf("upload %q: %v, want a 400 naming int64's range", c.body, aerr)
		}
	}
	if rows, aerr := n.UploadTable("profile", CSV, []byte("user_id,n\nu1,-9223372036854775808\nu2,9007199254740992\n"), false); aerr != nil || rows != 2 {
		t.Fatalf("in range: %d %v", rows, aerr)
	}
}
