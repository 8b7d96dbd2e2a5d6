package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/valyala/fasthttp"

	"github.com/tally-ml/tally/cluster"
	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/history"
	"github.com/tally-ml/tally/kafkasource"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/store"
)

// clusterFlags start a node as part of a cluster (cluster/DESIGN.md).
type clusterFlags struct {
	nodeID    string
	addr      string
	advertise string
	peers     string
	id        string
	keyFile   string
	bindIP    string
	groups    int
	replicas  int
	join      bool
	// Hidden, for tests: Raft snapshot timing (0 keeps the default).
	snapThreshold, trailingLogs uint64
	snapInterval                time.Duration
}

func (f *clusterFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.nodeID, "node-id", "", "cluster mode: this node's id (stable across restarts)")
	fl.StringVar(&f.addr, "cluster-addr", "", "cluster mode: the cluster port's listen address (Raft and internal RPCs), e.g. 127.0.0.1:7001")
	fl.StringVar(&f.advertise, "cluster-advertise", "", "cluster mode: the cluster address peers dial (default --cluster-addr)")
	fl.StringVar(&f.peers, "cluster-peers", "", "cluster mode: every initial node as id=cluster-addr, comma-separated, this one included (the same list on every node)")
	fl.StringVar(&f.id, "cluster-id", "", "cluster mode: the cluster's name; a node of another cluster is refused")
	fl.StringVar(&f.keyFile, "cluster-key-file", "", "cluster mode: file holding the shared cluster key (>= 16 bytes); or set TALLY_CLUSTER_KEY")
	fl.StringVar(&f.bindIP, "cluster-bind-ip", "", "cluster mode: local IP outbound cluster connections bind to (tests tell nodes apart by it)")
	fl.BoolVar(&f.join, "cluster-join", false, "cluster mode: join a running cluster (bootstrap nothing; wait to be admitted with `tally cluster add-node`); --cluster-peers is then optional")
	fl.IntVar(&f.groups, "cluster-groups", 0, "cluster mode: replica groups, fixed when the cluster is created (default 8); a member started with another number is refused")
	fl.IntVar(&f.replicas, "cluster-replicas", 0, "cluster mode: replicas per group, fixed when the cluster is created, at most the number of --cluster-peers; 1 for development (default 3, or the number of peers if fewer); a member started with another number is refused")
	// Hidden: small values make a follower that fell behind catch up by
	// InstallSnapshot within a test (systemtest/cluster_faults_test.go).
	fl.Uint64Var(&f.snapThreshold, "cluster-snapshot-threshold", 0, "cluster mode (tests): log entries between a group's snapshots (0: default)")
	fl.Uint64Var(&f.trailingLogs, "cluster-trailing-logs", 0, "cluster mode (tests): log entries a group keeps behind its snapshot (0: default)")
	fl.DurationVar(&f.snapInterval, "cluster-snapshot-interval", 0, "cluster mode (tests): how often a group checks whether to snapshot (0: default)")
	for _, n := range []string{"cluster-snapshot-threshold", "cluster-trailing-logs", "cluster-snapshot-interval"} {
		fl.MarkHidden(n)
	}
}

func (f *clusterFlags) enabled() bool {
	return f.nodeID != "" || f.peers != "" || f.addr != "" || f.join
}

// merge fills the flags left unset from the config file's cluster block.
func (f *clusterFlags) merge(cc node.ClusterConfig) {
	fill := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	fill(&f.nodeID, cc.NodeID)
	fill(&f.addr, cc.Addr)
	fill(&f.advertise, cc.Advertise)
	fill(&f.bindIP, cc.BindIP)
	fill(&f.peers, strings.Join(cc.Peers, ","))
	fill(&f.id, cc.ID)
	fill(&f.keyFile, cc.KeyFile)
	if f.groups == 0 {
		f.groups = cc.Groups
	}
	if f.replicas == 0 {
		f.replicas = cc.Replicas
	}
	// Left 0, groups and replicas are not given: a new cluster takes
	// cluster.Open's defaults (8 groups; 3 replicas, or the number of
	// peers if fewer), a member the cluster's own. A value given is passed
	// on, and refused there if the cluster has another (or, for replicas,
	// if it is more than the peers).
}

// config checks the flags and builds the cluster's config.
func (f *clusterFlags) config(dataDir, httpAddr string, log *slog.Logger) (cluster.Config, error) {
	var cc cluster.Config
	if f.nodeID == "" || f.addr == "" || f.peers == "" && !f.join || f.id == "" {
		return cc, errors.New("cluster mode needs --node-id, --cluster-addr, --cluster-peers (or --cluster-join) and --cluster-id (see the README's Cluster section)")
	}
	key := []byte(os.Getenv("TALLY_CLUSTER_KEY"))
	if f.keyFile != "" {
		b, err := os.ReadFile(f.keyFile)
		if err != nil {
			return cc, fmt.Errorf("--cluster-key-file: %w", err)
		}
		key = []byte(strings.TrimSpace(string(b)))
	}
	if len(key) < 16 {
		return cc, errors.New("cluster mode needs a cluster key of at least 16 bytes: --cluster-key-file FILE or TALLY_CLUSTER_KEY")
	}
	var peers []cluster.Member
	for _, p := range strings.FieldsFunc(f.peers, func(r rune) bool { return r == ',' }) {
		id, addr, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || id == "" || addr == "" {
			return cc, fmt.Errorf("--cluster-peers: %q is not id=host:port", p)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return cc, fmt.Errorf("--cluster-peers: %q: %v", p, err)
		}
		m := cluster.Member{ID: id, ClusterAddr: addr}
		if id == f.nodeID {
			m.HTTPAddr = httpAddr
		}
		peers = append(peers, m)
	}
	cc = cluster.Config{NodeID: f.nodeID, DataDir: dataDir, ClusterAddr: f.addr, Advertise: f.advertise, HTTPAddr: httpAddr,
		ClusterID: f.id, Key: key, BindIP: f.bindIP, Peers: peers, Join: f.join, Groups: f.groups, Replicas: f.replicas, Logger: log, LogOut: os.Stderr}
	if f.join {
		cc.FormTimeout = time.Hour // an operator admits it: wait
	}
	cc.Timing.SnapshotThreshold, cc.Timing.TrailingLogs, cc.Timing.SnapshotInterval = f.snapThreshold, f.trailingLogs, f.snapInterval
	return cc, nil
}

// clusterNode is a running cluster node: its lock, replicas and front.
type clusterNode struct {
	*node.Node
	c    *cluster.Cluster
	lock *store.DirLock
}

func (n *clusterNode) Close() error {
	return errors.Join(n.c.Close(), n.lock.Release())
}

// startCluster opens this node's part of the cluster and serves it.
func startCluster(cfg node.Config, f clusterFlags, repo *features.Repo, dir fs.FS, log *slog.Logger) (*running, error) {
	t0 := time.Now()
	cc, err := f.config(cfg.DataDir, cfg.Listen, log)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, err
	}
	lock, err := store.LockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		lock.Release()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	log.Info("joining cluster", "node", cc.NodeID, "cluster", cc.ClusterID, "peers", len(cc.Peers), "cluster_addr", cc.ClusterAddr)
	c, err := cluster.Open(cc, repo)
	if err != nil {
		ln.Close()
		lock.Release()
		return nil, err
	}
	n, err := node.New(repo, cfg, node.Options{Cluster: c, RepoFS: dir, Logger: log})
	if err != nil {
		c.Close()
		ln.Close()
		lock.Release()
		return nil, err
	}
	cn := &clusterNode{Node: n, c: c, lock: lock}
	srv := node.NewServer(n)
	srv.HandleGet("/api/v1/cluster/status", "cluster", node.ScopeAdmin, statusHandler(c))
	registerAdmin(srv, c)
	registerOps(srv, c, n)
	watchCtx, stopWatch := context.WithCancel(context.Background())
	srv.Handle(history.Path, "historical-features", node.ScopeRead, history.ClusterHandler(watchCtx, repo, c.Archives, log, cfg.Limits))
	r := &running{node: cn, srv: srv, ln: ln, done: make(chan error, 1), stopWatch: stopWatch}
	go func() { r.done <- srv.Serve(ln) }()
	// Every node consumes the repo's Kafka sources in their groups,
	// committing through the cluster (cluster/DESIGN.md, "Kafka").
	if r.consumers, err = kafkasource.StartAllRouted(n, c, kafkasource.Options{Logger: log}); err != nil {
		r.stop(log)
		return nil, err
	}
	n.SetReady(true)
	log.Info("tally serving (cluster node)", "listen", ln.Addr().String(), "node", cc.NodeID, "groups_here", len(c.Map().GroupsOf(cc.NodeID)),
		"startup", time.Since(t0).Round(time.Millisecond))
	return r, nil
}

// statusHandler serves GET /api/v1/cluster/status (admin): this node's
// view of the cluster, with replica checksums when ?checksums=true.
func statusHandler(c *cluster.Cluster) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		var st cluster.Status
		var err error
		if string(ctx.QueryArgs().Peek("checksums")) == "true" {
			st, err = c.StatusWithChecksums()
		} else {
			st = c.Status()
		}
		if err != nil {
			ctx.SetStatusCode(500)
			ctx.SetBodyString(err.Error())
			return
		}
		b, _ := json.Marshal(st)
		ctx.SetContentType("application/json")
		ctx.SetBody(b)
	}
}
