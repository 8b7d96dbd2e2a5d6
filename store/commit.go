package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/tally-ml/tally/wal"
)

// Committer is the one seam every change goes through: the caller proposes
// log records, and Commit returns once they are committed (durable; in a
// cluster, on a quorum) and applied to the state machine (the Store) in log
// order, or with an error and nothing of them applied here. Two
// implementations exist in this package: the write-ahead log's
// (Options.Log; append, then apply) and memory's (no log: apply in arrival
// order). A Raft group is the next: propose, and every replica's state
// machine applies what was committed.
//
// local, when not nil, applies exactly recs to the state machine from the
// form the caller decoded them from, without decoding them again (the hot
// path of ingest). An implementation that applies the records on this
// process right after they are committed (the local log) may run local in
// their place, in log order, with nothing else applied concurrently; a
// replicated one ignores it and applies each committed record through
// StateMachine.Apply, on every replica alike. Either way the state is the
// same; only what local computes for the caller's answer (the count of
// events refused as too late) is lost when it is not run.
//
// Err says why Commit refuses changes now (nil when it accepts them);
// /readyz reports it.
type Committer interface {
	Commit(ctx context.Context, recs [][]byte, local func()) error
	Err() error
}

// StateMachine is what a Committer applies committed records to, and what
// a snapshot is taken of and restored into: the Store. Its shape is
// hashicorp/raft's FSM. *Store implements it; recovery (RecoverFrom) is
// Restore of the newest snapshot, then Apply of every log record after it.
type StateMachine interface {
	// Apply applies the committed record at index, which follows the last
	// one applied (an index at or below it is skipped: a restored snapshot
	// holds it). An error means the record cannot be applied (unknown
	// kind, or a state the repo cannot hold): recovery stops on it.
	Apply(index uint64, rec []byte) error
	// Snapshot captures, in the apply order, the index a snapshot starts
	// from and what must be consistent with it; Persist writes the rest
	// while applies go on.
	Snapshot() (*StateSnapshot, error)
	// Restore loads a snapshot into a state machine that has applied
	// nothing, and arms the replay of the log after it.
	Restore(r io.Reader) error
	// AppliedIndex is the index of the last record applied.
	AppliedIndex() uint64
}

var _ StateMachine = (*Store)(nil)

// Log is the write-ahead log the local Committer appends to; wal.Log
// satisfies it. Append must return only once the records are as durable as
// the log's policy promises, and must assign consecutive indexes in the
// order it makes records durable. Err says why the log refuses appends now
// (nil when it accepts them).
type Log interface {
	Append(recs ...[]byte) (last uint64, err error)
	Err() error
}

// ErrLogFailed wraps a write-ahead log failure: the change was not
// acknowledged and nothing of it was applied.
var ErrLogFailed = errors.New("write-ahead log failed")

// ErrTooLarge is returned by a commit whose log record is over the log's
// size limit (a request the node's body limit let through, grown in
// encoding): nothing was written or applied, and the log is well.
var ErrTooLarge = errors.New("the change is too large for one log record")

// logCommitter is the Committer of a store on its own write-ahead log:
// append, then apply in the order of the log's indexes.
type logCommitter struct {
	log     Log
	n       *Store
	logger  *slog.Logger
	failing atomic.Bool // the last Append failed; logged once
}

func (c *logCommitter) Commit(_ context.Context, recs [][]byte, local func()) error {
	if len(recs) == 0 {
		// Nothing to log or apply (an ingest of an empty body). The log's
		// Append of no records answers its last index as it reads it,
		// which a concurrent commit may have logged and applied past
		// before the sequencer is taken: ending at it would move the
		// applied index back, and the next commit would wait forever.
		return nil
	}
	last, err := c.log.Append(recs...)
	if errors.Is(err, wal.ErrRecordTooLarge) {
		// The change, not the log: nothing was written.
		return fmt.Errorf("%w: %v", ErrTooLarge, err)
	}
	if err != nil {
		if c.failing.CompareAndSwap(false, true) {
			c.logger.Error("write-ahead log failed: changes are refused (503 NOT_DURABLE) and /readyz answers 503 until it recovers; "+
				"it retries a failed segment roll by itself, a failed write or fsync needs a restart",
				"kind", wal.ErrorKind(err), "err", err)
		}
		return fmt.Errorf("%w: %v (the change was not acknowledged)", ErrLogFailed, err)
	}
	if c.failing.Load() && c.failing.CompareAndSwap(true, false) {
		c.logger.Info("write-ahead log recovered: changes are acknowledged again")
	}
	first := last - uint64(len(recs)) + 1
	c.n.seq.begin(first)
	defer c.n.seq.end(last)
	return c.n.applyCommitted(first, recs, local)
}

func (c *logCommitter) Err() error {
	if err := c.log.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrLogFailed, err)
	}
	return nil
}

// memCommitter is the Committer of a store without a log: changes are
// applied in arrival order, and numbered as if logged.
type memCommitter struct{ n *Store }

func (c memCommitter) Commit(_ context.Context, recs [][]byte, local func()) error {
	s := c.n.seq
	s.mu.Lock()
	defer s.mu.Unlock()
	first := s.applied + 1
	err := c.n.applyCommitted(first, recs, local)
	s.applied = first + uint64(len(recs)) - 1
	return err
}

func (memCommitter) Err() error { return nil }

// applyCommitted applies recs, committed at first on, with the sequencer
// held: by local when given, else by decoding each.
func (n *Store) applyCommitted(first uint64, recs [][]byte, local func()) error {
	if local != nil {
		local()
		return nil
	}
	for i, rec := range recs {
		if err := n.applyLocked(first+uint64(i), rec, nil); err != nil {
			return err
		}
	}
	return nil
}

// commit is how the store makes a change: through its Committer, with
// apply as the local fast path.
func (n *Store) commit(recs [][]byte, apply func()) error {
	return n.committer.Commit(context.Background(), recs, apply)
}

// sequencer applies changes in log order, so that the state after a replay
// of the log is exactly the state that was served: the windows' tie-breaks,
// lateness refusals and expiry depend on the order events arrive in.
type sequencer struct {
	mu      sync.Mutex
	cond    *sync.Cond
	applied uint64 // index of the last record applied
}

func newSequencer() *sequencer {
	s := &sequencer{}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// begin blocks until every record before first has been applied and returns
// holding the sequencer; end releases it.
func (s *sequencer) begin(first uint64) {
	s.mu.Lock()
	for s.applied+1 < first {
		s.cond.Wait()
	}
}

func (s *sequencer) end(last uint64) {
	s.applied = last
	s.cond.Broadcast()
	s.mu.Unlock()
}

// AppliedIndex returns the log index of the last change applied.
func (n *Store) AppliedIndex() uint64 {
	n.seq.mu.Lock()
	defer n.seq.mu.Unlock()
	return n.seq.applied
}

// CommitEvents commits batches (validated events, at most one batch per
// source) as one log record each, acknowledged at clock, and returns once
// they are applied; for a backfill (an import) each event is acknowledged
// at its own timestamp instead. deferred counts the backfilled events the
// log's visibility clock had already passed (they become visible to
// historical features from the clock on); tooLate the placements the
// windows refused as too late. Both are 0 when the Committer applied by
// decoding. On error nothing was applied.
//
// id, when not "", names the request (the client's Idempotency-Key): a
// batch of it the state applied before, under the same id and in the same
// place among the batches, is not applied again (request.go), so a retry
// of a request whose answer was lost counts nothing twice.
func (n *Store) CommitEvents(id string, batches []*Batch, clock int64, backfill bool) (deferred, tooLate int, err error) {
	w := getCommitWork()
	defer commitPool.Put(w)
	w.recBuf, w.recEnds, w.recs, w.keys = w.recBuf[:0], w.recEnds[:0], w.recs[:0], w.keys[:0]
	for i, b := range batches {
		w.recBuf = appendAt(w.recBuf, clock, backfill)
		if id != "" {
			k := RequestKey(id, i)
			w.keys = append(w.keys, k)
			w.recBuf = appendRequestHeader(w.recBuf, k)
		}
		w.recBuf = appendEventsRecord(w.recBuf, n.sources[b.source], b)
		w.recEnds = append(w.recEnds, len(w.recBuf))
	}
	start := 0
	for _, end := range w.recEnds {
		w.recs = append(w.recs, w.recBuf[start:end])
		start = end
	}
	w.n, w.batches, w.clock, w.backfill, w.deferred, w.tooLate = n, batches, clock, backfill, 0, 0
	err = n.commit(w.recs, w.local)
	deferred, tooLate = w.deferred, w.tooLate
	w.n, w.batches = nil, nil
	if err != nil {
		return 0, 0, err
	}
	return deferred, tooLate, nil
}

// commitWork is the pooled scratch of CommitEvents. local, the
// Committer's local apply, is bound to it once, so that passing it
// allocates nothing.
type commitWork struct {
	applyWork
	recBuf  []byte   // encoded log records, back to back
	recEnds []int    // end offset of each record in recBuf
	recs    [][]byte // the records, slices of recBuf
	keys    []uint64 // the request key of each batch; none without an id
	local   func()

	n                 *Store
	batches           []*Batch
	clock             int64
	backfill          bool
	deferred, tooLate int
}

var commitPool sync.Pool

func getCommitWork() *commitWork {
	w, _ := commitPool.Get().(*commitWork)
	if w == nil {
		w = &commitWork{}
		w.local = w.applyBatches
	}
	return w
}

// applyBatches applies the batches being committed, under the sequencer,
// and counts them as Apply does.
func (w *commitWork) applyBatches() {
	n := w.n
	applied := false // as Apply, a repeat moves no clock
	for i, b := range w.batches {
		if len(w.keys) > 0 {
			if n.requestSeen(w.keys[i]) {
				continue
			}
			n.requestApplied(w.keys[i])
		}
		applied = true
		if w.backfill {
			w.deferred += n.advanceVisible(b)
		}
		late := n.apply(b, &w.applyWork)
		n.metrics.ingested(b.Len(), late)
		w.tooLate += late
	}
	if applied && !w.backfill {
		n.advanceClock(w.clock)
	}
}

// CommitTable commits a table upload of rows into t (replacing its rows
// first when replace is set), valid from validFrom, and returns once it is
// applied. id, when not "", names the request as for CommitEvents: an
// upload the state applied before under it is not applied again. On error
// nothing was applied.
func (n *Store) CommitTable(id string, t *Table, rows []TableRow, replace bool, validFrom int64) error {
	rec := appendAt(nil, validFrom, false)
	var key uint64
	if id != "" {
		key = RequestKey(id, 0)
		rec = appendRequestHeader(rec, key)
	}
	rec = appendTableRecord(rec, t, rows, replace)
	return n.commit([][]byte{rec}, func() {
		if id != "" {
			if n.requestSeen(key) {
				return
			}
			n.requestApplied(key)
		}
		t.put(rows, replace, validFrom)
		n.advanceClock(validFrom)
	})
}

// AppendEventsRecord appends to dst the log record CommitEvents commits for
// b acknowledged at clock (each event at its own timestamp for a
// backfill), for a writer of another shape: a cluster's router proposes
// each replica group the record of its share of a batch.
func (n *Store) AppendEventsRecord(dst []byte, b *Batch, clock int64, backfill bool) []byte {
	dst = appendAt(dst, clock, backfill)
	return appendEventsRecord(dst, n.sources[b.source], b)
}

// AppendTableRecord appends to dst the log record CommitTable commits.
func (n *Store) AppendTableRecord(dst []byte, t *Table, rows []TableRow, replace bool, validFrom int64) []byte {
	return appendTableRecord(appendAt(dst, validFrom, false), t, rows, replace)
}

// Sources are the store's event sources, parallel to the repo's.
func (n *Store) Sources() []*Source { return n.sources }

// KeyColumns lists the batch columns that are some view's join key, for a
// router placing an event by each of its keys.
func (sp *Source) KeyColumns() []int {
	var cols []int
	for _, t := range sp.targets {
		if !slices.Contains(cols, t.keyCol) {
			cols = append(cols, t.keyCol)
		}
	}
	return cols
}

// Null reports whether event e's column c is null.
func (b *Batch) Null(e, c int) bool { return b.null[e*b.ncols+c] }
