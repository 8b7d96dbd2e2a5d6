package walfs

import (
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"
)

// Mem is an in-memory file system that knows what is durable, for crash
// tests. Every file has its current bytes and the bytes its last fsync made
// durable; every directory has its current entries and the entries its
// last SyncDir made durable (creates, renames and removes since then are
// pending, in order). Crash builds the image a power loss could leave:
// each directory keeps a random prefix of its pending operations (a
// journaling file system commits them in order); each 512-byte sector
// written since the file's last fsync survives or not at random (out of
// order, as disks do), and the file's size is the old or the new one.
//
// Opening a directory read-only gives a handle whose Sync is SyncDir.
//
// Faults: failing writes (with a short write, as on a full disk), failing
// fsyncs, failing opens and directory syncs (as when the process has no
// file descriptor left), failing reads (as on a bad sector), and a frozen
// state after a crash or after a set number of mutating operations
// (FreezeAfter: a power loss at an exact point). Set the fault fields
// inside Set.
type Mem struct {
	mu      sync.Mutex
	files   map[string]*memData // the current namespace
	durable map[string]*memData // the namespace as the last SyncDirs left it
	pending []dirOp             // directory operations not synced yet, in order
	dirs    map[string]bool
	syncs   int
	frozen  bool
	budget  int // mutating operations left before freezing; < 0: no limit
	muts    int // mutating operations so far

	FailWrite  bool
	ShortWrite bool // write half, then ENOSPC
	FailSync   bool
	FailOpen   error // returned by OpenFile (and SyncDir, which opens), when set
	FailDir    error // returned by directory syncs, when set
	// FailRead, when set, is returned by reads (Read, ReadAt) of bytes at
	// or past offset FailReadAt, after the bytes before it.
	FailRead   error
	FailReadAt int64
	// FailOnly, when set, limits FailOpen and FailRead to the file of that
	// name: one file's bad sector, one open of many that hits EMFILE.
	FailOnly string
}

// fails reports whether the fault err applies to the file name; m.mu is
// held.
func (m *Mem) fails(err error, name string) bool {
	return err != nil && (m.FailOnly == "" || filepath.Clean(m.FailOnly) == filepath.Clean(name))
}

type memData struct {
	data, synced []byte
}

type dirOp struct {
	dir      string
	from, to string // rename from -> to; create: from == ""; remove: to == ""
	d        *memData
}

// NewMem returns an empty Mem.
func NewMem() *Mem {
	return &Mem{files: map[string]*memData{}, durable: map[string]*memData{}, dirs: map[string]bool{}, budget: -1}
}

// Set runs f with m locked, to set its fault fields.
func (m *Mem) Set(f func(m *Mem)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(m)
}

// Fsyncs counts the file fsyncs so far.
func (m *Mem) Fsyncs() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.syncs
}

// FreezeAfter lets n more mutating operations (writes, fsyncs, truncates,
// creates, renames, removes, directory syncs) through, then freezes m as
// a power loss would: that operation and every later one fails.
func (m *Mem) FreezeAfter(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.budget = n
}

// Frozen reports whether m is frozen.
func (m *Mem) Frozen() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.frozen
}

// mutate is called, locked, by every mutating operation: it fails once m
// is frozen or its budget is spent.
func (m *Mem) mutate() error {
	if m.frozen {
		return errFrozen
	}
	if m.budget == 0 {
		m.frozen = true
		return errFrozen
	}
	if m.budget > 0 {
		m.budget--
	}
	m.muts++
	return nil
}

// Mutations counts the mutating operations m has let through.
func (m *Mem) Mutations() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.muts
}

// Crash freezes m (every later operation fails) and returns what a power
// loss at this moment could leave on disk, as a new Mem.
func (m *Mem) Crash(rng *rand.Rand) *Mem {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.frozen = true
	out := NewMem()
	for d := range m.dirs {
		out.dirs[d] = true
	}
	ns := make(map[string]*memData, len(m.durable))
	for name, d := range m.durable {
		ns[name] = d
	}
	// Each directory keeps a random prefix of its pending operations.
	keep := map[string]int{}
	count := map[string]int{}
	for _, op := range m.pending {
		count[op.dir]++
	}
	// Map order is random in Go: draw in sorted order, so that a seed gives
	// one image.
	for _, dir := range sortedKeys(count) {
		keep[dir] = rng.IntN(count[dir] + 1)
	}
	for _, op := range m.pending {
		if keep[op.dir] == 0 {
			continue
		}
		keep[op.dir]--
		applyOp(ns, op)
	}
	images := map[*memData]*memData{}
	for _, name := range sortedKeys(ns) {
		f := ns[name]
		if img, ok := images[f]; ok { // one file under two names cannot happen; keep it simple
			out.files[name] = img
			continue
		}
		img := append([]byte(nil), f.synced...)
		if rng.IntN(2) == 0 {
			if len(f.data) > len(img) {
				img = append(img, make([]byte, len(f.data)-len(img))...)
			} else {
				img = img[:len(f.data)]
			}
		}
		for s := 0; s < len(img); s += 512 {
			e := min(s+512, len(img))
			if e > len(f.data) {
				continue
			}
			if string(img[s:e]) != string(f.data[s:e]) && rng.IntN(2) == 0 {
				copy(img[s:e], f.data[s:e])
			}
		}
		d := &memData{data: img, synced: append([]byte(nil), img...)}
		images[f] = d
		out.files[name] = d
		out.durable[name] = d
	}
	return out
}

func applyOp(ns map[string]*memData, op dirOp) {
	if op.from != "" {
		if ns[op.from] != op.d {
			// The file under this name is not the one the operation moved
			// (its create was not kept): nothing to move.
			if op.to == "" {
				delete(ns, op.from)
			}
			return
		}
		delete(ns, op.from)
	}
	if op.to != "" {
		ns[op.to] = op.d
	}
}

var errFrozen = syscall.EIO

// ReadFile returns a copy of a file's current bytes (nil if it does not
// exist, empty and not nil if it is empty).
func (m *Mem) ReadFile(name string) []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.files[filepath.Clean(name)]
	if !ok {
		return nil
	}
	return append([]byte{}, d.data...)
}

// WriteFile puts a file with data, durable at once (creating its
// directory), as a test's fixture.
func (m *Mem) WriteFile(name string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	for d := filepath.Dir(name); ; d = filepath.Dir(d) {
		m.dirs[d] = true
		if d == filepath.Dir(d) {
			break
		}
	}
	d := &memData{data: append([]byte(nil), data...), synced: append([]byte(nil), data...)}
	m.files[name] = d
	m.durable[name] = d
}

func (m *Mem) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.frozen {
		return nil, errFrozen
	}
	if m.fails(m.FailOpen, name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: m.FailOpen}
	}
	name = filepath.Clean(name)
	if m.dirs[name] && flag&os.O_CREATE == 0 {
		return &memFile{fs: m, name: name, dir: true}, nil
	}
	d, ok := m.files[name]
	if !ok {
		if flag&os.O_CREATE == 0 {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		if !m.dirs[filepath.Dir(name)] {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		if err := m.mutate(); err != nil {
			return nil, err
		}
		d = &memData{}
		m.files[name] = d
		m.pending = append(m.pending, dirOp{dir: filepath.Dir(name), to: name, d: d})
	} else if flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrExist}
	}
	if flag&os.O_TRUNC != 0 {
		if err := m.mutate(); err != nil {
			return nil, err
		}
		d.data = d.data[:0]
	}
	return &memFile{fs: m, name: name, d: d}, nil
}

func (m *Mem) ReadDir(dir string) ([]fs.DirEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.frozen {
		return nil, errFrozen
	}
	dir = filepath.Clean(dir)
	if !m.dirs[dir] {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	var out []fs.DirEntry
	for name, d := range m.files {
		if filepath.Dir(name) == dir {
			out = append(out, memEntry{name: filepath.Base(name), size: int64(len(d.data))})
		}
	}
	for d := range m.dirs {
		if d != dir && filepath.Dir(d) == dir {
			out = append(out, memEntry{name: filepath.Base(d), dir: true})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

func (m *Mem) Rename(a, b string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, b = filepath.Clean(a), filepath.Clean(b)
	d, ok := m.files[a]
	if !ok {
		if m.frozen {
			return errFrozen
		}
		return &fs.PathError{Op: "rename", Path: a, Err: fs.ErrNotExist}
	}
	if err := m.mutate(); err != nil {
		return err
	}
	delete(m.files, a)
	m.files[b] = d
	m.pending = append(m.pending, dirOp{dir: filepath.Dir(b), from: a, to: b, d: d})
	return nil
}

func (m *Mem) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	name = filepath.Clean(name)
	d, ok := m.files[name]
	if !ok {
		if m.frozen {
			return errFrozen
		}
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	if err := m.mutate(); err != nil {
		return err
	}
	delete(m.files, name)
	m.pending = append(m.pending, dirOp{dir: filepath.Dir(name), from: name, d: d})
	return nil
}

// MkdirAll creates directories, durable at once.
func (m *Mem) MkdirAll(dir string, perm os.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.frozen {
		return errFrozen
	}
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		m.dirs[d] = true
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

func (m *Mem) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fails(m.FailOpen, dir) && !m.frozen {
		return &fs.PathError{Op: "open", Path: dir, Err: m.FailOpen}
	}
	return m.syncDirLocked(dir)
}

// syncDirLocked makes dir's pending operations durable; m.mu is held.
func (m *Mem) syncDirLocked(dir string) error {
	if err := m.mutate(); err != nil {
		return err
	}
	if m.FailDir != nil {
		return m.FailDir
	}
	dir = filepath.Clean(dir)
	rest := m.pending[:0]
	for _, op := range m.pending {
		if op.dir == dir {
			applyOp(m.durable, op)
		} else {
			rest = append(rest, op)
		}
	}
	m.pending = rest
	return nil
}

type memEntry struct {
	name string
	size int64
	dir  bool
}

func (e memEntry) Name() string { return e.name }
func (e memEntry) IsDir() bool  { return e.dir }
func (e memEntry) Type() fs.FileMode {
	if e.dir {
		return fs.ModeDir
	}
	return 0
}
func (e memEntry) Info() (fs.FileInfo, error) {
	return memInfo{name: e.name, size: e.size, dir: e.dir}, nil
}

type memInfo struct {
	name string
	size int64
	dir  bool
}

func (i memInfo) Name() string { return i.name }
func (i memInfo) Size() int64  { return i.size }
func (i memInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return i.dir }
func (i memInfo) Sys() any           { return nil }

type memFile struct {
	fs   *Mem
	name string
	d    *memData
	dir  bool // a directory: only Sync (SyncDir) and Close
	pos  int64
}

func (f *memFile) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.pos)
	f.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.frozen {
		return 0, errFrozen
	}
	if f.fs.fails(f.fs.FailRead, f.name) && off+int64(len(p)) > f.fs.FailReadAt {
		n := 0
		if off < f.fs.FailReadAt {
			n = copy(p[:f.fs.FailReadAt-off], f.d.data[min(off, int64(len(f.d.data))):])
		}
		return n, &fs.PathError{Op: "read", Path: f.name, Err: f.fs.FailRead}
	}
	if off >= int64(len(f.d.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.d.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.mutate(); err != nil {
		return 0, err
	}
	var err error
	if f.fs.FailWrite {
		if !f.fs.ShortWrite {
			return 0, syscall.EIO
		}
		p, err = p[:len(p)/2], syscall.ENOSPC
	}
	if end := off + int64(len(p)); end > int64(len(f.d.data)) {
		f.d.data = append(f.d.data, make([]byte, end-int64(len(f.d.data)))...)
	}
	copy(f.d.data[off:], p)
	return len(p), err
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.dir {
		return f.fs.syncDirLocked(f.name)
	}
	f.fs.syncs++
	if err := f.fs.mutate(); err != nil {
		return err
	}
	if f.fs.FailSync {
		return syscall.EIO
	}
	f.d.synced = append(f.d.synced[:0], f.d.data...)
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.mutate(); err != nil {
		return err
	}
	if size <= int64(len(f.d.data)) {
		f.d.data = f.d.data[:size]
	} else {
		f.d.data = append(f.d.data, make([]byte, size-int64(len(f.d.data)))...)
	}
	return nil
}

func (f *memFile) Preallocate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.mutate(); err != nil {
		return err
	}
	if size > int64(len(f.d.data)) {
		f.d.data = append(f.d.data, make([]byte, size-int64(len(f.d.data)))...)
	}
	return nil
}

func (f *memFile) Stat() (os.FileInfo, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return memInfo{name: filepath.Base(f.name), size: int64(len(f.d.data))}, nil
}

func (f *memFile) Close() error { return nil }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
