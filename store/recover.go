package store

import (
	"fmt"
	"runtime"
	"time"
)

// Replayer is a log that can be read back: the write-ahead log.
type Replayer interface {
	FirstIndex() uint64
	LastIndex() uint64
	Replay(from uint64, fn func(index uint64, rec []byte) error) error
}

// Recovery says what a restart restored.
type Recovery struct {
	SnapshotIndex uint64 // log index the snapshot covered (0: none)
	Snapshot      string // its file, "" for none
	Replayed      uint64 // log records applied after it
	Duration      time.Duration
	// Load is the time the snapshot took to verify and load (Open), and
	// Replay the time the log after it took (RecoverFrom's Duration).
	Load, Replay time.Duration
	// NewestClock is the newest acknowledgement clock (the node's clock
	// when it acknowledged a change, epoch ms) of the records replayed and
	// of the last ones the log keeps, which a snapshot may cover (Open);
	// 0 when none is recorded.
	NewestClock int64
}

// MissingSnapshotError is a log whose front was dropped (a snapshot
// covered it) while no snapshot that covers it is left: the state cannot
// be rebuilt from the log alone.
//
// With a snapshot restored (Snapshot set), the records between it and the
// log's front were most likely removed from the log by hand: retention
// drops only records the older of the two kept snapshots holds, and
// removing snapshots never moves the log's front.
type MissingSnapshotError struct {
	First    uint64 // the log's first record
	Covered  uint64 // the last record the state holds (0: none)
	Snapshot string // the snapshot restored ("": none)
}

func (e *MissingSnapshotError) Error() string {
	if e.Snapshot != "" {
		return fmt.Sprintf("the log starts at record %d but the snapshot restored, %s, covers only up to %d: records %d to %d are in neither; "+
			"the log's segments holding them were removed (or a newer snapshot was, with an older one put back)",
			e.First, e.Snapshot, e.Covered, e.Covered+1, e.First-1)
	}
	return fmt.Sprintf("the log starts at record %d but the state covers only up to %d: a snapshot is missing", e.First, e.Covered)
}

// RecoverFrom replays the log after the store's current applied index (0, or
// what a snapshot restored) into the store. It must run before the node
// serves ingest. A record that cannot be decoded stops recovery with an
// error: serving a state that silently lacks acknowledged events is worse
// than not starting.
func (n *Store) RecoverFrom(l Replayer) (Recovery, error) {
	start := time.Now()
	rec := Recovery{SnapshotIndex: n.AppliedIndex()}
	from := rec.SnapshotIndex + 1
	if first := l.FirstIndex(); first > from && l.LastIndex() >= first {
		return rec, &MissingSnapshotError{First: first, Covered: from - 1}
	}
	if err := n.buildFresh(l, rec.SnapshotIndex); err != nil {
		return rec, err
	}
	// Nothing else runs during recovery: replay on every core (replay.go);
	// the records it applies as Apply does spread a large batch's views
	// over the cores too.
	n.seq.mu.Lock()
	live := n.workers
	n.workers = max(live, runtime.GOMAXPROCS(0))
	n.seq.mu.Unlock()
	defer func() {
		n.seq.mu.Lock()
		n.workers = live
		n.seq.mu.Unlock()
	}()
	err := n.replayLog(l, from, max(live, runtime.GOMAXPROCS(0)), &rec.Replayed)
	rec.Duration = time.Since(start)
	rec.Replay = rec.Duration
	if err != nil {
		return rec, fmt.Errorf("replay the write-ahead log: %w", err)
	}
	n.seq.mu.Lock()
	n.filter = nil
	n.reportSkipped()
	n.seq.mu.Unlock()
	n.metrics.set.GetOrCreateGauge("tally_recovery_seconds", nil).Set(rec.Duration.Seconds())
	n.metrics.set.GetOrCreateGauge("tally_recovery_replayed_records", nil).Set(float64(rec.Replayed))
	return rec, nil
}
