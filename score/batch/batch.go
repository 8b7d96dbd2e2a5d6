package batch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tally-ml/tally/score"
)

// Defaults for zero Options fields.
const (
	DefaultMaxRows     = 64
	DefaultMaxWait     = time.Millisecond
	DefaultMaxInFlight = 4
)

// ErrClosed is returned by Score after Close. It wraps score.ErrUnavailable.
var ErrClosed = fmt.Errorf("%w: batcher closed", score.ErrUnavailable)

// Options configure a Batcher.
type Options struct {
	// MaxRows caps the rows of one batch (DefaultMaxRows). A call with more
	// rows than MaxRows is sent as a batch of its own; calls are never split.
	MaxRows int
	// MaxWait is how long the oldest queued call waits for a batch to fill
	// (DefaultMaxWait).
	MaxWait time.Duration
	// QueueRows caps the rows waiting for a batch (default 16*MaxRows).
	// A call that does not fit fails at once with an error wrapping
	// score.ErrOverloaded; a call into an empty queue is always accepted.
	QueueRows int
	// MaxInFlight caps the batches being scored at once (DefaultMaxInFlight).
	MaxInFlight int
	// Local: the wrapped Scorer is in process, so a batch is sent at once
	// whenever no batch is in flight, and rows coalesce only while the
	// scorer is busy. Otherwise (remote endpoints) a batch is sent when it
	// is full or its oldest call has waited MaxWait.
	Local bool
}

// Stats count a Batcher's work since New.
type Stats struct {
	Calls   uint64 // Score calls with rows, accepted or not
	Batches uint64 // batches sent to the wrapped Scorer
	Rows    uint64 // rows sent in those batches
	Shed    uint64 // calls refused with ErrOverloaded
	Expired uint64 // calls whose ctx ended before their result
	Split   uint64 // batches re-scored call by call after ErrBadInput
}

// Batcher coalesces concurrent Score calls into batches for a wrapped
// score.Scorer. It implements score.Scorer; see the package documentation.
type Batcher struct {
	s     score.Scorer
	width int
	opts  Options

	mu       sync.Mutex
	queue    []*call
	queued   int // rows in queue of calls still waiting
	inFlight int
	closed   bool
	wake     chan struct{} // buffered 1: the dispatcher has something to look at
	work     chan *batch
	done     chan struct{} // closed when the dispatcher and workers are done
	workers  sync.WaitGroup

	calls  sync.Pool
	frames sync.Pool

	nCalls, nBatches, nRows, nShed, nExpired, nSplit atomic.Uint64
}

// call states. Moves out of queued happen under Batcher.mu; the others are
// compare-and-swaps between the caller and the worker.
const (
	queued     int32 = iota
	sent             // rows copied into a batch in flight
	abandoned        // the caller's ctx ended; nobody writes its out
	delivering       // the worker is writing out; done follows
)

type call struct {
	state atomic.Int32
	rows  []float32
	n     int
	out   []score.Prediction
	enq   time.Time
	// deadline is the caller's ctx deadline (zero: none).
	deadline time.Time
	done     chan error // buffered 1
	off      int        // first row in its batch
}

type batch struct {
	calls []*call
	rows  []float32
	out   []score.Prediction
	n     int
}

// New starts a Batcher in front of s. Close stops it.
func New(s score.Scorer, opts Options) *Batcher {
	if opts.MaxRows <= 0 {
		opts.MaxRows = DefaultMaxRows
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = DefaultMaxWait
	}
	if opts.QueueRows <= 0 {
		opts.QueueRows = 16 * opts.MaxRows
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	b := &Batcher{
		s:     s,
		width: s.NumInputs(),
		opts:  opts,
		wake:  make(chan struct{}, 1),
		work:  make(chan *batch),
		done:  make(chan struct{}),
	}
	b.workers.Add(opts.MaxInFlight)
	for range opts.MaxInFlight {
		go b.worker()
	}
	go b.dispatch()
	return b
}

// NumInputs is the wrapped Scorer's.
func (b *Batcher) NumInputs() int { return b.width }

// Inputs is the wrapped Scorer's.
func (b *Batcher) Inputs() []string { return b.s.Inputs() }

// Classes is the wrapped Scorer's.
func (b *Batcher) Classes() []string { return b.s.Classes() }

// Stats returns the counters.
func (b *Batcher) Stats() Stats {
	return Stats{
		Calls:   b.nCalls.Load(),
		Batches: b.nBatches.Load(),
		Rows:    b.nRows.Load(),
		Shed:    b.nShed.Load(),
		Expired: b.nExpired.Load(),
		Split:   b.nSplit.Load(),
	}
}

// Close stops accepting calls, sends every queued call without waiting for
// batches to fill, and returns when all batches have been scored. It does
// not close the wrapped Scorer. It is safe to call more than once.
func (b *Batcher) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.notify()
	<-b.done
	return nil
}

// Score queues the n rows, waits for the batch that carries them and
// writes out[:n]. It returns at once with an error wrapping
// score.ErrOverloaded when the queue is full, score.ErrBadInput when rows or
// out are too short for n rows, and, when ctx ends first, an error wrapping
// score.ErrUnavailable and ctx.Err(); the rows are then dropped if their
// batch has not been sent, and out is not written.
func (b *Batcher) Score(ctx context.Context, rows []float32, n int, out []score.Prediction) error {
	if n == 0 {
		return nil
	}
	if n < 0 || len(rows) < n*b.width || len(out) < n {
		return fmt.Errorf("%w: batch: %d rows of %d values need %d values and %d outputs; got %d and %d",
			score.ErrBadInput, n, b.width, n*b.width, n, len(rows), len(out))
	}
	b.nCalls.Add(1)
	if err := ctx.Err(); err != nil {
		b.nExpired.Add(1)
		return fmt.Errorf("%w: batch: %w", score.ErrUnavailable, err)
	}
	if b.opts.Local {
		if done, err := b.scoreIdle(ctx, rows, n, out); done {
			return err
		}
	}
	c, _ := b.calls.Get().(*call)
	if c == nil {
		c = &call{done: make(chan error, 1)}
	}
	c.state.Store(queued)
	c.rows, c.n, c.out = rows[:n*b.width], n, out[:n]
	c.deadline, _ = ctx.Deadline()
	c.enq = time.Now()

	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		b.release(c)
		return ErrClosed
	case b.queued > 0 && b.queued+n > b.opts.QueueRows:
		b.mu.Unlock()
		b.release(c)
		b.nShed.Add(1)
		return fmt.Errorf("%w: batch: %d rows queued, %d more would pass QueueRows %d",
			score.ErrOverloaded, b.queued, n, b.opts.QueueRows)
	}
	b.queue = append(b.queue, c)
	b.queued += n
	b.mu.Unlock()
	b.notify()

	select {
	case err := <-c.done:
		b.release(c)
		return err
	case <-ctx.Done():
	}
	// ctx ended: withdraw the call unless its result is being written.
	b.mu.Lock()
	if c.state.CompareAndSwap(queued, abandoned) {
		// The dispatcher drops it from the queue and releases it.
		b.queued -= n
		b.mu.Unlock()
		b.nExpired.Add(1)
		return fmt.Errorf("%w: batch: waiting for a batch: %w", score.ErrUnavailable, ctx.Err())
	}
	b.mu.Unlock()
	if c.state.CompareAndSwap(sent, abandoned) {
		// The worker releases it.
		b.nExpired.Add(1)
		return fmt.Errorf("%w: batch: waiting for the scorer: %w", score.ErrUnavailable, ctx.Err())
	}
	// delivering: the result is a copy away.
	err := <-c.done
	b.release(c)
	return err
}

// scoreIdle scores the call in the caller's goroutine when a local
// scorer is idle (nothing queued, no batch in flight): no hand-off, no copy.
// It reports false, having done nothing, otherwise.
func (b *Batcher) scoreIdle(ctx context.Context, rows []float32, n int, out []score.Prediction) (bool, error) {
	b.mu.Lock()
	if b.closed || b.inFlight > 0 || len(b.queue) > 0 {
		b.mu.Unlock()
		return false, nil
	}
	b.inFlight++
	b.mu.Unlock()
	b.nBatches.Add(1)
	b.nRows.Add(uint64(n))
	err := b.s.Score(ctx, rows[:n*b.width], n, out[:n])
	b.mu.Lock()
	b.inFlight--
	b.mu.Unlock()
	b.notify()
	return true, err
}

func (b *Batcher) release(c *call) {
	c.rows, c.out = nil, nil
	b.calls.Put(c)
}

func (b *Batcher) notify() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// dispatch forms batches: it is the only goroutine that takes calls off the
// queue.
func (b *Batcher) dispatch() {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer func() {
		close(b.work)
		b.workers.Wait()
		close(b.done)
	}()
	for {
		b.mu.Lock()
		b.dropAbandoned()
		if len(b.queue) == 0 {
			if b.closed && b.inFlight == 0 {
				b.mu.Unlock()
				return
			}
			b.mu.Unlock()
			<-b.wake
			continue
		}
		slot := b.inFlight < b.opts.MaxInFlight
		wait := b.opts.MaxWait - time.Since(b.queue[0].enq)
		ready := b.closed || b.queued >= b.opts.MaxRows || wait <= 0 ||
			(b.opts.Local && b.inFlight == 0)
		if !(slot && ready) {
			b.mu.Unlock()
			if !slot {
				<-b.wake
				continue
			}
			timer.Reset(wait)
			select {
			case <-b.wake:
				timer.Stop()
			case <-timer.C:
			}
			continue
		}
		bt := b.take()
		b.inFlight++
		b.mu.Unlock()
		b.work <- bt
	}
}

// dropAbandoned releases abandoned calls at the head of the queue.
func (b *Batcher) dropAbandoned() {
	i := 0
	for i < len(b.queue) && b.queue[i].state.Load() == abandoned {
		b.release(b.queue[i])
		i++
	}
	if i > 0 {
		b.shift(i)
	}
}

func (b *Batcher) shift(k int) {
	m := copy(b.queue, b.queue[k:])
	clear(b.queue[m:])
	b.queue = b.queue[:m]
}

// take moves queued calls, oldest first, into a batch of at most MaxRows
// rows (or one larger call) and copies their rows. Called with mu held, so
// callers cannot withdraw while their rows are read.
func (b *Batcher) take() *batch {
	bt, _ := b.frames.Get().(*batch)
	if bt == nil {
		bt = &batch{}
	}
	bt.calls, bt.rows, bt.n = bt.calls[:0], bt.rows[:0], 0
	k := 0
	for ; k < len(b.queue); k++ {
		c := b.queue[k]
		if c.state.Load() == abandoned {
			b.release(c)
			continue
		}
		if bt.n > 0 && bt.n+c.n > b.opts.MaxRows {
			break
		}
		c.off = bt.n
		bt.rows = append(bt.rows, c.rows...)
		bt.n += c.n
		b.queued -= c.n
		c.state.Store(sent)
		bt.calls = append(bt.calls, c)
	}
	b.shift(k)
	if cap(bt.out) < bt.n {
		bt.out = append(bt.out[:cap(bt.out)], make([]score.Prediction, bt.n-cap(bt.out))...)
	}
	bt.out = bt.out[:bt.n]
	return bt
}

func (b *Batcher) worker() {
	defer b.workers.Done()
	for bt := range b.work {
		b.run(bt)
		b.frames.Put(bt)
		b.mu.Lock()
		b.inFlight--
		b.mu.Unlock()
		b.notify()
	}
}

// run scores a batch and hands each call its rows' predictions. When the
// batch fails with ErrBadInput and holds several calls, each call is scored
// alone so that one caller's bad rows do not fail the others.
func (b *Batcher) run(bt *batch) {
	b.nBatches.Add(1)
	b.nRows.Add(uint64(bt.n))
	ctx, cancel := batchContext(bt.calls)
	err := b.s.Score(ctx, bt.rows, bt.n, bt.out)
	if err != nil && len(bt.calls) > 1 && errors.Is(err, score.ErrBadInput) {
		b.nSplit.Add(1)
		for _, c := range bt.calls {
			if c.state.Load() != sent {
				continue
			}
			w := b.width
			err := b.s.Score(ctx, bt.rows[c.off*w:(c.off+c.n)*w], c.n, bt.out[c.off:c.off+c.n])
			b.deliver(c, bt, err)
		}
		cancel()
		return
	}
	cancel()
	for _, c := range bt.calls {
		b.deliver(c, bt, err)
	}
}

func (b *Batcher) deliver(c *call, bt *batch, err error) {
	if !c.state.CompareAndSwap(sent, delivering) {
		b.release(c) // abandoned
		return
	}
	if err == nil {
		for i, p := range bt.out[c.off : c.off+c.n] {
			dst := &c.out[i]
			probs := dst.Probabilities[:0]
			*dst = p
			if p.Probabilities != nil {
				dst.Probabilities = append(probs, p.Probabilities...)
			} else {
				dst.Probabilities = probs
			}
		}
	}
	c.done <- err
}

// batchContext gives the batch the latest deadline among its callers, so
// that no caller's time is cut short; a caller with none lifts it.
func batchContext(calls []*call) (context.Context, context.CancelFunc) {
	var latest time.Time
	for _, c := range calls {
		if c.deadline.IsZero() {
			return context.Background(), func() {}
		}
		if c.deadline.After(latest) {
			latest = c.deadline
		}
	}
	return context.WithDeadline(context.Background(), latest)
}
