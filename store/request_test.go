package store

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"runtime"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/tally-ml/tally/features"
)

// TestRequestWindowForgetsOnlyBeyondItsSize: a key is remembered for
// exactly size later keys, and AppendKeys lists them oldest first.
func TestRequestWindowForgetsOnlyBeyondItsSize(t *testing.T) {
	for _, size := range []int{1, 4, RequestWindowSize} {
		w := NewRequestWindow(size)
		n := uint64(size + 10)
		for i := range n {
			w.Add(i + 1)
		}
		if w.Has(n-uint64(size)) || !w.Has(n-uint64(size)+1) || !w.Has(n) {
			t.Fatalf("size %d: Has(%d)=%v Has(%d)=%v Has(last)=%v", size, n-uint64(size), w.Has(n-uint64(size)), n-uint64(size)+1, w.Has(n-uint64(size)+1), w.Has(n))
		}
		keys := w.AppendKeys(nil)
		if len(keys) != size || w.Len() != size || keys[0] != n-uint64(size)+1 || keys[len(keys)-1] != n {
			t.Fatalf("size %d: %d keys, first %d, last %d", size, len(keys), keys[0], keys[len(keys)-1])
		}
		for i := 1; i < len(keys); i++ {
			if keys[i] != keys[i-1]+1 {
				t.Fatalf("size %d: keys out of order at %d: %v", size, i, keys[max(0, i-2):i+1])
			}
		}
	}
}

// TestRequestKeysOfParts: a request's parts have distinct keys; part 0's
// is the xxhash of the id, what a cluster group has always remembered.
func TestRequestKeysOfParts(t *testing.T) {
	seen := map[uint64]bool{}
	for _, id := range []string{"a", "b", "req-1", "req-10"} {
		for part := range 200 {
			k := RequestKey(id, part)
			if seen[k] {
				t.Fatalf("RequestKey(%q, %d) repeats another key", id, part)
			}
			seen[k] = true
		}
	}
	if h := xxhash.Sum64([]byte("req-1")); RequestKey("req-1", 0) != h {
		t.Fatalf("RequestKey(req-1, 0) = %#x, the xxhash of the id is %#x", RequestKey("req-1", 0), h)
	}
}

func profileRow(t *testing.T, tab *Table, key string, v float64) []TableRow {
	t.Helper()
	row := NewRow(tab.def)
	row.Key, row.Nums[0], row.Null[0] = key, v, false
	return []TableRow{row}
}

func profileValue(t *testing.T, n *Store, key string) float64 {
	t.Helper()
	tab := n.TableNamed("user_profile")
	nums := make([]float64, len(tab.def.Columns))
	strs := make([]string, len(tab.def.Columns))
	present := make([]bool, len(tab.def.Columns))
	if !tab.Get([]byte(key), nums, strs, present) || !present[0] {
		t.Fatalf("table user_profile has no %s", key)
	}
	return nums[0]
}

// TestRequestAppliedOnce: a request committed again under its id (a retry
// whose answer was lost) changes nothing, live, in a replay of the log on
// one core and on several, and in a recovery from a snapshot taken between
// the request and its retry; another id is applied.
func TestRequestAppliedOnce(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	log := &recLog{}
	live, err := New(repo, Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	tab := live.TableNamed("user_profile")
	b := streamBatch(t, live, "u1", "u2", "u3")
	commit := func(id string) {
		t.Helper()
		if _, _, err := live.CommitEvents(id, []*Batch{b}, t0+10, false); err != nil {
			t.Fatal(err)
		}
	}
	commit("r1")
	if err := live.CommitTable("t1", tab, profileRow(t, tab, "u1", 1), false, t0+10); err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	if _, err := live.WriteSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	if v := binary.LittleEndian.Uint32(snap.Bytes()[8:]); v != 5 {
		t.Fatalf("a snapshot with request keys is version %d, want 5", v)
	}
	commit("r1") // the retry
	if err := live.CommitTable("t1", tab, profileRow(t, tab, "u1", 2), false, t0+10); err != nil {
		t.Fatal(err)
	}
	commit("r2")
	commit("") // no id: applied each time
	want := int64(3 * 3)
	check := func(what string, n *Store) {
		t.Helper()
		if got := events(n); got != want {
			t.Errorf("%s: %d events, want %d (3 requests of 3 events; the retry of r1 skipped)", what, got, want)
		}
		if v := profileValue(t, n, "u1"); v != 1 {
			t.Errorf("%s: u1's profile holds %v, want 1 (the retry of t1 skipped)", what, v)
		}
		if got := n.metrics.repeats.Get(); got != 2 {
			t.Errorf("%s: %d repeats counted, want 2", what, got)
		}
	}
	check("live", live)
	if len(log.recs) != 6 {
		t.Fatalf("%d log records, want 6 (a retry is logged, and skipped at apply)", len(log.recs))
	}
	for _, procs := range []int{1, 4} {
		check("replay of the log on "+string(rune('0'+procs))+" cores", recoverWith(t, repo, log, procs))
	}
	restored, err := New(repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := restored.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	prev := runtime.GOMAXPROCS(4)
	_, err = restored.RecoverFrom(memReplayer{log})
	runtime.GOMAXPROCS(prev)
	if err != nil {
		t.Fatal(err)
	}
	want = 3 * 3
	if got := events(restored); got != want {
		t.Errorf("snapshot + log: %d events, want %d", got, want)
	}
	if v := profileValue(t, restored, "u1"); v != 1 {
		t.Errorf("snapshot + log: u1's profile holds %v, want 1", v)
	}
	if got := restored.metrics.repeats.Get(); got != 2 {
		t.Errorf("snapshot + log: %d repeats counted, want 2 (the retries after the snapshot)", got)
	}
}

// TestSnapshotWithoutRequestsIsVersion4: a state that applied no named
// request writes the snapshot the builds before request keys read.
func TestSnapshotWithoutRequestsIsVersion4(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.CommitEvents("", []*Batch{streamBatch(t, n, "u1")}, t0, false); err != nil {
		t.Fatal(err)
	}
	var snap bytes.Buffer
	if _, err := n.WriteSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	if v := binary.LittleEndian.Uint32(snap.Bytes()[8:]); v != 4 {
		t.Fatalf("version %d, want 4", v)
	}
	m, err := New(repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Restore(bytes.NewReader(snap.Bytes())); err != nil || events(m) != 1 {
		t.Fatalf("restore: %d events, %v", events(m), err)
	}
}

// TestRetryAfterAPartialAppend: a crash kept only the first record of a
// request of two (the log keeps a prefix of an append); its retry under
// the same id applies the second and not the first again.
func TestRetryAfterAPartialAppend(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	full := &recLog{}
	whole, err := New(repo, Options{Log: full})
	if err != nil {
		t.Fatal(err)
	}
	b1, b2 := streamBatch(t, whole, "u1", "u2"), streamBatch(t, whole, "u3")
	if _, _, err := whole.CommitEvents("r", []*Batch{b1, b2}, t0+10, false); err != nil {
		t.Fatal(err)
	}
	if len(full.recs) != 2 || events(whole) != 3 {
		t.Fatalf("%d records, %d events: want 2 and 3", len(full.recs), events(whole))
	}
	kept := &recLog{recs: full.recs[:1]}
	crashed, err := New(repo, Options{Log: kept})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := crashed.RecoverFrom(memReplayer{kept}); err != nil {
		t.Fatal(err)
	}
	if events(crashed) != 2 {
		t.Fatalf("after the crash: %d events, want the first record's 2", events(crashed))
	}
	if _, _, err := crashed.CommitEvents("r", []*Batch{b1, b2}, t0+10, false); err != nil {
		t.Fatal(err)
	}
	if events(crashed) != 3 || crashed.metrics.repeats.Get() != 1 {
		t.Fatalf("after the retry: %d events, %d repeats: want 3 and 1", events(crashed), crashed.metrics.repeats.Get())
	}
	for _, u := range []string{"u1", "u2", "u3"} {
		got, want := crashed.ReadView(0, []byte(u), t0+100, nil), whole.ReadView(0, []byte(u), t0+100, nil)
		if len(got) == 0 || !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: %v after the retry, %v applied once", u, got, want)
		}
	}
}

// TestBadRequestRecord: a request record whose key is cut short, or that
// wraps neither events nor a table, stops the replay with an error naming
// it.
func TestBadRequestRecord(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range [][]byte{
		{recordAt, 0, 0, recordRequest, 1, 2, 3},
		append(appendRequestHeader([]byte{recordAt, 0, 0}, 7), recordLost, 1),
		appendRequestHeader([]byte{recordAt, 0, 0}, 7),
	} {
		n, err := New(repo, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Apply(1, rec); err == nil || !bytes.Contains([]byte(err.Error()), []byte("log record 1: bad log record: bad request record")) {
			t.Fatalf("record %v: %v", rec, err)
		}
	}
}
