package history

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/ring"
	"github.com/tally-ml/tally/store"
)

// Group is one replica group's share of a cluster's archive: the records
// its Raft log committed (request framing removed, repeated request ids
// dropped, as its state machine applied them) and the partitions it owns.
//
// A cluster's join replays every group's records into a store of that
// group's partitions, merging the groups' logs in the order of their
// acknowledgement clocks (each group's running maximum, as a single node's
// join keeps one), and reads each view of a spine row from the store of
// the group owning its key: what the cluster served. (Backfill records are
// placed by the clock in their record, not their events' timestamps.)
type Group struct {
	Archive Archive
	Owns    *[ring.Partitions]bool
}

// groupStores reads a join's reads from the store of the group owning each
// key: the node.Cluster of a cluster join's node (it writes nothing).
type groupStores struct {
	stores []*store.Store
	owner  [ring.Partitions]int
}

func newGroupStores(repo *features.Repo, groups []Group, workers int) (*groupStores, error) {
	gs := &groupStores{}
	for p := range gs.owner {
		gs.owner[p] = -1
	}
	for g, gr := range groups {
		st, err := store.New(repo, store.Options{Owns: gr.Owns, ApplyWorkers: workers, SkipRemoved: true})
		if err != nil {
			return nil, err
		}
		gs.stores = append(gs.stores, st)
		for p, o := range gr.Owns {
			if o {
				if gs.owner[p] >= 0 {
					return nil, fmt.Errorf("history: partition %d is owned by groups %d and %d", p, gs.owner[p], g)
				}
				gs.owner[p] = g
			}
		}
	}
	for p, g := range gs.owner {
		if g < 0 {
			return nil, fmt.Errorf("history: no group owns partition %d", p)
		}
	}
	return gs, nil
}

var errReadOnly = errors.New("history: a join's state takes no writes")

func (gs *groupStores) WriteEvents(string, []*store.Batch, int64, bool) (int, int, error) {
	return 0, 0, errReadOnly
}

func (gs *groupStores) RequestApplied(string, []*store.Batch) ([]node.GroupShare, error) {
	return nil, errReadOnly
}

func (gs *groupStores) WriteTable(string, *store.Table, []store.TableRow, bool, int64) error {
	return errReadOnly
}

func (gs *groupStores) Err() error { return nil }

func (gs *groupStores) Read(_ node.ReadLevel, reads []node.Read, t int64, out node.ReadOut) (node.ReadInfo, error) {
	v, tb := 0, 0
	for _, r := range reads {
		st := gs.stores[gs.owner[ring.Partition(ring.Hash(r.Key))]]
		node.ReadStore(st, r, t, out, v, tb)
		if r.Table {
			tb++
		} else {
			v++
		}
	}
	return node.ReadInfo{}, nil
}

// groupRecord is one record of a group's log, copied off its replay.
type groupRecord struct {
	index uint64
	rec   []byte
	err   error
}

// replayGroups replays every group's archive into its store, merged by
// acknowledgement clock, calling at as ReplayTimed does.
func (j *Join) replayGroups(ctx context.Context, e *emitter) error {
	n := len(j.opts.Groups)
	chans := make([]chan groupRecord, n)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for g, gr := range j.opts.Groups {
		ch := make(chan groupRecord, 256)
		chans[g] = ch
		go func() {
			defer close(ch)
			err := gr.Archive.Replay(gr.Archive.FirstIndex(), func(index uint64, rec []byte) error {
				select {
				case ch <- groupRecord{index: index, rec: append([]byte(nil), rec...)}:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
			if err != nil && ctx.Err() == nil {
				ch <- groupRecord{err: fmt.Errorf("group %d: %w", g, err)}
			}
		}()
	}
	heads := make([]*groupRecord, n)
	clocks := make([]int64, n)   // each group's running maximum clock
	live := int64(math.MinInt64) // the running maximum clock of live changes
	next := func(g int) error {
		r, ok := <-chans[g]
		if !ok {
			heads[g] = nil
			return nil
		}
		if r.err != nil {
			return r.err
		}
		heads[g] = &r
		return nil
	}
	for g := range n {
		clocks[g] = math.MinInt64
		if err := next(g); err != nil {
			return err
		}
	}
	for {
		best, bestKey := -1, int64(math.MaxInt64)
		for g, h := range heads {
			if h == nil {
				continue
			}
			key := clocks[g]
			if c, _, err := store.RecordClock(h.rec); err == nil {
				key = max(key, c)
			}
			if best < 0 || key < bestKey {
				best, bestKey = g, key
			}
		}
		if best < 0 {
			return nil
		}
		h := heads[best]
		clocks[best] = bestKey
		if !(j.opts.AllowPartial && store.IsLostRecord(h.rec)) {
			if err := j.gs.stores[best].ReplayTimed(h.index, h.rec, e.at); err != nil {
				return fmt.Errorf("group %d: %w", best, err)
			}
			// A live change took every group past its time: an import
			// into another group after it defers what it predates.
			if c, backfill, err := store.RecordClock(h.rec); err == nil && !backfill && c > live {
				live = c
				for g, st := range j.gs.stores {
					if g != best {
						st.AdvanceLiveClock(c)
					}
				}
			}
		}
		e.records++
		if e.err == nil && e.records&1023 == 0 {
			e.err = ctx.Err()
		}
		if e.err != nil {
			return e.err
		}
		if err := next(best); err != nil {
			return err
		}
	}
}
