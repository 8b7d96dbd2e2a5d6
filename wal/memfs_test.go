package wal

import (
	"io/fs"
	"os"

	"github.com/tally-ml/tally/wal/walfs"
)

// memFS is the in-memory, crash-simulating file system (walfs.Mem).
type memFS = walfs.Mem

func newMemFS() *memFS { return walfs.NewMem() }

// osFS is the OS file system as a struct that test file systems embed.
type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	return OS.OpenFile(name, flag, perm)
}
func (osFS) ReadDir(dir string) ([]fs.DirEntry, error)   { return OS.ReadDir(dir) }
func (osFS) Rename(a, b string) error                    { return OS.Rename(a, b) }
func (osFS) Remove(name string) error                    { return OS.Remove(name) }
func (osFS) MkdirAll(dir string, perm os.FileMode) error { return OS.MkdirAll(dir, perm) }
func (osFS) SyncDir(dir string) error                    { return OS.SyncDir(dir) }
