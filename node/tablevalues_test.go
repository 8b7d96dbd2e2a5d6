package node

import (
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/store"
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

// TestFeastTableStatusesOnACluster: a cluster node answers Feast's
// statuses as a single node does: a table row whose column is null is
// NULL_VALUE (stamped with the read time), a key without a row NOT_FOUND.
// A cluster read did not say whether the row was there, and every null
// column of a row it had was NOT_FOUND at the epoch.
func TestFeastTableStatusesOnACluster(t *testing.T) {
	repo, err := features.Load(fstest.MapFS{"repo.yaml": {Data: []byte(auditTableRepo)}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.New(repo, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := store.NewRow(repo.Tables[0])
	r.Key, r.Nums[0], r.Null[0] = "u2", 3, false
	if err := st.CommitTable("", st.TableNamed("profile"), []store.TableRow{r}, false, 0); err != nil {
		t.Fatal(err)
	}
	clustered, err := New(repo, DefaultConfig(), Options{Cluster: staleCluster{st}})
	if err != nil {
		t.Fatal(err)
	}
	clustered.SetReady(true)
	single := auditTableNode(t)
	if _, aerr := single.UploadTable("profile", CSV, []byte("user_id,n\nu2,3\n"), false); aerr != nil {
		t.Fatal(aerr)
	}
	body := []byte(`{"feature_service":"svc","entities":{"user_id":["u2","u9"],"f":[1,null]}}`)
	want, ferr := single.FeastOnlineFeatures(nil, body)
	if ferr != nil {
		t.Fatal(ferr)
	}
	if !strings.Contains(string(want), `{"values":[null,null],"statuses":["NULL_VALUE","NOT_FOUND"]`) {
		t.Fatalf("single node: %s", want)
	}
	got, ferr := clustered.FeastOnlineFeatures(nil, body)
	if ferr != nil {
		t.Fatal(ferr)
	}
	// The event timestamps are the read time: the clocks differ by little.
	stamp := regexp.MustCompile(`"20[0-9T:.Z-]+"`)
	if g, w := stamp.ReplaceAllString(string(got), `"T"`), stamp.ReplaceAllString(string(want), `"T"`); g != w {
		t.Fatalf("cluster node:\n got %s\nwant %s", g, w)
	}
	batch := []byte(`{"params":{"feature_service_name":"svc","request_data":[{"join_key_map":{"user_id":"u2"},"request_context_map":{"f":1}},{"join_key_map":{"user_id":"u9"},"request_context_map":{"f":1}}]}}`)
	if _, aerr := clustered.GetFeaturesBatch(nil, batch); aerr != nil {
		t.Fatal(aerr)
	}
}
