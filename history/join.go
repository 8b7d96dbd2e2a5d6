package history

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/tabular"
)

// Archive is the event archive a join replays: *wal.Log (a running node's
// own log) and *wal.Archive (a log directory, read-only) are both one.
type Archive interface {
	FirstIndex() uint64
	Replay(from uint64, fn func(index uint64, rec []byte) error) error
}

// ErrPartialArchive refuses a join over an archive whose oldest records
// were removed (by retention): its windows would silently miss events.
var ErrPartialArchive = errors.New("the archive no longer starts at the log's first record")

// Options configure a join.
type Options struct {
	Repo    *features.Repo // the repo the archive was written under
	Service string
	Archive Archive
	// Groups, instead of Archive, is a cluster's archive: one per replica
	// group (see Group).
	Groups []Group
	// AllowPartial joins over an archive that lacks its oldest records:
	// windows reaching before the archive's start miss those events.
	AllowPartial bool
	// Progress, if set, is called about every 64k rows and once at the end.
	Progress func(Progress)
}

// Progress says how far a join is.
type Progress struct {
	Rows, Total int    // spine rows written, of all
	Records     uint64 // archive records replayed
}

// Stats say what a join did.
type Stats struct {
	Rows    int
	Records uint64 // archive records replayed
	Elapsed time.Duration
}

// Join is one point-in-time join: a fresh node that replays the archive,
// and the reader of the service's vector. Run it once.
type Join struct {
	opts    Options
	service string
	n       *node.Node
	pr      *node.PointReader
	gs      *groupStores // a cluster's join: the groups' stores
}

// New prepares a join of opts.Service. It fails for an unknown service.
func New(opts Options) (*Join, error) {
	if opts.Repo == nil || (opts.Archive == nil) == (len(opts.Groups) == 0) {
		return nil, errors.New("history: a join needs a repo and an archive (or a cluster's group archives)")
	}
	found := false
	for _, s := range opts.Repo.Services {
		found = found || s.Name == opts.Service
	}
	if !found {
		return nil, &UnknownServiceError{Service: opts.Service, Repo: opts.Repo}
	}
	repo := withoutModels(opts.Repo)
	nopts := node.Options{ApplyWorkers: runtime.GOMAXPROCS(0), SkipRemoved: true}
	var gs *groupStores
	if len(opts.Groups) > 0 {
		var err error
		if gs, err = newGroupStores(repo, opts.Groups, runtime.GOMAXPROCS(0)); err != nil {
			return nil, err
		}
		nopts.Cluster = gs
	}
	n, err := node.New(repo, node.DefaultConfig(), nopts)
	if err != nil {
		return nil, err
	}
	pr, err := n.PointReader(opts.Service)
	if err != nil {
		return nil, err
	}
	return &Join{opts: opts, service: opts.Service, n: n, pr: pr, gs: gs}, nil
}

// UnknownServiceError names a service the repo does not have.
type UnknownServiceError struct {
	Service string
	Repo    *features.Repo
}

func (e *UnknownServiceError) Error() string {
	var names []string
	for _, s := range e.Repo.Services {
		names = append(names, s.Name)
	}
	return fmt.Sprintf("unknown feature service %q: the repo has %v", e.Service, names)
}

// withoutModels copies repo without its models: a join computes features,
// and must not need the model files.
func withoutModels(repo *features.Repo) *features.Repo {
	c := *repo
	c.Services = make([]*features.Service, len(repo.Services))
	for i, s := range repo.Services {
		sc := *s
		sc.Model = nil
		c.Services[i] = &sc
	}
	return &c
}

// CheckArchive returns an error wrapping ErrPartialArchive when the archive
// no longer starts at the log's first record and partial history is not
// allowed (Run checks it too).
func (j *Join) CheckArchive() error {
	for g, gr := range j.opts.Groups {
		if first := gr.Archive.FirstIndex(); first > 1 && !j.opts.AllowPartial {
			return fmt.Errorf("%w: group %d's log starts at entry %d (compacted after a snapshot); allow partial history to join anyway", ErrPartialArchive, g, first)
		}
	}
	if j.opts.Archive == nil {
		return nil
	}
	if first := j.opts.Archive.FirstIndex(); first > 1 && !j.opts.AllowPartial {
		return fmt.Errorf("%w: it starts at record %d (older segments were removed by retention); allow partial history to join anyway", ErrPartialArchive, first)
	}
	return nil
}

// Columns are the output's columns: the spine's, then the service's
// features named as get-features names them.
func (j *Join) Columns(s *Spine) []tabular.Column {
	return append(append([]tabular.Column(nil), s.cols...), j.pr.Features()...)
}

// Run replays the archive and writes each spine row, with its features as
// of its time, to w (whose columns are Columns(s)), in time order. It does
// not close w. ctx cancels it between records and between batches of rows.
func (j *Join) Run(ctx context.Context, s *Spine, w tabular.Writer) (Stats, error) {
	start := time.Now()
	if err := j.CheckArchive(); err != nil {
		return Stats{}, err
	}
	e := &emitter{j: j, s: s, w: w, ctx: ctx, clock: math.MinInt64}
	if err := e.prepare(); err != nil {
		return Stats{}, err
	}
	if j.gs != nil {
		err := j.replayGroups(ctx, e)
		if err == nil {
			e.emitUpTo(math.MaxInt64)
			err = e.err
		}
		return Stats{Rows: e.next, Records: e.records, Elapsed: time.Since(start)}, err
	}
	first := j.opts.Archive.FirstIndex()
	err := j.opts.Archive.Replay(first, func(index uint64, rec []byte) error {
		if j.opts.AllowPartial && store.IsLostRecord(rec) {
			return nil // a change only a snapshot held: partial history skips it
		}
		if err := j.n.ReplayTimed(index, rec, e.at); err != nil {
			if errors.Is(err, store.ErrLostRecords) {
				// Rows already written precede the gap and are right; the
				// rest would silently miss its changes.
				return fmt.Errorf("%w: %v; allow partial history to join anyway", ErrPartialArchive, err)
			}
			return err
		}
		e.records++
		if e.err == nil && e.records&1023 == 0 {
			e.err = ctx.Err()
		}
		return e.err
	})
	if err == nil {
		e.emitUpTo(math.MaxInt64)
		err = e.err
	}
	if j.opts.Progress != nil {
		j.opts.Progress(Progress{Rows: e.next, Total: s.n, Records: e.records})
	}
	return Stats{Rows: e.next, Records: e.records, Elapsed: time.Since(start)}, err
}

// emitter writes spine rows as the replay's clock passes them.
type emitter struct {
	j       *Join
	s       *Spine
	w       tabular.Writer
	ctx     context.Context
	clock   int64 // running maximum of the clocks seen
	next    int   // position in s.order of the next row to write
	records uint64
	err     error

	readers []*rowReader      // one per core: rows due together are read in parallel
	rows    [][]tabular.Value // a batch of output rows
}

// parallelRows is the smallest batch of due rows read on several cores.
var parallelRows = 16

// batchRows bounds the output rows held at once.
const batchRows = 4096

// rowReader reads spine rows' vectors; each reader is used by one goroutine.
type rowReader struct {
	pr    *node.PointReader
	keys  [][]byte
	kbuf  [][]byte
	ctx   []float64
	ctxOK []bool
}

func (e *emitter) prepare() error {
	workers := runtime.GOMAXPROCS(0)
	for k := range workers {
		pr := e.j.pr
		if k > 0 {
			var err error
			if pr, err = e.j.n.PointReader(e.j.service); err != nil {
				return err
			}
		}
		nk, nc := len(e.s.keyCol), len(e.s.ctxCol)
		e.readers = append(e.readers, &rowReader{pr: pr, keys: make([][]byte, nk), kbuf: make([][]byte, nk),
			ctx: make([]float64, nc), ctxOK: make([]bool, nc)})
	}
	return nil
}

// at is called before the archive's state changes as of clock c: rows at
// or before c are written first, from the state before the change. It
// returns the time of the next row to write.
func (e *emitter) at(c int64) int64 {
	if c > e.clock {
		e.clock = c
		if e.next < e.s.n && e.s.ts[e.s.order[e.next]] <= c {
			e.emitUpTo(c)
		}
	}
	if e.err != nil || e.next >= e.s.n {
		return math.MaxInt64
	}
	return e.s.ts[e.s.order[e.next]]
}

// emitUpTo writes the rows at or before c, in order, reading a large batch
// of them on every core (the state does not change meanwhile).
func (e *emitter) emitUpTo(c int64) {
	s := e.s
	for e.err == nil && e.next < s.n && s.ts[s.order[e.next]] <= c {
		if e.err = e.ctx.Err(); e.err != nil {
			return
		}
		k := 0
		for e.next+k < s.n && k < batchRows && s.ts[s.order[e.next+k]] <= c {
			k++
		}
		batch := s.order[e.next : e.next+k]
		for len(e.rows) < k {
			e.rows = append(e.rows, make([]tabular.Value, len(s.cols)+len(e.j.pr.Features())))
		}
		if g := len(e.readers); g > 1 && k >= parallelRows {
			var wg sync.WaitGroup
			for w := range g {
				lo, hi := w*k/g, (w+1)*k/g
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := lo; i < hi; i++ {
						e.readers[w].read(s, int(batch[i]), e.rows[i])
					}
				}()
			}
			wg.Wait()
		} else {
			for i, r := range batch {
				e.readers[0].read(s, int(r), e.rows[i])
			}
		}
		for i := range k {
			if err := e.w.Write(e.rows[i]); err != nil {
				e.err = err
				return
			}
			e.next++
			if e.next&0xffff == 0 && e.j.opts.Progress != nil {
				e.j.opts.Progress(Progress{Rows: e.next, Total: s.n, Records: e.records})
			}
		}
	}
}

// read fills dst with spine row r's columns and its features as of its time.
func (rr *rowReader) read(s *Spine, r int, dst []tabular.Value) {
	for i, col := range s.keyCol {
		rr.keys[i] = rr.key(s, i, col, r)
	}
	var v tabular.Value
	for i, col := range s.ctxCol {
		s.data[col].get(s.cols[col].Type, r, &v)
		contextValue(s.cols[col].Type, &v, rr.ctx[i:i+1], rr.ctxOK[i:i+1])
	}
	for c := range s.cols {
		s.data[c].get(s.cols[c].Type, r, &dst[c])
	}
	rr.pr.Read(rr.keys, rr.ctx, rr.ctxOK, s.ts[r], dst[len(s.cols):])
}

// key returns join key i of row r as get-features reads it: text as it is,
// an integer as its decimal text.
func (rr *rowReader) key(s *Spine, i, col, r int) []byte {
	d := &s.data[col]
	if s.cols[col].Type == tabular.Int64 {
		rr.kbuf[i] = strconv.AppendInt(rr.kbuf[i][:0], d.ints[r], 10)
	} else {
		rr.kbuf[i] = append(rr.kbuf[i][:0], d.strs[r]...)
	}
	return rr.kbuf[i]
}
