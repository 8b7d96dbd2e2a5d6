package snapshot

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

	"github.com/tally-ml/tally/wal/walfs"
)

// HeaderLen is the length of a snapshot's header: magic, version, index.
const HeaderLen = 8 + 4 + 8

// ErrCorrupt marks a snapshot whose content fails verification (see Open).
// An error reading a snapshot (an OS error: no file descriptor left, a
// disk error, a permission) does not wrap it: it says nothing of the
// content.
var ErrCorrupt = errors.New("snapshot fails verification")

// corrupt marks err, about a snapshot's content, as ErrCorrupt.
func corrupt(err error) error { return fmt.Errorf("%w: %w", ErrCorrupt, err) }

// readError is the error of a snapshot at path that cannot be read.
func readError(path string, err error) error {
	return fmt.Errorf("snapshot %s cannot be read: %w", path, err)
}

// Meta describes a snapshot in the store.
type Meta struct {
	ID    string // its file name: <index, 20 digits>.snap
	Index uint64 // the log index replay starts after (from its name)
	Path  string // its file
	Size  int64  // bytes on disk; set by Sink.Meta only
}

// Store is a snapshots directory. Its methods are not safe for concurrent
// use: the owner writes one snapshot at a time.
type Store struct {
	fs    walfs.FS
	dir   string
	magic string
	keep  int
	log   *slog.Logger
}

// Options are a Store's settings.
type Options struct {
	// FS is the file system; nil is the OS.
	FS walfs.FS
	// Magic is the 8 bytes every snapshot's content starts with.
	Magic string
	// Keep is how many verified snapshots Retain keeps (the newest and the
	// fallbacks); less than 1 keeps 1.
	Keep int
	// Logger receives a line for each snapshot set aside; nil is
	// slog.Default().
	Logger *slog.Logger
}

// New returns the store of directory dir (created by the first Create).
func New(dir string, opts Options) *Store {
	s := &Store{fs: opts.FS, dir: dir, magic: opts.Magic, keep: max(1, opts.Keep), log: opts.Logger}
	if s.fs == nil {
		s.fs = walfs.OS
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if len(s.magic) != 8 {
		panic("snapshot: the magic must be 8 bytes")
	}
	return s
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Name is the file name of the snapshot at index.
func Name(index uint64) string { return fmt.Sprintf("%020d.snap", index) }

// AppendHeader appends a snapshot's header to dst.
func AppendHeader(dst []byte, magic string, version uint32, index uint64) []byte {
	dst = append(dst, magic...)
	dst = binary.LittleEndian.AppendUint32(dst, version)
	return binary.LittleEndian.AppendUint64(dst, index)
}

// ChecksumWriter passes writes on to W and keeps their CRC-32C; WriteSum
// writes it, the frame's last 4 bytes.
type ChecksumWriter struct {
	W   io.Writer
	crc hash.Hash32
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// NewChecksumWriter returns a ChecksumWriter writing to w.
func NewChecksumWriter(w io.Writer) *ChecksumWriter {
	return &ChecksumWriter{W: w, crc: crc32.New(castagnoli)}
}

func (c *ChecksumWriter) Write(p []byte) (int, error) {
	c.crc.Write(p)
	return c.W.Write(p)
}

// WriteSum writes the checksum of everything written so far to W.
func (c *ChecksumWriter) WriteSum() error {
	_, err := c.W.Write(binary.LittleEndian.AppendUint32(nil, c.crc.Sum32()))
	return err
}

// Sink is a snapshot being written: the state machine writes its frame
// (header with the index given to Create, content, checksum) into it.
// Close makes it durable and verifies it; Cancel (or a failed Write or
// Close) leaves nothing under a snapshot's name.
type Sink struct {
	s     *Store
	index uint64
	tmp   *walfs.Atomic
	enc   *zstd.Encoder
	meta  Meta
	done  bool
}

// Create starts the snapshot whose replay starts after log index index.
func (s *Store) Create(index uint64) (*Sink, error) {
	if err := s.fs.MkdirAll(s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", s.dir, err)
	}
	tmp, err := walfs.CreateAtomic(s.fs, filepath.Join(s.dir, fmt.Sprintf("snap-%d.tmp", time.Now().UnixNano())))
	if err != nil {
		return nil, fmt.Errorf("write snapshot: %w", err)
	}
	enc, err := zstd.NewWriter(tmp, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		tmp.Abort()
		return nil, err
	}
	return &Sink{s: s, index: index, tmp: tmp, enc: enc}, nil
}

// ID is the name the snapshot will have.
func (k *Sink) ID() string { return Name(k.index) }

func (k *Sink) Write(p []byte) (int, error) { return k.enc.Write(p) }

// Close finishes the snapshot: compresses its tail, fsyncs it, renames it
// into place, fsyncs the directory, and verifies what is on disk. A
// snapshot that reads back corrupt is set aside, one that cannot be read
// back (an OS error) is removed, and Close fails.
func (k *Sink) Close() error {
	if k.done {
		return errors.New("snapshot: close of a finished sink")
	}
	k.done = true
	if err := k.enc.Close(); err != nil {
		k.tmp.Abort()
		return fmt.Errorf("write snapshot: %w", err)
	}
	m := Meta{ID: k.ID(), Index: k.index, Path: filepath.Join(k.s.dir, k.ID()), Size: k.tmp.Off}
	if err := k.tmp.Commit(m.Path); err != nil {
		return fmt.Errorf("write snapshot %s: %w", m.ID, err)
	}
	if err := k.s.verify(&m); err != nil {
		if errors.Is(err, ErrCorrupt) {
			// What was just written reads back wrong: keep it to inspect.
			k.s.setAside(&m, err)
		} else if rerr := k.s.fs.Remove(m.Path); rerr == nil {
			// Maybe good, but unverified; nothing relies on it yet.
			k.s.fs.SyncDir(k.s.dir)
		}
		return fmt.Errorf("write snapshot %s: %w", m.ID, err)
	}
	k.meta = m
	return nil
}

// Cancel drops the snapshot being written.
func (k *Sink) Cancel() error {
	if !k.done {
		k.done = true
		k.enc.Close()
		k.tmp.Abort()
	}
	return nil
}

// Meta describes the snapshot after a successful Close.
func (k *Sink) Meta() Meta { return k.meta }

// List returns the snapshots, newest first, by the index in their names
// (Open checks the header agrees). Leftover temporary files of an
// interrupted write are removed.
func (s *Store) List() ([]*Meta, error) {
	ents, err := s.fs.ReadDir(s.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var out []*Meta
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "snap-") && strings.HasSuffix(e.Name(), ".tmp") {
			s.fs.Remove(filepath.Join(s.dir, e.Name()))
			continue
		}
		base, ok := strings.CutSuffix(e.Name(), ".snap")
		if !ok || len(base) != 20 {
			continue
		}
		index, err := strconv.ParseUint(base, 10, 64)
		if err != nil {
			continue
		}
		out = append(out, &Meta{ID: e.Name(), Index: index, Path: filepath.Join(s.dir, e.Name())})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index > out[j].Index })
	return out, nil
}

// Newest returns the newest snapshot that verifies (nil: none), the one a
// restore takes, without changing anything: one that fails verification is
// passed over, not set aside. One that cannot be read (an OS error) is an
// error: whether it is the newest is not known.
func (s *Store) Newest() (*Meta, error) {
	list, err := s.List()
	if err != nil {
		return nil, err
	}
	for _, m := range list {
		err := s.verify(m)
		if err == nil {
			return m, nil
		}
		if !errors.Is(err, ErrCorrupt) {
			return nil, err
		}
	}
	return nil, nil
}

// Open verifies the snapshot id and returns a reader of its frame, from
// the header on (the checksum is left at its end). One whose content fails
// verification is moved to corrupt-<id> and the error wraps ErrCorrupt.
// One that cannot be read (an OS error at its open or a read) stays where
// it is, and the error wraps the OS error, not ErrCorrupt; so does a read
// of the reader that fails for such a cause. Every error names the file.
func (s *Store) Open(id string) (*Meta, io.ReadCloser, error) {
	m := &Meta{ID: id, Path: filepath.Join(s.dir, id)}
	base, _ := strings.CutSuffix(id, ".snap")
	index, err := strconv.ParseUint(base, 10, 64)
	if err != nil {
		return nil, nil, fmt.Errorf("open snapshot %s: not a snapshot's name", id)
	}
	m.Index = index
	if verr := s.verify(m); verr != nil {
		if errors.Is(verr, ErrCorrupt) {
			s.setAside(m, verr)
		}
		return m, nil, verr
	}
	f, err := s.fs.OpenFile(m.Path, os.O_RDONLY, 0)
	if err != nil {
		return m, nil, readError(m.Path, err)
	}
	src := &walfs.ErrReader{R: f}
	dec, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1))
	if err != nil {
		f.Close()
		return m, nil, fmt.Errorf("open snapshot %s: %w", m.Path, err)
	}
	return m, &reader{dec: dec, f: f, src: src, path: m.Path}, nil
}

type reader struct {
	dec  *zstd.Decoder
	f    walfs.File
	src  *walfs.ErrReader
	path string
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.dec.Read(p)
	if err != nil && r.src.Err != nil {
		err = readError(r.path, r.src.Err)
	}
	return n, err
}

func (r *reader) Close() error {
	r.dec.Close()
	return r.f.Close()
}

// Retain keeps the snapshot at newest and the newest Keep-1 older ones
// that verify, moves the older ones that are corrupt aside, and deletes
// the rest; it never touches a snapshot newer than newest. One it cannot
// read (an OS error) stays, uncounted (an older one may be kept in its
// place), and Retain returns the error. keepFrom is the
// index of the oldest snapshot kept: the log from there on is needed (by
// the fallback), the log before it by no recovery. It is 0 (keep the whole
// log) while there are fewer than Keep, in case the newest is damaged.
func (s *Store) Retain(newest uint64) (keepFrom uint64, err error) {
	list, err := s.List()
	if err != nil {
		return 0, err
	}
	kept := 0
	for _, m := range list {
		if m.Index > newest {
			continue // written by another run later? never touch what is newer
		}
		if m.Index == newest {
			kept++
			continue
		}
		if kept < s.keep {
			if verr := s.verify(m); verr != nil {
				if errors.Is(verr, ErrCorrupt) {
					s.setAside(m, verr)
				} else if err == nil {
					err = verr
				}
				continue
			}
			kept++
			keepFrom = m.Index
			continue
		}
		if rerr := s.fs.Remove(m.Path); rerr != nil && err == nil {
			err = fmt.Errorf("remove old snapshot: %w", rerr)
		}
	}
	if serr := s.fs.SyncDir(s.dir); serr != nil && err == nil {
		err = serr
	}
	if kept < s.keep {
		keepFrom = 0
	}
	return keepFrom, err
}

// setAside moves a snapshot whose content fails verification (why wraps
// ErrCorrupt) to corrupt-<name>, where it stays for inspection, and logs
// it.
func (s *Store) setAside(m *Meta, why error) {
	to := filepath.Join(s.dir, "corrupt-"+m.ID)
	if _, err := s.fs.OpenFile(to, os.O_RDONLY, 0); err == nil {
		to = fmt.Sprintf("%s-%d", to, time.Now().UnixNano())
	}
	if err := s.fs.Rename(m.Path, to); err != nil {
		s.log.Error("snapshot fails verification and cannot be moved aside", "file", m.Path, "err", why, "move_err", err)
		return
	}
	s.fs.SyncDir(s.dir)
	s.log.Warn("snapshot fails verification: moved aside, not used, not deleted", "file", m.Path, "moved_to", to, "err", why)
}

// verify checks a snapshot file in one streaming pass: its checksum, and
// that its header's index is the one its name says. A file that fails
// either, or does not decompress, or ends early, is corrupt: the error
// wraps ErrCorrupt. One whose open or read fails with an OS error is not
// known to be either: the error is a readError, without ErrCorrupt.
func (s *Store) verify(m *Meta) error {
	f, err := s.fs.OpenFile(m.Path, os.O_RDONLY, 0)
	if err != nil {
		return readError(m.Path, err)
	}
	defer f.Close()
	src := &walfs.ErrReader{R: f}
	dec, err := zstd.NewReader(src, zstd.WithDecoderConcurrency(1))
	if err != nil {
		if src.Err != nil {
			return readError(m.Path, src.Err)
		}
		return fmt.Errorf("open snapshot %s: %w", m.Path, err)
	}
	defer dec.Close()
	crc := crc32.New(castagnoli)
	br := bufio.NewReaderSize(dec, 1<<20)
	var tail [4]byte // the last 4 bytes seen are the stored checksum
	have := 0
	var hdr []byte // the first HeaderLen bytes: magic, version, index
	buf := make([]byte, 1<<16)
	for {
		k, err := br.Read(buf)
		chunk := buf[:k]
		if len(hdr) < HeaderLen {
			hdr = append(hdr, chunk[:min(len(chunk), HeaderLen-len(hdr))]...)
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
		if err != nil && src.Err != nil {
			return readError(m.Path, src.Err)
		}
		if err != nil {
			return corrupt(fmt.Errorf("read snapshot %s: %w", m.ID, err))
		}
	}
	if have < 4 || binary.LittleEndian.Uint32(tail[:]) != crc.Sum32() {
		return corrupt(fmt.Errorf("snapshot %s fails its checksum", m.ID))
	}
	if len(hdr) < HeaderLen || string(hdr[:8]) != s.magic {
		return corrupt(fmt.Errorf("snapshot %s: not a tally snapshot", m.ID))
	}
	if got := binary.LittleEndian.Uint64(hdr[12:]); got != m.Index {
		return corrupt(fmt.Errorf("snapshot %s holds the state at record %d, not the one its name says", m.ID, got))
	}
	return nil
}
