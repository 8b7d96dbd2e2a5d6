package store

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/tally-ml/tally/features"
)

// TestTableMatchesAMap drives a table through random uploads (new keys,
// updates, nulls, replaces; keys of 0 to 40 bytes; 70 columns, so two
// words of null flags, one in three a string) and compares it after each
// with a map of the rows: Get of every key ever used, Len, and rowsView in
// the order rows were first stored since the last replace.
func TestTableMatchesAMap(t *testing.T) {
	def := &features.Table{Name: "wide"}
	for c := range 70 {
		typ := features.Float
		if c%3 == 1 {
			typ = features.String
		}
		def.Columns = append(def.Columns, features.Column{Name: fmt.Sprint("c", c), Type: typ})
	}
	tb := newTable(def, nil, 0)
	rng := rand.New(rand.NewPCG(11, 12))
	pool := make([]string, 400)
	for i := range pool {
		pool[i] = fmt.Sprintf("%0*d", i%41, i)
	}
	pool[0] = ""
	ref := map[string]TableRow{}
	var order []string
	nums, strs, present := make([]float64, 70), make([]string, 70), make([]bool, 70)
	for step := range 60 {
		replace := step%15 == 14
		var rows []TableRow
		for range rng.IntN(80) {
			r := NewRow(def)
			r.Key = pool[rng.IntN(len(pool))]
			for c, col := range def.Columns {
				if rng.IntN(4) == 0 {
					continue
				}
				r.Null[c] = false
				if col.Type == features.String {
					r.Strs[c] = fmt.Sprint("s", rng.IntN(1000))
				} else {
					r.Nums[c] = rng.NormFloat64()
				}
			}
			rows = append(rows, r)
		}
		tb.put(rows, replace, 0)
		if replace {
			clear(ref)
			order = order[:0]
		}
		for _, r := range rows {
			if _, ok := ref[r.Key]; !ok {
				order = append(order, r.Key)
			}
			ref[r.Key] = r
		}
		if tb.Len() != len(ref) {
			t.Fatalf("step %d: Len %d, want %d", step, tb.Len(), len(ref))
		}
		for _, k := range pool {
			want, ok := ref[k]
			if got := tb.Get([]byte(k), nums, strs, present); got != ok {
				t.Fatalf("step %d: Get(%q) found %v, want %v", step, k, got, ok)
			}
			for c := range def.Columns {
				if !ok {
					if present[c] {
						t.Fatalf("step %d: %q has no row but column %d is present", step, k, c)
					}
					continue
				}
				if present[c] == want.Null[c] || nums[c] != want.Nums[c] || strs[c] != want.Strs[c] {
					t.Fatalf("step %d: %q column %d: %v %v %q, want %v %v %q", step, k, c, present[c], nums[c], strs[c], !want.Null[c], want.Nums[c], want.Strs[c])
				}
			}
		}
		all := tb.rowsView()
		keys := make([]string, len(all))
		for i, r := range all {
			keys[i] = r.Key
			if !reflect.DeepEqual(r, ref[r.Key]) {
				t.Fatalf("step %d: rowsView %+v, want %+v", step, r, ref[r.Key])
			}
		}
		if !slices.Equal(keys, order) {
			t.Fatalf("step %d: rowsView in order %q, want %q", step, keys, order)
		}
	}
}

// TestTableChecksumsUnchanged: the store's checksums of table rows are
// those of the build before tables kept their rows in records (a0d7b5b, a
// Go map), so that replicas of both builds compare equal in a cluster's
// check during an upgrade. The expected value was computed by a0d7b5b from
// the same rows.
func TestTableChecksumsUnchanged(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	st, err := New(repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tb := st.tables[0]
	var first, updates []TableRow
	for i := range 300 {
		r := NewRow(tb.def)
		r.Key = fmt.Sprintf("%0*d", i%41, i)
		if i%41 == 0 {
			r.Key = fmt.Sprint("k", i)
		}
		for c := range r.Nums {
			if (i+c)%7 != 0 {
				r.Null[c] = false
				r.Nums[c] = float64(i*10+c) / 3
			}
		}
		first = append(first, r)
		if i%5 == 0 {
			u := NewRow(tb.def)
			u.Key = r.Key
			u.Null[0], u.Nums[0] = false, -float64(i)
			updates = append(updates, u)
		}
	}
	tb.put(first, false, 0)
	tb.put(updates, false, 0)
	_, sums, err := st.Checksums()
	if err != nil {
		t.Fatal(err)
	}
	var fold uint64
	for _, s := range sums {
		fold = fold*1099511628211 ^ s
	}
	if fold != 0x7819435800e6484a {
		t.Fatalf("table checksums folded to %#x, want 0x7819435800e6484a (a0d7b5b's)", fold)
	}
}

// BenchmarkTableChecksums is Checksums of a store whose profile table
// holds 100k rows (and whose views are empty): the table's share of a
// cluster checkpoint, which the group's writes wait for.
func BenchmarkTableChecksums(b *testing.B) {
	repo, err := features.Default()
	if err != nil {
		b.Fatal(err)
	}
	st, err := New(repo, Options{})
	if err != nil {
		b.Fatal(err)
	}
	tb := st.tables[0]
	var rows []TableRow
	for i := range 100_000 {
		r := NewRow(tb.def)
		r.Key = fmt.Sprint("user_", i)
		for c := range r.Nums {
			r.Null[c], r.Nums[c] = false, float64(i)
		}
		rows = append(rows, r)
	}
	tb.put(rows, false, 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := st.Checksums(); err != nil {
			b.Fatal(err)
		}
	}
}
