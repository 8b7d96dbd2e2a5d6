package store

import (
	"log/slog"
	"math"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/ring"
	"github.com/tally-ml/tally/windows"
)

// Options are a Store's settings.
type Options struct {
	// Log receives every change before it is applied; nil keeps the state
	// in memory only (tests, benchmarks, dry runs).
	Log Log
	// Committer, if set, builds the Committer changes go through from the
	// store (a replicated log: propose, and the state machine applies what
	// was committed); Log is then unused.
	Committer func(StateMachine) Committer
	// Logger receives what an operator must act on (the write-ahead log
	// failing and recovering, recovery's skips); nil discards it.
	Logger *slog.Logger
	// ApplyWorkers > 1 applies a large batch to the views of its source on
	// that many goroutines (views are independent): for replays, where one
	// goroutine applies the whole log (recovery, historical features). Live
	// ingest leaves it at 1: its other cores parse concurrent requests.
	ApplyWorkers int
	// SkipRemoved makes a replay skip (and count) log records of sources
	// and tables the repo no longer has, instead of failing: for a store
	// that replays a log written under an older repo to compute the current
	// repo's features, as historical-features joins do (none of the repo's
	// features can read those records). Open decides it for a serving node
	// from the schema check (--accept-schema-change).
	SkipRemoved bool
	// Metrics receives the store's counters (events applied, placements
	// refused as too late, apply errors, recovery); nil: a set of its own.
	Metrics *metrics.Set
	// Owns, when set, is the set of ring partitions this store holds: a
	// cluster's replica group. An event is placed only in the views whose
	// key falls in an owned partition (the others only see the view's
	// watermark advance), and a table keeps only the rows of owned keys.
	// nil: every partition (a single node).
	Owns *[ring.Partitions]bool
}

// Store is the state of one feature repo: its views and tables, changed
// only through its Committer, in log order. It is safe for concurrent use.
type Store struct {
	repo      *features.Repo
	views     []*windows.View // parallel to groups
	groups    []group         // the views of a source and join key share one windows view (group.go)
	refs      []viewRef       // parallel to repo.Views: where each view's state is
	tables    []*Table        // parallel to repo.Tables
	sources   []*Source       // parallel to repo.Sources
	committer Committer       // see commit.go
	seq       *sequencer
	workers   int // see Options.ApplyWorkers
	// visible is the running maximum of the clocks at which logged changes
	// became visible (see ReplayTimed), guarded by seq.mu. It starts at
	// MinInt64, not 0, so that events before 1970 are not deferred.
	visible int64
	// live is the running maximum of the clocks of the changes that were
	// not backfills (live events, table uploads), guarded by seq.mu: a
	// backfill's event at or before it was loaded after the node had passed
	// its time (ReplayTimed).
	live   int64
	filter *replayFilter          // during recovery from a snapshot; nil otherwise
	owns   *[ring.Partitions]bool // Options.Owns
	// counted is what the last Apply placed: the events the windows refused
	// as too late and, for a backfill, the events the visibility clock had
	// passed (ApplyCounted), guarded by seq.mu.
	counted struct{ tooLate, deferred int }
	streams map[streamKey]int64 // next offset per stream partition (stream.go), guarded by seq.mu
	// requests are the keys of the latest named records applied
	// (request.go), guarded by seq.mu; nil until the first.
	requests *RequestWindow
	// restoredMarks are the log marks of the snapshot restored
	// (logmarks.go), which a single node's Open checks against its log.
	restoredMarks []LogMark
	logger        *slog.Logger
	metrics       storeMetrics

	schemaState // see schema.go

	// replayedParallel is how many records the last RecoverFrom placed
	// through its view lanes (replay.go), for tests.
	replayedParallel int
}

type storeMetrics struct {
	set         *metrics.Set
	events      *metrics.Counter
	tooLate     *metrics.Counter
	applyErrors *metrics.Counter
	// streamSkipped counts stream batches whose offsets the state held.
	streamSkipped *metrics.Counter
	// repeats counts named records skipped as applied before (request.go).
	repeats *metrics.Counter
	applied atomic.Uint64 // events applied by this store (EventsApplied)
}

func (m *storeMetrics) ingested(events, tooLate int) {
	m.applied.Add(uint64(events))
	m.events.Add(events)
	m.tooLate.Add(tooLate)
}

// New builds the empty state of repo.
func New(repo *features.Repo, opts Options) (*Store, error) {
	n := &Store{repo: repo, seq: newSequencer(), workers: max(1, opts.ApplyWorkers), logger: opts.Logger, visible: math.MinInt64, live: math.MinInt64, owns: opts.Owns}
	n.schemaAccepted = opts.SkipRemoved
	if n.logger == nil {
		n.logger = slog.New(slog.DiscardHandler)
	}
	set := opts.Metrics
	if set == nil {
		set = metrics.NewSet()
	}
	n.metrics = storeMetrics{set: set,
		events:        set.GetOrCreateCounter("tally_ingest_events_total"),
		tooLate:       set.GetOrCreateCounter("tally_ingest_too_late_placements_total"),
		applyErrors:   set.GetOrCreateCounter("tally_ingest_apply_errors_total"),
		streamSkipped: set.GetOrCreateCounter("tally_stream_batches_skipped_total"),
		repeats:       set.GetOrCreateCounter("tally_requests_repeated_total"),
	}
	switch {
	case opts.Committer != nil:
		n.committer = opts.Committer(n)
	case opts.Log != nil:
		n.committer = &logCommitter{log: opts.Log, n: n, logger: n.logger}
	default:
		n.committer = memCommitter{n}
	}
	// A lookup's as_of reaches back the smallest lateness of the sources
	// it reads (none: not before the clock); the longest of any source
	// bounds them all.
	var horizon int64
	for _, s := range repo.Sources {
		horizon = max(horizon, s.Lateness)
	}
	for _, t := range repo.Tables {
		n.tables = append(n.tables, newTable(t, n.owns, horizon))
	}
	for i, s := range repo.Sources {
		n.sources = append(n.sources, newSource(repo, i, s))
	}
	all := make([]int, len(repo.Views))
	for i := range all {
		all[i] = i
	}
	if err := n.setLayout(groupViews(repo, all)); err != nil {
		return nil, err
	}
	return n, nil
}

// advanceClock moves the visibility clock to clock, that of a change
// acknowledged live (not a backfill's events), and tells the tables that
// time passed (Table.advance).
func (n *Store) advanceClock(clock int64) {
	n.visible = max(n.visible, clock)
	for _, t := range n.tables {
		if clock >= t.expires.Load() {
			t.advance(clock)
		}
	}
}

// EventsApplied is how many events this store has applied since it was
// built, recovery's replay included: what Durability.SnapshotEveryEvents
// counts.
func (n *Store) EventsApplied() uint64 { return n.metrics.applied.Load() }

// Repo is the feature repo the state is of.
func (n *Store) Repo() *features.Repo { return n.repo }

// Table is the table view i of the repo.
func (n *Store) Table(i int) *Table { return n.tables[i] }

// Source is the event source i of the repo.
func (n *Store) Source(i int) *Source { return n.sources[i] }

// SourceNamed is the event source called name, or nil.
func (n *Store) SourceNamed(name []byte) *Source {
	for _, s := range n.sources {
		if s.Src.Name == string(name) {
			return s
		}
	}
	return nil
}

// CommitErr says why the store refuses changes now (its Committer's Err),
// or nil.
func (n *Store) CommitErr() error { return n.committer.Err() }

// Source is how events of one source reach the views that aggregate it.
type Source struct {
	Src       *features.Source
	Index     int            // in the repo's Sources
	TS        string         // the timestamp column
	ColIndex  map[string]int // column name -> index in Src.Columns
	IsKey     []bool         // source column is some view's join key
	StrCol    []bool         // the batch holds the column as bytes: strings, and integer join keys
	MaxWindow int64          // longest window of any view over this source
	targets   []groupTarget  // set by setLayout
}

// groupTarget is a group whose events come from a source.
type groupTarget struct {
	group  int
	keyCol int
	cols   []int // source column of each spec column of the group; -1: none (null)
}

func newSource(repo *features.Repo, index int, s *features.Source) *Source {
	p := &Source{Src: s, Index: index, TS: s.Timestamp, ColIndex: map[string]int{}, IsKey: make([]bool, len(s.Columns))}
	for i, c := range s.Columns {
		p.ColIndex[c.Name] = i
	}
	for _, v := range repo.Views {
		if v.Source != s {
			continue
		}
		p.IsKey[v.KeyColumn] = true
		for _, a := range v.Spec.Aggregations {
			p.MaxWindow = max(p.MaxWindow, a.Window)
		}
	}
	p.StrCol = make([]bool, len(s.Columns))
	for i, c := range s.Columns {
		p.StrCol[i] = c.Type == features.String || p.IsKey[i]
	}
	return p
}

// NewRow returns a row of def with every column null.
func NewRow(def *features.Table) TableRow {
	nc := len(def.Columns)
	r := TableRow{Nums: make([]float64, nc), Strs: make([]string, nc), Null: make([]bool, nc)}
	for i := range r.Null {
		r.Null[i] = true
	}
	return r
}
