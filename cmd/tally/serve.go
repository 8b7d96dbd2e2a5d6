package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/spf13/cobra"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/history"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/wal"
)

// serveFlags are the flags shared by serve and demo.
type serveFlags struct {
	config   string
	repo     string
	listen   string
	dataDir  string
	insecure bool
	accept   bool // --accept-schema-change
}

func (f *serveFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.config, "config", "", "node config file (YAML): listen, api_keys, limits")
	cmd.Flags().StringVar(&f.repo, "repo", "", "feature repo directory of *.yaml files (default: the embedded fraud repo)")
	cmd.Flags().StringVar(&f.listen, "listen", "", "client address (default 127.0.0.1:8080)")
	cmd.Flags().StringVar(&f.dataDir, "data-dir", "", "data directory (default ./tally-data)")
	cmd.Flags().BoolVar(&f.insecure, "insecure", false, "allow listening beyond loopback without API keys")
	cmd.Flags().BoolVar(&f.accept, "accept-schema-change", false, "apply repo changes that drop stored state or rebuild views from the log (removed sources, tables, views, columns; changed views)")
}

// load resolves the config and the feature repo (and its directory) from
// the flags.
func (f *serveFlags) load() (node.Config, *features.Repo, fs.FS, error) {
	cfg := node.DefaultConfig()
	if f.config != "" {
		var err error
		if cfg, err = node.LoadConfig(f.config); err != nil {
			return cfg, nil, nil, err
		}
	}
	if f.listen != "" {
		cfg.Listen = f.listen
	}
	if f.dataDir != "" {
		cfg.DataDir = f.dataDir
	}
	cfg.Insecure = cfg.Insecure || f.insecure
	cfg.AcceptSchemaChange = f.accept
	if err := cfg.Validate(); err != nil {
		return cfg, nil, nil, err
	}
	repo, dir, err := loadRepo(f.repo)
	return cfg, repo, dir, err
}

// startFromFlags resolves the flags and starts the node: the common
// beginning of serve and demo.
func (f *serveFlags) start() (*running, *slog.Logger, error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg, repo, dir, err := f.load()
	if err != nil {
		return nil, nil, err
	}
	r, err := start(cfg, repo, dir, log)
	return r, log, err
}

// running is a started node and its HTTP server.
type running struct {
	log       *wal.Log
	node      *node.Node
	srv       *node.Server
	ln        net.Listener
	done      chan error
	stopWatch context.CancelFunc
	snapDone  chan struct{}
	cfg       node.Config
	lastSnap  uint64 // applied index at the last snapshot
}

// snapshot writes a snapshot and lets the log drop what no snapshot needs
// and the retention no longer keeps.
func (r *running) snapshot(log *slog.Logger) {
	if applied := r.node.AppliedIndex(); applied == r.lastSnap && applied > 0 {
		return // nothing new since the last one
	}
	r.lastSnap = r.node.AppliedIndex()
	t0 := time.Now()
	start, size, err := r.node.Snapshot(r.cfg.DataDir)
	if err != nil {
		log.Error("snapshot failed", "err", err)
		return
	}
	log.Info("snapshot", "start_index", start, "bytes", size, "took", time.Since(t0).Round(time.Millisecond))
	if oldest := node.OldestSnapshotStart(r.cfg.DataDir); oldest > 0 {
		if err := r.log.TruncateFrontOlderThan(oldest, r.cfg.Durability.Retention); err != nil {
			log.Error("log retention", "err", err)
		}
	}
}

// start builds the node and serves it; it returns once the listener is open.
func start(cfg node.Config, repo *features.Repo, dir fs.FS, log *slog.Logger) (*running, error) {
	t0 := time.Now()
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	policy, err := wal.ParseSyncPolicy(cfg.Durability.Fsync)
	if err != nil {
		return nil, err
	}
	walMetrics := metrics.NewSet()
	wl, err := wal.Open(filepath.Join(cfg.DataDir, "wal"), wal.Options{
		Sync: policy, SyncEvery: cfg.Durability.SyncEvery, SegmentSize: cfg.Durability.SegmentSize,
		Compress: true, Metrics: walMetrics,
	})
	if ce := (*wal.CorruptionError)(nil); errors.As(err, &ce) {
		return nil, fmt.Errorf("open the write-ahead log: %w\nto start, stop any tally using this data dir and run: tally admin wal repair --data-dir %s", err, cfg.DataDir)
	}
	if err != nil {
		return nil, fmt.Errorf("open the write-ahead log: %w", err)
	}
	n, err := node.New(repo, cfg, node.Options{RepoFS: dir, Log: wl, Logger: log})
	if err != nil {
		wl.Close()
		return nil, err
	}
	n.Metrics().RegisterMetricsWriter(walMetrics.WritePrometheus)
	if err := n.CheckSchema(cfg.DataDir, cfg.AcceptSchemaChange, log); err != nil {
		wl.Close()
		return nil, err
	}
	snap, err := n.RestoreLatestSnapshot(cfg.DataDir, func(path string, err error) {
		log.Warn("snapshot skipped, trying the previous one", "file", path, "err", err)
	})
	if err != nil {
		wl.Close()
		return nil, err
	}
	rec, err := n.RecoverFrom(wl)
	rec.Snapshot = snap
	if err == nil {
		err = n.SaveSchema(cfg.DataDir)
	}
	if err != nil {
		wl.Close()
		return nil, err
	}
	log.Info("recovered", "snapshot", rec.Snapshot, "snapshot_index", rec.SnapshotIndex, "log_records_replayed", rec.Replayed,
		"last_index", wl.LastIndex(), "took", rec.Duration.Round(time.Millisecond))
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		wl.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	srv := node.NewServer(n)
	watchCtx, stopWatch := context.WithCancel(context.Background())
	srv.Handle(history.Path, "historical-features", node.ScopeRead, history.Handler(watchCtx, repo, wl, log, cfg.Limits))
	r := &running{cfg: cfg, log: wl, node: n, srv: srv, ln: ln, done: make(chan error, 1), stopWatch: stopWatch}
	go func() { r.done <- srv.Serve(ln) }()
	go n.WatchModels(watchCtx, time.Second, func(err error) { log.Warn("model reload failed", "err", err) })
	if every := cfg.Durability.SnapshotEvery; every > 0 {
		r.snapDone = make(chan struct{})
		go func() {
			defer close(r.snapDone)
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-watchCtx.Done():
					return
				case <-t.C:
					r.snapshot(log)
				}
			}
		}()
	}
	n.SetReady(true)
	log.Info("tally serving", "listen", ln.Addr().String(), "views", len(repo.Views), "tables", len(repo.Tables),
		"services", len(repo.Services), "data_dir", cfg.DataDir, "auth", len(cfg.APIKeys) > 0, "startup", time.Since(t0).Round(time.Millisecond))
	return r, nil
}

// stop shuts the server down gracefully.
func (r *running) stop(log *slog.Logger) error {
	r.node.SetReady(false)
	r.stopWatch()
	log.Info("shutting down")
	if err := r.srv.Shutdown(); err != nil {
		return err
	}
	if err := <-r.done; err != nil {
		return err
	}
	if r.snapDone != nil {
		<-r.snapDone
		r.snapshot(log) // a clean stop restarts from here, with nothing to replay
	}
	return r.log.Close()
}

func serveCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve a feature repo over HTTP (default: the embedded fraud repo on 127.0.0.1:8080)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, log, err := f.start()
			if err != nil {
				return err
			}
			ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
			defer cancel()
			select {
			case <-ctx.Done():
			case err := <-r.done:
				return fmt.Errorf("server stopped: %w", err)
			}
			return r.stop(log)
		},
	}
	f.register(cmd)
	return cmd
}
