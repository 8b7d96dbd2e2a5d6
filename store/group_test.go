package store

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"testing"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/windows"
)

// fixtureBatches are the events of testdata/v3-default.snap.gz: the build
// before groups (631fe13) committed them to a store of the default repo,
// wrote that snapshot (version 3, one section per view) and recorded every
// view's reads of fixtureKeys at the last event's time in
// testdata/v3-default.json. Since the moments of whole cents are exact
// (windows.centSums), three card holders' stddev_1d there are this build's:
// each the float64 nearest the exact stddev (checked with math/big), one
// ulp from what 631fe13's two float passes read.
func fixtureBatches(sp *Source) (batches []*Batch, now int64) {
	rng := rand.New(rand.NewPCG(7, 8))
	now = t0
	for range 10 {
		b := &Batch{}
		b.Reset(0, len(sp.Src.Columns))
		for range 200 {
			now += rng.Int64N(30_000)
			e := b.Grow(now - rng.Int64N(120_000))
			b.SetStr(e, sp.ColIndex["user_id"], fmt.Appendf(nil, "u%d", rng.IntN(50)))
			b.SetStr(e, sp.ColIndex["merchant"], fmt.Appendf(nil, "m%d", rng.IntN(20)))
			b.SetStr(e, sp.ColIndex["country"], fmt.Appendf(nil, "c%d", rng.IntN(5)))
			b.SetNum(e, sp.ColIndex["amt"], float64(rng.IntN(100000))/100)
		}
		batches = append(batches, b)
	}
	return batches, now
}

// fixtureStore is a store of repo (grouped as New groups it) that
// committed the fixture's events, which end at now.
func fixtureStore(t *testing.T, repo *features.Repo, now int64) *Store {
	t.Helper()
	n, err := New(repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	batches, last := fixtureBatches(n.sources[0])
	if last != now {
		t.Fatalf("fixture events end at %d, the fixture at %d: fixtureBatches is not its generator", last, now)
	}
	for _, b := range batches {
		if _, _, err := n.CommitEvents("", []*Batch{b}, now, false); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

var fixtureKeys = []string{"u1", "u7", "u33", "m3", "m11", "c2", "c4", "nobody"}

func loadFixture(t *testing.T) (snap []byte, want map[string][]windows.Value, now int64) {
	t.Helper()
	f, err := os.Open("testdata/v3-default.snap.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("testdata/v3-default.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	want = map[string][]windows.Value{}
	for k, v := range m {
		if k == "now" {
			err = json.Unmarshal(v, &now)
		} else {
			var vals []windows.Value
			err = json.Unmarshal(v, &vals)
			want[k] = vals
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes(), want, now
}

// checkReads compares every view's reads of the fixture's keys with what
// the build before groups read.
func checkReads(t *testing.T, what string, n *Store, want map[string][]windows.Value, now int64) {
	t.Helper()
	checked := 0
	for i, v := range n.repo.Views {
		for _, k := range fixtureKeys {
			got := n.ReadView(i, []byte(k), now, nil)
			if w, ok := want[v.Name+"/"+k]; !ok || !reflect.DeepEqual(got, w) {
				t.Fatalf("%s: %s[%s] = %+v, the build before groups read %+v", what, v.Name, k, got, w)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Fatalf("%s: nothing read", what)
	}
}

func roundTrip(t *testing.T, repo *features.Repo, opts Options, from *Store) *Store {
	t.Helper()
	var buf bytes.Buffer
	if _, err := from.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	to, err := New(repo, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := to.Restore(&buf); err != nil {
		t.Fatalf("restore: %v", err)
	}
	return to
}

func groupNames(n *Store) []string {
	var out []string
	for _, v := range n.views {
		out = append(out, v.Spec().Name)
	}
	return out
}

// The default repo's three card-holder views share one group; the
// merchant and country views are alone.
func TestDefaultRepoGroups(t *testing.T) {
	repo, _ := features.Default()
	n, err := New(repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"user_transaction_counts+user_transaction_amounts+user_distinct_merchants", "merchant_transaction_counts", "country_amount_stats"}
	if got := groupNames(n); !reflect.DeepEqual(got, want) {
		t.Fatalf("groups %q, want %q", got, want)
	}
	// A view alone keeps its spec exactly (and so its snapshot sections).
	for i, v := range repo.Views {
		if w, from, to := n.View(i); from == 0 && to == len(w.Spec().Aggregations) && !reflect.DeepEqual(w.Spec(), v.Spec) {
			t.Errorf("view %s alone has spec %+v, want its own", v.Name, w.Spec())
		}
	}
}

// Groups change no answer: a store of the default repo fed the fixture's
// events reads what the build before groups read; a snapshot written by
// that build (one view per section) restores grouped (regroup), into the
// state of the store grouped from the start, and reads the same; both
// survive a round trip through a snapshot of this version, and, fed the
// same further events, keep reading alike, as views alone do.
func TestGroupsReadAsViewsAlone(t *testing.T) {
	snap, want, now := loadFixture(t)
	repo, _ := features.Default()

	merged := fixtureStore(t, repo, now)
	if len(merged.views) != 3 {
		t.Fatalf("groups %q", groupNames(merged))
	}
	checkReads(t, "grouped", merged, want, now)

	old, err := New(repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatalf("restore a version-3 snapshot: %v", err)
	}
	if !reflect.DeepEqual(groupNames(old), groupNames(merged)) {
		t.Fatalf("a version-3 snapshot restored into groups %q, want %q", groupNames(old), groupNames(merged))
	}
	checkReads(t, "version 3", old, want, now)

	for _, s := range []*Store{merged, old} {
		r := roundTrip(t, repo, Options{}, s)
		if !reflect.DeepEqual(groupNames(r), groupNames(s)) {
			t.Fatalf("round trip: groups %q, want %q", groupNames(r), groupNames(s))
		}
		checkReads(t, "round trip", r, want, now)
		_, a, err := s.Checksums()
		if err != nil {
			t.Fatal(err)
		}
		_, b, err := r.Checksums()
		if err != nil {
			t.Fatal(err)
		}
		if a != b {
			t.Fatal("round trip: checksums differ")
		}
		if r.Layout() != s.Layout() {
			t.Fatalf("round trip: layout %q, want %q", r.Layout(), s.Layout())
		}
	}
	if got, want := merged.Layout(), "user_transaction_counts+user_transaction_amounts+user_distinct_merchants"; got != want {
		t.Fatalf("grouped layout %q, want %q", got, want)
	}
	if got := old.Layout(); got != merged.Layout() {
		t.Fatalf("layout restored from a version-3 snapshot %q, want %q", got, merged.Layout())
	}
	_, grouped, err := merged.Checksums()
	if err != nil {
		t.Fatal(err)
	}
	_, regrouped, err := old.Checksums()
	if err != nil {
		t.Fatal(err)
	}
	if grouped != regrouped {
		t.Fatal("the version-3 snapshot regrouped and the store grouped from the start hold different states (checksums)")
	}
	// Views alone hold the same events and read alike, but their states,
	// and so their checksums, differ: Layout tells them apart.
	alone := aloneStore(t, repo)
	batches, _ := fixtureBatches(alone.sources[0])
	commitAll(t, alone, batches, now)
	checkReads(t, "alone", alone, want, now)
	if got := alone.Layout(); got != "" {
		t.Fatalf("layout of views alone %q, want \"\"", got)
	}
	if _, a, _ := alone.Checksums(); a == grouped {
		t.Fatal("the grouped and the ungrouped layouts have equal checksums: the check's layout rule is moot")
	}

	// Further events, some too late for the counts view alone, read alike.
	sp := merged.sources[0]
	rng := rand.New(rand.NewPCG(9, 10))
	var b Batch
	b.Reset(0, len(sp.Src.Columns))
	for range 300 {
		now += rng.Int64N(20_000)
		e := b.Grow(now - rng.Int64N(3*3_600_000))
		b.SetStr(e, sp.ColIndex["user_id"], fmt.Appendf(nil, "u%d", rng.IntN(50)))
		b.SetStr(e, sp.ColIndex["merchant"], fmt.Appendf(nil, "m%d", rng.IntN(20)))
		b.SetStr(e, sp.ColIndex["country"], fmt.Appendf(nil, "c%d", rng.IntN(5)))
		b.SetNum(e, sp.ColIndex["amt"], float64(rng.IntN(100000))/100)
	}
	for _, s := range []*Store{merged, old, alone} {
		if _, _, err := s.CommitEvents("", []*Batch{&b}, now, false); err != nil {
			t.Fatal(err)
		}
	}
	for i, v := range repo.Views {
		for u := range 50 {
			for _, k := range []string{fmt.Sprintf("u%d", u), fmt.Sprintf("m%d", u%20), fmt.Sprintf("c%d", u%5)} {
				for _, at := range []int64{now, now - 60_000} {
					g, o, a := merged.ReadView(i, []byte(k), at, nil), old.ReadView(i, []byte(k), at, nil), alone.ReadView(i, []byte(k), at, nil)
					if !reflect.DeepEqual(g, o) || !reflect.DeepEqual(g, a) {
						t.Fatalf("%s[%s] at %d: grouped %+v, regrouped %+v, alone %+v", v.Name, k, at, g, o, a)
					}
				}
			}
		}
	}
}

// A group whose member changed keeps that member's aggregations, unread,
// and the other members' state, once the change is accepted; the changed
// view is built apart. Later snapshots keep that layout, and do not
// mistake the unread member for the new view of its name.
func TestGroupMemberChanged(t *testing.T) {
	_, want, now := loadFixture(t)
	repo, _ := features.Default()
	merged := fixtureStore(t, repo, now)
	changed, _ := features.Default()
	if changed.Views[0].Name != "user_transaction_counts" {
		t.Fatalf("default repo's first view is %s", changed.Views[0].Name)
	}
	changed.Views[0].Spec.Aggregations[0].Window = 2 * 60_000

	var buf bytes.Buffer
	if _, err := merged.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	refused, _ := New(changed, Options{})
	if err := refused.Restore(bytes.NewReader(buf.Bytes())); err == nil {
		t.Fatal("a changed member restored without --accept-schema-change")
	}

	accepted := roundTrip(t, changed, Options{SkipRemoved: true}, merged)
	wantGroups := []string{"user_transaction_counts+user_transaction_amounts+user_distinct_merchants", "merchant_transaction_counts", "country_amount_stats", "user_transaction_counts"}
	if got := groupNames(accepted); !reflect.DeepEqual(got, wantGroups) {
		t.Fatalf("groups %q, want %q", got, wantGroups)
	}
	if !accepted.filter.fresh[3] || accepted.filter.fresh[0] {
		t.Fatalf("fresh groups %v: want only the changed view's", accepted.filter.fresh)
	}
	again := roundTrip(t, changed, Options{}, accepted)
	if got := groupNames(again); !reflect.DeepEqual(got, wantGroups) {
		t.Fatalf("second restore: groups %q, want %q", got, wantGroups)
	}
	for _, s := range []*Store{accepted, again} {
		for i, v := range changed.Views {
			for _, k := range fixtureKeys {
				got := s.ReadView(i, []byte(k), now, nil)
				if i == 0 {
					if got[0].Num != 0 || len(got) != 3 {
						t.Fatalf("changed view %s[%s] = %+v: want it empty (built from a log this store lacks)", v.Name, k, got)
					}
					continue
				}
				if !reflect.DeepEqual(got, want[v.Name+"/"+k]) {
					t.Fatalf("%s[%s] = %+v, before the change %+v", v.Name, k, got, want[v.Name+"/"+k])
				}
			}
		}
	}
}

// FuzzGroupLayout: a snapshot's group layout (JSON in its header) that
// this build did not write, or that no longer fits the repo, is refused
// with an error, never a panic; what it accepts is a usable state.
func FuzzGroupLayout(f *testing.F) {
	repo, err := features.Default()
	if err != nil {
		f.Fatal(err)
	}
	n, err := New(repo, Options{})
	if err != nil {
		f.Fatal(err)
	}
	for i := range n.groups {
		l := n.layoutOf(&n.groups[i])
		f.Add(encodeLayout(l))
		l.Members[0].Unread = true
		f.Add(encodeLayout(l))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		l, err := decodeLayout(raw)
		if err != nil {
			return
		}
		s, err := New(repo, Options{})
		if err != nil {
			t.Fatal(err)
		}
		live := make([]int, len(l.Members))
		taken := make([]bool, len(repo.Views))
		for k, m := range l.Members {
			live[k] = -1
			for j, v := range repo.Views {
				if v.Name == m.Name && !m.Unread && !taken[j] {
					live[k], taken[j] = j, true
				}
			}
		}
		g, err := s.groupOf(l, live)
		if err != nil {
			return
		}
		var rest []int
		for j, ok := range taken {
			if !ok {
				rest = append(rest, j)
			}
		}
		if err := s.setLayout(append([]group{g}, groupViews(repo, rest)...)); err != nil {
			return
		}
		for i := range repo.Views {
			s.ReadView(i, []byte("u"), t0, nil)
		}
	})
}
