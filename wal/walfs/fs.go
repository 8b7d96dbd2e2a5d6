package walfs

import (
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// FS is the file system durable files live on. OS is the real one; tests
// inject faults (torn writes, full disks, failing fsyncs, power losses)
// through their own.
type FS interface {
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	ReadDir(dir string) ([]fs.DirEntry, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
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
	// Preallocate reserves size bytes (zero-filled) for the file.
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
func (osFS) MkdirAll(dir string, perm os.FileMode) error {
	return os.MkdirAll(dir, perm)
}

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

type osFile struct{ *os.File }

func (f osFile) Preallocate(size int64) error {
	if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err == nil {
		return nil
	}
	// File systems without fallocate: a sparse file reads as zeros too.
	return f.Truncate(size)
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
