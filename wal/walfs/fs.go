package walfs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// FS is the file system durable files live on. OS is the real one; tests
// inject faults (torn writes, full disks, failing fsyncs, power losses)
// through their own. OpenFile of a directory, read-only, should give a
// handle whose Sync is SyncDir: the log holds its directory open that way,
// so that a roll needs no new file descriptor (with an FS that cannot, the
// log calls SyncDir instead).
type FS interface {
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	ReadDir(dir string) ([]fs.DirEntry, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	// MkdirAll creates dir and its missing parents; their entries are
	// durable when it returns.
	MkdirAll(dir string, perm os.FileMode) error
	// SyncDir fsyncs a directory, making creates, renames and removes in
	// it durable.
	SyncDir(dir string) error
}

// File is an open file.
type File interface {
	io.Reader
	io.ReaderAt
	io.WriterAt
	io.Closer
	Sync() error
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
	// Preallocate reserves size bytes (zero-filled) for the file. A disk
	// without the room is an error (ENOSPC), not a sparse file whose
	// writes fail later.
	Preallocate(size int64) error
}

// OS is the operating system's file system.
var OS FS = osFS{}

type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) ReadDir(dir string) ([]fs.DirEntry, error) { return os.ReadDir(dir) }
func (osFS) Rename(a, b string) error                  { return os.Rename(a, b) }
func (osFS) Remove(name string) error                  { return os.Remove(name) }

// MkdirAll creates dir and its missing parents and makes each new
// directory's entry durable (an fsync of its parent, outermost first), as
// Mem's are at once: a file made durable inside a new directory is not
// lost with the directory on a power loss.
func (osFS) MkdirAll(dir string, perm os.FileMode) error {
	var created []string // innermost first
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || d == filepath.Dir(d) {
			break
		}
		created = append(created, d)
	}
	if err := os.MkdirAll(dir, perm); err != nil {
		return err
	}
	for i := len(created) - 1; i >= 0; i-- {
		if err := syncDir(filepath.Dir(created[i])); err != nil {
			return err
		}
	}
	return nil
}

func (osFS) SyncDir(dir string) error { return syncDir(dir) }

// syncDir fsyncs a directory of the OS (a variable: tests count calls).
var syncDir = func(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

type osFile struct{ *os.File }

// Preallocate reserves the blocks with fallocate. Only a file system
// without fallocate (EOPNOTSUPP, ENOSYS) gets a sparse file instead, which
// reads as zeros too; any other failure (ENOSPC, EDQUOT, EIO) is returned:
// a sparse file on a full disk would fail its writes later, where a
// failure breaks the log, instead of here, where it costs nothing.
func (f osFile) Preallocate(size int64) error {
	err := unix.Fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return f.Truncate(size)
	}
	if err != nil {
		return &fs.PathError{Op: "fallocate", Path: f.Name(), Err: err}
	}
	return nil
}

// Writer adapts a File to io.Writer, writing at successive offsets from 0.
type Writer struct {
	F   File
	Off int64
}

func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.F.WriteAt(p, w.Off)
	w.Off += int64(n)
	return n, err
}

// Atomic is a file being written so that a crash leaves either no file or
// the whole of it under its final name, never a part: it is written to a
// temporary name, and Commit fsyncs it, renames it into place and fsyncs
// the directory. Write appends. Abort (or a failed Commit) removes the
// temporary file; Abort after Commit does nothing.
type Atomic struct {
	Writer
	fsys FS
	tmp  string
	done bool
}

// CreateAtomic starts an Atomic at the temporary path tmp (truncated if it
// exists), in the directory its final name will be in.
func CreateAtomic(fsys FS, tmp string) (*Atomic, error) {
	f, err := fsys.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	return &Atomic{Writer: Writer{F: f}, fsys: fsys, tmp: tmp}, nil
}

// Commit makes the file durable under path: fsync, close, rename, fsync
// of path's directory. After an error the file is gone (or, if the rename
// happened and only the directory fsync failed, under path but perhaps not
// durably).
func (a *Atomic) Commit(path string) error {
	if a.done {
		return errors.New("walfs: commit of a finished file")
	}
	a.done = true
	err := a.F.Sync()
	if cerr := a.F.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = a.fsys.Rename(a.tmp, path)
	}
	if err != nil {
		a.fsys.Remove(a.tmp)
		return err
	}
	return a.fsys.SyncDir(filepath.Dir(path))
}

// Abort closes and removes the unfinished file.
func (a *Atomic) Abort() {
	if a.done {
		return
	}
	a.done = true
	a.F.Close()
	a.fsys.Remove(a.tmp)
}

// WriteFile writes data to path atomically and durably (through
// path + ".tmp"; see Atomic).
func WriteFile(fsys FS, path string, data []byte) error {
	a, err := CreateAtomic(fsys, path+".tmp")
	if err != nil {
		return err
	}
	if _, err := a.Write(data); err != nil {
		a.Abort()
		return err
	}
	return a.Commit(path)
}

// ReadFile reads the whole file at path.
func ReadFile(fsys FS, path string) ([]byte, error) {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// ErrReader passes reads on to R and keeps in Err the first error R
// returned other than io.EOF. A reader layered on it (a decompressor, a
// frame decoder) may turn that error into one of its own, or into a short
// read; Err still tells a file that could not be read (an I/O error: the
// file may be fine) from one whose bytes are wrong (corruption).
type ErrReader struct {
	R   io.Reader
	Err error
}

func (r *ErrReader) Read(p []byte) (int, error) {
	n, err := r.R.Read(p)
	if err != nil && err != io.EOF && r.Err == nil {
		r.Err = err
	}
	return n, err
}
