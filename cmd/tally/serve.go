package main

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/history"
	"github.com/tally-ml/tally/kafkasource"
	"github.com/tally-ml/tally/node"
)

// serveFlags are the flags shared by serve and demo.
type serveFlags struct {
	config   string
	repo     string
	listen   string
	dataDir  string
	insecure bool
	accept   bool // --accept-schema-change
	cluster  clusterFlags
}

func (f *serveFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.config, "config", "", "node config file (YAML): listen, api_keys, limits")
	cmd.Flags().StringVar(&f.repo, "repo", "", "feature repo directory of *.yaml files (default: the embedded fraud repo)")
	cmd.Flags().StringVar(&f.listen, "listen", "", "client address (default 127.0.0.1:8080)")
	cmd.Flags().StringVar(&f.dataDir, "data-dir", "", "data directory (default ./tally-data)")
	cmd.Flags().BoolVar(&f.insecure, "insecure", false, "allow listening beyond loopback without API keys")
	cmd.Flags().BoolVar(&f.accept, "accept-schema-change", false, "apply repo changes that drop stored state or rebuild views from the log (removed sources, tables, views, columns; changed views)")
	f.cluster.register(cmd)
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
	f.cluster.merge(cfg.Cluster)
	if f.cluster.enabled() {
		r, err := startCluster(cfg, f.cluster, repo, dir, log)
		return r, log, err
	}
	r, err := start(cfg, repo, dir, log)
	return r, log, err
}

// running is an opened node and its HTTP server.
type running struct {
	node      readyCloser
	srv       *node.Server
	ln        net.Listener
	done      chan error
	stopWatch context.CancelFunc
	consumers []*kafkasource.Consumer // the repo's Kafka sources
}

// start opens the node on its data dir (node.Open: lock, recovery, the
// snapshot loop) and serves it; it returns once the listener is open.
func start(cfg node.Config, repo *features.Repo, dir fs.FS, log *slog.Logger) (*running, error) {
	t0 := time.Now()
	n, err := node.Open(cfg, repo, node.OpenOptions{Node: node.Options{RepoFS: dir}, Logger: log})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	srv := node.NewServer(n.Node)
	watchCtx, stopWatch := context.WithCancel(context.Background())
	srv.Handle(history.Path, "historical-features", node.ScopeRead, history.Handler(watchCtx, repo, n.WAL(), log, cfg.Limits))
	r := &running{node: n, srv: srv, ln: ln, done: make(chan error, 1), stopWatch: stopWatch}
	go func() { r.done <- srv.Serve(ln) }()
	go n.WatchModels(watchCtx, time.Second, func(err error) { log.Warn("model reload failed", "err", err) })
	if r.consumers, err = kafkasource.StartAll(n.Node, kafkasource.Options{Logger: log}); err != nil {
		r.stop(log)
		return nil, err
	}
	n.SetReady(true)
	log.Info("tally serving", "listen", ln.Addr().String(), "views", len(repo.Views), "tables", len(repo.Tables),
		"services", len(repo.Services), "data_dir", cfg.DataDir, "auth", len(cfg.APIKeys) > 0, "startup", time.Since(t0).Round(time.Millisecond))
	return r, nil
}

// readyCloser is the node a running server serves: a single node's
// instance, or a cluster node.
type readyCloser interface {
	SetReady(bool)
	Close() error
}

// stop shuts the server down gracefully, then closes the node (a final
// snapshot, the log, the data dir's lock).
func (r *running) stop(log *slog.Logger) error {
	r.node.SetReady(false)
	r.stopWatch()
	log.Info("shutting down")
	for _, c := range r.consumers {
		c.Close()
	}
	if err := r.srv.Shutdown(); err != nil {
		return err
	}
	if err := <-r.done; err != nil {
		return err
	}
	return r.node.Close()
}

func serveCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Args:  noArgs,
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
