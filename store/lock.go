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
// which holds the holder's pid, and one on the directory itself, which
// holds when the LOCK file is deleted under a running holder (taken for a
// stale one: a second process would lock a new LOCK file and write the same
// log). The kernel releases both when the process exits, however it exits;
// a LOCK file left behind locks nothing.
type DirLock struct {
	f, d *os.File
}

// LockDataDir takes the data dir's lock, creating dir if needed, or fails
// at once with ErrDataDirInUse. Every process that writes to a data dir
// (tally serve, demo, admin wal repair) holds it for as long as it runs;
// readers (tally export) do not need it. flock locks conflict between
// separate opens even within one process, so two Opens of one dir in a
// test conflict as two processes do. It refuses the inside of a data dir
// (CheckDataDir).
func LockDataDir(dir string) (*DirLock, error) {
	if err := CheckDataDir(dir); err != nil {
		return nil, err
	}
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
	d, err := lockDir(dir)
	if err != nil {
		f.Close()
		return nil, err
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	// The pid is for the message of the next process that tries.
	f.Truncate(0)
	f.WriteAt(pid, 0)
	return &DirLock{f: f, d: d}, nil
}

// lockDir takes the flock on the directory itself. A file system that
// cannot lock a directory (NFS emulates flock with byte-range locks, which
// need a file open for writing) leaves the LOCK file's lock alone, as
// before; it returns nil then.
func lockDir(dir string) (*os.File, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	err = unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	switch {
	case err == nil:
		return d, nil
	case errors.Is(err, unix.EWOULDBLOCK):
		d.Close()
		return nil, fmt.Errorf("%w: data dir %s is in use by another process (its LOCK file was deleted or replaced while it ran, so its pid is not known: look for a tally serve, demo or admin with this --data-dir); stop it first, and do not delete LOCK: a LOCK file left behind locks nothing", ErrDataDirInUse, dir)
	case errors.Is(err, unix.EBADF), errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, unix.ENOLCK), errors.Is(err, unix.EINVAL):
		d.Close()
		return nil, nil
	}
	d.Close()
	return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
}

// Release drops the lock. The LOCK file stays (deleting it would race a
// process taking the lock meanwhile).
func (l *DirLock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	if l.d != nil {
		l.d.Close()
	}
	l.f, l.d = nil, nil
	return err
}

// CheckDataDir refuses dir as a data dir when it is the inside of one: its
// top level holds log segments (<20 digits>.wal or .wal.zst) or snapshots
// (<20 digits>.snap), as <data-dir>/wal and <data-dir>/snapshots do. A node
// opened there would start empty inside the log of the data it should
// serve, and an export would read an empty archive. The error names the
// parent, the data dir probably meant. A dir that cannot be read (a new
// one) passes: the caller's own open says what is wrong with it.
// LockDataDir calls it; commands that read a data dir without the lock call
// it themselves.
func CheckDataDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	for _, e := range ents {
		name := e.Name()
		what, base := "write-ahead log segment", ""
		var ok bool
		if base, ok = strings.CutSuffix(name, ".wal.zst"); !ok {
			base, ok = strings.CutSuffix(name, ".wal")
		}
		if !ok {
			what = "snapshot"
			base, ok = strings.CutSuffix(name, ".snap")
		}
		if _, err := strconv.ParseUint(base, 10, 64); !ok || len(base) != 20 || err != nil || !e.Type().IsRegular() {
			continue
		}
		return fmt.Errorf("--data-dir %s is the inside of a data dir, not a data dir: it holds the %s %s, a node opened there would start empty, an export would read no events; "+
			"give the data dir itself: --data-dir %s", dir, what, name, filepath.Dir(filepath.Clean(dir)))
	}
	return nil
}
