package store

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/tally-ml/tally/windows"
)

// Recovery's replay is a pipeline over every core (replayLog):
//
//   - a reader goroutine reads the log (read, decompress, frame check) and
//     decodes each events record into a batch;
//   - the caller's goroutine takes the records in log order and does what
//     Apply does in order (the applied index, the visibility clock, stream
//     offsets, the replay filter), then queues each batch to
//   - one lane per view: a goroutine placing the batches queued to it in
//     its view, in log order (applyTarget, as Apply does).
//
// Views share nothing (each has its own partitions, watermark and
// dictionaries), so each ends as a sequential replay leaves it, decision
// for decision. The lanes run on whatever cores are free, and their queues
// let a cheap view run ahead of an expensive one instead of waiting for it
// at every record. Records the restored snapshot holds in part go through
// the lanes too (applyFilteredTarget). Any other record (table uploads,
// lost or undecodable records) waits for the lanes to finish and is
// applied as Apply does.
//
// Splitting by partition instead (every view's events of half the
// partitions on each core) measured slower here: each core then raises
// every view's watermark, so its cache line moves between the cores on
// nearly every event.

// replayItem is one log record on its way through the pipeline.
type replayItem struct {
	index    uint64
	raw      []byte // applied through applyLocked; nil when decoded
	w        *applyWork
	clock    int64
	backfill bool
	filtered bool // under the snapshot's replay filter (applyFiltered)
	isStream bool
	pos      StreamPos
	named    bool         // a request's record (request.go)
	key      uint64       // its key
	pending  atomic.Int32 // lanes still placing its events
	tooLate  atomic.Int64
}

// replayLog replays the log from index from into the store, applying each
// record as Apply would (see above), and counts the records in *replayed.
func (n *Store) replayLog(l Replayer, from uint64, workers int, replayed *uint64) error {
	if workers < 2 {
		return l.Replay(from, func(index uint64, data []byte) error {
			if err := n.Apply(index, data); err != nil {
				return err
			}
			*replayed++
			return nil
		})
	}
	items := make(chan *replayItem, 4)
	stop := make(chan struct{})
	var readErr error
	go func() {
		defer close(items)
		readErr = l.Replay(from, func(index uint64, data []byte) error {
			select {
			case items <- n.decodeReplayed(index, data):
				return nil
			case <-stop:
				return errStopReplay
			}
		})
	}()
	r := newReplayLanes(n)
	defer func() { n.replayedParallel = r.queued }()
	err := func() error {
		for it := range items {
			n.seq.mu.Lock()
			err := r.apply(it)
			n.seq.mu.Unlock()
			if err != nil {
				return err
			}
			*replayed++
		}
		return nil
	}()
	r.close()
	if err != nil {
		close(stop)
		for range items { // let the reader see stop
		}
		return err
	}
	if readErr != nil && !errors.Is(readErr, errStopReplay) {
		return readErr
	}
	return nil
}

// decodeReplayed decodes an events record on the reader's goroutine; any
// other record, or one that does not decode, is copied to be applied (and
// its error reported) by applyLocked, in log order.
func (n *Store) decodeReplayed(index uint64, rec []byte) *replayItem {
	it := &replayItem{index: index}
	inner, clock, backfill, err := unwrapAt(rec)
	if err == nil && len(inner) > 0 {
		inner, it.key, it.named, err = unwrapRequest(inner)
	}
	if err == nil && len(inner) > 0 {
		inner, it.pos, it.isStream, err = unwrapStream(inner)
	}
	if err == nil && len(inner) > 0 && inner[0] == recordEvents {
		w := getApplyWork()
		if _, err = n.decodeEventsRecord(inner, &w.batch); err == nil {
			it.w, it.clock, it.backfill = w, clock, backfill
			return it
		}
		applyPool.Put(w)
	}
	it.raw = append([]byte(nil), rec...)
	return it
}

// maxReplayEvents bounds the events of the records queued to the lanes and
// not yet placed (their decoded batches): a record may hold 100,000 events.
// A variable for tests.
var maxReplayEvents = 1 << 18

// replayLanes are the view lanes of one replay.
type replayLanes struct {
	n      *Store
	queues []chan *replayItem // per view
	flight sync.WaitGroup     // items queued, not yet placed in all their views
	done   sync.WaitGroup     // the lanes themselves
	mu     sync.Mutex
	room   *sync.Cond // signalled as queued events are placed
	events int        // queued events not yet placed, guarded by mu
	// queued counts the records placed through the lanes.
	queued int
}

func newReplayLanes(n *Store) *replayLanes {
	r := &replayLanes{n: n, queues: make([]chan *replayItem, len(n.views))}
	r.room = sync.NewCond(&r.mu)
	for i := range r.queues {
		q := make(chan *replayItem, 16)
		r.queues[i] = q
		r.done.Add(1)
		go func() {
			defer r.done.Done()
			var fields []windows.Field
			for it := range q {
				r.place(it, i, &fields)
			}
		}()
	}
	return r
}

// close stops the lanes once they placed what they were given.
func (r *replayLanes) close() {
	for _, q := range r.queues {
		close(q)
	}
	r.done.Wait()
}

// drain waits until every item queued is placed.
func (r *replayLanes) drain() { r.flight.Wait() }

// apply is applyLocked for a replayed item, with the sequencer held.
func (r *replayLanes) apply(it *replayItem) error {
	n := r.n
	if it.raw != nil {
		r.drain()
		return n.applyLocked(it.index, it.raw, nil)
	}
	if it.index <= n.seq.applied {
		applyPool.Put(it.w)
		return nil // already in the snapshot
	}
	if it.named {
		if n.requestSeen(it.key) {
			applyPool.Put(it.w)
			n.seq.applied = it.index
			return nil // a repeat (request.go)
		}
		n.requestApplied(it.key) // placing cannot fail
	}
	if !it.backfill {
		n.advanceClock(it.clock)
	}
	if it.isStream && !n.streamTake(it.pos) {
		applyPool.Put(it.w)
		n.seq.applied = it.index
		return nil // offsets already counted (stream.go)
	}
	b := &it.w.batch
	if it.backfill {
		n.advanceVisible(b)
	}
	n.seq.applied = it.index
	sp := n.sources[b.source]
	it.filtered = n.filter != nil && it.index <= n.filter.max
	if len(sp.targets) > 0 {
		r.queued++
		r.mu.Lock()
		for r.events > 0 && r.events+b.Len() > maxReplayEvents {
			r.room.Wait()
		}
		r.events += b.Len()
		r.mu.Unlock()
		it.pending.Store(int32(len(sp.targets)))
		r.flight.Add(1)
		for ti := range sp.targets {
			r.queues[sp.targets[ti].group] <- it
		}
		return nil
	}
	n.metrics.ingested(b.Len(), 0) // a source no view reads
	applyPool.Put(it.w)
	return nil
}

// place puts it's events in view (lane) v; the last lane to finish counts
// the record and frees its batch.
func (r *replayLanes) place(it *replayItem, v int, fields *[]windows.Field) {
	n, b := r.n, &it.w.batch
	sp := n.sources[b.source]
	for ti, t := range sp.targets {
		switch {
		case t.group != v:
		case it.filtered:
			it.tooLate.Add(int64(n.applyFilteredTarget(sp, ti, b, fields, it.index)))
		default:
			it.tooLate.Add(int64(n.applyTarget(sp, ti, b, fields, 0, b.Len())))
		}
	}
	if it.pending.Add(-1) == 0 {
		n.metrics.ingested(b.Len(), int(it.tooLate.Load()))
		r.mu.Lock()
		r.events -= b.Len()
		r.room.Signal()
		r.mu.Unlock()
		applyPool.Put(it.w)
		r.flight.Done()
	}
}
