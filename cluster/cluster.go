package cluster

import (
	"bytes"
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
	"strings"
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
	Peers []Member
	// Join starts a node that joins a running cluster: it bootstraps
	// nothing and waits until an operator admits it (`tally cluster
	// add-node`, Cluster.AddNode); Peers are then the cluster's nodes it
	// may reach first.
	Join bool
	// Groups (G) and Replicas (R) are what a new cluster is created with
	// (0: 8 groups, and 3 replicas or len(Peers) if fewer); R more than
	// len(Peers) is refused unless Join. Both are fixed at creation: given
	// (not 0) and other than the cluster's, a start is refused (shape.go).
	Groups   int
	Replicas int
	// Sync is the groups' log fsync policy (default wal.SyncAlways: an
	// acknowledged write is on a quorum's disks).
	Sync wal.SyncPolicy
	// WriteTimeout bounds how long a write waits for every group to commit
	// before answering 503 (default 5s); FormTimeout how long Open waits
	// for the cluster map, over a new data dir its peers' answers
	// included (default 2m).
	WriteTimeout, FormTimeout time.Duration
	// ProgressEvery is how often the node reports its replicas' progress
	// to its peers (default 5s), which refuse its start over a data dir
	// restored from before a report (restored.go).
	ProgressEvery time.Duration
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
	// reconcileMu serializes reconcile (and Close with it); adminMu the
	// changes this node runs as the metadata leader.
	reconcileMu, adminMu sync.Mutex
	// member: this node was in the map once; removed: and then no longer.
	member, removed atomic.Bool
	opened          atomic.Bool // the node's groups are open: every RPC serves
	// isNew: the data dir held nothing when this node started
	// (checkIdentity); waiting: and its peers have not cleared the start
	// yet, nor has it opened a replica; admitted receives add-node's
	// verdict meanwhile (newdir.go).
	isNew    bool
	waiting  atomic.Bool
	admitted chan string
	instance string // random per process: this process in hello answers
	// recovery is the data dir's pending recovery, else its last finished
	// one (nil: never recovered), in hello answers (checkRecoveryPeers).
	recovery atomic.Pointer[recoveryIntent]
	// round is what the peers answered the start's hellos, by cluster
	// address (askAtStart), while Open runs its checks; nil after.
	round      map[string]peerSaid
	repoDigest string         // RepoDigest(repo), in Status
	hints      []atomic.Value // per group: the member id last seen leading it
	rpc        *http.Client
	rpcSrv     *http.Server
	closing    chan struct{}
	wg         sync.WaitGroup
	logger     *slog.Logger
	obs        observer      // ops.go
	streams    sync.Map      // kafka.go: a stream partition's known offsets per group
	book       *progressBook // restored.go: what the peers reported of their replicas
	// outNotes is outOfGroup's last answer per group (ops.go), under outMu.
	outMu    sync.Mutex
	outNotes map[int]outOfGroupNote
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
// node. A restarted node finds its groups' state in its data dir; a data
// dir another node or cluster wrote, or a single node's, is refused before
// anything in it is opened (identity.go). Over a new data dir it first asks
// its peers whether the cluster counts it already, and is refused if so: a
// member that lost its data must not come back as a voter (newdir.go).
// Open waits for all of it at most cfg.FormTimeout.
func Open(cfg Config, repo *features.Repo) (*Cluster, error) {
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 5 * time.Second
	}
	if cfg.FormTimeout == 0 {
		cfg.FormTimeout = 2 * time.Minute
	}
	if cfg.ProgressEvery == 0 {
		cfg.ProgressEvery = defaultProgressEvery
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
	if !cfg.Join && !slices.ContainsFunc(cfg.Peers, func(m Member) bool { return m.ID == cfg.NodeID }) {
		return nil, fmt.Errorf("cluster: this node (%s) is not in the peer list: list every initial node, this one included", cfg.NodeID)
	}
	if !cfg.Join && cfg.Replicas > len(cfg.Peers) {
		return nil, fmt.Errorf("cluster: %d replicas per group, but the peer list has %d nodes: a group cannot have more replicas than the cluster has nodes; give --cluster-replicas %d or less, or list every initial node in --cluster-peers",
			cfg.Replicas, len(cfg.Peers), len(cfg.Peers))
	}
	if err := checkNotSingleDir(cfg.DataDir); err != nil {
		return nil, err
	}
	isNew, err := checkIdentity(cfg)
	if err != nil {
		return nil, err
	}
	if err := checkTombstone(cfg); err != nil {
		return nil, err
	}
	if m := storedMap(cfg.DataDir); m != nil {
		if err := checkShape(cfg, m); err != nil {
			return nil, err
		}
	}
	deadline := time.Now().Add(cfg.FormTimeout)
	proto, err := store.New(repo, store.Options{})
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, repo: repo, proto: proto, closing: make(chan struct{}), logger: cfg.Logger, isNew: isNew, admitted: make(chan string, 1), instance: newID(), repoDigest: RepoDigest(repo)}
	c.waiting.Store(isNew)
	recovery, err := readRecoveryIntent(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if recovery != nil {
		c.recovery.Store(recovery)
	} else if done := readFinishedRecovery(cfg.DataDir); done != nil {
		c.recovery.Store(done)
	}
	c.mux, err = transport.Listen(cfg.ClusterAddr, transport.Config{ClusterID: cfg.ClusterID, Key: cfg.Key, BindIP: cfg.BindIP, Advertise: cfg.Advertise, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("cluster port: %w", err)
	}
	c.wg.Add(1)
	go c.warnKeyRefused()
	rpcLayer := c.mux.Layer("rpc")
	c.rpc = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return rpcLayer.Dial(raft.ServerAddress(addr), 2*time.Second)
		},
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     rpcIdle,
	}}
	c.rpcSrv = rpcServer(c.rpcHandler())
	c.groups.Store(&map[int]*dataGroup{})
	c.book = loadProgressBook(cfg.DataDir, cfg.Logger)
	// The internal RPCs answer from the start (a joining node must answer
	// add-node's hello, a new one its new peers'); until the map is known,
	// only the hello.
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.rpcSrv.Serve(rpcLayer) }()

	if recovery != nil || !isNew {
		c.askAtStart(recovery != nil)
	}
	if recovery != nil {
		err = c.checkRecoveryPeers(recovery)
	}
	if err == nil && !isNew {
		err = c.checkSameAddress()
	}
	if err == nil && !isNew {
		err = c.checkNotRestored()
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	if isNew {
		err = c.checkNewNode(deadline)
		if err == nil {
			err = recordIdentity(cfg)
		}
		if err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.openMeta(); err != nil {
		c.Close()
		return nil, err
	}
	// A new data dir holds no stale state to refuse, and its peers were
	// just asked.
	if !isNew {
		err = c.checkNotRemoved()
		if err == nil {
			err = c.checkSingleProcess()
		}
	}
	var m *Map
	if err == nil {
		m, err = c.waitMap(deadline)
	}
	if err == nil && !isNew {
		m = c.freshMap(m, deadline)
		err = c.acceptMap(m)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	for _, g := range m.GroupsOf(cfg.NodeID) {
		if isNew {
			break // its replicas are created now
		}
		if err := c.checkReplicaKept(m, g, deadline); err != nil {
			c.Close()
			return nil, err
		}
	}
	for _, g := range m.GroupsOf(cfg.NodeID) {
		if err := c.openGroup(m, g); err != nil {
			c.Close()
			return nil, err
		}
	}
	c.member.Store(m.Member(cfg.NodeID) != nil)
	c.round = nil
	c.opened.Store(true)
	c.wg.Add(4)
	go c.followMap()
	go c.spreadLeaders()
	go c.announce()
	go c.reportProgress()
	if recovery != nil {
		c.wg.Add(1)
		go c.finishRecovery(recovery)
	}
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
			mb := m.Member(pref)
			if mb == nil || !c.caughtUp(pref, g, dg) {
				continue
			}
			c.logger.Info("cluster: handing a group's leadership back to its preferred replica", "group", g, "to", pref)
			dg.rep.raft.LeadershipTransferToServer(raft.ServerID(pref), raft.ServerAddress(mb.ClusterAddr))
		}
	}
}

// caughtUp reports whether node id's replica of group g, which this node
// leads, answers and follows this leader within handBackLag entries: a
// transfer to a replica that is down or far behind would stop the group's
// writes for the transfer's timeout (an election timeout) and fail.
func (c *Cluster) caughtUp(id string, g int, dg *dataGroup) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	ri, err := c.replicaOf(ctx, id, g)
	return err == nil && ri.Leader == c.cfg.NodeID && ri.Applied+handBackLag >= dg.rep.raft.AppliedIndex()
}

// handBackLag is how far behind the leader a preferred replica may be and
// still be handed the leadership back.
const handBackLag = 1000

// leaderCheck is how often a node hands leaderships back (spreadLeaders).
const leaderCheck = 5 * time.Second

func withDefaults(t raftTiming) raftTiming {
	d := defaultTiming()
	t.Heartbeat, t.Election, t.Lease, t.Commit = cmp.Or(t.Heartbeat, d.Heartbeat), cmp.Or(t.Election, d.Election), cmp.Or(t.Lease, d.Lease), cmp.Or(t.Commit, d.Commit)
	t.SnapshotThreshold, t.TrailingLogs = cmp.Or(t.SnapshotThreshold, d.SnapshotThreshold), cmp.Or(t.TrailingLogs, d.TrailingLogs)
	t.SnapshotInterval = cmp.Or(t.SnapshotInterval, d.SnapshotInterval)
	return t
}

// openMeta opens the metadata replica, bootstrapping it on its first
// voters (metaFirstVoters).
func (c *Cluster) openMeta() error {
	var voters []raft.Server
	for _, p := range metaFirstVoters(c.cfg) {
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

// metaFirstVoters are the metadata group's first voters, which bootstrap
// it: the first five peers by id; none in join mode (the metadata leader
// admits the node: addNode).
func metaFirstVoters(cfg Config) []Member {
	if cfg.Join {
		return nil
	}
	peers := slices.Clone(cfg.Peers)
	slices.SortFunc(peers, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	return peers[:min(5, len(peers))]
}

// metaBootstrapper reports whether this node (cfg.NodeID) is one of the
// metadata group's first voters.
func metaBootstrapper(cfg Config) bool {
	return slices.ContainsFunc(metaFirstVoters(cfg), func(m Member) bool { return m.ID == cfg.NodeID })
}

// acceptMap refuses to serve map m of another cluster, repo or shape.
func (c *Cluster) acceptMap(m *Map) error {
	if m.ID != c.cfg.ClusterID {
		return fmt.Errorf("cluster: the data dir belongs to cluster %q, not %q", m.ID, c.cfg.ClusterID)
	}
	if err := c.sameSchema(m); err != nil {
		return err
	}
	return checkShape(c.cfg, m)
}

// waitMap waits for the cluster map until deadline; the metadata leader
// proposes the first one, built from Peers, when there is none.
func (c *Cluster) waitMap(deadline time.Time) (*Map, error) {
	expired := time.After(time.Until(deadline))
	for {
		m, changed := c.metaSM.current()
		if m != nil {
			if err := c.acceptMap(m); err != nil {
				return nil, err
			}
			c.hints = make([]atomic.Value, len(m.Groups))
			c.m.Store(m)
			return m, nil
		}
		if c.meta.raft.State() == raft.Leader && !c.cfg.Join {
			groups, replicas := cmp.Or(c.cfg.Groups, 8), cmp.Or(c.cfg.Replicas, min(3, len(c.cfg.Peers)))
			first, err := NewMap(c.cfg.ClusterID, c.cfg.Peers, groups, replicas)
			if err != nil {
				return nil, fmt.Errorf("cluster: %w", err)
			}
			first.Schema = store.SchemaOf(c.repo)
			cmd, _ := json.Marshal(metaCommand{Op: "init", Map: first.Encode()})
			if err := c.meta.raft.Apply(cmd, 5*time.Second).Error(); err != nil {
				c.logger.Warn("cluster: proposing the first map", "err", err)
			}
			continue
		}
		select {
		case <-changed:
		case <-time.After(200 * time.Millisecond):
		case <-expired:
			if c.cfg.Join {
				return nil, fmt.Errorf("cluster: not admitted after %s: run `tally cluster add-node --id %s --cluster-addr %s` against a node of the cluster", c.cfg.FormTimeout, c.cfg.NodeID, c.cfg.Advertise)
			}
			return nil, fmt.Errorf("cluster: no cluster map after %s: are all %d peers started with the same --cluster-peers, cluster id and key? (this node sees leader %q)",
				c.cfg.FormTimeout, len(c.cfg.Peers), c.meta.raft.Leader())
		}
	}
}

// sameSchema refuses a node whose feature repo differs from the one the
// cluster was created with, listing the differences.
func (c *Cluster) sameSchema(m *Map) error { return sameSchema(m, c.repo) }

// sameSchema refuses repo when it differs from the one the cluster of map
// m was created with, listing the differences.
func sameSchema(m *Map, repo *features.Repo) error {
	if len(m.Schema) == 0 {
		return nil // a map from before the check
	}
	mine := store.SchemaOf(repo)
	if bytes.Equal(bytes.TrimSpace(mine), bytes.TrimSpace(m.Schema)) {
		return nil
	}
	changes, err := store.SchemaChanges(m.Schema, mine)
	if err != nil {
		return fmt.Errorf("cluster: the cluster map's schema: %w", err)
	}
	if len(changes) == 0 {
		return nil
	}
	return fmt.Errorf("cluster: this node's feature repo differs from the cluster's (every node must run the same repo; a running cluster's repo cannot be changed yet): %s", strings.Join(changes, "; "))
}

// followMap keeps the cached map current and this node's replicas as
// the map places them (reconcile): at every change, and every
// reconcileEvery, so that a replica that failed to open (a full disk, say)
// is tried again without waiting for another change.
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
		if m != nil {
			if beforeReconcile != nil {
				beforeReconcile()
			}
			c.reconcile(m)
		}
		select {
		case <-changed:
		case <-time.After(reconcileEvery):
		case <-c.closing:
			return
		}
	}
}

// beforeReconcile, when a test sets it, is called by followMap before each
// reconcile: a test parks followMap there to order it against Close.
var beforeReconcile func()

// reconcileEvery is how often followMap reconciles without a map change.
const reconcileEvery = 10 * time.Second

// openGroup opens this node's replica of group g.
func (c *Cluster) openGroup(m *Map, g int) error {
	owns := m.Owns(g)
	fsm, err := newGroupFSM(func() (*store.Store, error) { return store.New(c.repo, store.Options{Owns: owns}) })
	if err != nil {
		return err
	}
	// Only the replicas of a group never changed bootstrap it; a replica
	// placed here later starts empty and its leader adds it.
	var voters []raft.Server
	for _, id := range m.Groups[g].Replicas {
		if !m.Groups[g].Changed {
			voters = append(voters, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(m.Member(id).ClusterAddr)})
		}
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

// Err is nil while the node can take part: its cluster map is known and
// it was not removed from the cluster, and every group it holds a replica
// of has a leader (ops.go, ready).
func (c *Cluster) Err() error {
	if c.removed.Load() {
		return fmt.Errorf("%w: %w", node.ErrClusterNotReady, ErrRemoved)
	}
	return c.ready()
}

// Close stops the node's replicas, the RPC server and the cluster port,
// then waits for the node's goroutines. It waits for them after letting go
// of reconcileMu: followMap may be on its way into a reconcile (it took
// the map before closing was closed), and that reconcile waits for the
// lock, sees closing and returns.
func (c *Cluster) Close() error {
	select {
	case <-c.closing:
		return nil
	default:
	}
	close(c.closing)
	err := c.closeReplicas()
	c.wg.Wait()
	return err
}

// closeReplicas is Close's work under reconcileMu: no replica opens or
// closes meanwhile.
func (c *Cluster) closeReplicas() error {
	c.reconcileMu.Lock()
	defer c.reconcileMu.Unlock()
	c.handOver()
	var errs []error
	// The replicas stop applying first, then their progress is reported
	// once more (finalProgress), then they close.
	reps := c.replicas()
	for _, r := range reps {
		errs = append(errs, r.raft.Shutdown().Error())
	}
	c.finalProgress(reps)
	if c.rpcSrv != nil {
		c.rpcSrv.Close()
	}
	for _, r := range reps {
		errs = append(errs, r.close()) // (its Raft's second Shutdown does nothing)
	}
	if c.mux != nil {
		errs = append(errs, c.mux.Close())
	}
	return errors.Join(errs...)
}

// replicas lists the replicas this node holds: its data groups', then the
// metadata group's.
func (c *Cluster) replicas() []*replica {
	var reps []*replica
	for _, dg := range c.localGroups() {
		reps = append(reps, dg.rep)
	}
	if c.meta != nil {
		reps = append(reps, c.meta)
	}
	return reps
}

// handOver hands the leadership of every group this node leads (and of
// the metadata group) to another replica before the node stops: a planned
// stop (a rolling restart) then stalls writes for a transfer, tens of
// milliseconds, instead of an election timeout. Bounded: a transfer that
// cannot finish (no other replica up to date) is abandoned after 2 s and
// the group elects as after a crash.
func (c *Cluster) handOver() {
	var wg sync.WaitGroup
	transfer := func(r *replica) {
		if r == nil || r.raft.State() != raft.Leader {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := r.raft.LeadershipTransfer()
			done := make(chan struct{})
			go func() { f.Error(); close(done) }()
			select {
			case <-done:
			case <-time.After(2 * time.Second):
			}
		}()
	}
	for _, dg := range c.localGroups() {
		transfer(dg.rep)
	}
	transfer(c.meta)
	wg.Wait()
}

// newID is a request id for a write that came without one.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return "tally-" + hex.EncodeToString(b[:])
}
