package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// SyncPolicy says when appended records are fsynced.
type SyncPolicy uint8

// Sync policies; see the package doc for what each may lose.
const (
	SyncAlways   SyncPolicy = iota // Append returns after fsync (the default)
	SyncInterval                   // fsync every Options.SyncEvery
	SyncNever                      // tests and benchmarks only
)

// ParseSyncPolicy reads "always", "interval" or "never".
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch s {
	case "always", "":
		return SyncAlways, nil
	case "interval":
		return SyncInterval, nil
	case "never":
		return SyncNever, nil
	}
	return 0, fmt.Errorf("fsync policy %q: use always, interval or never", s)
}

// Options configure a log.
type Options struct {
	FS FS // nil: the OS
	// SegmentSize is the size at which the log rolls to a new segment
	// (default 64 MiB, at most 4 GiB). Segments are preallocated to it.
	SegmentSize int64
	Sync        SyncPolicy
	SyncEvery   time.Duration // for SyncInterval; default 100ms
	// Compress zstd-compresses sealed segments in the background; they stay
	// readable by Replay and Get (they are the event archive).
	Compress bool
	// Metrics receives fsync latency, bytes, appends and segments; nil for none.
	Metrics *metrics.Set
	// MaxRecordBytes is the largest record Append takes (default and at
	// most the package's MaxRecordBytes, what a reader takes).
	MaxRecordBytes int
	// Synced, if set, returns an index through which the log is known to
	// have been fsynced by an earlier run (a node's newest snapshot: one is
	// written only after the log is synced through it), or 0. Open calls it
	// only under SyncInterval or SyncNever, and only when the last segment
	// has a bad frame with complete writes after it: a bad frame at or
	// before that index is not what a power loss leaves but corruption of
	// synced records, refused as under SyncAlways rather than cut with the
	// records after it (TailCut).
	Synced func() (uint64, error)
}

// MaxRecordBytes is the largest record a log takes: 1 GiB.
const MaxRecordBytes = maxRecord

// Errors returned by the log.
var (
	// ErrClosed is returned by operations on a closed log.
	ErrClosed = errors.New("wal: log is closed")
	// ErrRecordTooLarge is returned by an Append of a record over
	// Options.MaxRecordBytes; nothing is written, and the log stays as it
	// was (the change is too big, not the log broken).
	ErrRecordTooLarge = errors.New("wal: record over the log's size limit")
	// ErrNotFound is returned by Get for an index outside
	// [FirstIndex, LastIndex].
	ErrNotFound = errors.New("wal: no record at that index")
)

// Log is an open write-ahead log. It is safe for concurrent use.
type Log struct {
	dir  string
	opts Options
	fs   FS

	reqs chan *appendReq
	quit chan struct{}
	done chan struct{}

	// wmu is held by the writer for each group commit and by Sync and the
	// truncations: whoever holds it owns the segment files.
	wmu  sync.Mutex
	pend []uint32

	mu       sync.Mutex // guards the fields below, read by other goroutines
	segs     []segmentInfo
	active   File
	segFirst uint64
	offs     []uint32 // offset of every published frame of the active segment
	off      int64    // write offset in the active segment
	next     uint64   // index of the next record
	broken   error    // sticky: a failed write or fsync
	retry    error    // a failed roll, retried (see rollPending)
	closed   bool

	// Owned by whoever holds wmu. dirf is the directory, held open so that
	// syncing it needs no new file descriptor (nil: the FS cannot open a
	// directory, and FS.SyncDir is used). spare is the next segment's file,
	// created and preallocated ahead of the roll that needs it (nil: making
	// it failed; the roll makes its own). rollPending: a roll failed before
	// anything was written to the new segment; the active segment stays
	// sealed to writes until a roll succeeds.
	dirf        File
	spare       File
	rollPending bool

	tailCut TailCut // what Open cut, past a bad frame with writes after it

	cache      segCache
	compressWG sync.WaitGroup
	m          logMetrics
}

type logMetrics struct {
	errors   map[string]*metrics.Counter // by ErrorKind
	fsync    *metrics.Histogram
	bytes    *metrics.Counter
	records  *metrics.Counter
	groups   *metrics.Counter
	segments *metrics.Counter
	compress *metrics.Counter
}

type appendReq struct {
	recs [][]byte
	last uint64
	err  error
	done chan struct{}
}

var reqPool = sync.Pool{New: func() any { return &appendReq{done: make(chan struct{}, 1)} }}

// Open opens (or creates) the log in dir. It verifies the last segment,
// truncates its torn tail, and refuses corruption of acknowledged records
// there with a *CorruptionError (sealed segments are verified when Replay or
// Get reads them). Leftover temporary files of an interrupted compression or
// rewrite are removed.
func Open(dir string, opts Options) (*Log, error) {
	if opts.FS == nil {
		opts.FS = OS
	}
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = 64 << 20
	}
	if opts.MaxRecordBytes <= 0 || opts.MaxRecordBytes > maxRecord {
		opts.MaxRecordBytes = maxRecord
	}
	if opts.SegmentSize > maxSegmentSize {
		return nil, fmt.Errorf("wal: segment size %d is above the 4 GiB limit", opts.SegmentSize)
	}
	if opts.SyncEvery <= 0 {
		opts.SyncEvery = 100 * time.Millisecond
	}
	l := &Log{dir: dir, opts: opts, fs: opts.FS, reqs: make(chan *appendReq, 4096), quit: make(chan struct{}), done: make(chan struct{})}
	l.initMetrics()
	if err := l.fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", dir, err)
	}
	if err := removeTemps(l.fs, dir); err != nil {
		return nil, err
	}
	segs, err := listSegments(l.fs, dir)
	if err != nil {
		return nil, fmt.Errorf("wal: list %s: %w", dir, err)
	}
	if d, err := l.fs.OpenFile(dir, os.O_RDONLY, 0); err == nil {
		l.dirf = d
	}
	if err := l.recoverTail(segs); err != nil {
		if l.active != nil {
			l.active.Close()
		}
		l.closeFiles()
		return nil, err
	}
	l.prepareSpare()
	go l.writer()
	if opts.Compress {
		segs := l.segs
		for i, s := range segs[:len(segs)-1] {
			if !s.compressed {
				l.compressLater(s, segs[i+1].first)
			}
		}
	}
	return l, nil
}

func removeTemps(fsys FS, dir string) error {
	ents, err := fsys.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("wal: list %s: %w", dir, err)
	}
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".wal.tmp") || strings.HasSuffix(n, ".wal.zst.tmp") {
			if err := fsys.Remove(filepath.Join(dir, n)); err != nil {
				return fmt.Errorf("wal: remove leftover %s: %w", n, err)
			}
		}
	}
	return nil
}

func (l *Log) initMetrics() {
	s := l.opts.Metrics
	if s == nil {
		s = metrics.NewSet()
	}
	l.m = logMetrics{
		fsync:    s.GetOrCreateHistogram("tally_wal_fsync_seconds"),
		bytes:    s.GetOrCreateCounter("tally_wal_bytes_total"),
		records:  s.GetOrCreateCounter("tally_wal_records_total"),
		groups:   s.GetOrCreateCounter("tally_wal_group_commits_total"),
		segments: s.GetOrCreateCounter("tally_wal_segments_created_total"),
		compress: s.GetOrCreateCounter("tally_wal_compress_errors_total"),
		errors:   map[string]*metrics.Counter{},
	}
	for _, k := range errorKinds {
		l.m.errors[k] = s.GetOrCreateCounter(fmt.Sprintf(`tally_wal_errors_total{kind=%q}`, k))
	}
	s.GetOrCreateGauge("tally_wal_durable", func() float64 {
		if l.Err() != nil {
			return 0
		}
		return 1
	})
}

// tailCheck is what the newest segment's bytes say, read by the rules of
// the package doc ("Torn writes", "Corruption"). Open, Repair and Inspect
// all classify the newest segment with checkTail, so they never disagree.
type tailCheck struct {
	res scanResult
	// fresh: the segment's header never reached the disk and the file
	// holds only zeros (a crash while it was created); Open creates it again.
	fresh bool
	// bad is a bad frame that is not a torn tail: corruption of
	// acknowledged records. When later is set, what proves it is a
	// complete write after the bad frame, which only SyncAlways makes
	// proof (Open cuts there under the other policies: TailCut).
	bad   *CorruptionError
	later bool
}

// checkTail classifies segment s as the newest of its log. It only reads.
// An error is an OS error (the segment could not be read), never a
// *CorruptionError: corruption is in tailCheck.bad.
func checkTail(fsys FS, dir string, s segmentInfo) (tailCheck, error) {
	res, err := scanSegment(fsys, dir, s)
	var bad *CorruptionError
	if errors.As(err, &bad) { // a bad segment header
		none := scanResult{end: headerSize, next: s.first, commitEnd: headerSize, commitIdx: s.first, err: errEnd}
		if bad.Offset == 0 && !s.compressed {
			empty, zerr := zeroAfter(fsys, filepath.Join(dir, s.name), 0)
			if zerr != nil {
				return tailCheck{}, fmt.Errorf("wal: scan %s: %w", s.name, zerr)
			}
			if empty {
				return tailCheck{res: none, fresh: true}, nil
			}
		}
		return tailCheck{res: none, bad: bad}, nil
	}
	if err != nil {
		return tailCheck{}, err
	}
	tc := tailCheck{res: res}
	if s.compressed { // sealed: it cannot be torn
		errors.As(res.err, &tc.bad)
		return tc, nil
	}
	f, err := fsys.OpenFile(filepath.Join(dir, s.name), os.O_RDONLY, 0)
	if err != nil {
		return tailCheck{}, fmt.Errorf("wal: open %s: %w", s.name, err)
	}
	defer f.Close()
	later, err := laterWrite(f, res.end, res.next)
	if err != nil {
		return tailCheck{}, fmt.Errorf("wal: scan %s: %w", s.name, err)
	}
	if later {
		tc.later = true
		if !errors.As(res.err, &tc.bad) {
			tc.bad = &CorruptionError{Segment: s.name, Offset: res.end, Index: res.next, Reason: "zeroed frame followed by later writes"}
		}
	}
	return tc, nil
}

// recoverTail scans the last segment, truncates a torn tail, and opens it
// for appending (or starts a new segment after a compressed one).
func (l *Log) recoverTail(segs []segmentInfo) error {
	if len(segs) == 0 {
		return l.newSegment(1)
	}
	last := segs[len(segs)-1]
	l.segs = segs[:len(segs)-1]
	tc, err := checkTail(l.fs, l.dir, last)
	if err != nil {
		return err
	}
	if tc.fresh {
		return l.newSegment(last.first)
	}
	// Only under SyncAlways does a later complete write prove the bad frame
	// was acknowledged (see laterWrite); under the other policies a power
	// loss keeps unsynced pages in any order, and the tail after the first
	// bad frame is a torn one: it is cut, but a copy of the segment is kept
	// aside first (TailCut), in case the bad frame was real corruption.
	if tc.bad != nil && !(tc.later && l.opts.Sync != SyncAlways) {
		return tc.bad
	}
	if tc.bad != nil && l.opts.Synced != nil {
		synced, err := l.opts.Synced()
		if err != nil {
			return fmt.Errorf("wal: %s has an unreadable record with complete writes after it, and what the log synced before is not known: %w", last.name, err)
		}
		if tc.bad.Index <= synced {
			return tc.bad // synced before: no power loss tore it
		}
	}
	res := tc.res
	l.segs = segs
	if last.compressed {
		if res.err != errEnd || res.commitEnd != res.end {
			return res.err
		}
		return l.newSegment(res.next)
	}
	if tc.bad != nil {
		aside := filepath.Join(l.dir, fmt.Sprintf("corrupt-%d", time.Now().UnixNano()))
		err := l.fs.MkdirAll(aside, 0o755)
		if err == nil {
			err = copyFile(l.fs, filepath.Join(l.dir, last.name), filepath.Join(aside, last.name))
		}
		if err == nil {
			err = l.fs.SyncDir(aside)
		}
		if err == nil { // the new directory's entry: the cut relies on the copy
			err = l.syncDir()
		}
		if err != nil {
			return fmt.Errorf("wal: keep a copy of %s before cutting its unreadable tail: %w", last.name, err)
		}
		l.tailCut = TailCut{Segment: last.name, Index: res.commitIdx, Aside: aside}
	}
	f, err := l.fs.OpenFile(filepath.Join(l.dir, last.name), os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("wal: open %s: %w", last.name, err)
	}
	torn := res.err != errEnd || res.commitEnd != res.end
	if !torn {
		// A clean end can still have bytes of a lost write after it (a
		// crash kept a later sector but not the first): zero them, or an
		// append that happens to end where one of their frames begins
		// would bring that frame back, with the index it expects.
		clean, err := zeroAfter(l.fs, filepath.Join(l.dir, last.name), res.end)
		if err != nil {
			f.Close()
			return fmt.Errorf("wal: scan %s: %w", last.name, err)
		}
		torn = !clean
	}
	if torn {
		// A torn tail: cut back to the end of the last complete write.
		if err := cutPlain(f, res.commitEnd, -1, l.opts.SegmentSize); err != nil {
			f.Close()
			return fmt.Errorf("wal: truncate torn tail of %s at %d: %w", last.name, res.commitEnd, err)
		}
	}
	l.active, l.segFirst, l.off, l.next = f, last.first, res.commitEnd, res.commitIdx
	l.offs = res.offs[:res.commitIdx-last.first]
	return nil
}

// TailCut says what Open cut from the log's last segment past a bad frame
// that had complete writes after it, which only a policy other than
// SyncAlways allows (a power loss keeps unsynced pages in any order). The
// segment as it was is kept in Aside.
type TailCut struct {
	Segment string // the segment cut
	Index   uint64 // the log goes on from this index; records from it on were cut
	Aside   string // the directory holding the uncut copy; "" when nothing was cut
}

// TailCut reports what Open cut past a bad frame (see TailCut); its Aside
// is "" when it cut nothing of the kind (a torn tail of zeros is cut
// without a report).
func (l *Log) TailCut() TailCut { return l.tailCut }

// zeroAfter reports whether the file holds only zeros after off; a read
// that fails is an error, never a yes.
func zeroAfter(fsys FS, path string, off int64) (bool, error) {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		n, err := f.ReadAt(buf, off)
		for _, b := range buf[:n] {
			if b != 0 {
				return false, nil
			}
		}
		off += int64(n)
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		if n == 0 {
			return true, nil
		}
	}
}

// cutPlain makes a plain segment end at off: the bytes after it become
// zeros again (preallocated up to size where the disk has room), the frame at lastFrame (if >= 0)
// is marked as ending a write, and the file is fsynced.
func cutPlain(f File, off, lastFrame, size int64) error {
	if err := f.Truncate(off); err != nil {
		return err
	}
	if lastFrame >= 0 {
		var w [4]byte
		if _, err := f.ReadAt(w[:], lastFrame); err != nil {
			return err
		}
		binary.LittleEndian.PutUint32(w[:], binary.LittleEndian.Uint32(w[:])|commitFlag)
		if _, err := f.WriteAt(w[:], lastFrame); err != nil {
			return err
		}
	}
	if size > off {
		// A cut must not fail for want of space (it frees some): on a full
		// disk the file is left to grow as it is written, and a write that
		// then finds no room fails as any write does.
		if err := f.Preallocate(size); err != nil {
			if err := f.Truncate(size); err != nil {
				return err
			}
		}
	}
	return f.Sync()
}

// spareName is the next segment's file before a roll renames it into place.
// Open removes it with the other temporary files.
const spareName = "next.wal.tmp"

// createSpare creates and preallocates the next segment's file.
func (l *Log) createSpare() (File, error) {
	path := filepath.Join(l.dir, spareName)
	f, err := l.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", spareName, err)
	}
	if err := f.Preallocate(l.opts.SegmentSize); err != nil {
		f.Close()
		l.fs.Remove(path)
		return nil, fmt.Errorf("wal: preallocate %s: %w", spareName, err)
	}
	return f, nil
}

// prepareSpare makes the next segment's file ahead of the roll that needs
// it, so that a roll opens no file: a client holding every file descriptor
// the process may have, or a full disk, is met here, where failing costs
// nothing (the roll then makes the file itself).
func (l *Log) prepareSpare() {
	if l.spare == nil {
		l.spare, _ = l.createSpare()
	}
}

// syncDir fsyncs the log directory, through the handle held open if any.
func (l *Log) syncDir() error {
	if l.dirf != nil {
		return l.dirf.Sync()
	}
	return l.fs.SyncDir(l.dir)
}

// closeFiles closes the directory handle and removes the spare.
func (l *Log) closeFiles() {
	if l.spare != nil {
		l.spare.Close()
		l.fs.Remove(filepath.Join(l.dir, spareName))
		l.spare = nil
	}
	if l.dirf != nil {
		l.dirf.Close()
		l.dirf = nil
	}
}

// retryable marks a failure that changed nothing the log holds: creating
// a new segment failed before any record was written to it, and the
// half-made file is gone. The log retries instead of breaking.
type retryable struct{ err error }

func (e retryable) Error() string { return e.err.Error() }
func (e retryable) Unwrap() error { return e.err }

// newSegment makes the segment starting at first the active one: the
// spare file (or a new one) gets its header, is fsynced, renamed into place,
// and the directory fsynced. The previous active file is the caller's. An
// error is retryable when the half-made file could be removed.
func (l *Log) newSegment(first uint64) error {
	name := segmentName(first)
	spare, path := filepath.Join(l.dir, spareName), filepath.Join(l.dir, name)
	f := l.spare
	l.spare = nil
	if f == nil {
		var err error
		if f, err = l.createSpare(); err != nil {
			return retryable{err}
		}
	}
	at := spare
	undo := func(err error) error {
		f.Close()
		if rerr := l.fs.Remove(at); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return fmt.Errorf("%w (and removing the unfinished %s failed: %v)", err, filepath.Base(at), rerr)
		}
		return retryable{err}
	}
	if _, err := f.WriteAt(segmentHeader(first), 0); err != nil {
		return undo(fmt.Errorf("wal: write %s header: %w", name, err))
	}
	if err := f.Sync(); err != nil {
		return undo(fmt.Errorf("wal: sync %s: %w", name, err))
	}
	if err := l.fs.Rename(spare, path); err != nil {
		return undo(fmt.Errorf("wal: rename %s to %s: %w", spareName, name, err))
	}
	at = path
	if err := l.syncDir(); err != nil {
		return undo(fmt.Errorf("wal: sync dir %s: %w", l.dir, err))
	}
	l.mu.Lock()
	l.segs = append(l.segs, segmentInfo{first: first, name: name})
	l.active, l.segFirst, l.off, l.next, l.offs = f, first, headerSize, first, nil
	l.retry = nil
	l.mu.Unlock()
	l.rollPending = false
	l.m.segments.Inc()
	l.prepareSpare()
	return nil
}

// Append writes recs as consecutive records and returns the index of the
// last. It returns once they are durable per the sync policy; concurrent
// callers share writes and fsyncs. The records of one call land in one
// segment, and after a crash either all of them are in the log or none.
// On error nothing of recs is acknowledged (LastIndex, Get and Replay do not
// show them; after a reopen they may be there, whole). A failed write or
// fsync breaks the log: it refuses every later Append, and must be reopened
// to recover. A failure to start a new segment (no file descriptor left, a
// full disk) does not: nothing was written, and the next Append (or the
// writer, every second) tries again; Err says which state the log is in.
// recs may be reused once Append returns.
func (l *Log) Append(recs ...[]byte) (last uint64, err error) {
	if len(recs) == 0 {
		return l.LastIndex(), nil
	}
	for _, r := range recs {
		if len(r) > l.opts.MaxRecordBytes {
			return 0, fmt.Errorf("%w: a record of %d bytes, over the %d-byte limit", ErrRecordTooLarge, len(r), l.opts.MaxRecordBytes)
		}
	}
	req := reqPool.Get().(*appendReq)
	req.recs, req.err, req.last = recs, nil, 0
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		reqPool.Put(req)
		return 0, ErrClosed
	}
	if l.broken != nil {
		err := l.broken
		l.mu.Unlock()
		reqPool.Put(req)
		return 0, err
	}
	l.mu.Unlock()
	select {
	case l.reqs <- req:
	case <-l.done:
		reqPool.Put(req)
		return 0, ErrClosed
	}
	<-req.done
	last, err = req.last, req.err
	req.recs = nil
	reqPool.Put(req)
	return last, err
}

// writer is the single goroutine that writes: it takes every request
// waiting, writes them with one write per segment and one fsync, then
// releases them all (group commit).
func (l *Log) writer() {
	defer close(l.done)
	var tick <-chan time.Time
	if l.opts.Sync == SyncInterval {
		ticker := time.NewTicker(l.opts.SyncEvery)
		defer ticker.Stop()
		tick = ticker.C
	}
	retry := time.NewTicker(retryEvery)
	defer retry.Stop()
	var group []*appendReq
	var buf []byte
	for {
		select {
		case <-l.quit:
			// Drain requests that made it into the queue.
			for {
				select {
				case r := <-l.reqs:
					group = append(group[:0], r)
					buf = l.commit(group, buf)
				default:
					return
				}
			}
		case <-tick:
			l.Sync()
			continue
		case <-retry.C:
			l.retryRoll()
			continue
		case r := <-l.reqs:
			group = append(group[:0], r)
		}
	more:
		for len(group) < 1024 {
			select {
			case r := <-l.reqs:
				group = append(group, r)
			default:
				break more
			}
		}
		buf = l.commit(group, buf)
		clear(group)
	}
}

// retryEvery is how often the writer retries a failed roll while no
// Append does.
const retryEvery = time.Second

// fail breaks the log for good (until reopened).
func (l *Log) fail(err error) {
	l.m.errors[ErrorKind(err)].Inc()
	l.mu.Lock()
	if l.broken == nil {
		l.broken = err
	}
	l.mu.Unlock()
}

// failed records err from a write or a roll, with wmu held: a retryable
// one leaves the log waiting to roll again, any other breaks it.
func (l *Log) failed(err error) {
	var r retryable
	if !errors.As(err, &r) {
		l.fail(err)
		return
	}
	l.m.errors[ErrorKind(err)].Inc()
	l.mu.Lock()
	l.retry = err
	l.mu.Unlock()
	l.rollPending = true
}

// retryRoll retries a failed roll, so that the log recovers (Err returns
// nil again) without waiting for an Append.
func (l *Log) retryRoll() {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	ok := l.rollPending && l.broken == nil && !l.closed && l.active != nil
	next, end := l.next, l.off
	l.mu.Unlock()
	if ok {
		if err := l.roll(next, end, l.pend[:0]); err != nil {
			l.failed(err)
		}
	}
}

// commit writes a group of requests and releases them. The requests made
// durable before a failure keep their indexes and succeed; the others get
// the error.
func (l *Log) commit(group []*appendReq, buf []byte) []byte {
	l.wmu.Lock()
	l.mu.Lock()
	err := l.broken
	l.mu.Unlock()
	done := 0
	if err == nil {
		buf, done, err = l.writeGroup(group, buf)
		if err != nil {
			l.failed(err)
		}
	}
	l.wmu.Unlock()
	if err != nil {
		for _, r := range group[done:] {
			r.err = err
		}
	}
	for _, r := range group {
		r.done <- struct{}{}
	}
	return buf
}

// writeGroup writes and (per the policy) fsyncs group. On error, done
// requests of it were made durable and published by a roll before it.
func (l *Log) writeGroup(group []*appendReq, buf []byte) (_ []byte, done int, _ error) {
	buf = buf[:0]
	pend := l.pend[:0]
	start := l.off // file offset of buf[0]
	next := l.next
	first := next
	lastFrame := 0
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		setCommit(buf, lastFrame)
		if _, err := l.active.WriteAt(buf, start); err != nil {
			return fmt.Errorf("wal: write %s at %d: %w", segmentName(l.segFirst), start, osCause(err))
		}
		l.m.bytes.Add(len(buf))
		start += int64(len(buf))
		buf = buf[:0]
		return nil
	}
	for i, r := range group {
		size := int64(0)
		for _, rec := range r.recs {
			size += int64(frameSize(len(rec)))
		}
		if at := start + int64(len(buf)); (at+size > l.opts.SegmentSize || l.rollPending) && at > headerSize {
			if err := flush(); err != nil {
				return buf, done, err
			}
			err := l.roll(next, start, pend)
			if l.next == next { // the records before were sealed: durable
				l.m.records.Add(int(next - first))
				done, first = i, next
			}
			if err != nil {
				return buf, done, err
			}
			pend, start = l.pend[:0], l.off
		}
		for _, rec := range r.recs {
			lastFrame = len(buf)
			pend = append(pend, uint32(start+int64(len(buf))))
			buf = appendFrame(buf, next, rec)
			next++
		}
		r.last = next - 1
	}
	if err := flush(); err != nil {
		return buf, done, err
	}
	if l.opts.Sync == SyncAlways {
		t := time.Now()
		if err := l.active.Sync(); err != nil {
			return buf, done, fmt.Errorf("wal: fsync %s: %w", segmentName(l.segFirst), osCause(err))
		}
		l.m.fsync.UpdateDuration(t)
	}
	l.mu.Lock()
	l.offs = append(l.offs, pend...)
	l.off, l.next = start, next
	l.mu.Unlock()
	l.pend = pend
	l.m.groups.Inc()
	l.m.records.Add(int(next - first))
	return buf, len(group), nil
}

// roll seals the active segment (fsynced, its frames pend published) and
// starts a new one at next. The sealed file goes to the Get cache. If the
// new segment cannot be made (a retryable error), the sealed one stays
// active, open, and takes no more writes: the next write rolls first.
func (l *Log) roll(next uint64, end int64, pend []uint32) error {
	old := l.active
	if err := old.Sync(); err != nil {
		return fmt.Errorf("wal: fsync %s: %w", segmentName(l.segFirst), osCause(err))
	}
	sealed := l.segs[len(l.segs)-1]
	l.mu.Lock()
	l.offs = append(l.offs, pend...)
	l.off, l.next = end, next
	idx := &segIndex{first: l.segFirst, offs: l.offs, end: end, r: old, c: old}
	l.mu.Unlock()
	l.pend = pend[:0]
	if err := l.newSegment(next); err != nil {
		var r retryable
		if !errors.As(err, &r) {
			old.Close()
		}
		return err
	}
	l.cache.put(idx)
	if l.opts.Compress {
		l.compressLater(sealed, next)
	}
	return nil
}

// osCause is the OS error inside err without its path: a segment's file
// was opened as next.wal.tmp and renamed, so the path an os.File error
// carries names the spare, not the segment (the caller names it).
func osCause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Err says why the log refuses appends now: the failure that broke it
// (reopen to recover), or the last failure to start a new segment (a
// descriptor or disk shortage), which the log retries before the next
// Append and every second until it succeeds. It is nil when the log
// accepts appends.
func (l *Log) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.broken != nil {
		return l.broken
	}
	return l.retry
}

// Error kinds, the label of tally_wal_errors_total: what to fix.
var errorKinds = []string{"enospc", "emfile", "enfile", "eio", "other"}

// ErrorKind names the cause of a log error: "enospc" (the disk or a quota
// is full), "emfile" (the process has no file descriptor left), "enfile"
// (the system has none left), "eio" (the device failed), "other".
func ErrorKind(err error) string {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return "enospc"
	case errors.Is(err, syscall.EMFILE):
		return "emfile"
	case errors.Is(err, syscall.ENFILE):
		return "enfile"
	case errors.Is(err, syscall.EIO):
		return "eio"
	}
	return "other"
}

// FirstIndex is the index of the oldest record kept (1 for a new log). It
// is LastIndex()+1 when the log holds no record.
func (l *Log) FirstIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.firstLocked()
}

func (l *Log) firstLocked() uint64 {
	if len(l.segs) == 0 { // a failed Reset or TruncateBack
		return l.next
	}
	return l.segs[0].first
}

// LastIndex is the index of the newest record (FirstIndex()-1, so 0 for a
// new log, when it holds none).
func (l *Log) LastIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next - 1
}

// Get returns a copy of the record at index (the caller owns it). Records
// of the active segment are read with one positioned read; for a sealed
// segment Get indexes it on first use and keeps the index (and, for a
// compressed segment, its decompressed bytes) in a cache of two segments.
func (l *Log) Get(index uint64) ([]byte, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	if index < l.firstLocked() || index >= l.next || l.active == nil {
		l.mu.Unlock()
		return nil, ErrNotFound
	}
	if index >= l.segFirst {
		i := index - l.segFirst
		end := l.off
		if i+1 < uint64(len(l.offs)) {
			end = int64(l.offs[i+1])
		}
		rec, err := readFrame(l.active, l.segFirst, int64(l.offs[i]), end, index)
		l.mu.Unlock()
		return rec, err
	}
	k := sort.Search(len(l.segs), func(k int) bool { return l.segs[k].first > index }) - 1
	seg := l.segs[k]
	l.mu.Unlock()
	return l.cache.get(l, seg, index)
}

// readFrame reads and verifies the frame of index at [off, end) of r.
func readFrame(r interface {
	ReadAt([]byte, int64) (int, error)
}, seg uint64, off, end int64, index uint64) ([]byte, error) {
	buf := make([]byte, end-off)
	if n, err := r.ReadAt(buf, off); n < len(buf) {
		return nil, fmt.Errorf("wal: read %s at %d: %w", segmentName(seg), off, err)
	}
	n := int64(binary.LittleEndian.Uint32(buf) &^ commitFlag)
	if n > int64(len(buf)-frameHdr) || frameCRC(index, buf[frameHdr:frameHdr+n]) != binary.LittleEndian.Uint32(buf[4:]) {
		return nil, &CorruptionError{Segment: segmentName(seg), Offset: off, Index: index, Reason: "checksum mismatch"}
	}
	return buf[frameHdr : frameHdr+n : frameHdr+n], nil
}

// Replay calls fn for every record from index from (at least FirstIndex)
// up to the LastIndex at the time of the call, in order, streaming one
// segment at a time through a 64 KiB buffer (a compressed segment through
// a streaming decoder). rec is valid only during fn. An error from fn stops
// the replay and is returned; corruption returns a *CorruptionError.
// Records dropped by a TruncateFront or TruncateBack running meanwhile may
// make it fail.
func (l *Log) Replay(from uint64, fn func(index uint64, rec []byte) error) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	segs := append([]segmentInfo(nil), l.segs...)
	end := l.next
	l.mu.Unlock()
	for i, s := range segs {
		if i+1 < len(segs) && segs[i+1].first <= from {
			continue
		}
		if s.first >= end {
			break
		}
		stop := end
		if i+1 < len(segs) {
			stop = min(end, segs[i+1].first)
		}
		if err := l.replaySegment(s, from, stop, fn); err != nil {
			return err
		}
	}
	return nil
}

// openSegment opens s for reading, following a compression that replaced
// its plain file since s was listed.
func (l *Log) openSegment(s segmentInfo) (*segmentReader, error) {
	sr, err := openSegmentReader(l.fs, l.dir, s)
	if errors.Is(err, os.ErrNotExist) && !s.compressed {
		s.name, s.compressed = s.name+".zst", true
		sr, err = openSegmentReader(l.fs, l.dir, s)
	}
	return sr, err
}

// replaySegment replays s's records in [from, end); the segment must hold
// every index up to end-1, or it is corrupt (a record lost in the middle).
func (l *Log) replaySegment(s segmentInfo, from, end uint64, fn func(uint64, []byte) error) error {
	sr, err := l.openSegment(s)
	if err != nil {
		return err
	}
	defer sr.close()
	for sr.next < end {
		idx := sr.next
		rec, err := sr.frame()
		if err == errEnd {
			return endsEarly(sr.name, sr.off, idx, end)
		}
		if err != nil {
			return err
		}
		if idx < from {
			continue
		}
		if err := fn(idx, rec); err != nil {
			return err
		}
	}
	return nil
}

func (l *Log) segmentAge(s segmentInfo) (time.Duration, error) {
	f, err := l.fs.OpenFile(filepath.Join(l.dir, s.name), os.O_RDONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("wal: open %s: %w", s.name, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("wal: stat %s: %w", s.name, err)
	}
	return time.Since(st.ModTime()), nil
}

// removeSegment deletes both forms of segment s.
func (l *Log) removeSegment(s segmentInfo) error {
	for _, name := range []string{segmentName(s.first), segmentName(s.first) + ".zst"} {
		if err := l.fs.Remove(filepath.Join(l.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("wal: remove %s: %w", name, err)
		}
	}
	return nil
}

// TruncateFront deletes the segments whose records all precede index
// (retention, once a snapshot covers them). It works on whole segments: up
// to a segment of records before index stays, and FirstIndex says where the
// log now starts. The active segment always stays.
func (l *Log) TruncateFront(index uint64) error {
	return l.truncateFront(index, 0)
}

// TruncateFrontOlderThan is TruncateFront for retention: it deletes the
// segments whose records all precede index and that were sealed at least
// keep ago (a segment's age is its file's modification time: when it was
// sealed, or compressed just after). It stops at the first segment too
// young to delete, so the log stays contiguous.
func (l *Log) TruncateFrontOlderThan(index uint64, keep time.Duration) error {
	return l.truncateFront(index, keep)
}

func (l *Log) truncateFront(index uint64, keep time.Duration) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.compressWG.Wait() // never race a compression of a dropped segment
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	segs := append([]segmentInfo(nil), l.segs...)
	l.mu.Unlock()
	n := 0
	for n+1 < len(segs) && segs[n+1].first <= index {
		if keep > 0 {
			age, err := l.segmentAge(segs[n])
			if err != nil {
				return err
			}
			if age < keep {
				break
			}
		}
		n++
	}
	drop := segs[:n]
	l.mu.Lock()
	l.segs = l.segs[n:]
	l.mu.Unlock()
	if len(drop) == 0 {
		return nil
	}
	l.cache.clear()
	for _, s := range drop {
		if err := l.removeSegment(s); err != nil {
			return err
		}
	}
	return l.syncDir()
}

// TruncateBack deletes every record after index (FirstIndex()-1 <= index);
// the next Append gets index+1. Segments after the one holding index are
// deleted newest first and that segment is cut (a compressed one is
// rewritten plain), so a crash in the middle leaves a prefix of the log as
// it was. It must not run concurrently with a Replay over the dropped
// records. An error leaves the log refusing appends until reopened.
func (l *Log) TruncateBack(index uint64) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.compressWG.Wait()
	l.mu.Lock()
	first, last, closed, broken := l.firstLocked(), l.next-1, l.closed, l.broken
	l.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case broken != nil:
		return broken
	case index >= last:
		return nil
	case index+1 < first:
		return fmt.Errorf("wal: truncate back to %d: the log starts at %d", index, first)
	}
	l.cache.clear()
	if err := l.truncateBack(index); err != nil {
		err = fmt.Errorf("wal: truncate back to %d: %w", index, err)
		l.fail(err)
		return err
	}
	return nil
}

func (l *Log) truncateBack(index uint64) error {
	cut := index + 1
	if cut == l.segs[0].first && len(l.segs) > 1 {
		// Nothing stays: delete newest first, start over at cut.
		l.active.Close()
		l.mu.Lock()
		l.active = nil
		segs := l.segs
		l.mu.Unlock()
		for j := len(segs) - 1; j >= 0; j-- {
			if err := l.removeSegment(segs[j]); err != nil {
				return err
			}
			l.mu.Lock()
			l.segs = segs[:j]
			l.mu.Unlock()
		}
		return l.newSegment(cut)
	}
	// The active segment holds cut: cut it in place.
	if cut > l.segFirst || (cut == l.segFirst && len(l.segs) == 1) {
		i := cut - l.segFirst
		off, lastFrame := int64(l.offs[i]), int64(-1)
		if i > 0 {
			lastFrame = int64(l.offs[i-1])
		}
		if err := cutPlain(l.active, off, lastFrame, l.opts.SegmentSize); err != nil {
			return err
		}
		l.mu.Lock()
		l.offs, l.off, l.next = l.offs[:i], off, cut
		l.mu.Unlock()
		return nil
	}
	// Otherwise delete newest first down to the segment holding index, which
	// becomes the active one.
	l.active.Close()
	l.mu.Lock()
	l.active = nil
	segs := l.segs
	l.mu.Unlock()
	k := sort.Search(len(segs), func(k int) bool { return segs[k].first > index }) - 1
	for j := len(segs) - 1; j > k; j-- {
		if err := l.removeSegment(segs[j]); err != nil {
			return err
		}
		l.mu.Lock()
		l.segs = segs[:j]
		l.mu.Unlock()
	}
	if err := l.syncDir(); err != nil {
		return err
	}
	s := segs[k]
	res, err := scanSegment(l.fs, l.dir, s)
	if err != nil {
		return err
	}
	if res.next <= index {
		if res.err != errEnd {
			return res.err
		}
		return &CorruptionError{Segment: s.name, Offset: res.end, Index: res.next, Reason: "segment ends before the record to keep"}
	}
	n := cut - s.first
	var off int64 = res.end
	if n < uint64(len(res.offs)) {
		off = int64(res.offs[n])
	}
	if s.compressed {
		frames, err := readPrefix(l.fs, l.dir, s, off)
		if err != nil {
			return err
		}
		if err := writeSegmentAtomically(l.fs, l.dir, s.first, frames); err != nil {
			return err
		}
		if err := l.fs.Remove(filepath.Join(l.dir, s.name)); err != nil {
			return err
		}
		s = segmentInfo{first: s.first, name: segmentName(s.first)}
	}
	f, err := l.fs.OpenFile(filepath.Join(l.dir, s.name), os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	if err := cutPlain(f, off, int64(res.offs[n-1]), l.opts.SegmentSize); err != nil {
		f.Close()
		return err
	}
	l.mu.Lock()
	l.segs[k] = s
	l.active, l.segFirst, l.offs, l.off, l.next = f, s.first, res.offs[:n], off, cut
	l.mu.Unlock()
	return nil
}

// Reset deletes every record; the next Append gets index next (>= 1).
// A Raft follower that installs a snapshot starts its log over this way.
// Segments are deleted oldest first, so a crash in the middle leaves a
// suffix of the log as it was, or an empty log.
func (l *Log) Reset(next uint64) error {
	if next == 0 {
		return errors.New("wal: reset: indexes start at 1")
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.compressWG.Wait()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	if l.broken != nil {
		l.mu.Unlock()
		return l.broken
	}
	segs := l.segs
	active := l.active
	l.active = nil
	l.mu.Unlock()
	l.cache.clear()
	active.Close()
	err := func() error {
		for i, s := range segs {
			if err := l.removeSegment(s); err != nil {
				return err
			}
			l.mu.Lock()
			l.segs = segs[i+1:]
			l.mu.Unlock()
		}
		return l.newSegment(next)
	}()
	if err != nil {
		err = fmt.Errorf("wal: reset to %d: %w", next, err)
		l.fail(err)
	}
	return err
}

// Segments returns how many segments the log holds.
func (l *Log) Segments() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.segs)
}

// Sync fsyncs the active segment now (useful under SyncInterval and
// SyncNever). A failure breaks the log like a failed Append.
func (l *Log) Sync() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	f, err := l.active, l.broken
	l.mu.Unlock()
	if err != nil || f == nil {
		return err
	}
	start := time.Now()
	if err := f.Sync(); err != nil {
		err = fmt.Errorf("wal: fsync %s: %w", segmentName(l.segFirst), osCause(err))
		l.fail(err)
		return err
	}
	l.m.fsync.UpdateDuration(start)
	return nil
}

// Close stops the writer after the appends already queued, fsyncs, waits
// for background compression and closes the files. Appends racing with
// Close fail with ErrClosed.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.quit)
	<-l.done
	l.compressWG.Wait()
	l.cache.clear()
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.active == nil {
		l.closeFiles()
		return l.broken
	}
	var err error
	if l.broken == nil && l.opts.Sync != SyncNever {
		err = l.active.Sync()
	}
	if cerr := l.active.Close(); err == nil {
		err = cerr
	}
	l.closeFiles()
	return err
}
