package node

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/store"
)

// Options are a node's programmatic settings, for tests and embedding.
type Options struct {
	// Clock returns the node's idea of now in epoch milliseconds. It judges
	// event timestamps (too far in the future or past) and is the default
	// read time of a lookup. Nil means the wall clock.
	Clock func() int64
	// Cluster, when set, makes this the front of a cluster node: ingests
	// are written and lookups read through it (the replica groups), not
	// through the node's own store, which then holds no state.
	Cluster Cluster
	// Log receives every change before it is applied; nil keeps the node
	// in memory only (tests, benchmarks, dry runs).
	Log store.Log
	// Committer, if set, builds the Committer changes go through from the
	// node's state machine (a replicated log: propose, and the state
	// machine applies what was committed); Log is then unused.
	Committer func(store.StateMachine) store.Committer
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

// Node serves one feature repo: the front (request parsing, plans, JSON,
// models, HTTP) over its state, the embedded *store.Store (views, tables,
// the apply order, snapshots, recovery). It is safe for concurrent use.
type Node struct {
	*store.Store
	cfg       Config
	services  map[string]*servicePlan
	keys      *keyring
	now       func() int64
	metrics   *nodeMetrics
	openModel ModelOpener
	logger    *slog.Logger
	maxConns  int     // limits.max_conns resolved against the open-file limit
	cluster   Cluster // Options.Cluster: nil on a single node
	feast     feastPlans
	skels     skeletons // the lookup bodies' shapes (skeleton.go)

	ready       atomic.Bool
	readyChecks readyChecks   // stream.go
	ingested    ingestCounter // ops.go
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
	if n.cluster != nil {
		if err := n.cluster.Err(); err != nil {
			return err
		}
	} else if err := n.Store.CommitErr(); err != nil {
		return err
	}
	return n.extraReady()
}

var errRecovering = errors.New("recovering")

// New compiles repo into a serving node. It fails only on a repo or config
// the node cannot serve, with a message saying what to change.
func New(repo *features.Repo, cfg Config, opts Options) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	set := metrics.NewSet()
	st, err := store.New(repo, store.Options{Log: opts.Log, Committer: opts.Committer, Logger: logger, ApplyWorkers: opts.ApplyWorkers,
		SkipRemoved: opts.SkipRemoved, Metrics: set})
	if err != nil {
		return nil, err
	}
	return newNode(st, set, cfg, opts)
}

// newNode builds the front over st, whose metrics are in set.
func newNode(st *store.Store, set *metrics.Set, cfg Config, opts Options) (*Node, error) {
	n := &Node{Store: st, cfg: cfg, services: map[string]*servicePlan{}, now: opts.Clock, logger: opts.Logger, cluster: opts.Cluster}
	if n.logger == nil {
		n.logger = slog.New(slog.DiscardHandler)
	}
	repo := st.Repo()
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
	n.metrics = newNodeMetrics(n, set)
	return n, nil
}

// Metrics returns the node's metrics set, written by GET /metrics.
func (n *Node) Metrics() *metrics.Set { return n.metrics.set }
