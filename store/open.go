package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/snapshot"
	"github.com/tally-ml/tally/wal"
	"github.com/tally-ml/tally/wal/walfs"
)

// Durability configures the write-ahead log and snapshots.
type Durability struct {
	// Fsync is the log's policy: always (default: an acknowledged ingest is
	// on disk), interval (fsync every SyncEvery: a power loss may lose that
	// window; a process crash loses nothing), never (tests only).
	Fsync       string        `yaml:"fsync"`
	SyncEvery   time.Duration `yaml:"sync_every"`
	SegmentSize int64         `yaml:"segment_size"`
	// SnapshotEvery is how often the state is snapshotted (0: never, not
	// even at Close), so restarts replay only the log written since.
	SnapshotEvery time.Duration `yaml:"snapshot_every"`
	// SnapshotEveryEvents also snapshots once that many events were
	// applied since the last snapshot (0: by time only), so that a burst of
	// ingest cannot leave a restart a long tail to replay: the tail is at
	// most this many events plus what arrives while the check waits
	// (snapshotPoll) and while the snapshot is written. Only with
	// SnapshotEvery > 0. A snapshot costs CPU in proportion to the state,
	// so a low bound taxes sustained bulk ingest; events replayed by
	// recovery count too (a restart with a long tail snapshots soon).
	SnapshotEveryEvents int64 `yaml:"snapshot_every_events"`
	// Retention keeps sealed log segments (compressed) at least this long
	// as the event archive, even once a snapshot covers them.
	Retention time.Duration `yaml:"retention"`
}

// OpenConfig is where Open keeps a store, and how durably.
type OpenConfig struct {
	DataDir    string
	Durability Durability
	// AcceptSchemaChange lets Open apply repo changes that drop or rebuild
	// state (see CheckSchema).
	AcceptSchemaChange bool
}

// OpenOptions are Open's settings beyond the OpenConfig.
type OpenOptions struct {
	// Store are the store's options; Open sets Log.
	Store Options
	// FS is the file system of the log and the snapshots; nil is the OS.
	// A data dir on another FS is not locked (the lock is an flock).
	FS walfs.FS
	// Logger receives recovery, snapshot and warning lines; nil discards.
	Logger *slog.Logger
	// WAL, if set, adjusts the log's options Open derives from the
	// OpenConfig (tests: segments smaller than a Config allows, so they
	// roll often).
	WAL func(*wal.Options)
}

// Instance is a store opened on its data dir: the store, its write-ahead
// log, its snapshots and the data dir's lock, and the snapshot loop. Close
// it to stop.
type Instance struct {
	*Store
	cfg   OpenConfig
	wal   *wal.Log
	snaps *snapshot.Store
	lock  *DirLock
	log   *slog.Logger
	rec   Recovery

	snapMu     sync.Mutex // one snapshot at a time
	lastSnap   uint64     // applied index at the last snapshot
	lastEvents uint64     // EventsApplied at the last snapshot, guarded by snapMu
	lastAt     time.Time  // when the last snapshot began, guarded by snapMu
	firstMark  LogMark    // the log mark of its first record, guarded by snapMu (logMarks)
	stop       context.CancelFunc
	loopDone   chan struct{}
	closed     bool
}

// Open locks cfg.DataDir (refusing a cluster node's data dir), opens its
// write-ahead log, checks the repo
// against the schema fingerprint kept there, restores the newest snapshot
// that verifies, replays the log after it, and starts the snapshot loop
// (every cfg.Durability.SnapshotEvery; none when 0).
//
// When the log ends behind the restored snapshot (its tail was lost by a
// power loss, or cut by wal repair), the snapshot is the state: the log is
// continued after the snapshot's index with ErrLostRecords fillers for the
// indexes only the snapshot holds, so no index a snapshot covers is ever
// reused, and a warning names them.
func Open(cfg OpenConfig, repo *features.Repo, opts OpenOptions) (*Instance, error) {
	t0 := time.Now()
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	fsys := opts.FS
	in := &Instance{cfg: cfg, log: logger}
	if fsys == nil {
		fsys = walfs.OS
		lock, err := LockDataDir(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		in.lock = lock
	} else if err := fsys.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	if err := checkNotClusterDir(fsys, cfg.DataDir); err != nil {
		in.lock.Release()
		return nil, err
	}
	in.snaps = NewSnapshotStore(fsys, cfg.DataDir, logger)
	if err := in.open(repo, fsys, opts); err != nil {
		if in.wal != nil {
			in.wal.Close()
		}
		in.lock.Release()
		if ce := (*wal.CorruptionError)(nil); errors.As(err, &ce) {
			// The log's error says what is wrong; what to do is a single
			// node's (a cluster replica's log is not repaired).
			advice := RepairAdvice(cfg.DataDir)
			if seg := ce.MissingSegment(); seg != "" {
				// A repair cuts the log at the gap and moves every later
				// record aside: the file put back loses nothing.
				advice = fmt.Sprintf("to start, put the segment file %s back into %s if it was moved or is in a backup (with any other segment "+
					"that held records up to %d); only if it is lost, %s", seg, filepath.Join(cfg.DataDir, "wal"), ce.Next-1,
					strings.TrimPrefix(RepairAdvice(cfg.DataDir), "to start, "))
			}
			err = fmt.Errorf("%w\n%s", err, advice)
		}
		if me := (*MissingSnapshotError)(nil); errors.As(err, &me) {
			err = fmt.Errorf("%w\n%s", err, missingSnapshotAdvice(cfg.DataDir, me))
		}
		return nil, err
	}
	in.rec.Duration = time.Since(t0)
	ctx, stop := context.WithCancel(context.Background())
	in.stop = stop
	in.lastAt = time.Now()
	if every := cfg.Durability.SnapshotEvery; every > 0 {
		in.loopDone = make(chan struct{})
		go in.snapshotLoop(ctx, every, uint64(max(0, cfg.Durability.SnapshotEveryEvents)))
	}
	return in, nil
}

// RepairAdvice is what to do about a corrupt record in the log of the
// single node whose data dir is dataDir (a cluster replica's log is not
// repaired: see package cluster).
func RepairAdvice(dataDir string) string {
	return fmt.Sprintf("to start, stop any tally using this data dir and run: tally admin wal repair --data-dir %s "+
		"(it keeps the records before the corrupt one and moves the rest aside)", dataDir)
}

// missingSnapshotAdvice is what to do about a single node's log whose
// covering snapshot is gone (deleted or moved after the log's front was
// dropped): no option starts from the log alone, whose records need the
// state before them.
func missingSnapshotAdvice(dataDir string, e *MissingSnapshotError) string {
	snaps := filepath.Join(dataDir, "snapshots")
	if e.Snapshot != "" {
		return fmt.Sprintf("to start, either put the log's segments holding records %d to %d back into %s (a segment file is named by its first record: "+
			"the first one missing is named %d or less) if they were moved or are in a backup, or a snapshot %s or later into %s; or, if neither is left, "+
			"start over: stop tally, move %s aside, and start with an empty data dir (everything in it is then gone from the node: backfill what you "+
			"still have with tally import); no option starts without records %d to %d",
			e.Covered+1, e.First-1, filepath.Join(dataDir, "wal"), e.Covered+1, snapshot.Name(e.First-1), snaps, dataDir, e.Covered+1, e.First-1)
	}
	return fmt.Sprintf("to start, either put the missing snapshot back into %s: a file %s or later (named by the record it covers, %d or more), "+
		"if it was moved or is in a backup; or, accepting the loss of the events before record %d (and of the log from there on, "+
		"which cannot be replayed without them), start over: stop tally, move %s aside, and start with an empty data dir "+
		"(backfill what you still have with tally import); no option starts from the log alone",
		snaps, snapshot.Name(e.First-1), e.First-1, e.First, dataDir)
}

// checkNotClusterDir refuses a data dir that holds a cluster node's state
// (its cluster directory): a single node started there would start empty
// beside it, serve none of what the cluster acknowledged, and take writes
// the cluster never sees.
func checkNotClusterDir(fsys walfs.FS, dir string) error {
	ents, err := fsys.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("data dir %s: %w", dir, err)
	}
	for _, e := range ents {
		if e.Name() == "cluster" && e.IsDir() {
			return fmt.Errorf("data dir %s holds a cluster node's state (%s), which a single node does not read: start it as that cluster node "+
				"(tally serve --node-id ... --cluster-addr ... --cluster-id ..., or the config file's cluster block), or give the single node a data dir of its own",
				dir, filepath.Join(dir, "cluster"))
		}
	}
	return nil
}

func (in *Instance) open(repo *features.Repo, fsys walfs.FS, opts OpenOptions) error {
	cfg := in.cfg
	policy, err := wal.ParseSyncPolicy(cfg.Durability.Fsync)
	if err != nil {
		return err
	}
	walMetrics := metrics.NewSet()
	wopts := wal.Options{
		FS: fsys, Sync: policy, SyncEvery: cfg.Durability.SyncEvery, SegmentSize: cfg.Durability.SegmentSize,
		Compress: true, Metrics: walMetrics,
		// A snapshot is written only after the log is synced through its
		// index: a bad frame it holds is corruption, never a torn tail
		// (a cut there would lose the records after the snapshot).
		Synced: func() (uint64, error) {
			m, err := in.snaps.Newest()
			if m == nil {
				return 0, err
			}
			return m.Index, err
		},
	}
	if opts.WAL != nil {
		opts.WAL(&wopts)
	}
	in.wal, err = wal.Open(filepath.Join(cfg.DataDir, "wal"), wopts)
	if err != nil {
		return fmt.Errorf("open the write-ahead log: %w", err)
	}
	if cut := in.wal.TailCut(); cut.Aside != "" {
		in.log.Warn("the log's last segment had an unreadable record with complete writes after it: cut there, as a power loss under fsync "+
			cfg.Durability.Fsync+" can leave; if the disk is suspect, the segment as it was is kept aside",
			"segment", cut.Segment, "cut_from_index", cut.Index, "kept_in", cut.Aside)
	}
	sopts := opts.Store
	sopts.Log = in.wal
	if sopts.Logger == nil {
		sopts.Logger = in.log
	}
	if sopts.Metrics == nil {
		sopts.Metrics = metrics.NewSet()
	}
	if in.Store, err = New(repo, sopts); err != nil {
		return err
	}
	sopts.Metrics.RegisterMetricsWriter(walMetrics.WritePrometheus)
	if err := in.Store.CheckSchema(fsys, cfg.DataDir, cfg.AcceptSchemaChange, in.log); err != nil {
		return err
	}
	loadStart := time.Now()
	used, bad, err := in.Store.RestoreNewest(in.snaps, nil)
	if err != nil {
		return err
	}
	load := time.Since(loadStart)
	snapIndex := in.Store.AppliedIndex()
	last := in.wal.LastIndex()
	for _, b := range bad {
		if b.Index > max(last, snapIndex) {
			in.log.Warn("changes lost: they were only in a snapshot that fails verification", "snapshot", b.Path,
				"lost_from", max(last, snapIndex)+1, "lost_through", b.Index)
		}
	}
	var usedPath string
	if used != nil {
		usedPath = used.Path
		if err := in.checkLogMarks(usedPath, in.Store.restoredMarks); err != nil {
			return err
		}
	}
	if usedPath != "" && snapIndex > last {
		if err := in.continueAfter(snapIndex, usedPath); err != nil {
			return err
		}
	}
	rec, err := in.Store.RecoverFrom(in.wal)
	if me := (*MissingSnapshotError)(nil); errors.As(err, &me) {
		me.Snapshot = usedPath
	}
	rec.Snapshot, rec.Load = usedPath, load
	in.rec = rec
	if err == nil {
		err = in.Store.SaveSchema(fsys, cfg.DataDir)
	}
	if err != nil {
		return err
	}
	in.rec.NewestClock = in.newestClock()
	in.lastSnap = rec.SnapshotIndex // what the log replayed, the next snapshot holds
	in.log.Info("recovered", "snapshot", rec.Snapshot, "snapshot_index", rec.SnapshotIndex, "log_records_replayed", rec.Replayed,
		"last_index", in.wal.LastIndex(), "snapshot_load", load.Round(time.Millisecond), "took", rec.Duration.Round(time.Millisecond))
	return nil
}

// newestClock is the newest acknowledgement clock of the records replayed
// and of the log's last clockTail records (a snapshot may cover them all:
// it does not keep the clock), 0 if none. Clocks are not monotonic in log
// order (concurrent requests), hence a tail, not the last record; a log
// that cannot be read here says nothing (recovery read what it needed).
func (in *Instance) newestClock() int64 {
	const clockTail = 64 // records of up to thousands of events each: a start reads them all
	in.Store.seq.mu.Lock()
	newest := max(in.Store.live, 0)
	in.Store.seq.mu.Unlock()
	first, last := in.wal.FirstIndex(), in.wal.LastIndex()
	if last < first {
		return newest
	}
	from := max(first, last-min(last, clockTail-1))
	in.wal.Replay(from, func(_ uint64, rec []byte) error {
		if clock, _, err := RecordClock(rec); err == nil {
			newest = max(newest, clock)
		}
		return nil
	})
	return newest
}

// continueAfter makes the log go on after the snapshot's index s when it
// ends before it. An empty log restarts at s+1. A log with records keeps
// them (they are the archive of historical features) and gets a filler
// record for each index after its end up to s, so that its indexes stay
// contiguous (as a Raft log's must) and none at or below s is reused; the
// fillers cost at most what the lost records did.
func (in *Instance) continueAfter(s uint64, snap string) error {
	first, last := in.wal.FirstIndex(), in.wal.LastIndex()
	in.log.Warn("the log ends behind the newest snapshot: the changes after its end survive only in the snapshot, which is the state; "+
		"the log goes on after the snapshot, and historical features over the lost records answer ARCHIVE_INCOMPLETE",
		"snapshot", snap, "snapshot_index", s, "log_last_index", last, "lost_from", last+1, "lost_through", s)
	if last < first { // an empty log
		if err := in.wal.Reset(s + 1); err != nil {
			return fmt.Errorf("continue the log after snapshot %s: %w", filepath.Base(snap), err)
		}
		return nil
	}
	filler := AppendLostRecord(nil, s)
	const batch = 4096
	recs := make([][]byte, 0, batch)
	for i := last + 1; i <= s; {
		recs = recs[:0]
		for ; i <= s && len(recs) < batch; i++ {
			recs = append(recs, filler)
		}
		if _, err := in.wal.Append(recs...); err != nil {
			return fmt.Errorf("continue the log after snapshot %s: %w", filepath.Base(snap), err)
		}
	}
	return in.wal.Sync()
}

// Recovery says what Open restored.
func (in *Instance) Recovery() Recovery { return in.rec }

// WAL is the node's write-ahead log: the archive historical features read.
func (in *Instance) WAL() *wal.Log { return in.wal }

// snapshotPoll is how often the snapshot loop checks the events applied
// since the last snapshot against Durability.SnapshotEveryEvents.
const snapshotPoll = 250 * time.Millisecond

// snapshotLoop snapshots every `every`, and also once `events` (0: no
// bound) were applied since the last snapshot; a snapshot taken for either
// reason (or by a caller) restarts both counts.
func (in *Instance) snapshotLoop(ctx context.Context, every time.Duration, events uint64) {
	defer close(in.loopDone)
	tick := every
	if events > 0 {
		tick = min(every, snapshotPoll)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	failed := false // then only time retries, so a failing disk is not hammered
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		in.snapMu.Lock()
		due := time.Since(in.lastAt) >= every-tick/2 ||
			!failed && events > 0 && in.Store.EventsApplied()-in.lastEvents >= events
		in.snapMu.Unlock()
		if !due {
			continue
		}
		_, err := in.Snapshot()
		if failed = err != nil; failed {
			in.log.Error("snapshot failed", "err", err)
		}
	}
}

// Snapshot writes a snapshot now (unless nothing changed since the last
// one) and lets the log drop what no kept snapshot needs and the retention
// no longer keeps. It returns the snapshot's start index (0: none written).
func (in *Instance) Snapshot() (uint64, error) {
	in.snapMu.Lock()
	defer in.snapMu.Unlock()
	in.lastAt = time.Now()
	if applied := in.Store.AppliedIndex(); applied == in.lastSnap {
		return 0, nil // nothing new since the last one
	}
	events := in.Store.EventsApplied() // at most what the snapshot holds
	// A snapshot must never cover a record the log could still lose (under
	// fsync interval): after a power loss the log would end behind it. Its
	// partitions hold the records applied while they were written, so the
	// log is synced after them, before the snapshot is made durable.
	t0 := time.Now()
	start, size, keepFrom, err := in.Store.snapshotTo(in.snaps, func() error {
		if err := in.wal.Sync(); err != nil {
			return fmt.Errorf("sync the log before a snapshot: %w", err)
		}
		return nil
	}, in.logMarks)
	if err != nil {
		return 0, err
	}
	in.lastSnap, in.lastEvents = start, events
	in.log.Info("snapshot", "start_index", start, "bytes", size, "took", time.Since(t0).Round(time.Millisecond))
	if keepFrom > 0 {
		if err := in.wal.TruncateFrontOlderThan(keepFrom, in.cfg.Durability.Retention); err != nil {
			return start, fmt.Errorf("log retention: %w", err)
		}
	}
	return start, nil
}

// Abort is Close without the final snapshot: for a caller that failed to
// start on the store Open returned.
func (in *Instance) Abort() error {
	in.cfg.Durability.SnapshotEvery = 0
	return in.Close()
}

// Close stops the snapshot loop, writes a final snapshot (a clean stop
// restarts with nothing to replay), closes the log and releases the data
// dir. The caller has stopped serving. Close is not safe to call twice
// concurrently; a second call returns nil.
func (in *Instance) Close() error {
	if in.closed {
		return nil
	}
	in.closed = true
	in.stop()
	if in.loopDone != nil {
		<-in.loopDone
	}
	var errs []error
	if in.cfg.Durability.SnapshotEvery > 0 {
		if _, err := in.Snapshot(); err != nil {
			errs = append(errs, fmt.Errorf("final snapshot: %w", err))
		}
	}
	if err := in.wal.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close the write-ahead log: %w", err))
	}
	if err := in.lock.Release(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
