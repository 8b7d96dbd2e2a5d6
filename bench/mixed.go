package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/tally-ml/tally/bench/load"
	"github.com/tally-ml/tally/bench/workload"
	tallyclient "github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/windows"
	"github.com/tally-ml/tally/windows/windowstest"
)

// ledger tracks which ingested events are acknowledged, so that a lookup
// can name a read time (as_of) at which the node's answer is fully
// determined: every event stamped at or before it was acknowledged before
// the lookup was sent, and every event sent later is stamped after it.
type ledger struct {
	mu        sync.Mutex
	gen       *workload.Generator
	nextID    int64
	inflight  map[int64]int64 // batch -> its events' timestamp
	acked     []workload.Txn  // in acknowledgement order
	ambiguous int             // batches whose outcome is unknown (transport error)
	refused   int
}

func newLedger(cfg workload.Config) *ledger {
	cfg.Seed += 29
	return &ledger{gen: workload.New(cfg), inflight: map[int64]int64{}}
}

// begin stamps n new transactions with the current time and marks them in
// flight. user, when set, replaces the user (freshness probes).
func (l *ledger) begin(dst []workload.Txn, n int, user string) (int64, []workload.Txn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := time.Now().UnixMilli()
	dst = dst[:0]
	for range n {
		t := l.gen.Next(ts)
		if user != "" {
			t.UserID = user
		}
		dst = append(dst, t)
	}
	l.nextID++
	l.inflight[l.nextID] = ts
	return l.nextID, dst
}

func (l *ledger) end(id int64, txns []workload.Txn, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.inflight, id)
	var se *statusError
	switch {
	case err == nil:
		l.acked = append(l.acked, txns...)
	case errors.As(err, &se):
		l.refused++ // all or nothing: a refused request applied nothing
	default:
		l.ambiguous++
	}
}

// watermark returns a read time at or after which nothing unacknowledged is
// stamped.
func (l *ledger) watermark() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := time.Now().UnixMilli()
	for _, ts := range l.inflight {
		w = min(w, ts)
	}
	return w - 1
}

// sample is one checked lookup: the request, its read time and the answer.
type sample struct {
	key  lookupKey
	asOf int64
	body []byte
}

func (r *runner) runMixed(ctx context.Context) error {
	if !r.opts.want("mixed") {
		return nil
	}
	ts, err := startTally(r.opts)
	if err != nil {
		return err
	}
	defer ts.stop()
	if err := ts.load(r.fix); err != nil {
		return err
	}
	o := r.opts
	lookupRate, evRate, batch, probeRate := 10_000.0, 20_000.0, 100, 50.0
	maxSamples := 2000
	if o.Quick {
		lookupRate, evRate, batch, probeRate, maxSamples = 5_000, 5_000, 50, 20, 300
	}
	r.logf("mixed    %0.f lookups/s with %0.f events/s ingested (bulk, %d per request) and %0.f freshness probes/s, on a second preloaded node", lookupRate, evRate, batch, probeRate)
	led := newLedger(r.fix.cfg)
	c := newClient(ts.addr, o.Workers+16)
	defer c.close()

	var wg sync.WaitGroup
	var lookupRes, ingestRes load.Result
	var samples []sample
	var smu sync.Mutex
	every := max(1, int64(lookupRate*o.Duration.Seconds())/int64(maxSamples))
	bodies := make([][]byte, len(r.fix.lookups))
	for i := range r.fix.lookups {
		bodies[i] = r.fix.lookups[i].tallyBody(nil, 0)
	}
	wg.Add(3)
	go func() {
		defer wg.Done()
		lookupRes = load.RunOpen(ctx, load.Open{Rate: lookupRate, Duration: o.Duration, Workers: o.Workers}, func(w int, i int64) error {
			k := &r.fix.lookups[i%int64(len(r.fix.lookups))]
			if i%every != 0 {
				_, err := c.post(w, pathGetFeatures, "application/json", bodies[i%int64(len(bodies))])
				return err
			}
			asOf := led.watermark()
			body, err := c.post(w, pathGetFeatures, "application/json", k.tallyBody(nil, asOf))
			if err == nil {
				smu.Lock()
				samples = append(samples, sample{key: *k, asOf: asOf, body: append([]byte(nil), body...)})
				smu.Unlock()
			}
			return err
		})
	}()
	ingestWorkers := 8
	go func() {
		defer wg.Done()
		bufs := make([][]byte, ingestWorkers)
		txns := make([][]workload.Txn, ingestWorkers)
		ingestRes = load.RunOpen(ctx, load.Open{Rate: evRate / float64(batch), Duration: o.Duration, Workers: ingestWorkers}, func(w int, i int64) error {
			var id int64
			id, txns[w] = led.begin(txns[w], batch, "")
			bufs[w] = ndjson(bufs[w][:0], txns[w])
			_, err := c.post(o.Workers+w, pathBulk, "application/x-ndjson", bufs[w])
			led.end(id, txns[w], err)
			return err
		})
	}()
	var fresh *Freshness
	go func() {
		defer wg.Done()
		fresh = r.freshness(ctx, c, o.Workers+ingestWorkers, led, probeRate)
	}()
	wg.Wait()

	lr := resultOf("tally", "mixed-lookup", "open", lookupRate, o.Workers, lookupRes)
	lr.Description = fmt.Sprintf("lookups while %0.f events/s are ingested", evRate)
	r.add(lr)
	ir := resultOf("tally", "mixed-ingest", "open", evRate/float64(batch), ingestWorkers, ingestRes)
	ir.EventsPerS = float64((ingestRes.Requests-ingestRes.Errors)*int64(batch)) / ingestRes.Elapsed.Seconds()
	ir.Description = fmt.Sprintf("bulk NDJSON, %d events per request, while %0.f lookups/s are served", batch, lookupRate)
	r.add(ir)
	r.rep.Freshness = fresh
	if fresh != nil {
		r.logf("mixed    freshness (ack to visible in a lookup): p50 %s p99 %s; %d of %d probes visible on the first lookup",
			fmtUs(fresh.Latency.P50), fmtUs(fresh.Latency.P99), fresh.FirstLookup, fresh.Probes)
	}

	t := time.Now()
	corr := r.checkTally(samples, led)
	r.rep.Correctness = append(r.rep.Correctness, corr)
	r.logf("mixed    checked %d loaded lookups (%d features) against the reference in %s: %d mismatches%s",
		corr.Lookups, corr.Features, time.Since(t).Round(time.Millisecond), corr.Mismatches, ifs(corr.Inconclusive != "", " (inconclusive: "+corr.Inconclusive+")"))
	return nil
}

func ifs(c bool, s string) string {
	if c {
		return s
	}
	return ""
}

// freshness ingests one event for a new user at probeRate and times, from
// the acknowledgement, until a lookup shows it.
func (r *runner) freshness(ctx context.Context, c *client, w0 int, led *ledger, rate float64) *Freshness {
	const workers = 4
	var mu sync.Mutex
	f := &Freshness{}
	h := load.NewHistogram()
	txns := make([][]workload.Txn, workers)
	load.RunOpen(ctx, load.Open{Rate: rate, Duration: r.opts.Duration, Workers: workers}, func(w int, i int64) error {
		user := "fresh_" + strconv.FormatInt(i, 10)
		var id int64
		id, txns[w] = led.begin(txns[w], 1, user)
		body := ingestJSON(nil, txns[w])
		_, err := c.post(w0+w, pathIngest, "application/json", body)
		led.end(id, txns[w], err)
		if err != nil {
			return err
		}
		acked := time.Now()
		k := lookupKey{User: user, Merchant: txns[w][0].Merchant, Country: txns[w][0].Country, Amt: 1, Lat: 0, Long: 0}
		req := k.tallyBody(nil, 0)
		for try := 1; try <= 1000 && time.Since(acked) < 2*time.Second; try++ {
			resp, err := c.post(w0+w, pathGetFeatures, "application/json", req)
			if err != nil {
				return err
			}
			v, err := parseVector(resp)
			if err != nil {
				return err
			}
			if n, ok := v["user_transaction_counts.amt_count_1m"]; ok && n.present && n.num >= 1 {
				mu.Lock()
				f.Probes++
				if try == 1 {
					f.FirstLookup++
				}
				_ = h.RecordValue(max(1, int64(time.Since(acked))))
				mu.Unlock()
				return nil
			}
		}
		mu.Lock()
		f.Probes++
		f.NeverVisible++
		mu.Unlock()
		return nil
	})
	f.Latency = latencyOf(h)
	return f
}

type served struct {
	present bool
	num     float64
	null    bool
}

// parseVector reads a get-features response into feature name -> value.
func parseVector(body []byte) (map[string]served, error) {
	resp, err := tallyclient.DecodeFeatures(body)
	if err != nil {
		return nil, fmt.Errorf("lookup response: %w", err)
	}
	if len(resp.Result.Features) != len(resp.Metadata.Features) {
		return nil, fmt.Errorf("lookup response has %d values and %d names", len(resp.Result.Features), len(resp.Metadata.Features))
	}
	out := make(map[string]served, len(resp.Result.Features))
	for i, m := range resp.Metadata.Features {
		s := served{present: m.Status == "PRESENT"}
		switch x := resp.Result.Features[i].(type) {
		case float64:
			s.num = x
		case nil:
			s.null = true
		default:
			return nil, fmt.Errorf("feature %s: unexpected value %v", m.Name, x)
		}
		out[m.Name] = s
	}
	return out, nil
}

// references builds the brute-force reference of every view of the default
// repo, fed the preload and then extra events in order.
func (r *runner) references(repo *features.Repo, extra []workload.Txn) []*windowstest.Reference {
	refs := make([]*windowstest.Reference, len(repo.Views))
	for i, v := range repo.Views {
		refs[i] = windowstest.NewReference(v.Spec)
	}
	feed := func(txns []workload.Txn) {
		for ti := range txns {
			t := &txns[ti]
			for vi, v := range repo.Views {
				fields := make([]windows.Field, len(v.SourceColumns))
				for c, sc := range v.SourceColumns {
					fields[c] = txnField(v.Source.Columns[sc].Name, t)
				}
				_ = refs[vi].Add([]byte(txnField(v.Source.Columns[v.KeyColumn].Name, t).Str), t.TS, fields)
			}
		}
	}
	feed(r.fix.preload)
	feed(extra)
	return refs
}

// txnField is column col of t as the node reads it from the JSON the
// workload writes (lat and long with 5 decimals).
func txnField(col string, t *workload.Txn) windows.Field {
	round5 := func(x float64) float64 {
		v, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'f', 5, 64), 64)
		return v
	}
	switch col {
	case "user_id":
		return windows.Field{Str: []byte(t.UserID)}
	case "merchant":
		return windows.Field{Str: []byte(t.Merchant)}
	case "country":
		return windows.Field{Str: []byte(t.Country)}
	case "category":
		return windows.Field{Str: []byte(t.Category)}
	case "amt":
		return windows.Field{Num: t.Amt}
	case "lat":
		return windows.Field{Num: round5(t.Lat)}
	case "long":
		return windows.Field{Num: round5(t.Long)}
	case "is_fraud":
		return windows.Field{Num: float64(t.IsFraud)}
	}
	return windows.Field{Null: true}
}

// checkTally compares each sampled response with the reference.
func (r *runner) checkTally(samples []sample, led *ledger) Correctness {
	c := Correctness{System: "tally", Scenario: "mixed"}
	repo, err := features.Default()
	if err != nil {
		c.Inconclusive = err.Error()
		return c
	}
	led.mu.Lock()
	acked, ambiguous := led.acked, led.ambiguous
	led.mu.Unlock()
	if ambiguous > 0 {
		c.Inconclusive = fmt.Sprintf("%d ingest requests failed in transport, so whether they were applied is unknown", ambiguous)
	}
	refs := r.references(repo, acked)
	for _, s := range samples {
		v, err := parseVector(s.body)
		if err != nil {
			c.mismatch(err.Error())
			continue
		}
		c.Lookups++
		keys := map[string]string{"user_id": s.key.User, "merchant": s.key.Merchant, "country": s.key.Country}
		bad := ""
		var mean1d windows.Value
		for vi, view := range repo.Views {
			key := []byte(keys[view.Entity.JoinKey])
			want, scales := refs[vi].ReadScale(key, s.asOf)
			got := make([]windows.Value, len(view.Features))
			for fi, f := range view.Features {
				g, ok := v[f.FullName]
				if !ok {
					bad = "response lacks " + f.FullName
					break
				}
				got[fi] = windows.Value{Present: g.present, Num: g.num}
				if f.FullName == "user_transaction_amounts.amt_mean_1d" {
					mean1d = want[fi]
				}
				c.Features++
			}
			if bad == "" {
				if err := windowstest.Compare(view.Spec, got, want, scales); err != nil {
					bad = fmt.Sprintf("%s key %q as_of %d: %v", view.Name, key, s.asOf, err)
				}
			}
			if bad != "" {
				break
			}
		}
		if bad == "" {
			bad = r.checkRequestFeatures(v, s.key, mean1d, &c)
		}
		if bad != "" {
			c.mismatch(bad)
		}
	}
	return c
}

// checkRequestFeatures checks the table and request-time features of one
// response against values recomputed here.
func (r *runner) checkRequestFeatures(v map[string]served, k lookupKey, mean1d windows.Value, c *Correctness) string {
	home, ok := r.fix.homes[k.User]
	lat, lon := v["user_profile.home_lat"], v["user_profile.home_long"]
	d := v["transaction_request.distance_from_home_km"]
	ratio := v["transaction_request.amt_to_user_mean_1d"]
	c.Features += 4
	if !ok {
		if lat.present || d.present {
			return fmt.Sprintf("user %s has no profile but home_lat/distance are present", k.User)
		}
	} else {
		if !lat.present || !lon.present || lat.num != home[0] || lon.num != home[1] {
			return fmt.Sprintf("user_profile of %s: got %v,%v want %v", k.User, lat, lon, home)
		}
		want := haversineKm(k.Lat, k.Long, home[0], home[1])
		if !d.present || math.Abs(d.num-want) > 1e-6*math.Max(1, want) {
			return fmt.Sprintf("distance_from_home_km of %s: got %+v want %v", k.User, d, want)
		}
	}
	if mean1d.Present && mean1d.Num != 0 {
		want := k.Amt / mean1d.Num
		if !ratio.present || math.Abs(ratio.num-want) > 1e-9*math.Max(1, math.Abs(want)) {
			return fmt.Sprintf("amt_to_user_mean_1d of %s: got %+v want %v", k.User, ratio, want)
		}
	} else if ratio.present {
		return fmt.Sprintf("amt_to_user_mean_1d of %s present without a mean", k.User)
	}
	return ""
}

func (c *Correctness) mismatch(msg string) {
	c.Mismatches++
	if len(c.Examples) < 5 {
		c.Examples = append(c.Examples, truncate(msg, 400))
	}
}

func haversineKm(lat1, lon1, lat2, lon2 float64) float64 {
	const r = 6371.0088
	rad := math.Pi / 180
	dlat, dlon := (lat2-lat1)*rad, (lon2-lon1)*rad
	a := math.Sin(dlat/2)*math.Sin(dlat/2) + math.Cos(lat1*rad)*math.Cos(lat2*rad)*math.Sin(dlon/2)*math.Sin(dlon/2)
	return 2 * r * math.Asin(math.Sqrt(a))
}
