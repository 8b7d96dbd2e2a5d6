package cluster

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/cluster/transport"
	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/wal"
)

// Config is one node's part of a cluster.
type Config struct {
	NodeID      string // unique and stable: a restarted node keeps its id and data dir
	DataDir     string // the node's data dir; the cluster keeps its groups in DataDir/cluster
	ClusterAddr string // where the cluster port listens ("host:port")
	Advertise   string // the cluster address peers dial; default ClusterAddr
	HTTPAddr    string // this node's client API address, as clients reach it
	ClusterID   string // every node of the cluster has the same
	Key         []byte // the cluster key (>= 16 bytes), the same on every node
	BindIP      string // optional: the local IP outbound cluster dials bind to
	// Peers are the cluster's initial nodes, this one included, with their
	// cluster addresses (HTTP addresses may be empty: each node reports
	// its own). Every node of a new cluster is started with the same list;
	// the cluster forms when all of them are up.
	Peers    []Member
	Groups   int // G, fixed at creation (default 8)
	Replicas int // R (default 3; at most len(Peers))
	// Sync is the groups' log fsync policy (default wal.SyncAlways: an
	// acknowledged write is on a quorum's disks).
	Sync wal.SyncPolicy
	// WriteTimeout bounds how long a write waits for every group to commit
	// before answering 503 (default 5s); FormTimeout how long Open waits
	// for the cluster map (default 2m).
	WriteTimeout, FormTimeout time.Duration
	// Timing overrides the Raft timing (tests); zero fields keep defaults.
	Timing raftTiming
	Logger *slog.Logger
	LogOut io.Writer // Raft's own log (warnings); nil: discarded
}

// Cluster is a node's part of a running cluster: its metadata replica, its
// data-group replicas, the cluster port and the internal RPCs. It
// implements node.Cluster for the node front.
type Cluster struct {
	cfg    Config
	repo   *features.Repo
	proto  *store.Store // stateless: encodes records
	mux    *transport.Mux
	meta   *replica
	metaSM *metaFSM
	m      atomic.Pointer[Map]

	// groups holds this node's replicas by group id: a map never changed
	// once stored (copy on write under groupsMu), read without a lock
	// through group and localGroups.
	groups   atomic.Pointer[map[int]*dataGroup]
	groupsMu sync.Mutex
	hints    []atomic.Value // per group: the member id last seen leading it
	rpc      *http.Client
	rpcSrv   *http.Server
	closing  chan struct{}
	wg       sync.WaitGroup
	logger   *slog.Logger
	streams  sync.Map // kafka.go: a stream partition's known offsets per group
}

type dataGroup struct {
	id  int
	rep *replica
	fsm *groupFSM
	bar barrier
}

var _ node.Cluster = (*Cluster)(nil)

// Open joins this node to its cluster: it opens the cluster port, the
// metadata group (bootstrapping it with Peers on first start), waits for
// the cluster map, and opens a replica of every group the map gives this
// node. A restarted node finds its groups' state in its data dir.
func Open(cfg Config, repo *features.Repo) (*Cluster, error) {
	if cfg.Groups == 0 {
		cfg.Groups = 8
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = min(3, len(cfg.Peers))
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 5 * time.Second
	}
	if cfg.FormTimeout == 0 {
		cfg.FormTimeout = 2 * time.Minute
	}
	if cfg.Advertise == "" {
		cfg.Advertise = cfg.ClusterAddr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.LogOut == nil {
		cfg.LogOut = io.Discard
	}
	cfg.Timing = withDefaults(cfg.Timing)
	if cfg.NodeID == "" {
		return nil, errors.New("cluster: a node id is needed (--node-id)")
	}
	if !slices.ContainsFunc(cfg.Peers, func(m Member) bool { return m.ID == cfg.NodeID }) {
		return nil, fmt.Errorf("cluster: this node (%s) is not in the peer list: list every initial node, this one included", cfg.NodeID)
	}
	proto, err := store.New(repo, store.Options{})
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, repo: repo, proto: proto, closing: make(chan struct{}), logger: cfg.Logger}
	c.mux, err = transport.Listen(cfg.ClusterAddr, transport.Config{ClusterID: cfg.ClusterID, Key: cfg.Key, BindIP: cfg.BindIP, Advertise: cfg.Advertise, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("cluster port: %w", err)
	}
	rpcLayer := c.mux.Layer("rpc")
	c.rpc = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return rpcLayer.Dial(raft.ServerAddress(addr), 2*time.Second)
		},
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     time.Minute,
	}}
	c.rpcSrv = &http.Server{Handler: c.rpcHandler(), ReadHeaderTimeout: 5 * time.Second}
	c.groups.Store(&map[int]*dataGroup{})

	if err := c.openMeta(); err != nil {
		c.Close()
		return nil, err
	}
	m, err := c.waitMap()
	if err != nil {
		c.Close()
		return nil, err
	}
	c.hints = make([]atomic.Value, len(m.Groups))
	for _, g := range m.GroupsOf(cfg.NodeID) {
		if err := c.openGroup(m, g); err != nil {
			c.Close()
			return nil, err
		}
	}
	// The internal RPCs start once this node's groups are open (peers
	// retry until then).
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.rpcSrv.Serve(rpcLayer) }()
	c.wg.Add(1)
	go c.spreadLeaders()
	return c, nil
}

// spreadLeaders hands the leadership of a group this node leads to the
// group's preferred leader (its first replica in the map) when that
// replica is up to date: whichever node starts first wins every first
// election, and leaders spread only if they are handed back. Checked every
// leaderCheck; a transfer that fails (the preferred node is down or
// behind) is tried again at the next check.
func (c *Cluster) spreadLeaders() {
	defer c.wg.Done()
	tick := time.NewTicker(leaderCheck)
	defer tick.Stop()
	for {
		select {
		case <-c.closing:
			return
		case <-tick.C:
		}
		m := c.Map()
		for g, dg := range c.localGroups() {
			pref := m.Groups[g].Replicas[0]
			if pref == c.cfg.NodeID || dg.rep.raft.State() != raft.Leader {
				continue
			}
			if mb := m.Member(pref); mb != nil {
				dg.rep.raft.LeadershipTransferToServer(raft.ServerID(pref), raft.ServerAddress(mb.ClusterAddr))
			}
		}
	}
}

// leaderCheck is how often a node hands leaderships back (spreadLeaders).
const leaderCheck = 5 * time.Second

func withDefaults(t raftTiming) raftTiming {
	d := defaultTiming()
	t.Heartbeat, t.Election, t.Lease, t.Commit = cmp.Or(t.Heartbeat, d.Heartbeat), cmp.Or(t.Election, d.Election), cmp.Or(t.Lease, d.Lease), cmp.Or(t.Commit, d.Commit)
	t.SnapshotThreshold, t.TrailingLogs = cmp.Or(t.SnapshotThreshold, d.SnapshotThreshold), cmp.Or(t.TrailingLogs, d.TrailingLogs)
	t.SnapshotInterval = cmp.Or(t.SnapshotInterval, d.SnapshotInterval)
	return t
}

// openMeta opens the metadata replica; its voters are the first five
// peers by id.
func (c *Cluster) openMeta() error {
	peers := slices.Clone(c.cfg.Peers)
	slices.SortFunc(peers, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	var voters []raft.Server
	for _, p := range peers[:min(5, len(peers))] {
		voters = append(voters, raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.ClusterAddr)})
	}
	c.metaSM = newMetaFSM()
	trans := c.mux.Transport("meta", 3, 10*time.Second, c.cfg.LogOut)
	rep, err := openReplica("meta", groupDir(c.cfg.DataDir, "meta"), c.cfg.NodeID, voters, c.metaSM, trans, c.cfg.Timing, c.cfg.Sync, c.cfg.LogOut)
	if err != nil {
		trans.Close()
		return err
	}
	c.meta = rep
	return nil
}

// waitMap waits for the cluster map; the metadata leader proposes the
// first one, built from Peers, when there is none.
func (c *Cluster) waitMap() (*Map, error) {
	deadline := time.After(c.cfg.FormTimeout)
	for {
		m, changed := c.metaSM.current()
		if m != nil {
			if m.ID != c.cfg.ClusterID {
				return nil, fmt.Errorf("cluster: the data dir belongs to cluster %q, not %q", m.ID, c.cfg.ClusterID)
			}
			c.m.Store(m)
			c.wg.Add(1)
			go c.followMap()
			return m, nil
		}
		if c.meta.raft.State() == raft.Leader {
			first, err := NewMap(c.cfg.ClusterID, c.cfg.Peers, c.cfg.Groups, c.cfg.Replicas)
			if err != nil {
				return nil, fmt.Errorf("cluster: %w", err)
			}
			cmd, _ := json.Marshal(metaCommand{Op: "init", Map: first.Encode()})
			if err := c.meta.raft.Apply(cmd, 5*time.Second).Error(); err != nil {
				c.logger.Warn("cluster: proposing the first map", "err", err)
			}
			continue
		}
		select {
		case <-changed:
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			return nil, fmt.Errorf("cluster: no cluster map after %s: are all %d peers started with the same --cluster-peers, cluster id and key? (this node sees leader %q)",
				c.cfg.FormTimeout, len(c.cfg.Peers), c.meta.raft.Leader())
		}
	}
}

// followMap keeps the cached map current.
func (c *Cluster) followMap() {
	defer c.wg.Done()
	for {
		m, changed := c.metaSM.current()
		for m != nil {
			cur := c.Map()
			if m.Version <= cur.Version || c.m.CompareAndSwap(cur, m) {
				break
			}
		}
		select {
		case <-changed:
		case <-c.closing:
			return
		}
	}
}

// openGroup opens this node's replica of group g.
func (c *Cluster) openGroup(m *Map, g int) error {
	owns := m.Owns(g)
	fsm, err := newGroupFSM(func() (*store.Store, error) { return store.New(c.repo, store.Options{Owns: owns}) })
	if err != nil {
		return err
	}
	var voters []raft.Server
	for _, id := range m.Groups[g].Replicas {
		voters = append(voters, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(m.Member(id).ClusterAddr)})
	}
	name := "g" + strconv.Itoa(g)
	trans := c.mux.Transport(name, 3, 10*time.Second, c.cfg.LogOut)
	rep, err := openReplica(name, groupDir(c.cfg.DataDir, name), c.cfg.NodeID, voters, fsm, trans, c.cfg.Timing, c.cfg.Sync, c.cfg.LogOut)
	if err != nil {
		trans.Close()
		return err
	}
	dg := &dataGroup{id: g, rep: rep, fsm: fsm}
	dg.bar.r = rep.raft
	c.setGroup(g, dg)
	return nil
}

// group is this node's replica of group g, or nil.
func (c *Cluster) group(g int) *dataGroup { return (*c.groups.Load())[g] }

// localGroups is this node's replicas by group id; the caller must not
// change the map.
func (c *Cluster) localGroups() map[int]*dataGroup { return *c.groups.Load() }

// setGroup adds (or, with dg nil, removes) this node's replica of group g.
func (c *Cluster) setGroup(g int, dg *dataGroup) {
	c.groupsMu.Lock()
	defer c.groupsMu.Unlock()
	next := make(map[int]*dataGroup, len(*c.groups.Load())+1)
	for k, v := range *c.groups.Load() {
		next[k] = v
	}
	if dg == nil {
		delete(next, g)
	} else {
		next[g] = dg
	}
	c.groups.Store(&next)
}

// Map is the cluster map this node serves from.
func (c *Cluster) Map() *Map { return c.m.Load() }

// Err is nil while the node can take part: its cluster map is known.
func (c *Cluster) Err() error {
	if c.m.Load() == nil {
		return errors.New("no cluster map yet")
	}
	return nil
}

// Close stops the node's replicas, the RPC server and the cluster port.
func (c *Cluster) Close() error {
	select {
	case <-c.closing:
		return nil
	default:
	}
	close(c.closing)
	var errs []error
	if c.rpcSrv != nil {
		c.rpcSrv.Close()
	}
	for _, dg := range c.localGroups() {
		errs = append(errs, dg.rep.close())
	}
	if c.meta != nil {
		errs = append(errs, c.meta.close())
	}
	if c.mux != nil {
		errs = append(errs, c.mux.Close())
	}
	c.wg.Wait()
	return errors.Join(errs...)
}

// newID is a request id for a write that came without one.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return "tally-" + hex.EncodeToString(b[:])
}
