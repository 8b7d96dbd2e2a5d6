package node

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/windows"
)

// Options are a node's programmatic settings, for tests and embedding.
type Options struct {
	// Clock returns the node's idea of now in epoch milliseconds. It judges
	// event timestamps (too far in the future or past) and is the default
	// read time of a lookup. Nil means the wall clock.
	Clock func() int64
	// Log receives every change before it is applied; nil keeps the node
	// in memory only (tests, benchmarks, dry runs).
	Log Log
	// RepoFS is the feature repo's directory: relative model paths resolve
	// in it. Nil resolves them against the working directory.
	RepoFS fs.FS
	// OpenModel builds a service's Scorer; nil opens ONNX files in process
	// and MLflow endpoints over HTTP, each behind a micro-batcher.
	OpenModel ModelOpener
	// Logger receives what an operator must act on (the write-ahead log
	// failing and recovering); nil discards it.
	Logger *slog.Logger
	// ApplyWorkers > 1 applies a large batch to the views of its source on
	// that many goroutines (views are independent): for replays, where one
	// goroutine applies the whole log (recovery, historical features). Live
	// ingest leaves it at 1: its other cores parse concurrent requests.
	ApplyWorkers int
	// SkipRemoved makes a replay skip (and count) log records of sources
	// and tables the repo no longer has, instead of failing: for a node that
	// replays a log written under an older repo to compute the current
	// repo's features, as historical-features joins do (none of the repo's
	// features can read those records). Open decides it for a serving node
	// from the schema check (--accept-schema-change).
	SkipRemoved bool
}

// Node serves one feature repo. It is safe for concurrent use.
type Node struct {
	cfg      Config
	repo     *features.Repo
	views    []*windows.View // parallel to repo.Views
	tables   []*table        // parallel to repo.Tables
	sources  []*sourcePlan   // parallel to repo.Sources
	services map[string]*servicePlan
	keys     *keyring
	now      func() int64
	metrics  *nodeMetrics
	log      Log
	seq      *sequencer
	workers  int // see Options.ApplyWorkers
	// visible is the running maximum of the clocks at which logged changes
	// became visible (see ReplayTimed), guarded by seq.mu. It starts at
	// MinInt64, not 0, so that events before 1970 are not deferred.
	visible   int64
	filter    *replayFilter // during recovery from a snapshot; nil otherwise
	openModel ModelOpener
	logger    *slog.Logger
	maxConns  int // limits.max_conns resolved against the open-file limit

	schemaState // see schema.go

	ready      atomic.Bool
	logFailing atomic.Bool // the last Append failed; logged once
}

// SetReady marks the node ready to serve (/readyz answers 200 while its log
// accepts appends): the caller has finished recovering state.
func (n *Node) SetReady(ok bool) { n.ready.Store(ok) }

// Ready reports whether the node serves: nil, or why not (recovering, or
// the log's failure).
func (n *Node) Ready() error {
	if !n.ready.Load() {
		return errRecovering
	}
	if n.log != nil {
		if err := n.log.Err(); err != nil {
			return fmt.Errorf("%w: %v", ErrLogFailed, err)
		}
	}
	return nil
}

var errRecovering = errors.New("recovering")

// New compiles repo into a serving node. It fails only on a repo or config
// the node cannot serve, with a message saying what to change.
func New(repo *features.Repo, cfg Config, opts Options) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, repo: repo, services: map[string]*servicePlan{}, now: opts.Clock, log: opts.Log, seq: newSequencer(),
		workers: max(1, opts.ApplyWorkers), logger: opts.Logger, visible: math.MinInt64}
	if n.logger == nil {
		n.logger = slog.New(slog.DiscardHandler)
	}
	n.schemaAccepted = opts.SkipRemoved
	var err error
	if n.maxConns, err = connLimit(cfg.Limits.MaxConns, openFileLimit()); err != nil {
		return nil, err
	}
	if n.now == nil {
		n.now = func() int64 { return time.Now().UnixMilli() }
	}
	kr, err := newKeyring(cfg.APIKeys)
	if err != nil {
		return nil, err
	}
	n.keys = kr
	for _, v := range repo.Views {
		w, err := windows.New(v.Spec)
		if err != nil {
			return nil, fmt.Errorf("feature view %s: %w", v.Name, err)
		}
		n.views = append(n.views, w)
	}
	for _, t := range repo.Tables {
		n.tables = append(n.tables, newTable(t))
	}
	for i, s := range repo.Sources {
		n.sources = append(n.sources, newSourcePlan(repo, i, s))
	}
	n.openModel = opts.OpenModel
	if n.openModel == nil {
		n.openModel = n.defaultOpenModel
	}
	for _, s := range repo.Services {
		p, err := newServicePlan(n, s)
		if err != nil {
			return nil, fmt.Errorf("feature service %s: %w", s.Name, err)
		}
		if s.Model != nil {
			if p.model, err = n.newModelPlan(p, s.Model, opts.RepoFS, n.openModel); err != nil {
				return nil, fmt.Errorf("feature service %s: %w", s.Name, err)
			}
		}
		n.services[s.Name] = p
	}
	n.metrics = newNodeMetrics(n)
	return n, nil
}

// Repo returns the feature repo the node serves.
func (n *Node) Repo() *features.Repo { return n.repo }

// Metrics returns the node's metrics set, written by GET /metrics.
func (n *Node) Metrics() *metrics.Set { return n.metrics.set }

// ViewStats returns the windows statistics of each feature view, in repo order.
func (n *Node) ViewStats() []windows.Stats {
	out := make([]windows.Stats, len(n.views))
	for i, v := range n.views {
		out[i] = v.Stats()
	}
	return out
}

// sourcePlan is how events of one source reach the views that aggregate it.
type sourcePlan struct {
	src       *features.Source
	index     int
	ts        string
	colIndex  map[string]int
	isKey     []bool // source column is some view's join key
	strCol    []bool // the batch holds the column as bytes: strings, and integer join keys
	targets   []viewTarget
	maxWindow int64 // longest window of any view over this source
}

type viewTarget struct {
	view   int
	keyCol int
	cols   []int // source column of each view spec column
}

func newSourcePlan(repo *features.Repo, index int, s *features.Source) *sourcePlan {
	p := &sourcePlan{src: s, index: index, ts: s.Timestamp, colIndex: map[string]int{}, isKey: make([]bool, len(s.Columns))}
	for i, c := range s.Columns {
		p.colIndex[c.Name] = i
	}
	for vi, v := range repo.Views {
		if v.Source != s {
			continue
		}
		p.targets = append(p.targets, viewTarget{view: vi, keyCol: v.KeyColumn, cols: v.SourceColumns})
		p.isKey[v.KeyColumn] = true
		for _, a := range v.Spec.Aggregations {
			p.maxWindow = max(p.maxWindow, a.Window)
		}
	}
	p.strCol = make([]bool, len(s.Columns))
	for i, c := range s.Columns {
		p.strCol[i] = c.Type == features.String || p.isKey[i]
	}
	return p
}

// table is a bulk-loaded table view: the latest row per entity key.
type table struct {
	def  *features.Table
	mu   sync.RWMutex
	rows map[string]int32 // key -> row
	nums []float64        // row-major, one per column (strings: unused)
	strs []string         // row-major, one per column (numbers: unused)
	null []bool           // row-major
}

func newTable(def *features.Table) *table {
	return &table{def: def, rows: map[string]int32{}}
}

// tableRow is one parsed row ready to be stored.
type tableRow struct {
	key  string
	nums []float64
	strs []string
	null []bool
}

// put stores rows, replacing the table first when replace is set. It is
// atomic with respect to lookups.
func (t *table) put(rows []tableRow, replace bool) {
	nc := len(t.def.Columns)
	t.mu.Lock()
	defer t.mu.Unlock()
	if replace {
		t.rows = make(map[string]int32, len(rows))
		t.nums, t.strs, t.null = t.nums[:0], t.strs[:0], t.null[:0]
	}
	for _, r := range rows {
		i, ok := t.rows[r.key]
		if !ok {
			i = int32(len(t.nums) / nc)
			t.rows[r.key] = i
			t.nums = append(t.nums, make([]float64, nc)...)
			t.strs = append(t.strs, make([]string, nc)...)
			t.null = append(t.null, make([]bool, nc)...)
		}
		off := int(i) * nc
		copy(t.nums[off:off+nc], r.nums)
		copy(t.strs[off:off+nc], r.strs)
		copy(t.null[off:off+nc], r.null)
	}
}

// get copies key's row into nums/strs/present (one per column) and reports
// whether the key has a row.
func (t *table) get(key []byte, nums []float64, strs []string, present []bool) bool {
	nc := len(t.def.Columns)
	t.mu.RLock()
	i, ok := t.rows[string(key)]
	if ok {
		off := int(i) * nc
		copy(nums, t.nums[off:off+nc])
		copy(strs, t.strs[off:off+nc])
		for c := 0; c < nc; c++ {
			present[c] = !t.null[off+c]
		}
	}
	t.mu.RUnlock()
	if !ok {
		for c := 0; c < nc; c++ {
			present[c] = false
		}
	}
	return ok
}

func (t *table) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.rows)
}
