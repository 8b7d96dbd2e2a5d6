package store

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/tally-ml/tally/features"
)

// memReplayer replays a recLog.
type memReplayer struct{ *recLog }

func (l memReplayer) FirstIndex() uint64 { return 1 }
func (l memReplayer) LastIndex() uint64  { return uint64(len(l.recs)) }
func (l memReplayer) Replay(from uint64, fn func(uint64, []byte) error) error {
	for i := from; i <= uint64(len(l.recs)); i++ {
		if err := fn(i, l.recs[i-1]); err != nil {
			return err
		}
	}
	return nil
}

// replayKeys are the users, merchants and countries of replayLogFixture.
var replayKeys = func() (keys [3][]string) {
	for i := range 300 {
		keys[0] = append(keys[0], fmt.Sprintf("u%d", i))
	}
	for i := range 20 {
		keys[1] = append(keys[1], fmt.Sprintf("m%d", i))
	}
	keys[2] = []string{"FR", "DE", "US", "JP"}
	return keys
}()

// replayLogFixture commits to a store on a recLog what recovery must
// replay exactly: large records in time order with some disorder, records
// with events older than some views' horizon (too late there, not in the
// 1-day and 365-day views), a backfill, small records, table uploads, and
// named requests, some retried later (logged, and skipped at apply).
func replayLogFixture(t *testing.T) (repo *features.Repo, live *Store, log *recLog, newest int64) {
	t.Helper()
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	log = &recLog{}
	live, err = New(repo, Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	sp := live.SourceNamed([]byte("transactions"))
	col := func(name string) int { return sp.ColIndex[name] }
	rng := rand.New(rand.NewPCG(1, 2))
	ts := t0 - 6*3_600_000
	type retry struct {
		round int
		id    string
		b     *Batch
	}
	var retries []retry
	for r := range 120 {
		var b Batch
		b.Reset(sp.Index, len(sp.Src.Columns))
		size := 200
		if r%17 == 5 {
			size = 10 // below minParallelReplay
		}
		for range size {
			ts += int64(rng.IntN(200))
			at := ts - int64(rng.IntN(5000))
			switch {
			case r%23 == 7:
				at = ts - 2*3_600_000 - int64(rng.IntN(600_000)) // past the 1-hour views' horizon
			case r%29 == 11 && rng.IntN(4) == 0:
				at = ts - 3_600_000 + int64(rng.IntN(20_000)) // at the edge of it
			}
			e := b.Grow(at)
			b.SetStr(e, col("user_id"), []byte(replayKeys[0][rng.IntN(len(replayKeys[0]))]))
			b.SetStr(e, col("merchant"), []byte(replayKeys[1][rng.IntN(len(replayKeys[1]))]))
			b.SetStr(e, col("country"), []byte(replayKeys[2][rng.IntN(len(replayKeys[2]))]))
			b.SetStr(e, col("category"), []byte("grocery_pos"))
			b.SetNum(e, col("amt"), float64(rng.IntN(10_000))/100)
		}
		id := ""
		if r%7 == 3 {
			id = fmt.Sprintf("req-%d", r) // named; every other one retried 10 rounds on
			if r%14 == 3 {
				retries = append(retries, retry{r + 10, id, &b})
			}
		}
		if _, _, err := live.CommitEvents(id, []*Batch{&b}, ts, r%31 == 13); err != nil {
			t.Fatal(err)
		}
		for len(retries) > 0 && retries[0].round == r {
			if _, _, err := live.CommitEvents(retries[0].id, []*Batch{retries[0].b}, ts, false); err != nil {
				t.Fatal(err)
			}
			retries = retries[1:]
		}
		if r%40 == 20 {
			tab := live.TableNamed("user_profile")
			row := NewRow(tab.def)
			row.Key, row.Nums[0], row.Nums[1], row.Null[0], row.Null[1] = replayKeys[0][r], float64(r), -float64(r), false, false
			if err := live.CommitTable("", tab, []TableRow{row}, false, ts); err != nil {
				t.Fatal(err)
			}
		}
	}
	return repo, live, log, ts
}

// recoverWith replays log into a fresh store on procs cores.
func recoverWith(t *testing.T, repo *features.Repo, log *recLog, procs int) *Store {
	t.Helper()
	n, err := New(repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
	rec, err := n.RecoverFrom(memReplayer{log})
	if err != nil || rec.Replayed != uint64(len(log.recs)) {
		t.Fatalf("recover on %d cores: %d of %d records: %v", procs, rec.Replayed, len(log.recs), err)
	}
	return n
}

// sameState compares what two stores answer: every view's reads of every
// key at a few times from the newest event on, the views' statistics
// (entities, events, tiles, refusals; bytes too unless a store restored a
// snapshot), the tables.
func sameState(t *testing.T, what string, a, b *Store, newest int64, restored bool) {
	t.Helper()
	for i, va := range a.views {
		vb := b.views[i]
		sa, sb := va.Stats(), vb.Stats()
		if restored {
			sa.Bytes, sb.Bytes = 0, 0 // a restored image is laid out tighter
		}
		if sa != sb {
			t.Errorf("%s: view %s: stats %+v, want %+v", what, a.repo.Views[i].Name, sb, sa)
		}
		keys := replayKeys[0]
		switch a.repo.Views[i].Entity.JoinKey {
		case "merchant":
			keys = replayKeys[1]
		case "country":
			keys = replayKeys[2]
		}
		for _, k := range keys {
			for _, dt := range []int64{0, 1, 90_000, 3_600_000} {
				at := newest + dt
				ra, rb := va.Read([]byte(k), at, nil), vb.Read([]byte(k), at, nil)
				if !reflect.DeepEqual(ra, rb) {
					t.Fatalf("%s: view %s key %s at watermark+%d ms: %v, want %v", what, a.repo.Views[i].Name, k, dt, rb, ra)
				}
			}
		}
	}
	for i, ta := range a.tables {
		if !reflect.DeepEqual(ta.rowsView(), b.tables[i].rowsView()) {
			t.Errorf("%s: table %s differs", what, ta.def.Name)
		}
	}
}

// TestParallelReplayIsExact: recovery's pipelined replay (view lanes)
// leaves the state a sequential replay (and the live run that wrote the
// log) leaves: the same reads, refusals, events and tiles in every view,
// with records near a view's horizon, backfills, small records and table
// uploads between them.
func TestParallelReplayIsExact(t *testing.T) {
	repo, live, log, newest := replayLogFixture(t)
	seq := recoverWith(t, repo, log, 1)
	par := recoverWith(t, repo, log, 4)
	if seq.replayedParallel != 0 || par.replayedParallel != 120 {
		t.Fatalf("records placed through the lanes: %d on 1 core, %d on 4: want none, then the 120 events records", seq.replayedParallel, par.replayedParallel)
	}
	sameState(t, "sequential replay vs live", live, seq, newest, false)
	sameState(t, "parallel replay vs sequential", seq, par, newest, false)

	// With room for one record at a time, the lanes wait for each other.
	defer func(m int) { maxReplayEvents = m }(maxReplayEvents)
	maxReplayEvents = 300
	sameState(t, "parallel replay, one record queued at a time, vs sequential", seq, recoverWith(t, repo, log, 4), newest, false)
}

// TestParallelReplayFromSnapshot: recovery from a snapshot (Restore, then
// the log after it) builds the live state, and with records the image
// holds for some partitions only (a snapshot written while ingest went on),
// the lanes place them as a sequential replay does.
func TestParallelReplayFromSnapshot(t *testing.T) {
	repo, live, log, newest := replayLogFixture(t)
	mid := &recLog{recs: log.recs[:60]}
	img := recoverWith(t, repo, mid, 1)
	var snap bytes.Buffer
	if start, err := img.WriteSnapshot(&snap); err != nil || start != 60 {
		t.Fatalf("snapshot at %d: %v", start, err)
	}
	restore := func(procs int, skew bool) *Store {
		n, err := New(repo, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Restore(bytes.NewReader(snap.Bytes())); err != nil {
			t.Fatal(err)
		}
		if skew { // as if partitions were written while records 61-100 came in
			for p := range n.filter.part {
				n.filter.part[p] = 60 + uint64(p%41)
			}
			n.filter.max = 100
		}
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		rec, err := n.RecoverFrom(memReplayer{log})
		if err != nil || rec.Replayed != uint64(len(log.recs)-60) {
			t.Fatalf("recover on %d cores: %d records: %v", procs, rec.Replayed, err)
		}
		return n
	}
	sameState(t, "snapshot + log vs live", live, restore(4, false), newest, true)
	seq, par := restore(1, true), restore(4, true)
	if par.replayedParallel < 55 {
		t.Fatalf("%d records placed through the lanes, want the 55+ events records after the snapshot", par.replayedParallel)
	}
	sameState(t, "lanes vs sequential, records the image holds in part", seq, par, newest, true)
}

// TestParallelReplayStopsAtABadRecord: a record that does not decode stops
// the pipelined replay with the error a sequential replay gives, after
// every record before it was placed.
func TestParallelReplayStopsAtABadRecord(t *testing.T) {
	repo, _, log, _ := replayLogFixture(t)
	bad := &recLog{recs: append([][]byte(nil), log.recs...)}
	bad.recs[49] = append([]byte{recordAt, 0, 0}, recordEvents, 1, 'x') // index 50: a truncated events record
	var errs [2]string
	for i, procs := range []int{1, 4} {
		n, err := New(repo, Options{})
		if err != nil {
			t.Fatal(err)
		}
		prev := runtime.GOMAXPROCS(procs)
		rec, err := n.RecoverFrom(memReplayer{bad})
		runtime.GOMAXPROCS(prev)
		if err == nil || rec.Replayed != 49 || n.AppliedIndex() != 49 {
			t.Fatalf("on %d cores: replayed %d, applied through %d, err %v: want 49, 49 and an error", procs, rec.Replayed, n.AppliedIndex(), err)
		}
		errs[i] = err.Error()
	}
	if errs[0] != errs[1] || !strings.Contains(errs[0], "log record 50") {
		t.Fatalf("errors differ or do not name record 50:\n%s\n%s", errs[0], errs[1])
	}
}
