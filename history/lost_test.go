package history

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/wal"
)

// TestJoinRefusesLostRecords: when the log was cut behind a snapshot and
// the node went on after it, the indexes only the snapshot held are
// fillers in the archive; a join reaching them is refused as an incomplete
// archive (ARCHIVE_INCOMPLETE over HTTP) rather than answer rows that miss
// those changes, and joins anyway when partial history is allowed.
func TestJoinRefusesLostRecords(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	repo = withoutModels(repo)
	cfg := node.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Durability.SnapshotEvery = 1 << 40 // Close writes the final snapshot
	clock := int64(1795564800000)
	open := func() *node.Instance {
		in, err := node.Open(cfg, repo, node.OpenOptions{Node: node.Options{Clock: func() int64 { return clock }}})
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	ingest := func(in *node.Instance, n int) {
		for i := 0; i < n; i++ {
			clock += 1000
			x := txn{user: "u1", merchant: "m1", country: "FR", amt: 1, ts: clock - 10}
			if _, err := in.IngestNDJSON("transactions", []byte(x.json()+"\n"), false); err != nil {
				t.Fatal(err)
			}
		}
	}
	in := open()
	ingest(in, 5)
	if err := in.Close(); err != nil { // snapshot at 5
		t.Fatal(err)
	}
	l, err := wal.Open(filepath.Join(cfg.DataDir, "wal"), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.TruncateBack(2); err != nil { // as a repair keeping 2 records
		t.Fatal(err)
	}
	l.Close()
	in = open()
	ingest(in, 2) // records 6 and 7; 3..5 are fillers
	defer in.Close()

	probes := []*probe{{user: "u1", merchant: "m1", country: "FR", amt: 1, t: clock + 1}}
	for _, partial := range []bool{false, true} {
		j, err := New(Options{Repo: repo, Service: "fraud_detection", Archive: in.WAL(), AllowPartial: partial})
		if err != nil {
			t.Fatal(err)
		}
		s, err := j.ReadSpine(spineOf(t, probes, rand.New(rand.NewPCG(1, 2))), "timestamp", 0)
		if err != nil {
			t.Fatal(err)
		}
		var w rowsWriter
		_, err = j.Run(context.Background(), s, &w)
		if partial && (err != nil || len(w.rows) != 1) {
			t.Fatalf("partial join: %v, %d rows", err, len(w.rows))
		}
		if !partial && !errors.Is(err, ErrPartialArchive) {
			t.Fatalf("join across lost records: %v, want ErrPartialArchive", err)
		}
	}
}
