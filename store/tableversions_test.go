package store

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/tally-ml/tally/features"
)

// upload is one put a reference replays.
type upload struct {
	rows    []TableRow
	replace bool
	from    int64
}

// rowAt is the reference's row of key at time at: that of the last upload
// in log order valid from at or before at that names key, or leaves it out
// of a replace (no row).
func rowAt(log []upload, key string, at int64) (TableRow, bool) {
	for i := len(log) - 1; i >= 0; i-- {
		u := log[i]
		if u.from > at {
			continue
		}
		for j := len(u.rows) - 1; j >= 0; j-- {
			if u.rows[j].Key == key {
				return u.rows[j], true
			}
		}
		if u.replace {
			return TableRow{}, false
		}
	}
	return TableRow{}, false
}

// TestTableVersionsMatchAReference drives a table with a 60 s horizon
// through random uploads (updates, unchanged rows, new keys, replaces,
// keys named twice, backfills valid from before newer uploads, uploads
// older than the horizon) with a clock that advances, and after each
// compares GetAt of every key, at times from the horizon before the
// newest upload to after it, with the row valid then by a replay of every
// upload, also as time passes without uploads and after a snapshot's
// round trip of the versions; recent holds only the keys changed since the
// first upload valid from after the cut, and nothing a horizon after the
// last upload.
func TestTableVersionsMatchAReference(t *testing.T) {
	def := &features.Table{Name: "p", Columns: []features.Column{
		{Name: "x", Type: features.Float}, {Name: "s", Type: features.String}, {Name: "y", Type: features.Int}}}
	const horizon = 60_000
	tb := newTable(def, nil, horizon)
	rng := rand.New(rand.NewPCG(5, 6))
	keys := make([]string, 60)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	row := func(k string) TableRow {
		r := NewRow(def)
		r.Key = k
		if v := rng.IntN(4); v > 0 { // few distinct values: many uploads change nothing
			r.Null[0], r.Nums[0] = false, float64(v)
		}
		if rng.IntN(3) > 0 {
			r.Null[1], r.Strs[1] = false, fmt.Sprint("s", rng.IntN(2))
		}
		r.Null[2], r.Nums[2] = rng.IntN(5) == 0, float64(rng.IntN(2))
		return r
	}
	var log []upload
	clock := int64(1_000_000)
	nums, strs, present := make([]float64, 3), make([]string, 3), make([]bool, 3)
	check := func(step int, tb *Table, what string) {
		t.Helper()
		for _, k := range keys {
			for at := clock - horizon; at <= clock+2000; at += 250 + rng.Int64N(1000) {
				want, wantOK := rowAt(log, k, at)
				got := tb.GetAt([]byte(k), at, nums, strs, present)
				if got != wantOK {
					t.Logf("newest %d, cut %d, versions %+v", tb.newest, tb.cut(), tb.recent[k])
					t.Fatalf("step %d%s: %s at %d: found %v, want %v", step, what, k, at, got, wantOK)
				}
				for c := range 3 {
					if got && (present[c] == want.Null[c] || present[c] && (nums[c] != want.Nums[c] || strs[c] != want.Strs[c])) {
						t.Fatalf("step %d%s: %s at %d column %d: %v %v %q, want %+v", step, what, k, at, c, present[c], nums[c], strs[c], want)
					}
					if !got && present[c] {
						t.Fatalf("step %d%s: %s at %d has no row but column %d is present", step, what, k, at, c)
					}
				}
			}
		}
	}
	for step := range 400 {
		clock += rng.Int64N(8000)
		u := upload{from: clock, replace: rng.IntN(12) == 0}
		switch rng.IntN(8) {
		case 0:
			u.from = clock - rng.Int64N(2*horizon) // a backfill, maybe older than the horizon
		case 1:
			u.from = clock - 3*horizon - rng.Int64N(horizon)
		}
		for range 1 + rng.IntN(12) {
			u.rows = append(u.rows, row(keys[rng.IntN(len(keys))]))
		}
		if u.replace && rng.IntN(2) == 0 {
			u.rows = u.rows[:0] // empties the table
		}
		tb.put(u.rows, u.replace, u.from)
		log = append(log, u)
		check(step, tb, "")

		// Memory: recent holds only keys changed by the first upload (in
		// log order) valid from after the cut, or by one after it.
		first := len(log)
		for i, u := range log {
			if u.from > tb.cut() {
				first = i
				break
			}
		}
		changed := map[string]bool{}
		for _, u := range log[first:] {
			for _, r := range u.rows {
				changed[r.Key] = true
			}
			if u.replace {
				for _, k := range keys {
					changed[k] = true
				}
			}
		}
		for k := range tb.recent {
			if !changed[k] {
				t.Fatalf("step %d: recent holds %s, not changed since the cut", step, k)
			}
		}
		if step%20 == 0 {
			// Time passes without uploads (events come).
			clock += rng.Int64N(horizon)
			tb.advance(clock)
			check(step, tb, " (later)")
		}

		if step%50 == 49 {
			st := &Store{tables: []*Table{newTable(def, nil, horizon)}}
			tb.mu.RLock()
			rec := appendTableRecord(nil, tb, tb.rowsView(), true)
			vers := tb.appendVersions(nil)
			tb.mu.RUnlock()
			_, rows, replace, err := st.decodeTableRecord(rec)
			if err != nil {
				t.Fatal(err)
			}
			st.tables[0].put(rows, replace, math.MinInt64)
			r := &recordReader{b: vers}
			if err := st.restoreVersions(r); err != nil || len(r.b) != 0 {
				t.Fatalf("step %d: restore versions: %v (%d bytes left)", step, err, len(r.b))
			}
			check(step, st.tables[0], " (restored)")
		}
	}
	// Once the horizon has passed, with or without uploads, nothing is
	// left.
	clock += horizon + 1
	tb.advance(clock)
	if len(tb.recent) > 0 || len(tb.queue) > 0 {
		t.Fatalf("after the horizon, recent holds %d keys and the queue %d changes, want none", len(tb.recent), len(tb.queue))
	}
	// Without a horizon, a table keeps no versions.
	flat := newTable(def, nil, 0)
	for _, u := range log {
		flat.put(u.rows, u.replace, u.from)
		if len(flat.recent) > 0 {
			t.Fatalf("a table without a horizon keeps versions of %d keys", len(flat.recent))
		}
	}
}

// TestSnapshotKeepsTableVersions: a store's snapshot holds its tables'
// versions, and a store restored from it reads the rows valid at a past
// time; a snapshot without the section (the builds before it) restores
// the current rows alone.
func TestSnapshotKeepsTableVersions(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tb := a.TableNamed("user_profile")
	put := func(v float64, from int64) {
		r := NewRow(tb.def)
		r.Key, r.Null[0], r.Nums[0] = "u1", false, v
		if err := a.CommitTable("", tb, []TableRow{r}, false, from); err != nil {
			t.Fatal(err)
		}
	}
	const t1, t2 = int64(1_800_000_000_000), int64(1_800_000_060_000)
	put(1, t1)
	put(2, t2)
	var snap bytes.Buffer
	if _, err := a.WriteSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	lat := func(n *Store, at int64) any {
		nums, strs, present := make([]float64, 2), make([]string, 2), make([]bool, 2)
		if !n.TableNamed("user_profile").GetAt([]byte("u1"), at, nums, strs, present) {
			return nil
		}
		return nums[0]
	}
	b, err := New(repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Restore(bufio.NewReader(bytes.NewReader(snap.Bytes()))); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		at   int64
		want any
	}{{t1 - 1, nil}, {t1, 1.0}, {t2 - 1, 1.0}, {t2, 2.0}, {math.MaxInt64, 2.0}} {
		if got := lat(b, c.at); got != c.want {
			t.Errorf("restored, at %d: %v, want %v", c.at, got, c.want)
		}
	}

	// The same snapshot as an older build wrote it: no versions section.
	i := bytes.LastIndex(snap.Bytes(), []byte(tableVersionsMagic))
	old := append(bytes.Clone(snap.Bytes()[:i]), 0, 0, 0, 0) // (Restore reads no checksum)
	c, err := New(repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Restore(bytes.NewReader(old)); err != nil {
		t.Fatal(err)
	}
	if got := lat(c, t1); got != 2.0 {
		t.Errorf("restored without versions, at t1: %v, want the current row's 2", got)
	}
}

// TestTableVersionsExpireAsEventsCome: a table drops the versions no read
// needs once the log's clock passes them, without another upload: events
// acknowledged a horizon (the repo's longest lateness) after a change
// leave none.
func TestTableVersionsExpireAsEventsCome(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tb := n.TableNamed("user_profile")
	const t1 = int64(1_800_000_000_000)
	for i, v := range []float64{1, 2} {
		r := NewRow(tb.def)
		r.Key, r.Null[0], r.Nums[0] = "u1", false, v
		if err := n.CommitTable("", tb, []TableRow{r}, false, t1+int64(i)*1000); err != nil {
			t.Fatal(err)
		}
	}
	events := func(clock int64) {
		sp := n.Source(0)
		var b Batch
		b.Reset(0, len(sp.Src.Columns))
		e := b.Grow(clock)
		for _, c := range []string{"user_id", "merchant", "country"} {
			b.SetStr(e, sp.ColIndex[c], []byte("x"))
		}
		if _, _, err := n.CommitEvents("", []*Batch{&b}, clock, false); err != nil {
			t.Fatal(err)
		}
	}
	horizon := tb.horizon
	events(t1 + 1000 + horizon - 1)
	if len(tb.recent) != 1 {
		t.Fatalf("within the horizon: versions of %d keys, want 1", len(tb.recent))
	}
	events(t1 + 1000 + horizon)
	if len(tb.recent) != 0 || len(tb.queue) != 0 {
		t.Fatalf("a horizon later: versions of %d keys, %d changes queued; want none", len(tb.recent), len(tb.queue))
	}
}
