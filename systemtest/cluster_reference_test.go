package systemtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/systemtest/harness"
	"github.com/tally-ml/tally/windows"
	"github.com/tally-ml/tally/windows/windowstest"
)

// TestClusterMatchesSingleNodeAndReference streams one randomized stream
// (out-of-order events within lateness, events too late for the user
// views, unicode keys, values from 1e-9 to 1e15, a profile table) into a
// 3-node cluster (through random nodes) and into a single node, then reads
// every user's vector on both at one as_of time: the cluster's vectors,
// single and batch lookups and predict, equal the single node's exactly, and each
// aggregate feature equals the brute-force reference (windowstest).
func TestClusterMatchesSingleNodeAndReference(t *testing.T) {
	events := 3000
	if testing.Short() {
		events = 600
	}
	c := startCluster(t, 3, 8, 3)
	single := harness.Start(t, harness.Options{})
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	refs := make([]*windowstest.Reference, len(repo.Views))
	for i, v := range repo.Views {
		refs[i] = windowstest.NewReference(v.Spec)
	}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(12, 34))
	users := make([]string, 60)
	scale := make([]float64, len(users))
	for i := range users {
		users[i] = fmt.Sprintf("user-%d", i)
		if i%5 == 0 {
			users[i] = fmt.Sprintf("ユーザー-%d-ß-😀", i)
		}
		scale[i] = []float64{1e-9, 1, 1e6, 1e15}[rng.IntN(4)]
	}
	merchants := []string{"m0", "m1", "m2", "café", "m4", "m5", "m6", "m7"}
	countries := []string{"FR", "US", "日本"}
	var csv strings.Builder
	csv.WriteString("user_id,home_lat,home_long\n")
	for i, u := range users {
		if i%3 != 0 {
			fmt.Fprintf(&csv, "%s,%v,%v\n", u, rng.Float64()*120-60, rng.Float64()*300-150)
		}
	}
	for _, nd := range []*harness.Node{c.nodes[1], single} {
		if _, err := nd.Client.UploadTable(ctx, "user_profile", client.CSV, []byte(csv.String()), client.TableOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	src := repo.Views[0].Source
	// Checkpoints: moments between phases of the stream when neither
	// system is taking a write, so both have acknowledged the same events
	// before each (each stamps acknowledgements with its own clock).
	var checkpoints []time.Time
	sent := 0
	for seq := 0; sent < events; seq++ {
		if seq%40 == 39 {
			time.Sleep(30 * time.Millisecond)
			checkpoints = append(checkpoints, time.Now())
			time.Sleep(30 * time.Millisecond)
		}
		now := time.Now().UnixMilli()
		var lines []string
		for range 1 + rng.IntN(8) {
			ui := rng.IntN(len(users))
			e := clusterRefEvent{user: users[ui], merchant: merchants[rng.IntN(len(merchants))], country: countries[rng.IntN(len(countries))],
				amt: scale[ui] * (0.01 + rng.Float64()*100)}
			switch x := rng.IntN(20); {
			case x == 0: // too late for the user views (1 day + lateness), fine for country
				e.ts = now - 86_400_000 - 20*60_000 - rng.Int64N(3_600_000)
			case x < 4: // out of order within lateness
				e.ts = now - rng.Int64N(5*60_000)
			default:
				e.ts = now - rng.Int64N(2000)
			}
			lines = append(lines, fmt.Sprintf(`{"user_id":%q,"merchant":%q,"category":"c","country":%q,"amt":%v,"lat":1,"long":2,"is_fraud":0,"timestamp":%d}`,
				e.user, e.merchant, e.country, e.amt, e.ts))
			for vi, v := range repo.Views {
				fields := make([]windows.Field, len(v.SourceColumns))
				for k, sc := range v.SourceColumns {
					fields[k] = refField(src.Columns[sc].Name, e)
				}
				refs[vi].Add([]byte(refField(src.Columns[v.KeyColumn].Name, e).Str), e.ts, fields)
			}
			sent++
		}
		body := []byte(strings.Join(lines, "\n"))
		if _, err := c.nodes[rng.IntN(3)].Client.IngestBulk(ctx, "transactions", body, client.WriteOptions{RequestID: fmt.Sprint("ref-", seq)}); err != nil {
			t.Fatal(err)
		}
		if _, err := single.Client.IngestBulk(ctx, "transactions", body, client.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	asOf := time.Now().Add(-time.Second).Truncate(time.Millisecond)
	mismatch, compared := 0, 0
	var rows []map[string]any
	for _, u := range users {
		req := client.LookupRequest{Service: "fraud_detection", AsOf: asOf,
			JoinKeys:       map[string]any{"user_id": u, "merchant": merchants[rng.IntN(len(merchants))], "country": countries[rng.IntN(len(countries))]},
			RequestContext: map[string]any{"amt": 12.5, "lat": 10, "long": 20}}
		rows = append(rows, map[string]any{"join_key_map": req.JoinKeys, "request_context_map": req.RequestContext})
		want, _ := lookupRaw(t, single, req, client.PathGetFeatures)
		got, full := lookupRaw(t, c.nodes[rng.IntN(3)], req, client.PathGetFeatures)
		if !bytes.Equal(got, want) {
			mismatch++
			t.Errorf("%s: cluster %s\nsingle node %s", u, got, want)
		}
		// The model scores the same vector the same.
		pw, _ := lookupRaw(t, single, req, client.PathPredict)
		pc, _ := lookupRaw(t, c.nodes[rng.IntN(3)], req, client.PathPredict)
		if !bytes.Equal(pc, pw) {
			mismatch++
			t.Errorf("%s: predict: cluster %s\nsingle node %s", u, pc, pw)
		}
		// Every aggregate feature against the reference at asOf.
		var vec struct {
			Result struct{ Features []any } `json:"result"`
		}
		if err := json.Unmarshal(full, &vec); err != nil {
			t.Fatal(err)
		}
		keys := map[string]string{"user_id": u, "merchant": req.JoinKeys["merchant"].(string), "country": req.JoinKeys["country"].(string)}
		i := 0
		for vi, v := range repo.Views {
			vals := refs[vi].Read([]byte(keys[v.Entity.JoinKey]), asOf.UnixMilli())
			for fi := range v.Features {
				compared++
				if !closeTo(vec.Result.Features[i], vals[fi], v.Spec.Aggregations[fi].Func, vals) {
					t.Errorf("%s %s: cluster %v, reference %+v", u, v.Features[fi].FullName, vec.Result.Features[i], vals[fi])
				}
				i++
			}
		}
	}
	// Batch lookups: the same rows at once.
	bodyFor := func(nd *harness.Node) []byte {
		b, _ := json.Marshal(map[string]any{"params": map[string]any{"feature_service_name": "fraud_detection", "as_of": asOf.UnixMilli(), "request_data": rows}})
		out, err := nd.Client.LookupJSON(ctx, client.PathGetFeaturesBatch, b)
		if err != nil {
			t.Fatal(err)
		}
		return dropServerTime(out)
	}
	if got, want := bodyFor(c.nodes[2]), bodyFor(single); !bytes.Equal(got, want) {
		t.Errorf("batch: cluster %s\nsingle node %s", got, want)
	}
	t.Logf("%d events; %d vectors equal to the single node's (%d differ); %d aggregate features compared with the reference", sent, len(users)-mismatch, mismatch, compared)

	// Historical features: the same spine (every user at each checkpoint)
	// answered by a cluster node and by the single node.
	var spine strings.Builder
	for _, at := range checkpoints {
		for _, u := range users {
			fmt.Fprintf(&spine, `{"user_id":%q,"merchant":"m1","country":"FR","amt":3,"lat":1,"long":2,"timestamp":%d}`+"\n", u, at.UnixMilli())
		}
	}
	hist := func(nd *harness.Node) []byte {
		rc, err := nd.Client.HistoricalFeatures(ctx, client.HistoricalRequest{Service: "fraud_detection", Spine: []byte(spine.String())})
		if err != nil {
			t.Fatalf("%s: historical features: %v", nd.Name, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	hc, hs := hist(c.nodes[0]), hist(single)
	if !bytes.Equal(hc, hs) {
		cl, sl := bytes.Split(hc, []byte("\n")), bytes.Split(hs, []byte("\n"))
		for i := 0; i < min(len(cl), len(sl)); i++ {
			if !bytes.Equal(cl[i], sl[i]) {
				t.Fatalf("historical features differ at row %d of %d/%d:\ncluster %s\nsingle  %s", i, len(cl), len(sl), cl[i], sl[i])
			}
		}
		t.Fatalf("historical features: cluster %d rows, single node %d", len(cl), len(sl))
	}
	if len(checkpoints) < 3 {
		t.Fatalf("only %d checkpoints", len(checkpoints))
	}
	t.Logf("historical features: %d spine rows at %d checkpoints equal on the cluster and the single node", bytes.Count(hc, []byte("\n")), len(checkpoints))
}

// lookupRaw is a get-features answer without its serverTime.
func lookupRaw(t *testing.T, nd *harness.Node, r client.LookupRequest, path string) (cut, full []byte) {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"params": map[string]any{"feature_service_name": r.Service, "as_of": r.AsOf.UnixMilli(),
		"join_key_map": r.JoinKeys, "request_context_map": r.RequestContext}})
	out, err := nd.Client.LookupJSON(context.Background(), path, b)
	if err != nil {
		t.Fatal(err)
	}
	return dropServerTime(out), out
}

func dropServerTime(b []byte) []byte {
	if i := bytes.Index(b, []byte(`"serverTime"`)); i >= 0 {
		return b[:i]
	}
	return b
}

// closeTo compares a served feature with the reference's value: counts
// exactly, others to 1e-9 relative (the node's own reference test's rule).
func closeTo(got any, want windows.Value, fn windows.Func, all []windows.Value) bool {
	if !want.Present {
		return got == nil
	}
	g, ok := got.(float64)
	if !ok {
		return false
	}
	if fn == windows.Count || fn == windows.DistinctCount {
		return g == want.Num
	}
	tol := 1e-9 * math.Max(math.Abs(want.Num), math.Abs(g))
	if fn == windows.Stddev || fn == windows.Variance {
		for _, v := range all { // the view's mean and max bound the scale
			tol = math.Max(tol, 1e-9*math.Abs(v.Num))
		}
	}
	return math.Abs(g-want.Num) <= tol
}

type clusterRefEvent struct {
	user, merchant, country string
	amt                     float64
	ts                      int64
}

// refField is event e's column col, as the node builds a view's fields.
func refField(col string, e clusterRefEvent) windows.Field {
	switch col {
	case "user_id":
		return windows.Field{Str: []byte(e.user)}
	case "merchant":
		return windows.Field{Str: []byte(e.merchant)}
	case "country":
		return windows.Field{Str: []byte(e.country)}
	case "category":
		return windows.Field{Str: []byte("c")}
	case "amt":
		return windows.Field{Num: e.amt}
	case "lat":
		return windows.Field{Num: 1}
	case "long":
		return windows.Field{Num: 2}
	case "is_fraud":
		return windows.Field{Num: 0}
	}
	return windows.Field{Null: true}
}
