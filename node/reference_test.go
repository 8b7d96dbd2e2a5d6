package node

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tally-ml/tally/windows"
	"github.com/tally-ml/tally/windows/windowstest"
)

// TestHTTPMatchesReference drives a node over real HTTP with a randomized
// stream (out-of-order and too-late events, unicode keys, values from 1e-9 to
// 1e15, reads exactly at window boundaries) and checks every feature of every
// lookup against the brute-force reference aggregator. Zero mismatches.
func TestHTTPMatchesReference(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runReference(t, seed, 4000) })
	}
}

type refEvent struct {
	user, merchant, country string
	amt                     float64
	ts                      int64
}

func runReference(t *testing.T, seed uint64, steps int) {
	n, clk := newTestNode(t, DefaultConfig())
	base := serve(t, n)
	rng := rand.New(rand.NewPCG(seed, seed*7919))
	repo := n.Repo()
	refs := make([]*windowstest.Reference, len(repo.Views))
	for i, v := range repo.Views {
		refs[i] = windowstest.NewReference(v.Spec)
	}
	users := make([]string, 60)
	scale := make([]float64, len(users))
	scales := []float64{1e-9, 1, 1e6, 1e15}
	for i := range users {
		users[i] = fmt.Sprintf("user-%d", i)
		if i%5 == 0 {
			users[i] = fmt.Sprintf("ユーザー-%d-ß-😀", i)
		}
		scale[i] = scales[rng.IntN(len(scales))]
	}
	merchants := []string{"m0", "m1", "m2", "café", "m4", "m5", "m6", "m7"}
	countries := []string{"FR", "US", "日本"}
	homes := map[string][2]float64{}
	var csv strings.Builder
	csv.WriteString("user_id,home_lat,home_long\n")
	for i, u := range users {
		if i%3 == 0 {
			continue // no profile: distance is MISSING_DATA
		}
		h := [2]float64{rng.Float64()*120 - 60, rng.Float64()*300 - 150}
		homes[u] = h
		fmt.Fprintf(&csv, "%s,%v,%v\n", u, h[0], h[1])
	}
	if code, body := do(t, "POST", base+"/api/v1/tables/user_profile", "", "text/csv", csv.String()); code != 200 {
		t.Fatalf("profile upload: %d %s", code, body)
	}

	// The source schema order, to build each view's fields like the node does.
	src := repo.Views[0].Source
	var recent []refEvent
	lookups, checked := 0, 0
	for step := 0; step < steps; step++ {
		now := clk.now()
		switch r := rng.IntN(10); {
		case r < 6: // ingest a batch
			k := 1 + rng.IntN(8)
			var recs []string
			var evs []refEvent
			for j := 0; j < k; j++ {
				ui := rng.IntN(len(users))
				e := refEvent{user: users[ui], merchant: merchants[rng.IntN(len(merchants))], country: countries[rng.IntN(len(countries))],
					amt: scale[ui] * (0.01 + rng.Float64()*100)}
				switch x := rng.IntN(20); {
				case x == 0: // too late for the user views, fine for country
					e.ts = now - 86_400_000 - 10*60_000 - rng.Int64N(3_600_000)
				case x < 4: // out of order within lateness
					e.ts = now - rng.Int64N(5*60_000)
				default:
					e.ts = now - rng.Int64N(2000)
				}
				evs = append(evs, e)
				recs = append(recs, fmt.Sprintf(`{"record":{"user_id":%q,"merchant":%q,"category":"c","country":%q,"amt":%v,"lat":1,"long":2,"is_fraud":0,"timestamp":%d}}`,
					e.user, e.merchant, e.country, e.amt, e.ts))
			}
			code, body := do(t, "POST", base+"/api/v1/ingest", "", "application/json", `{"records":{"transactions":[`+strings.Join(recs, ",")+`]}}`)
			if code != 200 {
				t.Fatalf("ingest: %d %s", code, body)
			}
			for _, e := range evs {
				for vi, v := range repo.Views {
					fields := make([]windows.Field, len(v.SourceColumns))
					for c, sc := range v.SourceColumns {
						fields[c] = eventField(src.Columns[sc].Name, e)
					}
					refs[vi].Add([]byte(eventField(src.Columns[v.KeyColumn].Name, e).Str), e.ts, fields)
				}
				recent = append(recent, e)
			}
			if len(recent) > 200 {
				recent = recent[len(recent)-200:]
			}
		case r < 8: // advance the clock, sometimes exactly onto a window boundary
			if len(recent) > 0 && rng.IntN(3) == 0 {
				e := recent[rng.IntN(len(recent))]
				windowsMs := []int64{60_000, 300_000, 3_600_000}
				b := e.ts + windowsMs[rng.IntN(len(windowsMs))] - int64(rng.IntN(2))
				if b > now {
					clk.set(b)
					continue
				}
			}
			clk.advance(rng.Int64N(90_000))
		default: // look up and compare
			lookups++
			ui := rng.IntN(len(users))
			u, m, c := users[ui], merchants[rng.IntN(len(merchants))], countries[rng.IntN(len(countries))]
			if len(recent) > 0 && rng.IntN(2) == 0 {
				e := recent[rng.IntN(len(recent))]
				u, m, c = e.user, e.merchant, e.country
			}
			amt, lat, long := rng.Float64()*500, rng.Float64()*120-60, rng.Float64()*300-150
			code, body := do(t, "POST", base+"/api/v1/feature-service/get-features", "", "application/json", string(lookupBody(u, m, c, amt, lat, long)))
			if code != 200 {
				t.Fatalf("lookup: %d %s", code, body)
			}
			got := decodeVector(t, []byte(body))
			keys := map[string]string{"user_id": u, "merchant": m, "country": c}
			var mean1d *windows.Value
			for vi, v := range repo.Views {
				want := refs[vi].Read([]byte(keys[v.Entity.JoinKey]), now)
				for fi, f := range v.Features {
					checked++
					g := got[f.FullName]
					compareValue(t, f.FullName, v.Spec.Aggregations[fi].Func, g.v, g.status, want[fi], want)
					if f.FullName == "user_transaction_amounts.amt_mean_1d" {
						mean1d = &want[fi]
					}
				}
			}
			// Request-time features, recomputed independently.
			d := got["transaction_request.distance_from_home_km"]
			if h, ok := homes[u]; ok {
				w := haversineKm(lat, long, h[0], h[1])
				if d.status != "PRESENT" || math.Abs(d.v.(float64)-w) > 1e-6*math.Max(1, w) {
					t.Fatalf("distance for %s: got %v %s, want %v", u, d.v, d.status, w)
				}
			} else if d.status != "MISSING_DATA" {
				t.Fatalf("distance for %s without a profile: %v %s, want MISSING_DATA", u, d.v, d.status)
			}
			ratio := got["transaction_request.amt_to_user_mean_1d"]
			if mean1d.Present && mean1d.Num != 0 {
				w := amt / mean1d.Num
				if ratio.status != "PRESENT" || math.Abs(ratio.v.(float64)-w) > 1e-9*math.Max(1, math.Abs(w)) {
					t.Fatalf("amt_to_user_mean_1d: got %v %s, want %v", ratio.v, ratio.status, w)
				}
			} else if ratio.status != "MISSING_DATA" {
				t.Fatalf("amt_to_user_mean_1d with no mean: got %v %s", ratio.v, ratio.status)
			}
		}
	}
	if lookups < steps/10 || checked == 0 {
		t.Fatalf("only %d lookups, %d features checked", lookups, checked)
	}
	t.Logf("%d lookups, %d features compared, 0 mismatches", lookups, checked)
}

func eventField(col string, e refEvent) windows.Field {
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

// compareValue checks one served feature against the reference value.
// Counts are exact; sums and means of positive values agree to 1e-9
// relative; a standard deviation to 1e-9 of the magnitude of the values.
func compareValue(t *testing.T, name string, fn windows.Func, got any, status string, want windows.Value, all []windows.Value) {
	t.Helper()
	if !want.Present {
		if status != "MISSING_DATA" || got != nil {
			t.Fatalf("%s: got %v %s, want null MISSING_DATA", name, got, status)
		}
		return
	}
	g, ok := got.(float64)
	if status != "PRESENT" || !ok {
		t.Fatalf("%s: got %v %s, want %v PRESENT", name, got, status, want.Num)
	}
	tol := 1e-9 * math.Max(math.Abs(want.Num), math.Abs(g))
	if fn == windows.Stddev || fn == windows.Variance {
		for _, v := range all { // the view's mean and max bound the scale
			tol = math.Max(tol, 1e-9*math.Abs(v.Num))
		}
	}
	if fn == windows.Count || fn == windows.DistinctCount {
		tol = 0
	}
	if math.Abs(g-want.Num) > tol {
		t.Fatalf("%s: got %v, want %v (diff %g)", name, g, want.Num, g-want.Num)
	}
}

func haversineKm(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371.0088
	rad := math.Pi / 180
	dlat, dlon := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dlon/2)*math.Sin(dlon/2)
	return 2 * r * math.Asin(math.Sqrt(a))
}
