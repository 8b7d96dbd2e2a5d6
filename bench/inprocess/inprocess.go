package inprocess

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/wal"
)

// Options configure the node.
type Options struct {
	// WAL gives the node a write-ahead log (fsync=always, as `tally serve`
	// defaults to) in its temporary data directory; otherwise its state is
	// in memory only.
	WAL bool
}

// Setup describes, for a report, what Start starts.
func Setup(o Options) string {
	state := "state in memory"
	if o.WAL {
		state = "with its write-ahead log (fsync=always)"
	}
	return "in process: node.New + node.NewServer (the code `tally serve` runs) with the embedded default repo, on a loopback port, " + state
}

// Start starts a node and returns its host:port and a function that stops
// it and removes its data directory.
func Start(o Options) (addr string, stop func(), err error) {
	repo, err := features.Default()
	if err != nil {
		return "", nil, fmt.Errorf("default repo: %w", err)
	}
	dir, err := os.MkdirTemp("", "tally-bench-")
	if err != nil {
		return "", nil, err
	}
	cfg := node.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = dir
	cfg.Limits.MaxRecords = 1_000_000
	cfg.Limits.MaxBodyBytes = 256 << 20
	cfg.Limits.MaxBatch = 10_000
	nopts := node.Options{RepoFS: features.DefaultFS()}
	var l *wal.Log
	if o.WAL {
		if l, err = wal.Open(filepath.Join(dir, "wal"), wal.Options{Compress: true}); err != nil {
			os.RemoveAll(dir)
			return "", nil, fmt.Errorf("open write-ahead log: %w", err)
		}
		nopts.Log = l
	}
	cleanup := func() {
		if l != nil {
			l.Close()
		}
		os.RemoveAll(dir)
	}
	n, err := node.New(repo, cfg, nopts)
	if err != nil {
		cleanup()
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cleanup()
		return "", nil, err
	}
	srv := node.NewServer(n)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	n.SetReady(true)
	return ln.Addr().String(), func() {
		_ = srv.Shutdown()
		<-done
		cleanup()
	}, nil
}
