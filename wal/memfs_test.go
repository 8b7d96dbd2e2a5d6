package wal

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

// memFS is an in-memory file system that knows what is durable. Every file
// has its current bytes and the bytes its last fsync made durable; crash
// builds the image a power loss could leave: each 512-byte sector written
// since the last fsync survives or not at random (out of order, as disks
// do), and the file's size is the old or the new one. Directory operations
// are durable at once. Faults: failing writes (with a short write, as on a
// full disk), failing fsyncs, failing opens and directory syncs (as when
// the process has no file descriptor left), and a frozen state after crash.
type memFS struct {
	mu     sync.Mutex
	files  map[string]*memData
	dirs   map[string]bool
	syncs  int
	frozen bool

	failWrite  bool
	shortWrite bool // write half, then ENOSPC
	failSync   bool
	failOpen   error // returned by OpenFile, when set
	failDir    error // returned by directory syncs, when set
}

type memData struct {
	data, synced []byte
}

func newMemFS() *memFS {
	return &memFS{files: map[string]*memData{}, dirs: map[string]bool{}}
}

func (m *memFS) set(f func(m *memFS)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(m)
}

func (m *memFS) fsyncs() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.syncs
}

// crash freezes m (every later operation fails) and returns what a power
// loss at this moment could leave on disk.
func (m *memFS) crash(rng *rand.Rand) *memFS {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.frozen = true
	out := newMemFS()
	for d := range m.dirs {
		out.dirs[d] = true
	}
	for name, f := range m.files {
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
		out.files[name] = &memData{data: img, synced: append([]byte(nil), img...)}
	}
	return out
}

var errFrozen = syscall.EIO

func (m *memFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.frozen {
		return nil, errFrozen
	}
	if m.failOpen != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: m.failOpen}
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
		d = &memData{}
		m.files[name] = d
	}
	if flag&os.O_TRUNC != 0 {
		d.data = d.data[:0]
	}
	return &memFile{fs: m, name: name, d: d}, nil
}

func (m *memFS) ReadDir(dir string) ([]fs.DirEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.frozen {
		return nil, errFrozen
	}
	dir = filepath.Clean(dir)
	var out []fs.DirEntry
	for name := range m.files {
		if filepath.Dir(name) == dir {
			out = append(out, memEntry(filepath.Base(name)))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

func (m *memFS) Rename(a, b string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.frozen {
		return errFrozen
	}
	a, b = filepath.Clean(a), filepath.Clean(b)
	d, ok := m.files[a]
	if !ok {
		return &fs.PathError{Op: "rename", Path: a, Err: fs.ErrNotExist}
	}
	delete(m.files, a)
	m.files[b] = d
	return nil
}

func (m *memFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.frozen {
		return errFrozen
	}
	name = filepath.Clean(name)
	if _, ok := m.files[name]; !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(m.files, name)
	return nil
}

func (m *memFS) MkdirAll(dir string, perm os.FileMode) error {
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

func (m *memFS) SyncDir(dir string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.frozen {
		return errFrozen
	}
	if m.failOpen != nil {
		return &fs.PathError{Op: "open", Path: dir, Err: m.failOpen}
	}
	return m.failDir
}

type memEntry string

func (e memEntry) Name() string               { return string(e) }
func (e memEntry) IsDir() bool                { return false }
func (e memEntry) Type() fs.FileMode          { return 0 }
func (e memEntry) Info() (fs.FileInfo, error) { return memInfo{name: string(e)}, nil }

type memInfo struct {
	name string
	size int64
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) Mode() fs.FileMode  { return 0o644 }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }

type memFile struct {
	fs   *memFS
	name string
	d    *memData
	dir  bool // a directory: only Sync and Close
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
	if f.fs.frozen {
		return 0, errFrozen
	}
	var err error
	if f.fs.failWrite {
		if !f.fs.shortWrite {
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
		if f.fs.frozen {
			return errFrozen
		}
		return f.fs.failDir
	}
	f.fs.syncs++
	if f.fs.frozen || f.fs.failSync {
		return syscall.EIO
	}
	f.d.synced = append(f.d.synced[:0], f.d.data...)
	return nil
}

func (f *memFile) Truncate(size int64) error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.frozen {
		return errFrozen
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
	if f.fs.frozen {
		return errFrozen
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
