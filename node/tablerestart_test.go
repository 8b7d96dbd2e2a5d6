package node

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/wal"
)

// tableRefUpload is one acknowledged upload, as the reference reads it.
type tableRefUpload struct {
	from    int64
	replace bool
	rows    map[string]float64 // key -> home_lat
}

// tableRefAt is the row of key valid at at: that of the last upload, in
// log order, valid from at or before at that names it or replaces.
func tableRefAt(ups []tableRefUpload, key string, at int64) (float64, bool) {
	for i := len(ups) - 1; i >= 0; i-- {
		u := ups[i]
		if u.from > at {
			continue
		}
		if v, ok := u.rows[key]; ok {
			return v, true
		}
		if u.replace {
			return 0, false
		}
	}
	return 0, false
}

// repoWithoutModels is the default repo without its models (not what these
// tests look at, and loading them dominates a node's start).
func repoWithoutModels(t testing.TB) *features.Repo {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	c := *repo
	c.Services = nil
	for _, sv := range repo.Services {
		cp := *sv
		cp.Model = nil
		c.Services = append(c.Services, &cp)
	}
	return &c
}

// TestTableUploadsSurviveRestartsRandomized: a random sequence of table
// uploads under request ids (upserts, replaces, backfills at an earlier
// as_of), ingests, clock moves, snapshots and retries of earlier uploads,
// on a node opened on a data dir (Open) and
// stopped without a final snapshot several times, as a crash under fsync
// always leaves it; after each restart (the newest snapshot, then the log
// after it, whose tail mixes events and uploads) the node reads every key
// at every time within the horizon as the uploads say, as it did before
// the restart, and a node recovered from the log alone agrees.
func TestTableUploadsSurviveRestartsRandomized(t *testing.T) {
	repo := repoWithoutModels(t)
	keys := []string{"u0", "u1", "u2", "u3", "u4"}
	const horizon = 5 * 60_000
	nums, strs, present := make([]float64, 2), make([]string, 2), make([]bool, 2)
	for seed := uint64(0); seed < 12; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		dir := t.TempDir()
		cfg := openCfg(dir, "always", false)
		clk := &testClock{}
		clk.set(t0)
		open := func(dir string) *Instance {
			c := cfg
			c.DataDir = dir
			in, err := Open(c, repo, OpenOptions{Node: Options{Clock: clk.now, RepoFS: features.DefaultFS()}})
			if err != nil {
				t.Fatalf("seed %d: open: %v", seed, err)
			}
			return in
		}
		var ups []tableRefUpload
		type sent struct {
			id, body string
			replace  bool
			from     int64
		}
		var sents []sent
		var times []int64
		var trace []string
		// check reads every key at the times that matter on n.
		check := func(name string, n *Node) {
			t.Helper()
			now := clk.now()
			ats := []int64{math.MaxInt64, now, now - horizon}
			for _, x := range times {
				for _, at := range []int64{x - 1, x, x + 1} {
					if at >= now-horizon && at <= now {
						ats = append(ats, at)
					}
				}
			}
			for _, key := range keys {
				for _, at := range ats {
					want, wantOK := tableRefAt(ups, key, at)
					clear(nums)
					ok := n.Table(0).GetAt([]byte(key), at, nums, strs, present)
					if ok != wantOK || ok && (nums[0] != want || !present[0]) {
						for _, s := range trace {
							t.Log(s)
						}
						t.Fatalf("seed %d: %s: %s at %d: %v %v, want %v %v", seed, name, key, at-t0, nums[0], ok, want, wantOK)
					}
				}
			}
		}
		in := open(dir)
		seq := 0
		for gen := 0; gen < 4; gen++ {
			for op := 0; op < 12; op++ {
				switch k := rng.IntN(12); {
				case k < 6:
					seq++
					u := tableRefUpload{from: clk.now(), replace: rng.IntN(4) == 0, rows: map[string]float64{}}
					if rng.IntN(3) == 0 {
						u.from -= int64(rng.IntN(2 * horizon))
					}
					body := "user_id,home_lat\n"
					for j := 0; j < 1+rng.IntN(4); j++ {
						key := keys[rng.IntN(len(keys))]
						if _, dup := u.rows[key]; dup {
							continue // an upload gives each key once
						}
						v := float64(seq*10 + j)
						u.rows[key] = v
						body += fmt.Sprintf("%s,%v\n", key, v)
					}
					s := sent{id: fmt.Sprintf("up-%d", seq), body: body, replace: u.replace, from: u.from}
					if _, aerr := in.uploadTable(s.id, "user_profile", CSV, []byte(body), u.replace, false, u.from); aerr != nil {
						t.Fatalf("seed %d: upload: %v", seed, aerr)
					}
					sents = append(sents, s)
					ups = append(ups, u)
					times = append(times, u.from)
					trace = append(trace, fmt.Sprintf("%s from %d replace %v %q", s.id, u.from-t0, u.replace, body))
				case k < 8:
					if _, err := in.IngestJSONAs(fmt.Sprintf("ev-%d-%d", gen, op), ingestBody(txn(keys[rng.IntN(len(keys))], "m1", "FR", 1, clk.now()-1000))); err != nil {
						t.Fatal(err)
					}
					trace = append(trace, "ingest")
				case k < 10:
					if _, err := in.Snapshot(); err != nil {
						t.Fatal(err)
					}
					trace = append(trace, "snapshot")
				default:
					if len(sents) == 0 {
						break
					}
					s := sents[rng.IntN(len(sents))]
					if _, aerr := in.uploadTable(s.id, "user_profile", CSV, []byte(s.body), s.replace, false, s.from); aerr != nil {
						t.Fatalf("seed %d: retry: %v", seed, aerr)
					}
					trace = append(trace, "retry "+s.id)
				}
				d := int64(rng.IntN(3)) * int64(rng.IntN(horizon))
				clk.advance(d)
				trace = append(trace, fmt.Sprintf("clock +%d -> %d", d, clk.now()-t0))
			}
			check("before the restart", in.Node)
			if err := in.Close(); err != nil { // no final snapshot (SnapshotEvery 0)
				t.Fatal(err)
			}
			in = open(dir)
			trace = append(trace, fmt.Sprintf("restart: %+v", in.Recovery()))
			check(fmt.Sprintf("after restart %d", gen), in.Node)
		}
		in.Close()
	}
}

// TestTableUploadsDuringSnapshotsRecover: table uploads (upserts,
// replaces, backfills, under request ids, some retried) and ingests run
// while snapshots are taken, so that a snapshot's tables are at a later
// log index than its start and the log after it mixes events and uploads
// on both sides of that index; a node recovered from the newest snapshot
// and the log reads every key at every time within the horizon as the
// uploads say, and so does the node that took them.
func TestTableUploadsDuringSnapshotsRecover(t *testing.T) {
	repo := repoWithoutModels(t)
	keys := []string{"u0", "u1", "u2", "u3", "u4", "u5"}
	const horizon = 5 * 60_000
	for seed := uint64(0); seed < 6; seed++ {
		dataDir := t.TempDir()
		walDir := filepath.Join(dataDir, "wal")
		l, err := wal.Open(walDir, wal.Options{Sync: wal.SyncNever, SegmentSize: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		clk := &testClock{}
		clk.set(t0)
		a, err := New(repo, DefaultConfig(), Options{Clock: clk.now, Log: l, RepoFS: features.DefaultFS()})
		if err != nil {
			t.Fatal(err)
		}
		var ups []tableRefUpload
		var times []int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { // uploads, in one goroutine: their log order is this order
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 11))
			for seq := 1; seq <= 400; seq++ {
				u := tableRefUpload{from: clk.now(), replace: rng.IntN(6) == 0, rows: map[string]float64{}}
				if rng.IntN(3) == 0 {
					u.from -= int64(rng.IntN(horizon))
				}
				body := "user_id,home_lat\n"
				for j := 0; j < 1+rng.IntN(3); j++ {
					key := keys[rng.IntN(len(keys))]
					if _, dup := u.rows[key]; dup {
						continue // an upload gives each key once
					}
					u.rows[key] = float64(seq*10 + j)
					body += fmt.Sprintf("%s,%d\n", key, seq*10+j)
				}
				id := fmt.Sprintf("up-%d", seq)
				for range 1 + rng.IntN(2) { // sometimes retried
					if _, aerr := a.uploadTable(id, "user_profile", CSV, []byte(body), u.replace, false, u.from); aerr != nil {
						t.Error(aerr)
						return
					}
				}
				ups = append(ups, u)
				times = append(times, u.from)
				clk.advance(int64(rng.IntN(3000)))
			}
		}()
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 13))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var recs []string
				for range 20 {
					recs = append(recs, txn(keys[rng.IntN(len(keys))], "m1", "FR", 1, clk.now()-int64(rng.IntN(60_000))))
				}
				if _, err := a.IngestJSONAs(fmt.Sprintf("ev-%d", i), ingestBody(recs...)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		for range 20 {
			if _, _, err := a.SnapshotInto(dataDir); err != nil {
				t.Fatal(err)
			}
		}
		close(stop)
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		l.Close()

		l, err = wal.Open(walDir, wal.Options{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(repo, DefaultConfig(), Options{Clock: clk.now, RepoFS: features.DefaultFS()})
		if err != nil {
			t.Fatal(err)
		}
		if used, err := b.RestoreLatestSnapshot(dataDir, nil); err != nil || used == "" {
			t.Fatalf("restore: %q %v", used, err)
		}
		if _, err := b.RecoverFrom(l); err != nil {
			t.Fatal(err)
		}
		l.Close()
		now := clk.now()
		ats := []int64{math.MaxInt64, now, now - horizon}
		for _, x := range times {
			for _, at := range []int64{x - 1, x} {
				if at >= now-horizon && at <= now {
					ats = append(ats, at)
				}
			}
		}
		nums, strs, present := make([]float64, 2), make([]string, 2), make([]bool, 2)
		for _, key := range keys {
			for _, at := range ats {
				want, wantOK := tableRefAt(ups, key, at)
				for name, n := range map[string]*Node{"the node": a, "the recovered node": b} {
					clear(nums)
					ok := n.Table(0).GetAt([]byte(key), at, nums, strs, present)
					if ok != wantOK || ok && nums[0] != want {
						t.Fatalf("seed %d: %s: %s at %d: %v %v, want %v %v", seed, name, key, at-t0, nums[0], ok, want, wantOK)
					}
				}
			}
		}
	}
}
