package node

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Connections cost a file descriptor each, the same descriptors the
// write-ahead log and snapshots need: the node bounds them well below the
// process's open-file limit. (Go raises the soft limit to the hard one at
// start, on every Unix: see TestGoRaisesOpenFileLimit.)
const (
	autoMaxConns = 10_000 // limits.max_conns: 0 takes half the open-file limit, at most this
	reservedFDs  = 128    // what an explicit limits.max_conns must leave to the rest
)

// openFileLimit is the process's soft RLIMIT_NOFILE, 0 if unknown.
func openFileLimit() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return 0
	}
	return int(lim.Cur)
}

// connLimit resolves limits.max_conns against the open-file limit files (0:
// unknown): 0 picks half of it (at most autoMaxConns); a number that leaves
// fewer than reservedFDs descriptors to the log, snapshots and archive
// reads is refused.
func connLimit(configured, files int) (int, error) {
	if configured == 0 {
		if files == 0 {
			return autoMaxConns, nil
		}
		return max(1, min(autoMaxConns, files/2)), nil
	}
	if files > 0 && configured > files-reservedFDs {
		return 0, fmt.Errorf("limits.max_conns %d: the process may open %d files, and the write-ahead log and snapshots need some of them; "+
			"use at most %d, or 0 for half the limit, or raise the open-file limit (ulimit -n, systemd LimitNOFILE)",
			configured, files, max(0, files-reservedFDs))
	}
	return configured, nil
}

// retryListener keeps accepting when the process or the system is out of
// file descriptors (EMFILE, ENFILE): it pauses, up to a second, and tries
// again, where fasthttp would stop serving.
type retryListener struct{ net.Listener }

func (l retryListener) Accept() (net.Conn, error) {
	pause := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err == nil || !(errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)) {
			return c, err
		}
		time.Sleep(pause)
		pause = min(2*pause, time.Second)
	}
}
