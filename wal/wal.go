package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
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
	FS          FS    // nil: the OS
	SegmentSize int64 // default 64 MiB
	Sync        SyncPolicy
	SyncEvery   time.Duration // for SyncInterval; default 100ms
	// Compress zstd-compresses sealed segments in the background; they stay
	// readable by Replay (they are the event archive).
	Compress bool
	// Metrics receives fsync latency, bytes, appends and segments; nil for none.
	Metrics *metrics.Set
}

// ErrClosed is returned by operations on a closed log.
var ErrClosed = errors.New("wal: log is closed")

// Log is an open write-ahead log. It is safe for concurrent use.
type Log struct {
	dir  string
	opts Options
	fs   FS

	reqs chan *appendReq
	quit chan struct{}
	done chan struct{}

	mu       sync.Mutex // guards the fields below, read by other goroutines
	segs     []segmentInfo
	active   File
	segFirst uint64
	off      int64  // write offset in the active segment
	next     uint64 // index of the next record
	broken   error  // sticky: a failed write or fsync
	closed   bool

	compressWG sync.WaitGroup
	m          logMetrics
}

type logMetrics struct {
	fsync    *metrics.Histogram
	bytes    *metrics.Counter
	records  *metrics.Counter
	groups   *metrics.Counter
	segments *metrics.Counter
	compress *metrics.Counter
}

func (m *logMetrics) compressErrors() *metrics.Counter { return m.compress }

type appendReq struct {
	recs [][]byte
	last uint64
	err  error
	done chan struct{}
}

var reqPool = sync.Pool{New: func() any { return &appendReq{done: make(chan struct{}, 1)} }}

// Open opens (or creates) the log in dir. It truncates a torn tail of the
// last segment and refuses corruption elsewhere with a *CorruptionError.
func Open(dir string, opts Options) (*Log, error) {
	if opts.FS == nil {
		opts.FS = OS
	}
	if opts.SegmentSize <= 0 {
		opts.SegmentSize = 64 << 20
	}
	if opts.SyncEvery <= 0 {
		opts.SyncEvery = 100 * time.Millisecond
	}
	l := &Log{dir: dir, opts: opts, fs: opts.FS, reqs: make(chan *appendReq, 4096), quit: make(chan struct{}), done: make(chan struct{})}
	l.initMetrics()
	if err := l.fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", dir, err)
	}
	segs, err := listSegments(l.fs, dir)
	if err != nil {
		return nil, fmt.Errorf("wal: list %s: %w", dir, err)
	}
	if err := l.recoverTail(segs); err != nil {
		return nil, err
	}
	go l.writer()
	if opts.Compress {
		for _, s := range l.segs[:len(l.segs)-1] {
			if !s.compressed {
				l.compressLater(s)
			}
		}
	}
	return l, nil
}

func (l *Log) initMetrics() {
	s := l.opts.Metrics
	if s == nil {
		s = metrics.NewSet()
	}
	l.m = logMetrics{
		fsync:    s.NewHistogram("tally_wal_fsync_seconds"),
		bytes:    s.NewCounter("tally_wal_bytes_total"),
		records:  s.NewCounter("tally_wal_records_total"),
		groups:   s.NewCounter("tally_wal_group_commits_total"),
		segments: s.NewCounter("tally_wal_segments_created_total"),
		compress: s.NewCounter("tally_wal_compress_errors_total"),
	}
}

// recoverTail scans the last segment, truncates a torn tail, and opens it
// for appending (or starts a new segment after a sealed one).
func (l *Log) recoverTail(segs []segmentInfo) error {
	if len(segs) == 0 {
		return l.newSegment(1)
	}
	last := segs[len(segs)-1]
	l.segs = segs
	sr, err := openSegmentReader(l.fs, l.dir, last)
	if err != nil {
		return err
	}
	var bad *CorruptionError
	for {
		_, err := sr.frame()
		if err == errEnd {
			// Zeros where the data ends — or a zeroed region in the middle,
			// which validFrameAfter tells apart below.
			bad = &CorruptionError{Segment: last.name, Offset: sr.off, Index: sr.next, Reason: "zeroed frame header followed by valid records"}
			break
		}
		if err != nil {
			if !errors.As(err, &bad) {
				sr.close()
				return err
			}
			break
		}
	}
	off, next := sr.off, sr.next
	sr.close()
	if last.compressed {
		if bad != nil && bad.Reason != "zeroed frame header followed by valid records" {
			return bad
		}
		return l.newSegment(next)
	}
	path := filepath.Join(l.dir, last.name)
	f, err := l.fs.OpenFile(path, os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("wal: open %s: %w", last.name, err)
	}
	atEnd := bad != nil && bad.Reason == "zeroed frame header followed by valid records"
	if bad != nil {
		if later, err := validFrameAfter(f, off, next); err != nil || later {
			f.Close()
			if err != nil {
				return err
			}
			return bad
		}
	}
	if bad != nil && !atEnd {
		// A torn tail: cut it off and restore the zeroed, preallocated tail.
		if err := f.Truncate(off); err != nil {
			f.Close()
			return fmt.Errorf("wal: truncate torn tail of %s at %d: %w", last.name, off, err)
		}
		if err := f.Preallocate(max(l.opts.SegmentSize, off)); err != nil {
			f.Close()
			return fmt.Errorf("wal: preallocate %s: %w", last.name, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("wal: sync %s: %w", last.name, err)
		}
	}
	l.active, l.segFirst, l.off, l.next = f, last.first, off, next
	return nil
}

// validFrameAfter reports whether a frame that validates (for an index
// after next) starts anywhere after off: if so the bad frame at off is not
// the torn tail but corruption. It reads the file in bounded chunks.
func validFrameAfter(f File, off int64, next uint64) (bool, error) {
	st, err := f.Stat()
	if err != nil {
		return false, err
	}
	size := st.Size()
	const maxScan = 64 << 20
	end := min(size, off+maxScan)
	buf := make([]byte, end-off)
	if _, err := f.ReadAt(buf, off); err != nil && int64(len(buf)) > 0 {
		if n, _ := f.ReadAt(buf, off); int64(n) < int64(len(buf)) {
			buf = buf[:n]
		}
	}
	for p := 8; p+frameHdr <= len(buf); p += 8 {
		n := int(binary.LittleEndian.Uint32(buf[p:]))
		crc := binary.LittleEndian.Uint32(buf[p+4:])
		if n == 0 || p+frameSize(n) > len(buf) {
			continue
		}
		rec := buf[p+frameHdr : p+frameHdr+n]
		// The frame at p can be at most one index per 8 bytes past next.
		for k := uint64(1); k <= uint64(p/8) && k <= 4096; k++ {
			if frameCRC(next+k, rec) == crc {
				return true, nil
			}
		}
	}
	return false, nil
}

// newSegment creates, preallocates and syncs the segment starting at first
// and makes it the active one.
func (l *Log) newSegment(first uint64) error {
	name := segmentName(first)
	path := filepath.Join(l.dir, name)
	f, err := l.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("wal: create %s: %w", name, err)
	}
	var h [headerSize]byte
	copy(h[:], magic)
	binary.LittleEndian.PutUint64(h[8:], first)
	if err := f.Preallocate(l.opts.SegmentSize); err != nil {
		f.Close()
		return fmt.Errorf("wal: preallocate %s: %w", name, err)
	}
	if _, err := f.WriteAt(h[:], 0); err != nil {
		f.Close()
		return fmt.Errorf("wal: write %s header: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("wal: sync %s: %w", name, err)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		f.Close()
		return fmt.Errorf("wal: sync dir %s: %w", l.dir, err)
	}
	l.mu.Lock()
	l.segs = append(l.segs, segmentInfo{first: first, name: name})
	l.active, l.segFirst, l.off, l.next = f, first, headerSize, first
	l.mu.Unlock()
	l.m.segments.Inc()
	return nil
}

// Append writes recs as consecutive records and returns the index of the
// last. It returns once they are durable per the sync policy; concurrent
// callers share writes and fsyncs. On error nothing of recs is acknowledged,
// and the log refuses further appends (reopen it to recover).
func (l *Log) Append(recs ...[]byte) (last uint64, err error) {
	if len(recs) == 0 {
		return l.LastIndex(), nil
	}
	for _, r := range recs {
		if len(r) > maxRecord {
			return 0, fmt.Errorf("wal: record of %d bytes exceeds the %d-byte limit", len(r), maxRecord)
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
	var ticker *time.Ticker
	var tick <-chan time.Time
	if l.opts.Sync == SyncInterval {
		ticker = time.NewTicker(l.opts.SyncEvery)
		defer ticker.Stop()
		tick = ticker.C
	}
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
			l.syncActive()
			continue
		case r := <-l.reqs:
			group = append(group[:0], r)
		}
		for len(group) < 1024 {
			select {
			case r := <-l.reqs:
				group = append(group, r)
				continue
			default:
			}
			break
		}
		buf = l.commit(group, buf)
	}
}

func (l *Log) syncActive() {
	l.mu.Lock()
	f, broken := l.active, l.broken
	l.mu.Unlock()
	if broken != nil || f == nil {
		return
	}
	start := time.Now()
	if err := f.Sync(); err != nil {
		l.fail(fmt.Errorf("wal: fsync: %w", err))
		return
	}
	l.m.fsync.UpdateDuration(start)
}

func (l *Log) fail(err error) {
	l.mu.Lock()
	if l.broken == nil {
		l.broken = err
	}
	l.mu.Unlock()
}

// commit writes a group of requests and releases them.
func (l *Log) commit(group []*appendReq, buf []byte) []byte {
	err := l.broken
	if err == nil {
		buf, err = l.writeGroup(group, buf)
	}
	if err != nil {
		l.fail(err)
		for _, r := range group {
			r.err = err
		}
	}
	for _, r := range group {
		r.done <- struct{}{}
	}
	return buf
}

func (l *Log) writeGroup(group []*appendReq, buf []byte) ([]byte, error) {
	buf = buf[:0]
	start := l.off
	next := l.next
	first := next
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		if _, err := l.active.WriteAt(buf, start); err != nil {
			return fmt.Errorf("wal: write %s at %d: %w", segmentName(l.segFirst), start, err)
		}
		l.m.bytes.Add(len(buf))
		start += int64(len(buf))
		buf = buf[:0]
		return nil
	}
	for _, r := range group {
		for _, rec := range r.recs {
			fs := int64(frameSize(len(rec)))
			if start+int64(len(buf))+fs > l.opts.SegmentSize && start+int64(len(buf)) > headerSize {
				if err := flush(); err != nil {
					return buf, err
				}
				if err := l.roll(next, start); err != nil {
					return buf, err
				}
				start = l.off
			}
			buf = appendFrame(buf, next, rec)
			next++
		}
		r.last = next - 1
	}
	if err := flush(); err != nil {
		return buf, err
	}
	if l.opts.Sync == SyncAlways {
		t := time.Now()
		if err := l.active.Sync(); err != nil {
			return buf, fmt.Errorf("wal: fsync %s: %w", segmentName(l.segFirst), err)
		}
		l.m.fsync.UpdateDuration(t)
	}
	l.mu.Lock()
	l.off, l.next = start, next
	l.mu.Unlock()
	l.m.groups.Inc()
	l.m.records.Add(int(next - first))
	return buf, nil
}

// roll seals the active segment (fsynced) and starts a new one at next.
func (l *Log) roll(next uint64, end int64) error {
	old := l.active
	if err := old.Sync(); err != nil {
		return fmt.Errorf("wal: fsync %s: %w", segmentName(l.segFirst), err)
	}
	sealed := l.segs[len(l.segs)-1]
	l.mu.Lock()
	l.off, l.next = end, next
	l.mu.Unlock()
	if err := l.newSegment(next); err != nil {
		return err
	}
	old.Close()
	if l.opts.Compress {
		l.compressLater(sealed)
	}
	return nil
}

// FirstIndex is the index of the oldest record kept (1 for a new log).
func (l *Log) FirstIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.segs[0].first
}

// LastIndex is the index of the newest record (0 for an empty log).
func (l *Log) LastIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next - 1
}

// Replay calls fn for every record from index from (at least FirstIndex)
// up to the LastIndex at the time of the call, in order, streaming one
// segment at a time. rec is valid only during fn. An error from fn stops
// the replay and is returned; corruption returns a *CorruptionError.
func (l *Log) Replay(from uint64, fn func(index uint64, rec []byte) error) error {
	l.mu.Lock()
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

// replaySegment replays s's records in [from, end); the segment must hold
// every index up to end-1, or it is corrupt (a record lost in the middle).
func (l *Log) replaySegment(s segmentInfo, from, end uint64, fn func(uint64, []byte) error) error {
	// A segment sealed and compressed since the listing: read its .zst.
	sr, err := openSegmentReader(l.fs, l.dir, s)
	if errors.Is(err, os.ErrNotExist) && !s.compressed {
		s.name, s.compressed = s.name+".zst", true
		sr, err = openSegmentReader(l.fs, l.dir, s)
	}
	if err != nil {
		return err
	}
	defer sr.close()
	for sr.next < end {
		idx := sr.next
		rec, err := sr.frame()
		if err == errEnd {
			return &CorruptionError{Segment: sr.name, Offset: sr.off, Index: idx,
				Reason: fmt.Sprintf("segment ends before index %d, where the log continues", end)}
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

// TruncateFront removes whole segments whose records all precede index
// (retention, after a snapshot covers them). The active segment stays.
func (l *Log) TruncateFront(index uint64) error {
	l.mu.Lock()
	var drop []segmentInfo
	for len(l.segs) > 1 && l.segs[1].first <= index {
		drop = append(drop, l.segs[0])
		l.segs = l.segs[1:]
	}
	l.mu.Unlock()
	l.compressWG.Wait() // never race a compression of a dropped segment
	for _, s := range drop {
		for _, name := range []string{s.name, segmentName(s.first), segmentName(s.first) + ".zst"} {
			if err := l.fs.Remove(filepath.Join(l.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("wal: remove %s: %w", name, err)
			}
		}
	}
	if len(drop) > 0 {
		return l.fs.SyncDir(l.dir)
	}
	return nil
}

// Segments returns how many segments the log holds.
func (l *Log) Segments() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.segs)
}

// Sync fsyncs the active segment now (useful under SyncInterval/SyncNever).
func (l *Log) Sync() error {
	l.syncActive()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.broken
}

// Close stops the writer after the appends already queued, fsyncs, waits
// for background compression and closes the files.
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
	var err error
	if l.broken == nil && l.opts.Sync != SyncNever {
		err = l.active.Sync()
	}
	if cerr := l.active.Close(); err == nil {
		err = cerr
	}
	return err
}
