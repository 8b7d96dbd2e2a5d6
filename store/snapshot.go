package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/tally-ml/tally/ring"
	"github.com/tally-ml/tally/snapshot"
	"github.com/tally-ml/tally/wal/walfs"
	"github.com/tally-ml/tally/windows"
)

// A snapshot is a point-in-time image of the state, written while
// ingest and lookups go on: the apply sequencer is held for one partition
// at a time (all views), so ingest pauses only for a moment. Each partition
// records the log index it is consistent with; recovery restores the image
// and replays the log from the snapshot's start index, applying a record to
// a partition only if the partition's image does not hold it yet (and
// advancing the view watermarks as the original run did, so every decision
// the windows made is made the same way).
//
// The snapshot's frame and its file (snapshots/<start, 20 digits>.snap,
// zstd-compressed, written atomically, verified, set aside, kept) are the
// snapshot package's; the content is:
//
//	"TALLYSNP" version:u32 start:u64 [schema] ngroups:u32
//	schema  = len:u32 JSON                 (version 2: the schema fingerprint, see schema.go)
//	per group: layout meta-section         (windows.View.WriteMeta)
//	layout  = len:u32 JSON                 (version 4: groupLayout, see group.go; before: a view's name, uvarint-prefixed)
//	per partition 0..1023: index:u64, per group: partition-section
//	tables: index:u64 ntables:u32 per table: table-record (as logged)
//	streams (version 3): the next offset of each stream partition at start (stream.go)
//	requests (version 5): the keys of the latest named records at start (request.go)
//	[versions] "TALLYTVR" ntables:u32 per table: len:u64 table-versions (tableversions.go)
//	[marks]    "TALLYLOG" n:u32 (index:u64 crc32c:u32)* (a single node's: logmarks.go)
//	crc:u32   CRC-32C of every byte before it (uncompressed)
//
// The versions section (the rows tables keep for reads at a past time,
// as of the tables' index) is optional: the builds before it neither
// write it nor read it (they stop before it), so either build restores
// the other's snapshots, and the version number is unchanged.
//
// Only verified snapshots count toward the snapKeep kept, and the log is
// kept from the oldest kept one's start (the fallback needs it). Version 1
// (no schema) is still read. Views are matched by name: a view of the
// snapshot the repo no longer has, or whose description changed, is
// skipped, and a repo view the snapshot does not restore is built from the
// log (RecoverFrom), both only once CheckSchema accepted the repo; tables
// and records of a removed table are skipped likewise. Versions 1 to 3
// hold one section per view (a group of one, each), which a restore
// merges into the repo's groups where it can (regroup); version 4 holds
// groups, and a restore takes their layout (group.go). Before version 5
// a single node remembered no request keys: a restore of one starts with
// none.
const (
	snapMagic   = "TALLYSNP"
	snapVersion = 5
	snapKeep    = 2 // snapshots kept; the older is the fallback
)

// replayFilter holds, during recovery, the log index each partition's
// snapshot image already includes.
type replayFilter struct {
	part   [ring.Partitions]uint64
	tables uint64
	max    uint64
	fresh  []bool // per group: not restored (new or changed views), built from the log
}

// WriteSnapshot writes the state to w and returns the log index
// replay must start after.
func (n *Store) WriteSnapshot(w io.Writer) (start uint64, err error) {
	ss, err := n.Snapshot()
	if err != nil {
		return 0, err
	}
	return ss.start, ss.Persist(w)
}

// StateSnapshot is a snapshot begun (StateMachine.Snapshot): the index
// its replay starts after, and its header and view metadata, taken
// together under the sequencer. Persist writes the rest while ingest goes
// on, as raft's FSMSnapshot.
type StateSnapshot struct {
	n       *Store
	start   uint64
	head    []byte
	streams []byte // the stream offsets at start
	// requests are the request keys at start (as bytes, since a copy of
	// the window is as large as its encoding); nil in a version 4 snapshot.
	requests []byte
	// marks are the log marks Persist ends it with (logmarks.go): none
	// but a single node's.
	marks []LogMark
}

// Index is the log index the snapshot's replay starts after.
func (ss *StateSnapshot) Index() uint64 { return ss.start }

// Snapshot begins a snapshot of the state (see StateSnapshot).
func (n *Store) Snapshot() (*StateSnapshot, error) {
	n.seq.mu.Lock()
	defer n.seq.mu.Unlock()
	ss := &StateSnapshot{n: n, start: n.seq.applied}
	version := uint32(snapVersion)
	if n.requests == nil || n.requests.Len() == 0 {
		// Without request keys the snapshot is version 4's, which the
		// builds before version 5 read: a cluster's groups (whose keys
		// are their FSM's) and a single node given no request ids.
		version = 4
	} else {
		ss.requests = writeRequests(nil, n.requests)
	}
	hdr := snapshot.AppendHeader(nil, snapMagic, version, ss.start)
	sch := schemaOf(n.repo).encode()
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(len(sch)))
	hdr = append(hdr, sch...)
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(len(n.views)))
	buf := bytes.NewBuffer(hdr)
	for i, v := range n.views {
		l := encodeLayout(n.layoutOf(&n.groups[i]))
		buf.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(l))))
		buf.Write(l)
		if err := v.WriteMeta(buf); err != nil {
			return nil, err
		}
	}
	ss.head = buf.Bytes()
	ss.streams = writeStreams(nil, n.streams)
	return ss, nil
}

// Persist writes the snapshot to w: the head Snapshot took, then each
// partition of every view and the tables, each under the sequencer for a
// moment, and the checksum.
func (ss *StateSnapshot) Persist(w io.Writer) (err error) {
	n := ss.n
	cw := snapshot.NewChecksumWriter(w)
	bw := bufio.NewWriterSize(cw, 1<<20)
	bw.Write(ss.head)
	var idx [8]byte
	for p := uint32(0); p < ring.Partitions; p++ {
		n.seq.mu.Lock()
		binary.LittleEndian.PutUint64(idx[:], n.seq.applied)
		bw.Write(idx[:])
		for _, v := range n.views {
			if err = v.WritePartition(bw, p); err != nil {
				break
			}
		}
		n.seq.mu.Unlock()
		if err != nil {
			return err
		}
	}
	n.seq.mu.Lock()
	binary.LittleEndian.PutUint64(idx[:], n.seq.applied)
	bw.Write(idx[:])
	bw.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(n.tables))))
	versions := binary.LittleEndian.AppendUint32([]byte(tableVersionsMagic), uint32(len(n.tables)))
	for _, t := range n.tables {
		t.mu.RLock()
		rec := appendTableRecord(nil, t, t.rowsView(), true)
		start := len(versions)
		versions = t.appendVersions(append(versions, make([]byte, 8)...))
		t.mu.RUnlock()
		binary.LittleEndian.PutUint64(versions[start:], uint64(len(versions)-start-8))
		bw.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(rec))))
		bw.Write(rec)
	}
	n.seq.mu.Unlock()
	bw.Write(ss.streams)
	bw.Write(ss.requests) // nothing in version 4
	bw.Write(versions)
	bw.Write(appendLogMarks(nil, ss.marks))
	if err := bw.Flush(); err != nil {
		return err
	}
	return cw.WriteSum()
}

// Restore restores a snapshot into a store that has applied nothing yet,
// and arms the replay filter so that RecoverFrom replays the log
// consistently with it. The caller has verified the checksum (the snapshot
// store did): a read error here leaves the store unusable.
func (n *Store) Restore(r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<20)
	var hdr [snapshot.HeaderLen]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return fmt.Errorf("snapshot header: %w", err)
	}
	version := binary.LittleEndian.Uint32(hdr[8:])
	if string(hdr[:8]) != snapMagic || version < 1 || version > snapVersion {
		return errors.New("not a tally snapshot (or another version)")
	}
	start := binary.LittleEndian.Uint64(hdr[12:])
	var stored *schema // what the snapshot was written for; nil for version 1
	var cnt [4]byte
	if version >= 2 {
		raw, err := readBlock(br, 1<<26, "snapshot schema")
		if err != nil {
			return err
		}
		s, err := decodeSchema(raw)
		if err != nil {
			return fmt.Errorf("snapshot schema: %w", err)
		}
		stored = &s
	}
	if _, err := io.ReadFull(br, cnt[:]); err != nil {
		return fmt.Errorf("snapshot header: %w", err)
	}
	ngroups := int(binary.LittleEndian.Uint32(cnt[:]))
	if ngroups > 1<<16 {
		return fmt.Errorf("snapshot has %d feature view groups", ngroups)
	}
	into, f, err := n.restoreLayout(br, version, stored, ngroups)
	if err != nil {
		return err
	}
	if err := n.restorePartitions(br, into, f); err != nil {
		return err
	}
	if err := n.regroup(f); err != nil {
		return err
	}
	var idx [8]byte
	if _, err := io.ReadFull(br, idx[:]); err != nil {
		return fmt.Errorf("snapshot tables: %w", err)
	}
	f.tables = binary.LittleEndian.Uint64(idx[:])
	f.max = max(f.max, f.tables)
	if _, err := io.ReadFull(br, cnt[:]); err != nil {
		return err
	}
	for i := 0; i < int(binary.LittleEndian.Uint32(cnt[:])); i++ {
		if _, err := io.ReadFull(br, idx[:]); err != nil {
			return err
		}
		size := binary.LittleEndian.Uint64(idx[:])
		if size > 1<<34 {
			return errors.New("snapshot table record too large")
		}
		rec := make([]byte, size)
		if _, err := io.ReadFull(br, rec); err != nil {
			return err
		}
		name, rows, replace, err := n.decodeTableRecord(rec)
		if n.skipRemoved(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("snapshot: %w", err)
		}
		n.TableNamed(name).put(rows, replace, math.MinInt64) // valid since before any read: restoreVersions says otherwise
	}
	var streams map[streamKey]int64
	if version >= 3 {
		var err error
		if streams, err = readStreams(br); err != nil {
			return err
		}
	}
	var requests *RequestWindow
	if version >= 5 {
		var err error
		if requests, err = readRequests(br); err != nil {
			return err
		}
	}
	if b, _ := br.Peek(len(tableVersionsMagic)); string(b) == tableVersionsMagic {
		if err := n.restoreTableVersions(br); err != nil {
			return err
		}
	}
	marks, err := readLogMarks(br)
	if err != nil {
		return err
	}
	n.restoredMarks = marks
	n.seq.mu.Lock()
	n.seq.applied = start
	n.filter = f
	n.streams = streams
	n.requests = requests
	n.seq.mu.Unlock()
	return nil
}

// tableVersionsMagic starts a snapshot's optional versions section.
const tableVersionsMagic = "TALLYTVR"

// restoreTableVersions reads a snapshot's versions section into the tables
// its table records restored.
func (n *Store) restoreTableVersions(br *bufio.Reader) error {
	var hdr [len(tableVersionsMagic) + 4]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return fmt.Errorf("snapshot table versions: %w", err)
	}
	var size [8]byte
	for range binary.LittleEndian.Uint32(hdr[len(tableVersionsMagic):]) {
		if _, err := io.ReadFull(br, size[:]); err != nil {
			return fmt.Errorf("snapshot table versions: %w", err)
		}
		if binary.LittleEndian.Uint64(size[:]) > 1<<34 {
			return errors.New("snapshot table versions too large")
		}
		b := make([]byte, binary.LittleEndian.Uint64(size[:]))
		if _, err := io.ReadFull(br, b); err != nil {
			return fmt.Errorf("snapshot table versions: %w", err)
		}
		r := &recordReader{b: b}
		if err := n.restoreVersions(r); err != nil {
			return err
		}
		if len(r.b) != 0 {
			return fmt.Errorf("%w: snapshot table versions padded", errBadRecord)
		}
	}
	return nil
}

// restorePartitions reads the partition sections of a snapshot (into maps
// a snapshot group to a store group, -1: skipped) and the index of each
// partition into f. Partitions are independent, so while this goroutine
// reads (and decompresses) the stream, workers on every core decode the
// sections read so far (windows.View.ReadPartition, safe for distinct
// partitions). An error is the one of the lowest partition, as a sequential
// read would report.
func (n *Store) restorePartitions(br *bufio.Reader, into []int, f *replayFilter) error {
	type job struct {
		p    uint32
		secs []bytes.Buffer // per snapshot group; empty for skipped ones
	}
	workers := runtime.GOMAXPROCS(0)
	jobs := make(chan *job, workers)
	free := make(chan *job, 2*workers+1)
	for range cap(free) {
		free <- &job{secs: make([]bytes.Buffer, len(into))}
	}
	var (
		mu      sync.Mutex
		errPart = uint32(ring.Partitions)
		firstEr error
	)
	fail := func(p uint32, err error) {
		mu.Lock()
		if p < errPart {
			errPart, firstEr = p, err
		}
		mu.Unlock()
	}
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return firstEr != nil
	}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r bytes.Reader
			for j := range jobs {
				for i, v := range into {
					if v < 0 || failed() {
						continue
					}
					r.Reset(j.secs[i].Bytes())
					if err := n.views[v].ReadPartition(&r, j.p); err != nil {
						fail(j.p, err)
					}
				}
				free <- j
			}
		}()
	}
	var idx [8]byte
	for p := uint32(0); p < ring.Partitions && !failed(); p++ {
		if _, err := io.ReadFull(br, idx[:]); err != nil {
			fail(p, fmt.Errorf("snapshot partition %d: %w", p, err))
			break
		}
		f.part[p] = binary.LittleEndian.Uint64(idx[:])
		f.max = max(f.max, f.part[p])
		j := <-free
		j.p = p
		var err error
		for i, v := range into {
			j.secs[i].Reset()
			if v < 0 {
				err = windows.SkipSection(br)
			} else {
				// SkipSection reads exactly one section: the tee keeps it.
				err = windows.SkipSection(io.TeeReader(br, &j.secs[i]))
			}
			if err != nil {
				break
			}
		}
		if err != nil {
			fail(p, fmt.Errorf("read partition %d: %w", p, err))
			break
		}
		jobs <- j
	}
	close(jobs)
	wg.Wait()
	return firstEr
}

// readBlock reads a len:u32-prefixed block of at most limit bytes; what
// names it in errors.
func readBlock(r io.Reader, limit uint32, what string) ([]byte, error) {
	var cnt [4]byte
	if _, err := io.ReadFull(r, cnt[:]); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	size := binary.LittleEndian.Uint32(cnt[:])
	if size > limit {
		return nil, errors.New(what + " too large")
	}
	raw := make([]byte, size)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return raw, nil
}

func readName(r *bufio.Reader) (string, error) {
	l, err := binary.ReadUvarint(r)
	if err != nil || l > 1<<16 {
		return "", fmt.Errorf("snapshot name: bad length")
	}
	b := make([]byte, l)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return string(b), nil
}

// NewSnapshotStore is the snapshot store of a data dir: its snapshots
// directory, in this format.
func NewSnapshotStore(fsys walfs.FS, dataDir string, logger *slog.Logger) *snapshot.Store {
	return snapshot.New(filepath.Join(dataDir, "snapshots"), snapshot.Options{FS: fsys, Magic: snapMagic, Keep: snapKeep, Logger: logger})
}

// SnapshotInto writes a snapshot into dataDir/snapshots atomically, keeps
// it and the newest older one that verifies, and returns its start index
// and its size. See SnapshotTo.
func (n *Store) SnapshotInto(dataDir string) (start uint64, size int64, err error) {
	start, size, _, err = n.SnapshotTo(NewSnapshotStore(nil, dataDir, nil))
	return start, size, err
}

// SnapshotTo writes a snapshot into s and applies its retention
// (snapshot.Store.Retain): keepFrom is the start index of the oldest
// snapshot kept, from which on the log is needed (0: all of it).
func (n *Store) SnapshotTo(s *snapshot.Store) (start uint64, size int64, keepFrom uint64, err error) {
	return n.snapshotTo(s, nil, nil)
}

// snapshotTo is SnapshotTo with durable, when not nil, called once every
// partition is written and before the snapshot is made durable: the
// partitions hold records applied while they were written, which a log
// that acknowledges before its fsync must make durable first.
func (n *Store) snapshotTo(s *snapshot.Store, durable func() error, marks func(start uint64) []LogMark) (start uint64, size int64, keepFrom uint64, err error) {
	ss, err := n.Snapshot()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("write snapshot: %w", err)
	}
	if marks != nil {
		ss.marks = marks(ss.start)
	}
	sink, err := s.Create(ss.start)
	if err != nil {
		return 0, 0, 0, err
	}
	if err := ss.Persist(sink); err != nil {
		sink.Cancel()
		return 0, 0, 0, fmt.Errorf("write snapshot: %w", err)
	}
	if durable != nil {
		if err := durable(); err != nil {
			sink.Cancel()
			return 0, 0, 0, err
		}
	}
	if err := sink.Close(); err != nil {
		return 0, 0, 0, err
	}
	keepFrom, err = s.Retain(ss.start)
	return ss.start, sink.Meta().Size, keepFrom, err
}

// RestoreLatestSnapshot restores the newest snapshot that verifies. Newer
// ones that are corrupt are moved to snapshots/corrupt-<name> and reported
// through skipped; one that cannot be read stops it (see RestoreNewest).
// It returns the file used, or "" when there is none.
func (n *Store) RestoreLatestSnapshot(dataDir string, skipped func(path string, err error)) (string, error) {
	used, _, err := n.RestoreNewest(NewSnapshotStore(nil, dataDir, nil), skipped)
	if used == nil {
		return "", err
	}
	return used.Path, err
}

// RestoreNewest restores the newest snapshot of s that verifies, moving aside
// (and reporting) newer ones that are corrupt; bad lists those, newest
// first. used is nil when no snapshot verifies. A snapshot that cannot be
// read (an OS error: no file descriptor left, a disk error, a permission)
// is not corrupt as far as anyone knows: RestoreNewest stops with an error
// naming it and the OS error and leaves it in place, so that a start after
// the cause is fixed restores it rather than an older one.
func (n *Store) RestoreNewest(s *snapshot.Store, skipped func(path string, err error)) (used *snapshot.Meta, bad []*snapshot.Meta, err error) {
	list, err := s.List()
	if err != nil {
		return nil, nil, err
	}
	for _, m := range list {
		_, r, err := s.Open(m.ID)
		if errors.Is(err, snapshot.ErrCorrupt) {
			if skipped != nil {
				skipped(m.Path, err)
			}
			bad = append(bad, m)
			continue
		}
		if err != nil {
			return nil, bad, fmt.Errorf("%w; it is left in place, not set aside: fix the cause and start again to restore it", err)
		}
		err = n.Restore(r)
		r.Close()
		if err != nil {
			return nil, bad, fmt.Errorf("restore snapshot %s: %w", m.ID, err)
		}
		return m, bad, nil
	}
	return nil, bad, nil
}

// restoreLayout reads the groups of a snapshot (version 4: their layouts;
// before: one view each) and their meta sections, makes the store's layout
// theirs plus groups of the repo views they do not restore (built from the
// log, marked fresh in the filter it returns), and restores the groups'
// metadata. into maps each snapshot group to a store group, -1: skipped.
func (n *Store) restoreLayout(br *bufio.Reader, version uint32, stored *schema, ngroups int) (into []int, f *replayFilter, err error) {
	cur := schemaOf(n.repo)
	restored := make([]bool, len(n.repo.Views))
	// viewOf is the repo view a snapshot's view called name restores: the
	// one of that name, if unchanged and not restored yet; else -1.
	viewOf := func(name string) int {
		for k, v := range n.repo.Views {
			if v.Name == name && !restored[k] && (stored == nil || sameView(stored.view(name), cur.view(name))) {
				return k
			}
		}
		return -1
	}
	into = make([]int, ngroups)
	var groups []group
	var metas [][]byte
	for i := range into {
		into[i] = -1
		var l groupLayout
		if version < 4 {
			name, err := readName(br)
			if err != nil {
				return nil, nil, err
			}
			l.Members = []memberLayout{{Name: name}}
		} else {
			raw, err := readBlock(br, 1<<24, "snapshot group layout")
			if err != nil {
				return nil, nil, err
			}
			if l, err = decodeLayout(raw); err != nil {
				return nil, nil, err
			}
		}
		live := make([]int, len(l.Members))
		anyLive := false
		for k, m := range l.Members {
			live[k] = -1
			if !m.Unread {
				live[k] = viewOf(m.Name)
			}
			if live[k] < 0 && !m.Unread && !n.schemaAccepted {
				return nil, nil, fmt.Errorf("snapshot holds feature view %q, which the repo no longer has or changed: start with --accept-schema-change to drop its state and rebuild changed views from the log", m.Name)
			}
			if live[k] >= 0 {
				restored[live[k]] = true
				anyLive = true
			}
		}
		if !anyLive {
			if err := windows.SkipSection(br); err != nil {
				return nil, nil, fmt.Errorf("skip view %s: %w", l.Members[0].Name, err)
			}
			continue
		}
		var g group
		if version < 4 {
			g = groupViews(n.repo, live)[0]
		} else if g, err = n.groupOf(l, live); err != nil {
			return nil, nil, err
		}
		var meta bytes.Buffer
		if err := windows.SkipSection(io.TeeReader(br, &meta)); err != nil {
			return nil, nil, fmt.Errorf("read meta of view %s: %w", g.spec.Name, err)
		}
		into[i] = len(groups)
		groups = append(groups, g)
		metas = append(metas, meta.Bytes())
	}
	var rest []int
	for j, ok := range restored {
		if ok {
			continue
		}
		if !n.schemaAccepted {
			return nil, nil, fmt.Errorf("snapshot lacks feature view %q: the repo changed; start with --accept-schema-change to build it from the log", n.repo.Views[j].Name)
		}
		rest = append(rest, j)
	}
	f = &replayFilter{fresh: make([]bool, len(groups))}
	for _, g := range groupViews(n.repo, rest) {
		groups = append(groups, g)
		f.fresh = append(f.fresh, true)
	}
	if err := n.setLayout(groups); err != nil {
		return nil, nil, err
	}
	for i, m := range metas {
		if err := n.views[i].ReadMeta(bytes.NewReader(m)); err != nil {
			return nil, nil, err
		}
	}
	return into, f, nil
}
