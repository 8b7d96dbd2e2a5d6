package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/wal/walfs"
)

// RaftStore is hashicorp/raft's LogStore and StableStore over a Log, so a
// clustered node writes each event once: the Raft log is the write-ahead
// log. Raft index i is the Log's record i. StoreLogs is one Append (one
// fsync under SyncAlways). The stable store (current term, vote) is a small
// separate file, rewritten atomically on every Set.
//
// DeleteRange follows what Raft asks of it: a suffix (conflicting entries
// after a leader change) is TruncateBack; a prefix (compaction after a
// snapshot) hides the entries at once and deletes the segments they fill
// (TruncateFront); the whole log (a follower installing a snapshot; see
// IsMonotonic) is Reset. A StoreLogs that leaves a gap after the last entry
// starts the log over at its first entry.
type RaftStore struct {
	log    *Log
	stable *stableFile

	mu    sync.Mutex // serialises changes; guards first
	first uint64     // entries before it are deleted (some may be on disk)

	// KeepCompacted, when set before use, keeps the segments of a
	// compacted prefix on disk: Raft no longer sees the entries (it sends
	// a lagging follower a snapshot), but Log() still replays them, so the
	// log stays the event archive (a cluster group's historical features).
	// A whole-log Reset (installing a snapshot) still starts over.
	KeepCompacted bool
}

var (
	_ raft.LogStore          = (*RaftStore)(nil)
	_ raft.StableStore       = (*RaftStore)(nil)
	_ raft.MonotonicLogStore = (*RaftStore)(nil)
)

// ErrKeyNotFound is the StableStore's answer for a key never set; its text
// is the "not found" Raft recognises.
var ErrKeyNotFound = errors.New("not found")

const keyFirst = "\x00wal.first" // where the deleted prefix ends

// OpenRaftStore opens the log in dir/log and the stable store in
// dir/stable.
func OpenRaftStore(dir string, opts Options) (*RaftStore, error) {
	if opts.FS == nil {
		opts.FS = OS
	}
	stable, err := openStable(opts.FS, dir)
	if err != nil {
		return nil, err
	}
	l, err := Open(filepath.Join(dir, "log"), opts)
	if err != nil {
		return nil, err
	}
	s := &RaftStore{log: l, stable: stable}
	if v, ok := stable.get(keyFirst); ok && len(v) == 8 {
		s.first = binary.LittleEndian.Uint64(v)
	}
	return s, nil
}

// Log is the underlying log (for replay into the windows, and metrics).
// Writing to it directly would break Raft's index mapping.
func (s *RaftStore) Log() *Log { return s.log }

// Close closes the log.
func (s *RaftStore) Close() error { return s.log.Close() }

// IsMonotonic tells Raft to delete the whole log after installing a
// snapshot instead of leaving a gap: the log's indexes are consecutive.
func (s *RaftStore) IsMonotonic() bool { return true }

// bounds returns the entries Raft may see; first > last when there are none.
func (s *RaftStore) bounds() (first, last uint64) {
	return max(s.log.FirstIndex(), s.first), s.log.LastIndex()
}

// FirstIndex is the first entry's index, 0 when there is none.
func (s *RaftStore) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	first, last := s.bounds()
	if first > last {
		return 0, nil
	}
	return first, nil
}

// LastIndex is the last entry's index, 0 when there is none.
func (s *RaftStore) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	first, last := s.bounds()
	if first > last {
		return 0, nil
	}
	return last, nil
}

// GetLog reads the entry at index into out, or returns raft.ErrLogNotFound.
func (s *RaftStore) GetLog(index uint64, out *raft.Log) error {
	s.mu.Lock()
	first, last := s.bounds()
	s.mu.Unlock()
	if index < first || index > last {
		return raft.ErrLogNotFound
	}
	rec, err := s.log.Get(index)
	if errors.Is(err, ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return err
	}
	return decodeRaftLog(rec, index, out)
}

// StoreLog stores one entry.
func (s *RaftStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs stores entries with consecutive indexes in one Append. Entries
// at or before the last one replace it and what follows.
func (s *RaftStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	for i := 1; i < len(logs); i++ {
		if logs[i].Index != logs[i-1].Index+1 {
			return fmt.Errorf("wal raft store: entries %d and %d are not consecutive", logs[i-1].Index, logs[i].Index)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	idx := logs[0].Index
	first, last := s.bounds()
	switch {
	case idx == 0:
		return errors.New("wal raft store: raft index 0")
	case first > last || idx > last+1 || idx < s.log.FirstIndex():
		// No entries, or a gap: start the log over at idx.
		if idx != s.log.LastIndex()+1 || idx < s.log.FirstIndex() {
			if err := s.log.Reset(idx); err != nil {
				return err
			}
		}
	case idx <= last:
		if err := s.log.TruncateBack(idx - 1); err != nil {
			return err
		}
	}
	recs := make([][]byte, len(logs))
	for i, l := range logs {
		recs[i] = encodeRaftLog(l)
	}
	got, err := s.log.Append(recs...)
	if err != nil {
		return err
	}
	if got != logs[len(logs)-1].Index {
		return fmt.Errorf("wal raft store: stored entry %d at log index %d", logs[len(logs)-1].Index, got)
	}
	if s.first > idx {
		return s.setFirst(idx)
	}
	return nil
}

// DeleteRange deletes entries min through max inclusive. Raft deletes
// either a prefix or a suffix; a range in the middle is refused.
func (s *RaftStore) DeleteRange(lo, hi uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	first, last := s.bounds()
	if first > last || hi < first || lo > last {
		return nil
	}
	switch {
	case lo <= first && hi >= last:
		if err := s.log.Reset(last + 1); err != nil {
			return err
		}
		return s.setFirst(last + 1)
	case hi >= last:
		return s.log.TruncateBack(lo - 1)
	case lo <= first:
		if err := s.setFirst(hi + 1); err != nil {
			return err
		}
		if s.KeepCompacted {
			return nil
		}
		return s.log.TruncateFront(hi + 1)
	}
	return fmt.Errorf("wal raft store: delete range [%d, %d] inside [%d, %d]: only a prefix or a suffix can be deleted", lo, hi, first, last)
}

// setFirst records where the deleted prefix ends, on disk and then in
// memory: a failed write changes neither.
func (s *RaftStore) setFirst(first uint64) error {
	if err := s.stable.set(keyFirst, binary.LittleEndian.AppendUint64(nil, first)); err != nil {
		return err
	}
	s.first = first
	return nil
}

// raft.Log record, little-endian:
//
//	version:u8=1 type:u8 index:u64 term:u64 appendedAt:i64 (unix ns, 0 = zero time)
//	len(data):u32 data len(extensions):u32 extensions
const raftRecVersion = 1

func encodeRaftLog(l *raft.Log) []byte {
	b := make([]byte, 0, 34+8+len(l.Data)+len(l.Extensions))
	b = append(b, raftRecVersion, byte(l.Type))
	b = binary.LittleEndian.AppendUint64(b, l.Index)
	b = binary.LittleEndian.AppendUint64(b, l.Term)
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	b = binary.LittleEndian.AppendUint64(b, uint64(at))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(l.Data)))
	b = append(b, l.Data...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(l.Extensions)))
	return append(b, l.Extensions...)
}

func decodeRaftLog(b []byte, index uint64, out *raft.Log) error {
	bad := func(what string) error {
		return fmt.Errorf("wal raft store: entry %d: %s", index, what)
	}
	if len(b) < 30 || b[0] != raftRecVersion {
		return bad("unknown encoding")
	}
	out.Type = raft.LogType(b[1])
	out.Index = binary.LittleEndian.Uint64(b[2:])
	out.Term = binary.LittleEndian.Uint64(b[10:])
	if at := int64(binary.LittleEndian.Uint64(b[18:])); at != 0 {
		out.AppendedAt = time.Unix(0, at)
	} else {
		out.AppendedAt = time.Time{}
	}
	if out.Index != index {
		return bad(fmt.Sprintf("holds raft index %d", out.Index))
	}
	rest := b[26:]
	n := int(binary.LittleEndian.Uint32(rest))
	if n > len(rest)-8 {
		return bad("data length")
	}
	out.Data = nilIfEmpty(rest[4 : 4+n])
	rest = rest[4+n:]
	m := int(binary.LittleEndian.Uint32(rest))
	if m != len(rest)-4 {
		return bad("extensions length")
	}
	out.Extensions = nilIfEmpty(rest[4:])
	return nil
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// Set stores val under key, durably, before it returns.
func (s *RaftStore) Set(key, val []byte) error { return s.stable.set(string(key), val) }

// Get returns the value of key, or ErrKeyNotFound.
func (s *RaftStore) Get(key []byte) ([]byte, error) {
	v, ok := s.stable.get(string(key))
	if !ok {
		return nil, ErrKeyNotFound
	}
	return v, nil
}

// SetUint64 stores val under key.
func (s *RaftStore) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.LittleEndian.AppendUint64(nil, val))
}

// GetUint64 returns the value of key, 0 if it was never set.
func (s *RaftStore) GetUint64(key []byte) (uint64, error) {
	v, ok := s.stable.get(string(key))
	if !ok {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("wal raft store: key %q holds %d bytes, not a uint64", key, len(v))
	}
	return binary.LittleEndian.Uint64(v), nil
}

// stableFile is a small key/value map kept whole in memory and on disk:
//
//	"TALLYSTB" crc32c(rest):u32 count:u32 (len(key):u32 key len(val):u32 val)*
//
// Each set writes stable.tmp, fsyncs it, renames it over stable and fsyncs
// the directory, so the file is always one whole version.
type stableFile struct {
	fs   FS
	dir  string
	mu   sync.Mutex
	vals map[string][]byte
}

const stableMagic = "TALLYSTB"

// ErrCorruptStable is wrapped in OpenRaftStore's error when the stable
// file does not validate. It holds Raft's term and vote: what to do about
// it is the Raft user's call (an old copy would bring back an old vote).
var ErrCorruptStable = errors.New("the stable file (Raft's term and vote) is corrupt or truncated")

func openStable(fsys FS, dir string) (*stableFile, error) {
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("wal raft store: create %s: %w", dir, err)
	}
	s := &stableFile{fs: fsys, dir: dir, vals: map[string][]byte{}}
	f, err := fsys.OpenFile(filepath.Join(dir, "stable"), os.O_RDONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("wal raft store: open stable: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > 64<<20 {
		return nil, fmt.Errorf("wal raft store: stable file of %d bytes", st.Size())
	}
	b := make([]byte, st.Size())
	if n, err := f.ReadAt(b, 0); n < len(b) {
		return nil, fmt.Errorf("wal raft store: read stable: %w", err)
	}
	corrupt := fmt.Errorf("wal raft store: %s: %w", filepath.Join(dir, "stable"), ErrCorruptStable)
	if len(b) < 16 || string(b[:8]) != stableMagic || crc32.Checksum(b[12:], castagnoli) != binary.LittleEndian.Uint32(b[8:]) {
		return nil, corrupt
	}
	count := binary.LittleEndian.Uint32(b[12:])
	rest := b[16:]
	next := func() ([]byte, bool) {
		if len(rest) < 4 {
			return nil, false
		}
		n := int(binary.LittleEndian.Uint32(rest))
		if n > len(rest)-4 {
			return nil, false
		}
		v := rest[4 : 4+n]
		rest = rest[4+n:]
		return v, true
	}
	for i := uint32(0); i < count; i++ {
		k, ok1 := next()
		v, ok2 := next()
		if !ok1 || !ok2 {
			return nil, corrupt
		}
		s.vals[string(k)] = v
	}
	return s, nil
}

func (s *stableFile) get(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vals[key]
	return append([]byte(nil), v...), ok
}

func (s *stableFile) set(key string, val []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.vals[key]
	s.vals[key] = append([]byte(nil), val...)
	if err := s.write(); err != nil {
		if had {
			s.vals[key] = old
		} else {
			delete(s.vals, key)
		}
		return fmt.Errorf("wal raft store: write stable: %w", err)
	}
	return nil
}

func (s *stableFile) write() error {
	keys := make([]string, 0, len(s.vals))
	for k := range s.vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b := append([]byte(stableMagic), 0, 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(keys)))
	for _, k := range keys {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(k)))
		b = append(b, k...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s.vals[k])))
		b = append(b, s.vals[k]...)
	}
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b[12:], castagnoli))
	return walfs.WriteFile(s.fs, filepath.Join(s.dir, "stable"), b)
}

// DecodeRaftEntry decodes the log record at index of a RaftStore's log
// (Log().Replay yields them) into its raft entry type and data: how a
// reader of a cluster group's archive (historical features) gets at the
// commands Raft committed.
func DecodeRaftEntry(b []byte, index uint64) (raft.LogType, []byte, error) {
	var l raft.Log
	if err := decodeRaftLog(b, index, &l); err != nil {
		return 0, nil, err
	}
	return l.Type, l.Data, nil
}
