package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrDataDirInUse is returned (wrapped, naming the directory and the
// holder's pid) by LockDataDir when another process, or another Open in
// this one, holds the data dir.
var ErrDataDirInUse = errors.New("data dir in use")

// DirLock is an exclusive lock on a data dir: an flock(2) on <dir>/LOCK,
// which holds the holder's pid. The kernel releases it when the process
// exits, however it exits; a LOCK file left behind locks nothing.
type DirLock struct {
	f *os.File
}

// LockDataDir takes the data dir's lock, creating dir if needed, or fails
// at once with ErrDataDirInUse. Every process that writes to a data dir
// (tally serve, demo, admin wal repair) holds it for as long as it runs;
// readers (tally export) do not need it. flock locks conflict between
// separate opens even within one process, so two Opens of one dir in a
// test conflict as two processes do.
func LockDataDir(dir string) (*DirLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder := "another process"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
					holder = "pid " + strconv.Itoa(pid)
				}
			}
			return nil, fmt.Errorf("%w: data dir %s is in use by %s (another tally serve?); stop it first", ErrDataDirInUse, dir, holder)
		}
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	// The pid is for the message of the next process that tries.
	f.Truncate(0)
	f.WriteAt(pid, 0)
	return &DirLock{f: f}, nil
}

// Release drops the lock. The LOCK file stays (deleting it would race a
// process taking the lock meanwhile).
func (l *DirLock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
