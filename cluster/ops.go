package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
)

// observer is what the operator's views need beyond Raft's own state: the
// node's metrics set, per-group apply timings and refusals, and the node
// front's request counters. Its zero value works (nothing registered).
type observer struct {
	mu       sync.Mutex
	set      *metrics.Set
	applyDur map[int]*metrics.Histogram
	refused  map[int]*metrics.Counter
	counters func() node.Counters
}

// Observe exports this node's cluster metrics in set (written by the
// node's /metrics) and reports counters, the node front's request totals,
// in Status. Call once, after the node front is built.
//
// Per group this node holds a replica of (label group): role
// (tally_cluster_group_role{role} 1, and tally_cluster_group_leader 0/1),
// term, commit and applied index, lag (commit - applied), snapshot
// restores, proposals refused and the apply latency of proposals made
// here (histogram, seconds); for the node: map version, groups without a
// leader, and the cluster port's refused handshakes.
func (c *Cluster) Observe(set *metrics.Set, counters func() node.Counters) {
	c.obs.mu.Lock()
	c.obs.set, c.obs.counters = set, counters
	c.obs.applyDur, c.obs.refused = map[int]*metrics.Histogram{}, map[int]*metrics.Counter{}
	c.obs.mu.Unlock()
	set.RegisterMetricsWriter(c.writeMetrics)
}

// groupLabel is the metric label of group g.
func groupLabel(name string, g int) string { return name + `{group="` + strconv.Itoa(g) + `"}` }

// applyMetrics returns group g's apply histogram and refusal counter (nil
// before Observe).
func (c *Cluster) applyMetrics(g int) (*metrics.Histogram, *metrics.Counter) {
	c.obs.mu.Lock()
	defer c.obs.mu.Unlock()
	if c.obs.set == nil {
		return nil, nil
	}
	h, ok := c.obs.applyDur[g]
	if !ok {
		h = c.obs.set.GetOrCreateHistogram(groupLabel("tally_cluster_apply_duration_seconds", g))
		c.obs.applyDur[g] = h
		c.obs.refused[g] = c.obs.set.GetOrCreateCounter(groupLabel("tally_cluster_proposals_refused_total", g))
	}
	return h, c.obs.refused[g]
}

// apply is dg.apply, timed and counted: a proposal this node's replica
// led from Apply to applied, or refused by Raft (not the leader any more,
// leadership lost, timed out). A record the store refused is applied.
func (c *Cluster) apply(dg *dataGroup, entry []byte, timeout time.Duration) (applied, error) {
	start := time.Now()
	res, err := dg.apply(entry, timeout)
	h, refused := c.applyMetrics(dg.id)
	if h == nil {
		return res, err
	}
	var ae *errApply
	if err != nil && !errors.As(err, &ae) {
		refused.Inc()
	} else {
		h.UpdateDuration(start)
	}
	return res, err
}

// writeMetrics writes the per-group gauges of the replicas this node holds
// now (they change as the map does).
func (c *Cluster) writeMetrics(w io.Writer) {
	groups := c.localGroups()
	ids := make([]int, 0, len(groups))
	for g := range groups {
		ids = append(ids, g)
	}
	slices.Sort(ids)
	noLeader := 0
	for _, g := range ids {
		dg := groups[g]
		r := dg.rep.raft
		state := r.State()
		_, leader := r.LeaderWithID()
		if leader == "" {
			noLeader++
		}
		term, _ := strconv.ParseUint(r.Stats()["term"], 10, 64)
		commit, applied := r.CommitIndex(), r.AppliedIndex()
		gl := strconv.Itoa(g)
		isLeader := uint64(0)
		if state == raft.Leader {
			isLeader = 1
		}
		metrics.WriteGaugeUint64(w, `tally_cluster_group_role{group="`+gl+`",role="`+roleName(state)+`"}`, 1)
		metrics.WriteGaugeUint64(w, groupLabel("tally_cluster_group_leader", g), isLeader)
		metrics.WriteGaugeUint64(w, groupLabel("tally_cluster_group_term", g), term)
		metrics.WriteGaugeUint64(w, groupLabel("tally_cluster_group_commit_index", g), commit)
		metrics.WriteGaugeUint64(w, groupLabel("tally_cluster_group_applied_index", g), applied)
		metrics.WriteGaugeUint64(w, groupLabel("tally_cluster_group_lag", g), commit-min(applied, commit))
		metrics.WriteCounterUint64(w, groupLabel("tally_cluster_group_snapshot_restores_total", g), dg.fsm.restores.Load())
		metrics.WriteCounterUint64(w, groupLabel("tally_cluster_group_repeats_total", g), dg.fsm.repeats.Load())
	}
	var version uint64
	if m := c.Map(); m != nil {
		version = m.Version
	}
	metrics.WriteGaugeUint64(w, "tally_cluster_map_version", version)
	metrics.WriteGaugeUint64(w, "tally_cluster_groups_without_leader", uint64(noLeader))
	metrics.WriteCounterUint64(w, "tally_cluster_transport_refused_total", c.mux.Refused())
}

// roleName is a Raft state as a metric label: leader, follower,
// candidate, shutdown.
func roleName(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	}
	return "shutdown"
}

// ready is nil when this node can serve: its cluster map is known and
// every group it holds a replica of has a leader (checked on each call).
// While every peer it dials refuses its cluster key, the reason says that
// instead (keyRefused): the wait it would name otherwise never ends.
func (c *Cluster) ready() error {
	err := c.readyState()
	if err != nil {
		if kerr := c.keyRefused(); kerr != nil {
			return fmt.Errorf("%w: %w (meanwhile: %s)", node.ErrClusterNotReady, kerr, strings.TrimPrefix(err.Error(), node.ErrClusterNotReady.Error()+": "))
		}
	}
	return err
}

// keyWindow is how far back keyRefused looks at the handshakes this node
// dialed.
const keyWindow = 30 * time.Second

// keyRefused is non-nil while every peer this node dialed in the past
// keyWindow and reached refused its cluster key (none accepted it): its
// key is not the cluster's, and it can neither vote nor be heard. It
// names the peers. A start with another key is not refused: a rolling
// key change restarts nodes one by one.
func (c *Cluster) keyRefused() error {
	addrs := c.mux.KeyRefusedBy(keyWindow)
	if len(addrs) == 0 {
		return nil
	}
	ids := map[string]string{}
	for _, p := range c.cfg.Peers {
		ids[p.ClusterAddr] = p.ID
	}
	if m := c.m.Load(); m != nil {
		for _, mb := range m.Members {
			ids[mb.ClusterAddr] = mb.ID
		}
	}
	peers := make([]string, len(addrs))
	for i, a := range addrs {
		peers[i] = a
		if id := ids[a]; id != "" {
			peers[i] = id + " at " + a
		}
	}
	slices.Sort(peers)
	return fmt.Errorf("its peers refuse its cluster key: %s refused it in the past %v and no peer accepted it: start this node with the key the other nodes run (--cluster-key-file, or TALLY_CLUSTER_KEY); nodes with different keys cannot reach each other",
		strings.Join(peers, ", "), keyWindow)
}

// warnKeyRefused logs keyRefused's reason as a WARN line while it holds,
// at most once per keyWindow, until the node closes.
func (c *Cluster) warnKeyRefused() {
	defer c.wg.Done()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	var last time.Time
	for {
		select {
		case <-c.closing:
			return
		case <-tick.C:
		}
		if err := c.keyRefused(); err != nil && time.Since(last) >= keyWindow {
			last = time.Now()
			c.logger.Warn("cluster: this node's cluster key is refused; it cannot take part", "node", c.cfg.NodeID, "reason", err.Error())
		}
	}
}

// readyState is ready's reason without the key check.
func (c *Cluster) readyState() error {
	if c.m.Load() == nil {
		return fmt.Errorf("%w: no cluster map yet (waiting for the metadata group)", node.ErrClusterNotReady)
	}
	groups := c.localGroups()
	var lost []int
	for g, dg := range groups {
		if _, id := dg.rep.raft.LeaderWithID(); id == "" {
			lost = append(lost, g)
		}
	}
	if len(lost) == 0 {
		return nil
	}
	slices.Sort(lost)
	var out []string
	lost = slices.DeleteFunc(lost, func(g int) bool {
		why := c.outOfGroup(g)
		if why != "" {
			out = append(out, why)
		}
		return why != ""
	})
	if len(lost) > 0 {
		out = append(out, fmt.Sprintf("no leader known for group(s) %v of the %d this node holds: waiting for an election (a quorum of each group's replicas must be up)", lost, len(groups)))
	}
	return fmt.Errorf("%w: %s", node.ErrClusterNotReady, strings.Join(out, "; "))
}

// A replica that the map places here but its group's Raft configuration
// does not count (a move's old replica, taken out of the group while this
// node was down, with the move stopped before the map dropped it) never
// hears from a leader: its node's readiness said only "no leader known",
// as if waiting for an election, though nothing but the move run again
// ends the wait. outOfGroup asks the group's leader for its voters, only
// for a group this node holds without a leader while the map lists more
// than R replicas of it (a move stopped half-way), at most once per
// outOfGroupEvery and map version, bounded by outOfGroupWait (the
// readiness answer waits for it).
const (
	outOfGroupEvery = 5 * time.Second
	outOfGroupWait  = 750 * time.Millisecond
)

// outOfGroupNote is outOfGroup's last answer for a group.
type outOfGroupNote struct {
	version uint64 // the map's
	at      time.Time
	why     string
}

// outOfGroup is why this node's replica of group g hears from no leader
// when a move stopped half-way left it out of the group's Raft
// configuration, naming the move that ends it; "" when the configuration
// counts it, no move is stopped, or that is not known.
func (c *Cluster) outOfGroup(g int) string {
	m := c.Map()
	if m == nil || g >= len(m.Groups) || len(m.Groups[g].Replicas) <= m.Replicas || !slices.Contains(m.Groups[g].Replicas, c.cfg.NodeID) {
		return ""
	}
	c.outMu.Lock()
	n, ok := c.outNotes[g]
	c.outMu.Unlock()
	if ok && n.version == m.Version && time.Since(n.at) < outOfGroupEvery {
		return n.why
	}
	ctx, cancel := context.WithTimeout(context.Background(), outOfGroupWait)
	voters, err := c.groupVoters(ctx, g)
	cancel()
	n = outOfGroupNote{version: m.Version, at: time.Now()}
	if err == nil && !slices.Contains(voters, c.cfg.NodeID) {
		n.why = leftOutOfGroup(m, g, c.cfg.NodeID, voters)
	}
	c.outMu.Lock()
	if c.outNotes == nil {
		c.outNotes = map[int]outOfGroupNote{}
	}
	c.outNotes[g] = n
	c.outMu.Unlock()
	return n.why
}

// leftOutOfGroup says why node self's replica of group g, listed in map m
// (more than R replicas) but not among the group's voters, hears from no
// leader, and the move that ends it.
func leftOutOfGroup(m *Map, g int, self string, voters []string) string {
	reps := m.Groups[g].Replicas
	move := fmt.Sprintf("tally cluster move-replica --group %d", g)
	head := fmt.Sprintf("group %d: this node's replica is listed in the map (%s) but is not in the group's Raft configuration (its voters: %s), so it hears from no leader",
		g, strings.Join(reps, ", "), strings.Join(voters, ", "))
	// Step 1 of a move listed its new replica last (see membership.go):
	// this one, listed elsewhere, is the move's old replica. (Were the
	// replicas reordered since, the move to the voter listed last takes
	// this replica out all the same.)
	if last := reps[len(reps)-1]; last != self && slices.Contains(voters, last) {
		return fmt.Sprintf("%s: a move of the group from this node (to %s, listed last) stopped after it took this replica out of the group, and before the map dropped it. Run the move again to finish it: `%s --from %s --to %s` (this node's replica is then closed and deleted)",
			head, last, move, self, last)
	}
	return fmt.Sprintf("%s: a move of the group (the map lists %d replicas, more than the cluster's %d) stopped half-way. Finish or undo it: `%s --from %s --to %s` takes this replica out of the group (the voters hold every acknowledged write); `%s --from <one of %s> --to %s` makes this replica a voter in that node's place",
		head, len(reps), m.Replicas, move, self, nearestVoter(reps, self, voters), move, strings.Join(voters, ", "), self)
}

// Overview is the whole cluster as one node sees it: the map and every
// member's own status (GET /api/v1/cluster/overview, tally cluster status).
type Overview struct {
	// Node is the member that answered; At when (RFC 3339).
	Node string `json:"node"`
	At   string `json:"at"`
	// Map is that member's cluster map.
	Map        *Map   `json:"map"`
	MetaLeader string `json:"metaLeader"`
	// Nodes are the map's members, each with the status it reported.
	Nodes []NodeOverview `json:"nodes"`
	// Groups are the map's groups with their replicas' states.
	Groups []GroupOverview `json:"groups"`
}

// RepoMismatch is "" when every node that answered runs the same feature
// repo, else a sentence naming the nodes by the repo they run. The start
// compares only what the store holds (sources, views, tables: sameSchema);
// request features, feature services and models are evaluated by the node
// a lookup reaches, so nodes running different repos answer the same
// lookup differently. A rolling change of the repo shows here until every
// node runs the new one. Nodes on a build that does not report a digest
// are left out.
func (o *Overview) RepoMismatch() string {
	by := map[string][]string{}
	for _, n := range o.Nodes {
		if n.Up && n.Repo != "" {
			by[n.Repo] = append(by[n.Repo], n.ID)
		}
	}
	if len(by) < 2 {
		return ""
	}
	var parts []string
	for _, d := range slices.Sorted(maps.Keys(by)) {
		verb := " runs "
		if len(by[d]) > 1 {
			verb = " run "
		}
		parts = append(parts, strings.Join(by[d], ", ")+verb+d)
	}
	return "nodes run different feature repos (" + strings.Join(parts, "; ") + "): a lookup answers by the repo of the node it reaches (request features, feature services, models), so answers differ by node; run the same repo (--repo) on every node"
}

// RepoDigest is a feature repo's digest as nodes report it: of its
// canonical YAML (features.Repo.YAML), so formatting and comments do not
// count; a model file's bytes are not in it.
func RepoDigest(repo *features.Repo) string {
	sum := sha256.Sum256(repo.YAML())
	return "sha256:" + hex.EncodeToString(sum[:8])
}

// NodeOverview is one member: up when it answered its status within
// overviewTimeout, else Error says why not.
type NodeOverview struct {
	Member
	Up       bool           `json:"up"`
	Error    string         `json:"error,omitempty"`
	NotReady string         `json:"notReady,omitempty"` // its readiness reason, when not ready
	Requests *node.Counters `json:"requests,omitempty"`
	Replicas int            `json:"replicas"`       // replicas it reported
	Leads    int            `json:"leads"`          // groups it leads
	Repo     string         `json:"repo,omitempty"` // its feature repo's digest (RepoDigest)
}

// GroupOverview is one group: its leader (the replica reporting itself
// leader in the highest term; "" when none does) and its replicas.
type GroupOverview struct {
	ID       int               `json:"id"`
	Leader   string            `json:"leader"`
	Term     uint64            `json:"term"`
	Replicas []ReplicaOverview `json:"replicas"`
}

// ReplicaOverview is one replica of a group as its node reported it. Lag
// is the group leader's commit index minus this replica's applied index
// (the replica's own commit index when no leader answered).
type ReplicaOverview struct {
	Node        string `json:"node"`
	Up          bool   `json:"up"`
	State       string `json:"state,omitempty"`
	Term        uint64 `json:"term"`
	CommitIndex uint64 `json:"commitIndex"`
	Applied     uint64 `json:"appliedIndex"`
	Lag         uint64 `json:"lag"`
	LastContact string `json:"lastContact,omitempty"`
}

// overviewTimeout bounds each member's status request.
const overviewTimeout = time.Second

// Overview asks every member of the map for its status, in parallel, and
// assembles the cluster's state. It takes at most about overviewTimeout:
// a member that does not answer by then is reported down.
func (c *Cluster) Overview(ctx context.Context) Overview { return c.overviewOf(ctx, c.Map()) }

// overviewOf is Overview over map m's members.
func (c *Cluster) overviewOf(ctx context.Context, m *Map) Overview {
	o := Overview{Node: c.cfg.NodeID, At: time.Now().UTC().Format(time.RFC3339Nano), Map: m}
	if c.meta != nil {
		_, id := c.meta.raft.LeaderWithID()
		o.MetaLeader = string(id)
	}
	if m == nil {
		return o
	}
	sts := make([]*Status, len(m.Members))
	errs := make([]error, len(m.Members))
	var wg sync.WaitGroup
	for i, mb := range m.Members {
		if mb.ID == c.cfg.NodeID {
			s := c.Status()
			sts[i] = &s
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sts[i], errs[i] = c.peerStatus(ctx, mb)
		}()
	}
	wg.Wait()
	assemble(&o, m, sts, errs)
	return o
}

// assemble fills o's nodes and groups from map m and its members'
// statuses (sts[i] nil when member i did not answer, with errs[i] why).
func assemble(o *Overview, m *Map, sts []*Status, errs []error) {
	byNode := map[string]map[int]GroupStatus{}
	for i, mb := range m.Members {
		no := NodeOverview{Member: mb, Up: sts[i] != nil}
		if errs[i] != nil {
			no.Error = errs[i].Error()
		}
		if s := sts[i]; s != nil {
			no.NotReady, no.Requests, no.Replicas, no.Repo = s.NotReady, s.Requests, len(s.Groups), s.Repo
			if s.HTTPAddr != "" {
				no.HTTPAddr = s.HTTPAddr
			}
			gm := map[int]GroupStatus{}
			for _, gs := range s.Groups {
				gm[gs.Group] = gs
				if gs.State == raft.Leader.String() {
					no.Leads++
				}
			}
			byNode[mb.ID] = gm
		}
		o.Nodes = append(o.Nodes, no)
	}
	for _, gi := range m.Groups {
		gov := GroupOverview{ID: gi.ID}
		var leaderCommit uint64
		for _, id := range gi.Replicas {
			if gs, ok := byNode[id][gi.ID]; ok && gs.State == raft.Leader.String() && gs.Term >= gov.Term {
				gov.Leader, gov.Term, leaderCommit = id, gs.Term, gs.CommitIndex
			}
		}
		for _, id := range gi.Replicas {
			gm, up := byNode[id]
			ro := ReplicaOverview{Node: id, Up: up}
			if gs, ok := gm[gi.ID]; ok {
				ro.State, ro.Term, ro.CommitIndex, ro.Applied, ro.LastContact = gs.State, gs.Term, gs.CommitIndex, gs.Applied, gs.LastContact
				ref := leaderCommit
				if gov.Leader == "" {
					ref = gs.CommitIndex
				}
				ro.Lag = ref - min(ref, gs.Applied)
			}
			gov.Replicas = append(gov.Replicas, ro)
		}
		o.Groups = append(o.Groups, gov)
	}
}

// peerStatus fetches member mb's Status over the internal RPC.
func (c *Cluster) peerStatus(ctx context.Context, mb Member) (*Status, error) {
	ctx, cancel := context.WithTimeout(ctx, overviewTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+mb.ClusterAddr+"/v1/status", nil)
	resp, err := c.rpc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("no status from %s at %s: %w", mb.ID, mb.ClusterAddr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("status from %s: %s: %s", mb.ID, resp.Status, b)
	}
	var s Status
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&s); err != nil {
		return nil, fmt.Errorf("status from %s: %w", mb.ID, err)
	}
	return &s, nil
}

// nodeStatus fills the node-level fields of a Status: its readiness and
// its front's request counters.
func (c *Cluster) nodeStatus(s *Status) {
	s.HTTPAddr, s.Repo = c.cfg.HTTPAddr, c.repoDigest
	if err := c.ready(); err != nil {
		s.NotReady = err.Error()
	}
	c.obs.mu.Lock()
	counters := c.obs.counters
	c.obs.mu.Unlock()
	if counters != nil {
		n := counters()
		s.Requests = &n
	}
}
