package store

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"testing/fstest"

	"github.com/tally-ml/tally/features"
)

// aloneStore is a store of repo holding every view alone, as the builds
// before groups held them (and as a store restored from their snapshots
// held them, before regroup).
func aloneStore(t *testing.T, repo *features.Repo) *Store {
	t.Helper()
	n, err := New(repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var groups []group
	for i := range repo.Views {
		groups = append(groups, groupViews(repo, []int{i})[0])
	}
	if err := n.setLayout(groups); err != nil {
		t.Fatal(err)
	}
	return n
}

// userBytes is the bytes by Stats of the state holding the default repo's
// card-holder views, per card holder.
func userBytes(n *Store) float64 {
	seen := map[string]bool{}
	var bytes, users int64
	for i, v := range n.repo.Views {
		if v.Source.Columns[v.KeyColumn].Name != "user_id" || seen[n.StateOf(i)] {
			continue
		}
		seen[n.StateOf(i)] = true
		s := n.ViewStats(i)
		bytes += s.Bytes
		users = s.Entities
	}
	return float64(bytes) / float64(users)
}

// regroupBatches are a day and a half of card-holder events, some of them
// up to two hours late (too late for some views alone), ending at now.
func regroupBatches(sp *Source, users int, seed uint64) (batches []*Batch, now int64) {
	rng := rand.New(rand.NewPCG(seed, 11))
	now = t0
	for range 30 {
		b := &Batch{}
		b.Reset(sp.Index, len(sp.Src.Columns))
		for range 2000 {
			now += rng.Int64N(4_000)
			ts := now
			if rng.IntN(10) == 0 {
				ts -= rng.Int64N(2 * 3_600_000)
			}
			e := b.Grow(ts)
			b.SetStr(e, sp.ColIndex["user_id"], fmt.Appendf(nil, "u%d", rng.IntN(users)))
			b.SetStr(e, sp.ColIndex["merchant"], fmt.Appendf(nil, "m%d", rng.IntN(300)))
			b.SetStr(e, sp.ColIndex["country"], fmt.Appendf(nil, "c%d", rng.IntN(7)))
			if rng.IntN(20) != 0 { // some amounts are null
				b.SetNum(e, sp.ColIndex["amt"], float64(rng.IntN(100000))/100)
			}
		}
		batches = append(batches, b)
	}
	return batches, now
}

func commitAll(t *testing.T, n *Store, batches []*Batch, now int64) {
	t.Helper()
	for _, b := range batches {
		if _, _, err := n.CommitEvents("", []*Batch{b}, now, false); err != nil {
			t.Fatal(err)
		}
	}
}

// readTimes are the times to compare reads at: now, the watermark and the
// oldest time reads are exact for (watermark - lateness), and the tail
// edges of every window of the repo around the events of the last
// batches (t = ts + W - 1, ts + W, ts + W + 1), from that oldest time on.
func readTimes(repo *features.Repo, last *Batch, wm, lateness, now int64) []int64 {
	times := []int64{now, now + 1, wm, wm - lateness, wm - lateness + 1}
	seen := map[int64]bool{}
	for _, v := range repo.Views {
		for _, a := range v.Spec.Aggregations {
			if seen[a.Window] {
				continue
			}
			seen[a.Window] = true
			for e := 0; e < last.Len(); e += 97 {
				for _, d := range []int64{-1, 0, 1} {
					if t := last.ts[e] - a.Window + d; t >= wm-lateness {
						times = append(times, t)
					}
					if t := last.ts[e] + d; t >= wm-lateness {
						times = append(times, t)
					}
				}
			}
		}
	}
	return times
}

// TestRegroupViewsAlone: a store restored from a snapshot of views alone
// (every snapshot of a store restored from one written before groups)
// holds them grouped: the state a store grouped from the start holds
// (equal checksums), reading what the views alone read at every time reads
// are exact for, in less memory per card holder; its next snapshot
// restores grouped, and further events read alike.
func TestRegroupViewsAlone(t *testing.T) {
	repo, _ := features.Default()
	alone := aloneStore(t, repo)
	batches, now := regroupBatches(alone.sources[0], 3000, 21)
	commitAll(t, alone, batches, now)
	grouped, _ := New(repo, Options{})
	commitAll(t, grouped, batches, now)
	if len(groupNames(alone)) != len(repo.Views) || alone.Layout() != "" {
		t.Fatalf("alone: groups %q", groupNames(alone))
	}

	re := roundTrip(t, repo, Options{}, alone)
	if got, want := groupNames(re), groupNames(grouped); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored from a snapshot of views alone: groups %q, want %q", got, want)
	}
	if re.Layout() != grouped.Layout() {
		t.Fatalf("layout %q, want %q", re.Layout(), grouped.Layout())
	}
	before, after, fresh := userBytes(alone), userBytes(re), userBytes(grouped)
	t.Logf("card-holder views, bytes per user by Stats: alone %.0f, regrouped %.0f, grouped from the start %.0f", before, after, fresh)
	if after >= before*0.75 {
		t.Errorf("regrouped: %.0f B per user, alone %.0f", after, before)
	}
	_, a, _ := re.Checksums()
	_, g, _ := grouped.Checksums()
	if a != g {
		t.Fatal("regrouped state differs from the state grouped from the start (checksums)")
	}

	wm := int64(0)
	for _, b := range batches {
		for e := range b.Len() {
			wm = max(wm, b.ts[e])
		}
	}
	exact := readTimes(repo, batches[len(batches)-1], wm, repo.Sources[0].Lateness, now)
	compare := func(what string, x, y *Store, times []int64) {
		t.Helper()
		reads := 0
		for i, v := range repo.Views {
			for u := 0; u < 3000; u += 7 {
				k := []string{fmt.Sprintf("u%d", u), fmt.Sprintf("m%d", u%300), fmt.Sprintf("c%d", u%7)}[u%3]
				for _, at := range times {
					a, b := x.ReadView(i, []byte(k), at, nil), y.ReadView(i, []byte(k), at, nil)
					if !reflect.DeepEqual(a, b) {
						t.Fatalf("%s: %s[%s] at %d (watermark %d): %+v, want %+v", what, v.Name, k, at, wm, b, a)
					}
					reads++
				}
			}
		}
		t.Logf("%s: %d reads alike", what, reads)
	}
	compare("regrouped vs alone", alone, re, exact)
	// Before the exact reads' times too, the regrouped state reads as the
	// state grouped from the start (it is that state).
	past := append([]int64{wm - 2*3_600_000, wm - 23*3_600_000, wm - 3_600_000 - 1}, exact...)
	compare("regrouped vs grouped from the start", grouped, re, past)

	// A restart from the regrouped store's snapshot is grouped.
	again := roundTrip(t, repo, Options{}, re)
	if !reflect.DeepEqual(groupNames(again), groupNames(grouped)) {
		t.Fatalf("restart from the regrouped snapshot: groups %q", groupNames(again))
	}
	if _, c, _ := again.Checksums(); c != g {
		t.Fatal("restart from the regrouped snapshot: checksums differ")
	}

	// Further events read alike.
	more, end := regroupBatches(alone.sources[0], 3000, 22)
	shift := now - t0 + 1
	for _, b := range more {
		for e := range b.Len() {
			b.ts[e] += shift
		}
	}
	end += shift
	commitAll(t, alone, more, end)
	commitAll(t, re, more, end)
	wm = end
	for _, b := range more {
		for e := range b.Len() {
			wm = max(wm, b.ts[e])
		}
	}
	compare("further events: regrouped vs alone", alone, re, readTimes(repo, more[len(more)-1], wm, repo.Sources[0].Lateness, end))
}

// TestRegroupRefused: views the repo groups but whose state cannot be
// merged exactly (here no view alone keeps the merchant over the group's
// horizon: the counts view's hour is shorter than the amounts' day) stay
// alone and read as before, and the tally_views_left_apart gauge says so.
func TestRegroupRefused(t *testing.T) {
	repo, err := features.Load(fstest.MapFS{"repo.yaml": {Data: []byte(`
sources:
  - name: transactions
    timestamp: timestamp
    schema: {user_id: string, merchant: string, amt: float}
entities:
  - {name: user, join_key: user_id}
feature_views:
  - name: merchants
    source: transactions
    entity: user
    aggregations:
      - {column: merchant, function: distinct_count, window: 1h}
  - name: amounts
    source: transactions
    entity: user
    aggregations:
      - {column: amt, function: sum, window: 1d}
`)}})
	if err != nil {
		t.Fatal(err)
	}
	alone := aloneStore(t, repo)
	sp := alone.sources[0]
	rng := rand.New(rand.NewPCG(1, 2))
	var b Batch
	b.Reset(0, len(sp.Src.Columns))
	now := t0
	for range 500 {
		now += rng.Int64N(60_000)
		e := b.Grow(now)
		b.SetStr(e, sp.ColIndex["user_id"], fmt.Appendf(nil, "u%d", rng.IntN(20)))
		b.SetStr(e, sp.ColIndex["merchant"], fmt.Appendf(nil, "m%d", rng.IntN(20)))
		b.SetNum(e, sp.ColIndex["amt"], 1)
	}
	commitAll(t, alone, []*Batch{&b}, now)
	re := roundTrip(t, repo, Options{}, alone)
	if got := groupNames(re); !reflect.DeepEqual(got, groupNames(alone)) {
		t.Fatalf("groups %q, want the views alone %q", got, groupNames(alone))
	}
	if got := re.metrics.set.GetOrCreateGauge("tally_views_left_apart", nil).Get(); got != 2 {
		t.Fatalf("tally_views_left_apart = %v, want 2", got)
	}
	for i := range repo.Views {
		for u := range 20 {
			k := fmt.Appendf(nil, "u%d", u)
			if a, r := alone.ReadView(i, k, now, nil), re.ReadView(i, k, now, nil); !reflect.DeepEqual(a, r) {
				t.Fatalf("%s[%s]: %+v, alone %+v", repo.Views[i].Name, k, r, a)
			}
		}
	}
}
