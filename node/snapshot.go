package node

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/tally-ml/tally/ring"
	"github.com/tally-ml/tally/wal/walfs"
	"github.com/tally-ml/tally/windows"
)

// A snapshot is a point-in-time image of the node's state, written while
// ingest and lookups go on: the apply sequencer is held for one partition
// at a time (all views), so ingest pauses only for a moment. Each partition
// records the log index it is consistent with; recovery restores the image
// and replays the log from the snapshot's start index, applying a record to
// a partition only if the partition's image does not hold it yet (and
// advancing the view watermarks as the original run did, so every decision
// the windows made is made the same way).
//
// File: snapshots/<start index, 20 digits>.snap, zstd-compressed:
//
//	"TALLYSNP" version:u32 start:u64 [schema] nviews:u32
//	schema  = len:u32 JSON                 (version 2: the schema fingerprint, see schema.go)
//	per view: name meta-section            (windows.View.WriteMeta)
//	per partition 0..1023: index:u64, per view: partition-section
//	tables: index:u64 ntables:u32 per table: table-record (as logged)
//	crc:u32   CRC-32C of every byte before it (uncompressed)
//
// It is written to a temporary file, fsynced, renamed into place, and the
// directory fsynced, so a crash never leaves a partial snapshot under a
// snapshot's name. A snapshot verifies when its checksum holds and its
// header's start index is the one in its name; one that does not is moved
// to snapshots/corrupt-<name> (never deleted) and the previous one is used.
// Only verified snapshots count toward the snapKeep kept, and the log is
// kept from the oldest kept one's start (the fallback needs it). Version 1 (no schema) is still read. Views are matched by
// name: a view of the snapshot the repo no longer has, or whose description
// changed, is skipped, and a repo view the snapshot does not restore is
// built from the log (RecoverFrom), both only once checkSchema accepted the
// repo; tables and records of a removed table are skipped likewise.
const (
	snapMagic   = "TALLYSNP"
	snapVersion = 2
	snapKeep    = 2 // snapshots kept; the older is the fallback
)

// replayFilter holds, during recovery, the log index each partition's
// snapshot image already includes.
type replayFilter struct {
	part   [ring.Partitions]uint64
	tables uint64
	max    uint64
	fresh  []bool // per view: not restored (new or changed), built from the log
}

type crcWriter struct {
	w   io.Writer
	crc hash.Hash32
}

func (c *crcWriter) Write(p []byte) (int, error) {
	c.crc.Write(p)
	return c.w.Write(p)
}

// WriteSnapshot writes the node's state to w and returns the log index
// replay must start after.
func (n *Node) WriteSnapshot(w io.Writer) (start uint64, err error) {
	cw := &crcWriter{w: w, crc: crc32.New(crc32.MakeTable(crc32.Castagnoli))}
	bw := bufio.NewWriterSize(cw, 1<<20)
	var hdr []byte
	hdr = append(hdr, snapMagic...)
	hdr = binary.LittleEndian.AppendUint32(hdr, snapVersion)
	n.seq.mu.Lock()
	start = n.seq.applied
	hdr = binary.LittleEndian.AppendUint64(hdr, start)
	sch := schemaOf(n.repo).encode()
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(len(sch)))
	hdr = append(hdr, sch...)
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(len(n.views)))
	bw.Write(hdr)
	for i, v := range n.views {
		writeName(bw, n.repo.Views[i].Name)
		if err = v.WriteMeta(bw); err != nil {
			break
		}
	}
	n.seq.mu.Unlock()
	if err != nil {
		return 0, err
	}
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
			return 0, err
		}
	}
	n.seq.mu.Lock()
	binary.LittleEndian.PutUint64(idx[:], n.seq.applied)
	bw.Write(idx[:])
	bw.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(n.tables))))
	for _, t := range n.tables {
		t.mu.RLock()
		rows := make([]tableRow, 0, len(t.rows))
		nc := len(t.def.Columns)
		for key, i := range t.rows {
			off := int(i) * nc
			rows = append(rows, tableRow{key: key, nums: t.nums[off : off+nc], strs: t.strs[off : off+nc], null: t.null[off : off+nc]})
		}
		rec := appendTableRecord(nil, t, rows, true)
		t.mu.RUnlock()
		bw.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(rec))))
		bw.Write(rec)
	}
	n.seq.mu.Unlock()
	if err := bw.Flush(); err != nil {
		return 0, err
	}
	if _, err := w.Write(binary.LittleEndian.AppendUint32(nil, cw.crc.Sum32())); err != nil {
		return 0, err
	}
	return start, nil
}

func writeName(w io.Writer, s string) {
	w.Write(binary.AppendUvarint(nil, uint64(len(s))))
	io.WriteString(w, s)
}

// ReadSnapshot restores a snapshot into a node that has applied nothing
// yet, and arms the replay filter so that RecoverFrom replays the log
// consistently with it. The caller has verified the checksum
// (VerifySnapshot): a read error here leaves the node unusable.
func (n *Node) ReadSnapshot(r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<20)
	var hdr [8 + 4 + 8]byte
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
		if _, err := io.ReadFull(br, cnt[:]); err != nil {
			return fmt.Errorf("snapshot schema: %w", err)
		}
		size := binary.LittleEndian.Uint32(cnt[:])
		if size > 1<<26 {
			return errors.New("snapshot schema too large")
		}
		raw := make([]byte, size)
		if _, err := io.ReadFull(br, raw); err != nil {
			return fmt.Errorf("snapshot schema: %w", err)
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
	nviews := int(binary.LittleEndian.Uint32(cnt[:]))
	if nviews > 1<<16 {
		return fmt.Errorf("snapshot has %d feature views", nviews)
	}
	cur := schemaOf(n.repo)
	into := make([]int, nviews) // snapshot view -> repo view, -1 skipped
	restored := make([]bool, len(n.views))
	for i := range into {
		name, err := readName(br)
		if err != nil {
			return err
		}
		j := -1
		for k, v := range n.repo.Views {
			if v.Name == name && !restored[k] && (stored == nil || sameView(stored.view(name), cur.view(name))) {
				j = k
			}
		}
		into[i] = j
		if j < 0 {
			if !n.schemaAccepted {
				return fmt.Errorf("snapshot holds feature view %q, which the repo no longer has or changed: start with --accept-schema-change to drop its state and rebuild changed views from the log", name)
			}
			if err := windows.SkipSection(br); err != nil {
				return fmt.Errorf("skip view %s: %w", name, err)
			}
			continue
		}
		restored[j] = true
		if err := n.views[j].ReadMeta(br); err != nil {
			return err
		}
	}
	f := &replayFilter{fresh: make([]bool, len(n.views))}
	for j, ok := range restored {
		if !ok && !n.schemaAccepted {
			return fmt.Errorf("snapshot lacks feature view %q: the repo changed; start with --accept-schema-change to build it from the log", n.repo.Views[j].Name)
		}
		f.fresh[j] = !ok
	}
	var idx [8]byte
	for p := uint32(0); p < ring.Partitions; p++ {
		if _, err := io.ReadFull(br, idx[:]); err != nil {
			return fmt.Errorf("snapshot partition %d: %w", p, err)
		}
		f.part[p] = binary.LittleEndian.Uint64(idx[:])
		f.max = max(f.max, f.part[p])
		for _, j := range into {
			var err error
			if j < 0 {
				err = windows.SkipSection(br)
			} else {
				err = n.views[j].ReadPartition(br, p)
			}
			if err != nil {
				return err
			}
		}
	}
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
		n.tableByName(name).put(rows, replace)
	}
	n.seq.mu.Lock()
	n.seq.applied = start
	n.filter = f
	n.seq.mu.Unlock()
	return nil
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

// snapStore is the snapshots directory of a data dir, on a file system.
type snapStore struct {
	fs  walfs.FS
	dir string
	log *slog.Logger
}

func newSnapStore(fsys walfs.FS, dataDir string, log *slog.Logger) *snapStore {
	if fsys == nil {
		fsys = walfs.OS
	}
	if log == nil {
		log = slog.Default()
	}
	return &snapStore{fs: fsys, dir: filepath.Join(dataDir, "snapshots"), log: log}
}

// Snapshot writes a snapshot into dataDir/snapshots atomically, keeps it
// and the newest older one that verifies, and returns its start index and
// its size. See snapStore.write.
func (n *Node) Snapshot(dataDir string) (start uint64, size int64, err error) {
	start, size, _, err = n.writeSnapshot(newSnapStore(nil, dataDir, nil))
	return start, size, err
}

// writeSnapshot writes a snapshot atomically, verifies it, and applies
// retention: the new snapshot and the newest older one that verifies are
// kept, older ones deleted, and those that fail verification moved aside.
// keepFrom is the start index of the oldest snapshot kept: the log from
// there on is needed (by the fallback); the log before it is needed by no
// recovery. It is 0 (keep the whole log) until there is a fallback.
func (n *Node) writeSnapshot(s *snapStore) (start uint64, size int64, keepFrom uint64, err error) {
	if err := s.fs.MkdirAll(s.dir, 0o755); err != nil {
		return 0, 0, 0, fmt.Errorf("create %s: %w", s.dir, err)
	}
	tmp, err := walfs.CreateAtomic(s.fs, filepath.Join(s.dir, fmt.Sprintf("snap-%d.tmp", time.Now().UnixNano())))
	if err != nil {
		return 0, 0, 0, fmt.Errorf("write snapshot: %w", err)
	}
	enc, err := zstd.NewWriter(tmp, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		tmp.Abort()
		return 0, 0, 0, err
	}
	start, err = n.WriteSnapshot(enc)
	if err == nil {
		err = enc.Close()
	}
	if err != nil {
		tmp.Abort()
		return 0, 0, 0, fmt.Errorf("write snapshot: %w", err)
	}
	name := snapName(start)
	final := filepath.Join(s.dir, name)
	if err := tmp.Commit(final); err != nil {
		return 0, 0, 0, fmt.Errorf("write snapshot %s: %w", name, err)
	}
	if err := s.verify(snapFile{path: final, start: start}); err != nil {
		// What was just written does not read back: keep everything else.
		s.setAside(snapFile{path: final, start: start}, err)
		return 0, 0, 0, fmt.Errorf("write snapshot %s: %w", name, err)
	}
	keepFrom, err = s.prune(start)
	return start, tmp.Off, keepFrom, err
}

func snapName(start uint64) string { return fmt.Sprintf("%020d.snap", start) }

// prune keeps the snapshot at newest and the newest older one that
// verifies, moves the older ones that do not verify aside, and deletes the
// rest. It returns the start of the oldest snapshot kept, or 0 while there
// is no verified fallback: then the whole log is needed, in case the one
// snapshot is damaged.
func (s *snapStore) prune(newest uint64) (keepFrom uint64, err error) {
	kept := 0
	for _, f := range s.list() {
		if f.start > newest {
			continue // written by another run later? never touch what is newer
		}
		if f.start == newest {
			kept++
			continue
		}
		if kept < snapKeep {
			if verr := s.verify(f); verr != nil {
				s.setAside(f, verr)
				continue
			}
			kept++
			keepFrom = f.start
			continue
		}
		if rerr := s.fs.Remove(f.path); rerr != nil && err == nil {
			err = fmt.Errorf("remove old snapshot: %w", rerr)
		}
	}
	if serr := s.fs.SyncDir(s.dir); serr != nil && err == nil {
		err = serr
	}
	if kept < snapKeep {
		keepFrom = 0
	}
	return keepFrom, err
}

// setAside moves a snapshot that fails verification to corrupt-<name>,
// where it stays for inspection, and logs it.
func (s *snapStore) setAside(f snapFile, why error) {
	base := filepath.Base(f.path)
	to := filepath.Join(s.dir, "corrupt-"+base)
	if _, err := s.fs.OpenFile(to, os.O_RDONLY, 0); err == nil {
		to = fmt.Sprintf("%s-%d", to, time.Now().UnixNano())
	}
	if err := s.fs.Rename(f.path, to); err != nil {
		s.log.Error("snapshot fails verification and cannot be moved aside", "file", f.path, "err", why, "move_err", err)
		return
	}
	s.fs.SyncDir(s.dir)
	s.log.Warn("snapshot fails verification: moved aside, not used, not deleted", "file", f.path, "moved_to", to, "err", why)
}

type snapFile struct {
	path  string
	start uint64 // from the file's name
}

// list returns the snapshots, newest first (by the start index in their
// names; verify checks the header agrees). Leftover temporary files of an
// interrupted write are removed.
func (s *snapStore) list() []snapFile {
	ents, _ := s.fs.ReadDir(s.dir)
	var out []snapFile
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "snap-") && strings.HasSuffix(e.Name(), ".tmp") {
			s.fs.Remove(filepath.Join(s.dir, e.Name()))
			continue
		}
		base, ok := strings.CutSuffix(e.Name(), ".snap")
		if !ok || len(base) != 20 {
			continue
		}
		start, err := strconv.ParseUint(base, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, snapFile{filepath.Join(s.dir, e.Name()), start})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].start > out[j].start })
	return out
}

// verify checks a snapshot file in one streaming pass: its checksum, and
// that its header's start index is the one its name says.
func (s *snapStore) verify(sf snapFile) error {
	f, err := s.fs.OpenFile(sf.path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	dec, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return err
	}
	defer dec.Close()
	name := filepath.Base(sf.path)
	crc := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	br := bufio.NewReaderSize(dec, 1<<20)
	var tail [4]byte // the last 4 bytes seen are the stored checksum
	have := 0
	var hdr []byte // the first 20 bytes: magic, version, start
	buf := make([]byte, 1<<16)
	for {
		k, err := br.Read(buf)
		chunk := buf[:k]
		if len(hdr) < 20 {
			hdr = append(hdr, chunk[:min(len(chunk), 20-len(hdr))]...)
		}
		// Hash everything but the final 4 bytes.
		if have+len(chunk) > 4 {
			all := append(tail[:have:have], chunk...)
			crc.Write(all[:len(all)-4])
			copy(tail[:], all[len(all)-4:])
			have = 4
		} else {
			copy(tail[have:], chunk)
			have += len(chunk)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read snapshot %s: %w", name, err)
		}
	}
	if have < 4 || binary.LittleEndian.Uint32(tail[:]) != crc.Sum32() {
		return fmt.Errorf("snapshot %s fails its checksum", name)
	}
	if len(hdr) < 20 || string(hdr[:8]) != snapMagic {
		return fmt.Errorf("snapshot %s: not a tally snapshot", name)
	}
	if got := binary.LittleEndian.Uint64(hdr[12:]); got != sf.start {
		return fmt.Errorf("snapshot %s holds the state at record %d, not the one its name says", name, got)
	}
	return nil
}

// RestoreLatestSnapshot restores the newest snapshot that verifies. Newer
// ones that do not are moved to snapshots/corrupt-<name> and reported
// through skipped. It returns the file used, or "" when there is none.
func (n *Node) RestoreLatestSnapshot(dataDir string, skipped func(path string, err error)) (string, error) {
	used, _, err := n.restoreSnapshot(newSnapStore(nil, dataDir, nil), skipped)
	return used.path, err
}

// restoreSnapshot restores the newest snapshot that verifies, moving aside
// (and reporting) newer ones that do not; bad lists those, newest first.
func (n *Node) restoreSnapshot(s *snapStore, skipped func(path string, err error)) (used snapFile, bad []snapFile, err error) {
	for _, f := range s.list() {
		if verr := s.verify(f); verr != nil {
			if skipped != nil {
				skipped(f.path, verr)
			}
			s.setAside(f, verr)
			bad = append(bad, f)
			continue
		}
		file, err := s.fs.OpenFile(f.path, os.O_RDONLY, 0)
		if err != nil {
			return snapFile{}, bad, err
		}
		dec, err := zstd.NewReader(file, zstd.WithDecoderConcurrency(1))
		if err != nil {
			file.Close()
			return snapFile{}, bad, err
		}
		err = n.ReadSnapshot(dec)
		dec.Close()
		file.Close()
		if err != nil {
			return snapFile{}, bad, fmt.Errorf("restore snapshot %s: %w", filepath.Base(f.path), err)
		}
		return f, bad, nil
	}
	return snapFile{}, bad, nil
}
