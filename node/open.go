package node

import (
	"log/slog"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/wal"
	"github.com/tally-ml/tally/wal/walfs"
)

// OpenOptions are Open's settings beyond the Config.
type OpenOptions struct {
	// Node are the node's programmatic options; Open sets Log.
	Node Options
	// FS is the file system of the log and the snapshots; nil is the OS.
	// A data dir on another FS is not locked (the lock is an flock).
	FS walfs.FS
	// Logger receives recovery, snapshot and warning lines; nil discards.
	Logger *slog.Logger
	// WAL, if set, adjusts the log's options Open derives from the Config
	// (tests: segments smaller than the Config allows, so they roll often).
	WAL func(*wal.Options)
}

// Instance is a node opened on its data dir: the front over a
// store.Instance (the state, its write-ahead log, its snapshots, the data
// dir's lock and the snapshot loop). Close it to stop.
type Instance struct {
	*Node
	st *store.Instance
}

// Open opens the node's state on cfg.DataDir (store.Open: the lock, the
// write-ahead log, the schema check, the newest verified snapshot, the log
// after it, the snapshot loop and retention) and builds the front over it.
// The node it returns is recovered but not marked ready: the caller does
// that once it serves.
func Open(cfg Config, repo *features.Repo, opts OpenOptions) (*Instance, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	nopts := opts.Node
	if nopts.Logger == nil {
		nopts.Logger = logger
	}
	set := metrics.NewSet()
	st, err := store.Open(store.OpenConfig{DataDir: cfg.DataDir, Durability: cfg.Durability, AcceptSchemaChange: cfg.AcceptSchemaChange}, repo,
		store.OpenOptions{Store: store.Options{Logger: nopts.Logger, ApplyWorkers: nopts.ApplyWorkers, SkipRemoved: nopts.SkipRemoved, Metrics: set}, FS: opts.FS, Logger: logger, WAL: opts.WAL})
	if err != nil {
		return nil, err
	}
	n, err := newNode(st.Store, set, cfg, nopts)
	if err != nil {
		st.Abort()
		return nil, err
	}
	n.watchClockBehind(st.Recovery().NewestClock)
	return &Instance{Node: n, st: st}, nil
}

// watchClockBehind warns at start when the node's clock is more than a
// second behind newest, the newest acknowledgement clock the data dir
// holds (the clock was stepped back between restarts, or the data dir
// came from a host whose clock was ahead), and registers
// tally_clock_behind_seconds: by how much it is behind, 0 once it passed
// newest. Reads judge validity by the node's clock, so what was
// acknowledged in the time it stepped over reads as not yet valid
// meanwhile.
func (n *Node) watchClockBehind(newest int64) {
	behind := func() int64 {
		if newest == 0 {
			return 0
		}
		return max(0, newest-n.now())
	}
	n.metrics.set.NewGauge("tally_clock_behind_seconds", func() float64 { return float64(behind()) / 1000 })
	if d := behind(); d > 1000 {
		n.logger.Warn("the node's clock is behind the newest change this data dir acknowledged: reads use the node's clock, so the events and table rows acknowledged after its time read as not yet valid until the clock passes the newest acknowledgement again (was the clock stepped back, or the data dir moved from a host whose clock was ahead?); check NTP",
			"node_clock", time.UnixMilli(n.now()).UTC().Format(time.RFC3339Nano), "newest_acknowledged", time.UnixMilli(newest).UTC().Format(time.RFC3339Nano),
			"behind", (time.Duration(d) * time.Millisecond).String())
	}
}

// Recovery says what Open restored.
func (in *Instance) Recovery() store.Recovery { return in.st.Recovery() }

// WAL is the node's write-ahead log: the archive historical features read.
func (in *Instance) WAL() *wal.Log { return in.st.WAL() }

// Snapshot writes a snapshot now (see store.Instance.Snapshot).
func (in *Instance) Snapshot() (uint64, error) { return in.st.Snapshot() }

// Close marks the node not ready and closes its state (see
// store.Instance.Close). The caller has stopped serving.
func (in *Instance) Close() error {
	in.Node.SetReady(false)
	return in.st.Close()
}
