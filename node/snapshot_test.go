package node

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/wal"
)

// TestSnapshotWhileIngestingThenRecover takes snapshots while ingest runs
// concurrently, then restores the newest into a fresh node and replays the
// log after it: every lookup answers byte for byte as on the original node.
// A corrupt newest snapshot falls back to the previous one, with the same
// result.
func TestSnapshotWhileIngestingThenRecover(t *testing.T) {
	dataDir := t.TempDir()
	walDir := filepath.Join(dataDir, "wal")
	l, err := wal.Open(walDir, wal.Options{Sync: wal.SyncNever, SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	repo, _ := features.Default()
	clk := &testClock{}
	clk.set(t0)
	a, err := New(repo, DefaultConfig(), Options{Clock: clk.now, Log: l, RepoFS: features.DefaultFS()})
	if err != nil {
		t.Fatal(err)
	}
	users := make([]string, 300)
	for i := range users {
		users[i] = fmt.Sprintf("u%d-é", i)
	}
	if _, aerr := a.UploadTable("user_profile", CSV, []byte("user_id,home_lat,home_long\nu1-é,1,2\nu2-é,3,4\n"), false); aerr != nil {
		t.Fatal(aerr)
	}
	ingest := func(seed uint64, batches int) {
		rng := rand.New(rand.NewPCG(seed, 3))
		for i := 0; i < batches; i++ {
			var recs []string
			for j := 0; j < 20; j++ {
				// Out of order within lateness, and some too late for the
				// user views (placements the windows refuse).
				ts := t0 - rng.Int64N(4*60_000)
				if rng.IntN(30) == 0 {
					ts = t0 - 2*86_400_000
				}
				recs = append(recs, txn(users[rng.IntN(len(users))], fmt.Sprintf("m%d", rng.IntN(40)), []string{"FR", "US"}[rng.IntN(2)], float64(rng.IntN(10000))/100, ts))
			}
			if _, err := a.IngestJSON(ingestBody(recs...)); err != nil {
				t.Error(err)
				return
			}
		}
	}
	ingest(1, 50)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); ingest(2, 200) }()
	for i := 0; i < 2; i++ {
		if _, _, err := a.SnapshotInto(dataDir); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if _, aerr := a.UploadTable("user_profile", CSV, []byte("user_id,home_lat,home_long\nu3-é,5,6\n"), false); aerr != nil {
		t.Fatal(aerr)
	}
	ingest(3, 20)
	l.Close()

	answers := func(n *Node) [][]byte {
		var out [][]byte
		for i, u := range users {
			body := lookupBody(u, fmt.Sprintf("m%d", i%40), []string{"FR", "US"}[i%2], 10, 1, 2)
			resp, aerr := n.GetFeatures(nil, body)
			if aerr != nil {
				t.Fatal(aerr)
			}
			out = append(out, resp)
		}
		return out
	}
	want := answers(a)

	recover := func() (*Node, store.Recovery, string) {
		l, err := wal.Open(walDir, wal.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		repo, _ := features.Default()
		b, err := New(repo, DefaultConfig(), Options{Clock: clk.now, RepoFS: features.DefaultFS()})
		if err != nil {
			t.Fatal(err)
		}
		used, err := b.RestoreLatestSnapshot(dataDir, func(path string, err error) { t.Logf("skipped %s: %v", filepath.Base(path), err) })
		if err != nil {
			t.Fatal(err)
		}
		rec, err := b.RecoverFrom(l)
		if err != nil {
			t.Fatal(err)
		}
		return b, rec, used
	}
	check := func(b *Node, what string) {
		got := answers(b)
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("%s: lookup %d differs:\n got %s\nwant %s", what, i, got[i], want[i])
			}
		}
	}
	b, rec, used := recover()
	if used == "" || rec.SnapshotIndex == 0 || rec.Replayed == 0 {
		t.Fatalf("recovery did not use a snapshot and the log after it: %+v %q", rec, used)
	}
	check(b, "newest snapshot + log")

	// Corrupt the newest snapshot: recovery falls back to the older one.
	snaps, _ := store.NewSnapshotStore(nil, dataDir, nil).List()
	if len(snaps) != 2 {
		t.Fatalf("%d snapshots kept, want 2", len(snaps))
	}
	data, _ := os.ReadFile(snaps[0].Path)
	data[len(data)/2] ^= 0xff
	os.WriteFile(snaps[0].Path, data, 0o644)
	b, rec2, used2 := recover()
	if used2 != snaps[1].Path || rec2.SnapshotIndex >= rec.SnapshotIndex && snaps[0].Index != snaps[1].Index {
		t.Fatalf("fallback used %q (start %d), want %q", used2, rec2.SnapshotIndex, snaps[1].Path)
	}
	check(b, "older snapshot + log")
}
