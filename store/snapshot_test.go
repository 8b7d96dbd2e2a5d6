package store

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/wal/walfs"
)

// TestSnapshotHoldsNothingTheLogCanLose: under fsync interval, a snapshot
// written while ingest goes on must not hold, in any partition's image, a
// record the log could still lose: after a power loss the log would end
// before it, the next records would reuse its indexes, and the recovery
// after those (from the same snapshot) would skip them in that partition as
// already held. The log must be synced after the partitions are written,
// before the snapshot is made durable.
func TestSnapshotHoldsNothingTheLogCanLose(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	cfg := OpenConfig{DataDir: "/data", Durability: Durability{Fsync: "interval", SyncEvery: time.Hour}}
	fsys := walfs.NewMem()
	in, err := Open(cfg, repo, OpenOptions{FS: fsys})
	if err != nil {
		t.Fatal(err)
	}
	sp := in.SourceNamed([]byte("transactions"))
	col := func(name string) int { return sp.ColIndex[name] }
	var stop atomic.Bool
	var wg sync.WaitGroup
	var committed atomic.Int64
	commit := func(i int) {
		var b Batch
		b.Reset(sp.Index, len(sp.Src.Columns))
		e := b.Grow(t0 + int64(i))
		b.SetStr(e, col("user_id"), []byte(fmt.Sprintf("u%d", i)))
		b.SetStr(e, col("merchant"), []byte("m1"))
		b.SetStr(e, col("country"), []byte("FR"))
		b.SetStr(e, col("category"), []byte("grocery_pos"))
		b.SetNum(e, col("amt"), 1)
		if _, _, err := in.CommitEvents("", []*Batch{&b}, t0+int64(i), false); err != nil {
			t.Error(err)
		}
		committed.Add(1)
	}
	for i := range 100 {
		commit(i)
	}
	wg.Add(1)
	go func() { // ingest while the snapshot is written
		defer wg.Done()
		for i := 100; !stop.Load(); i++ {
			commit(i)
		}
	}()
	for committed.Load() < 200 {
		time.Sleep(time.Millisecond)
	}
	if _, err := in.Snapshot(); err != nil {
		t.Fatal(err)
	}
	stop.Store(true)
	wg.Wait()

	// What a power loss now leaves: the log as synced (no interval fsync
	// ran), give or take sectors written since.
	img := fsys.Crash(rand.New(rand.NewPCG(1, 2)))
	in.Abort()
	in, err = Open(cfg, repo, OpenOptions{FS: img})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Abort()
	last := in.WAL().LastIndex()
	n, err := New(repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	used, _, err := n.RestoreNewest(NewSnapshotStore(img, cfg.DataDir, nil), nil)
	if err != nil || used == nil {
		t.Fatalf("restore the snapshot: %v", err)
	}
	if n.filter.max > last {
		t.Fatalf("the snapshot (start %d) holds records through %d in some partition, the log after the power loss ends at %d: records %d..%d appended after recovery would be skipped there by the next one",
			n.AppliedIndex(), n.filter.max, last, last+1, n.filter.max)
	}
}
