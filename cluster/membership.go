package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/internal/retry"
	"github.com/tally-ml/tally/store"
)

// Changing a running cluster: adding and removing nodes, moving a group's
// replica from one node to another, and rebalancing. Every change runs on
// the metadata group's leader, one at a time (the admin API forwards it
// there), as a sequence of steps each of which is safe to stop after: run
// again, a change goes on from where it stopped.
//
// Moving group g's replica from A to B:
//  1. the map lists B among g's replicas (B opens an empty replica, which
//     does not bootstrap: the group changed);
//  2. g's leader adds B as a non-voter; Raft sends it a snapshot and the
//     log after it, and B applies them;
//  3. once B applied what the group had committed when it was added, the
//     leader makes it a voter;
//  4. the leader removes A (if A leads, it hands its leadership to B first);
//  5. the map lists B in A's place; A sees it and closes and deletes its
//     replica. Acknowledged writes are on a quorum of the old and of the new
//     voters all along: Raft changes one server at a time.
//
// A move stopped after step 1 and before step 5 leaves the map listing R+1
// replicas, one of which is not a voter of the group's Raft configuration
// (B before step 3, A after step 4) or, after step 3, R+1 voters. Until it
// is finished (the same move again) or undone (a move from B to a voter),
// every other change of the group is refused (checkMove, checkGroups): it
// would count the leftover as one of the group's R replicas, or take a
// voter out with nobody added in its place.

// ErrRemoved is what Err answers on a node removed from the cluster.
var ErrRemoved = errors.New("this node was removed from the cluster: stop it (its data is no longer used)")

// metaResult is the answer to a forwarded change of the map: the map's
// version after it and, to a "stream-start", the topic's record.
type metaResult struct {
	Version uint64       `json:"version"`
	Start   *streamStart `json:"start,omitempty"`
}

// proposeMeta commits cmd in the metadata group (on its leader: forwarded
// when this node does not lead it) and waits until this node's map has
// it.
func (c *Cluster) proposeMeta(ctx context.Context, cmd metaCommand) error {
	var v uint64
	if c.meta.raft.State() == raft.Leader {
		res, err := c.applyMeta(cmd)
		if err != nil {
			return err
		}
		v = res.Version
	} else {
		var res metaResult
		if err := c.metaRPC(ctx, "/v1/meta", cmd, &res, true); err != nil {
			return err
		}
		v = res.Version
	}
	for {
		m, changed := c.metaSM.current()
		if m != nil && m.Version >= v {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("the map change committed (version %d) but this node has not applied it yet: %w", v, ctx.Err())
		}
	}
}

// applyMeta commits cmd on this node, the metadata leader, and returns
// the map version after it (and a "stream-start"'s record).
func (c *Cluster) applyMeta(cmd metaCommand) (metaResult, error) {
	b, _ := json.Marshal(cmd)
	f := c.meta.raft.Apply(b, 10*time.Second)
	if err := f.Error(); err != nil {
		return metaResult{}, fmt.Errorf("metadata group: %w", err)
	}
	var res metaResult
	switch r := f.Response().(type) {
	case error:
		return metaResult{}, &errApply{err: r}
	case *streamStart:
		res.Start = r
	}
	m, _ := c.metaSM.current()
	res.Version = m.Version
	return res, nil
}

// metaRPC posts in to path on the metadata group's leader and decodes its
// answer into out, following the leader as it moves (and, with retryBusy,
// through its 503s), until ctx ends.
func (c *Cluster) metaRPC(ctx context.Context, path string, in, out any, retryBusy bool) error {
	body, _ := json.Marshal(in)
	backoff := retry.NewBackoff(50*time.Millisecond, time.Second)
	for {
		addr, id := c.meta.raft.LeaderWithID()
		var err error
		if id == "" {
			err = errors.New("the metadata group has no leader")
		} else {
			err = c.post(ctx, string(addr), path, body, out)
		}
		var nl *errNotLeader
		var ae *errApply
		var rerr *errRPC
		switch {
		case err == nil, errors.As(err, &ae):
			return err
		case errors.As(err, &nl):
		case errors.As(err, &rerr) && (!retryBusy || rerr.status != http.StatusServiceUnavailable):
			return err
		}
		if !backoff.Wait(ctx) {
			return fmt.Errorf("%v (%w)", err, ctx.Err())
		}
	}
}

// post sends an internal RPC to the node at cluster address addr (a GET
// when body is nil) and decodes a 200's JSON into out (see call).
func (c *Cluster) post(ctx context.Context, addr, path string, body []byte, out any) error {
	method := http.MethodPost
	if body == nil {
		method = http.MethodGet
	}
	b, err := c.call(ctx, method, addr, path, body)
	if err != nil || out == nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// replicaInfo is a node's replica of a group, as GET /v1/replica answers.
type replicaInfo struct {
	State   string        `json:"state"`
	Leader  string        `json:"leader"`
	Applied uint64        `json:"applied"`
	Commit  uint64        `json:"commit"`
	Servers []raft.Server `json:"servers"`
}

// voterChange is a change to a group's Raft configuration, made by its
// leader (POST /v1/voter).
type voterChange struct {
	// Op is "add-nonvoter", "add-voter", "remove", or "get" (change
	// nothing: answer the leader's configuration).
	Op   string `json:"op"`
	ID   string `json:"id"`
	Addr string `json:"addr,omitempty"`
	// Handoff, for "remove" of the leader itself: the replica to hand the
	// leadership to first.
	Handoff string `json:"handoff,omitempty"`
}

// membershipRPCs adds the internal RPCs of membership changes to mux.
func (c *Cluster) membershipRPCs(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/meta", func(w http.ResponseWriter, r *http.Request) {
		var cmd metaCommand
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&cmd); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if !c.leadsMeta(w) {
			return
		}
		res, err := c.applyMeta(cmd)
		writeRPCResult(w, res, err)
	})
	mux.HandleFunc("POST /v1/admin", func(w http.ResponseWriter, r *http.Request) {
		var req adminRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if !c.leadsMeta(w) {
			return
		}
		// Detached from the forwarding node's connection, as a change sent
		// to the leader itself runs: that node may die (a kill -9 of the
		// node a rebalance was sent to) while the change moves replicas,
		// and a change cancelled mid-move left a group listing a replica
		// that is not a voter (TestForwardedChangeOutlivesItsForwarder).
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), forwardedChangeTimeout)
		defer cancel()
		out, err := c.runAdmin(ctx, req)
		writeRPCResult(w, out, err)
	})
	mux.HandleFunc("GET /v1/replica", func(w http.ResponseWriter, r *http.Request) {
		g, _ := strconv.Atoi(r.URL.Query().Get("group"))
		dg := c.group(g)
		if dg == nil {
			http.Error(w, "no replica of group "+strconv.Itoa(g)+" here", http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(dg.info())
	})
	mux.HandleFunc("POST /v1/voter", func(w http.ResponseWriter, r *http.Request) {
		dg, ok := c.groupParam(w, r)
		if !ok {
			return
		}
		var vc voterChange
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&vc); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if dg.rep.raft.State() != raft.Leader {
			c.notLeader(w, dg)
			return
		}
		rf := dg.rep.raft
		var f raft.Future
		switch vc.Op {
		case "add-nonvoter":
			f = rf.AddNonvoter(raft.ServerID(vc.ID), raft.ServerAddress(vc.Addr), 0, 10*time.Second)
		case "add-voter":
			f = rf.AddVoter(raft.ServerID(vc.ID), raft.ServerAddress(vc.Addr), 0, 10*time.Second)
		case "remove":
			if vc.ID == c.cfg.NodeID {
				// Hand the leadership over first, then the new leader removes
				// this replica (the caller retries there).
				if mb := c.Map().Member(vc.Handoff); mb != nil {
					f = rf.LeadershipTransferToServer(raft.ServerID(mb.ID), raft.ServerAddress(mb.ClusterAddr))
				} else {
					f = rf.LeadershipTransfer()
				}
				if err := f.Error(); err != nil {
					http.Error(w, "hand over the leadership: "+err.Error(), http.StatusServiceUnavailable)
					return
				}
				c.notLeader(w, dg)
				return
			}
			f = rf.RemoveServer(raft.ServerID(vc.ID), 0, 10*time.Second)
		case "get":
			// Nothing to change: the answer is the configuration.
		default:
			http.Error(w, "unknown op "+vc.Op, http.StatusBadRequest)
			return
		}
		if f != nil {
			if err := f.Error(); err != nil {
				if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
					c.notLeader(w, dg)
					return
				}
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		json.NewEncoder(w).Encode(dg.info())
	})
}

// leadsMeta reports whether this node leads the metadata group, else
// answers 421 naming the leader it knows.
func (c *Cluster) leadsMeta(w http.ResponseWriter) bool {
	if c.meta.raft.State() == raft.Leader {
		return true
	}
	_, id := c.meta.raft.LeaderWithID()
	w.WriteHeader(http.StatusMisdirectedRequest)
	json.NewEncoder(w).Encode(map[string]string{"leader": string(id)})
	return false
}

// writeRPCResult answers an internal RPC: out as JSON, or the error (422
// for a refused change, 503 otherwise).
func writeRPCResult(w http.ResponseWriter, out any, err error) {
	var ae *errApply
	switch {
	case errors.As(err, &ae):
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
	case err != nil:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	default:
		json.NewEncoder(w).Encode(out)
	}
}

// info is this replica's state for GET /v1/replica.
func (dg *dataGroup) info() replicaInfo {
	rf := dg.rep.raft
	_, leader := rf.LeaderWithID()
	ri := replicaInfo{State: rf.State().String(), Leader: string(leader), Applied: rf.AppliedIndex(), Commit: rf.CommitIndex()}
	if f := rf.GetConfiguration(); f.Error() == nil {
		ri.Servers = f.Configuration().Servers
	}
	return ri
}

// groupRPC sends a request about group g to its leader, following the
// leader as it moves, until ctx ends. A 400 (a request the leader does not
// take, as an op a leader on an older build does not know) ends it at
// once: asking again would be refused alike.
func (c *Cluster) groupRPC(ctx context.Context, g int, path string, body []byte, out any) error {
	backoff := retry.NewBackoff(50*time.Millisecond, time.Second)
	for attempt := 0; ; attempt++ {
		var err error
		if dg := c.group(g); dg != nil && dg.rep.raft.State() == raft.Leader {
			err = c.post(ctx, c.cfg.Advertise, path, body, out)
		} else {
			var b []byte
			if b, err = c.callGroup(ctx, g, attempt, http.MethodPost, path, body); err == nil {
				err = json.Unmarshal(b, out)
			}
		}
		var ae *errApply
		var re *errRPC
		if err == nil || errors.As(err, &ae) {
			return err
		}
		if errors.As(err, &re) && re.status == http.StatusBadRequest {
			if re.peer != "" {
				return fmt.Errorf("group %d: its leader, node %s, refused the request: %w", g, re.peer, err)
			}
			return fmt.Errorf("group %d: %w", g, err)
		}
		if !backoff.Wait(ctx) {
			return fmt.Errorf("group %d: %v (%w)", g, err, ctx.Err())
		}
	}
}

// changeVoters applies vc to group g's Raft configuration on its leader.
func (c *Cluster) changeVoters(ctx context.Context, g int, vc voterChange) (replicaInfo, error) {
	b, _ := json.Marshal(vc)
	var ri replicaInfo
	err := c.groupRPC(ctx, g, "/v1/voter?group="+strconv.Itoa(g), b, &ri)
	return ri, err
}

// groupVoters asks group g's leader for the voters of its Raft
// configuration (the latest it has; changes run one at a time and each
// waits for its commit, so that is the committed one), following the
// leader until ctx ends.
func (c *Cluster) groupVoters(ctx context.Context, g int) ([]string, error) {
	ri, err := c.changeVoters(ctx, g, voterChange{Op: "get"})
	if re := (*errRPC)(nil); errors.As(err, &re) && re.status == http.StatusBadRequest && strings.Contains(re.msg, "unknown op get") {
		return nil, fmt.Errorf("%w: the leader runs an older tally, which cannot report its group's voters: upgrade it (or move the group's leadership to an upgraded node) and run the change again", err)
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, s := range ri.Servers {
		if s.Suffrage == raft.Voter {
			ids = append(ids, string(s.ID))
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("group %d: its leader answered no voter", g)
	}
	return ids, nil
}

// configWait bounds the wait for a group's configuration before a change:
// a group without a leader is refused before anything changes.
const configWait = 10 * time.Second

// replicaOf asks node id for its replica of group g.
func (c *Cluster) replicaOf(ctx context.Context, id string, g int) (replicaInfo, error) {
	var ri replicaInfo
	mb := c.Map().Member(id)
	if mb == nil {
		return ri, fmt.Errorf("node %s is not a member", id)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	err := c.post(ctx, mb.ClusterAddr, "/v1/replica?group="+strconv.Itoa(g), nil, &ri)
	return ri, err
}

// hello is a node's answer to GET /v1/hello, which works before it has a
// map: who it is and the schema of the repo it runs.
type hello struct {
	Node   string          `json:"node"`
	Schema json.RawMessage `json:"schema"`
	// MapVersion is the version of the node's cluster map (0: none yet);
	// Removed, whether that map says the asking node (?id=) was removed
	// from the cluster (checkNotRemoved).
	MapVersion uint64 `json:"map_version,omitempty"`
	Removed    bool   `json:"removed,omitempty"`
	// Members are the ids of that map's members, and Groups the groups it
	// gives the asking node: what a node over a new data dir asks its
	// peers (checkNewNode). New: the node has no map, and its data dir
	// held nothing when it started (a cluster being created); Waiting:
	// its data dir is new and it has opened no replica yet, waiting for
	// its peers (or add-node) to clear its start.
	Members []string `json:"members,omitempty"`
	Groups  []int    `json:"groups,omitempty"`
	New     bool     `json:"new,omitempty"`
	Waiting bool     `json:"waiting,omitempty"`
	// Addr is the asking node's cluster address in that map; Instance
	// is random per process: a node finds another process answering
	// under its id (checkSingleProcess).
	Addr     string `json:"addr,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Creation, from a new node of --cluster-peers without a map: what it
	// would create the cluster with (creation), which its new peers
	// compare with theirs (judgeNew).
	Creation string `json:"creation,omitempty"`
	// Progress is what the asking node reported of its replicas
	// (checkNotRestored).
	Progress []progressMark `json:"progress,omitempty"`
	// ShapeGroups and ShapeReplicas are the node's --cluster-groups and
	// --cluster-replicas where given (0: not given): add-node refuses a
	// node whose start would refuse the cluster's map (checkShape).
	ShapeGroups   int `json:"shape_groups,omitempty"`
	ShapeReplicas int `json:"shape_replicas,omitempty"`
	// Recovery is the node's pending recovery, else its last finished one
	// (checkRecoveryPeers).
	Recovery *recoveryIntent `json:"recovery,omitempty"`
}

// forwardedChangeTimeout bounds a change forwarded to the metadata leader
// once its forwarder is gone (tally cluster's own bound, 10 minutes: a
// move waits for the new replica to catch up).
const forwardedChangeTimeout = 10 * time.Minute

// adminRequest is a change forwarded to the metadata leader.
type adminRequest struct {
	Op     string  `json:"op"` // "add-node", "remove-node", "move-replica", "rebalance"
	Member *Member `json:"member,omitempty"`
	ID     string  `json:"id,omitempty"`
	Move   *Move   `json:"move,omitempty"`
	DryRun bool    `json:"dryRun,omitempty"`
}

// Outcome is what a change did (or, dry, would do).
type Outcome struct {
	Map  *Map `json:"map"`
	Plan Plan `json:"plan"`
	// DryRun: nothing was changed.
	DryRun bool `json:"dryRun,omitempty"`
}

// AddNode admits a running node, started with Config.Join, to the
// cluster: it becomes a member (and a voter of the metadata group while
// that has fewer than five) holding no replica yet; Rebalance moves
// replicas to it.
func (c *Cluster) AddNode(ctx context.Context, mb Member) (Outcome, error) {
	return c.admin(ctx, adminRequest{Op: "add-node", Member: &mb})
}

// RemoveNode moves every replica node id holds to the other nodes that
// answer, then takes it out of the metadata group and the map. The node
// is left running, idle: stop it afterwards. Refused, with nothing
// changed, when a group it changes would be left without a quorum of
// nodes that answer, has no node up to take its replica, or has a move or
// an addition left half-way. An id that is no member is refused,
// unless the map lists it as removed (a removal run again succeeds).
func (c *Cluster) RemoveNode(ctx context.Context, id string) (Outcome, error) {
	return c.admin(ctx, adminRequest{Op: "remove-node", ID: id})
}

// MoveReplica moves group mv.Group's replica from node mv.From to node
// mv.To. Refused, with nothing changed, when mv.To does not answer its
// status (the new replica could not catch up).
func (c *Cluster) MoveReplica(ctx context.Context, mv Move) (Outcome, error) {
	return c.admin(ctx, adminRequest{Op: "move-replica", Move: &mv})
}

// Rebalance brings every group to the cluster's R replicas (a group
// holds fewer after a recovery: replicas are added on the least loaded
// members up, planAdditions, each caught up before it counts as a voter)
// and evens out replicas over the members up and preferred leaders over
// the nodes (planRebalance: a member down gets no replica and keeps its
// own; the plan lists it in Down); with dryRun it only answers the plan.
// Refused, with nothing changed, when too few members are up to bring
// every group to R.
// It asks every member for its status and every group's leader for its
// voters first (one RPC each).
func (c *Cluster) Rebalance(ctx context.Context, dryRun bool) (Outcome, error) {
	return c.admin(ctx, adminRequest{Op: "rebalance", DryRun: dryRun})
}

// admin runs req on the metadata leader: here, or forwarded.
func (c *Cluster) admin(ctx context.Context, req adminRequest) (Outcome, error) {
	var out Outcome
	for {
		var err error
		if c.meta.raft.State() == raft.Leader {
			out, err = c.runAdmin(ctx, req)
		} else {
			err = c.metaRPC(ctx, "/v1/admin", req, &out, false)
		}
		if err == nil || !strings.Contains(err.Error(), errElsewhere.Error()) {
			return out, err
		}
		// The metadata leadership moved away (a node removing itself):
		// go on where it went.
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// errElsewhere: the change must go on on another metadata leader.
var errElsewhere = errors.New("the metadata leadership moved: going on on the new leader")

// runAdmin runs req on this node, the metadata leader, one change at a
// time.
func (c *Cluster) runAdmin(ctx context.Context, req adminRequest) (Outcome, error) {
	c.adminMu.Lock()
	defer c.adminMu.Unlock()
	var out Outcome
	var err error
	switch req.Op {
	case "add-node":
		err = c.addNode(ctx, req.Member)
	case "remove-node":
		out.Plan, err = c.removeNode(ctx, req.ID)
	case "move-replica":
		if req.Move == nil {
			return out, &errApply{err: errors.New("move-replica needs a group, a from and a to node")}
		}
		out.Plan.Moves = []Move{*req.Move}
		err = c.moveReplica(ctx, *req.Move)
	case "rebalance":
		out.Plan, err = c.rebalance(ctx, req.DryRun)
		out.DryRun = req.DryRun
	default:
		err = &errApply{err: fmt.Errorf("unknown change %q", req.Op)}
	}
	m, _ := c.metaSM.current()
	out.Map = m
	return out, err
}

// addNode: see AddNode.
func (c *Cluster) addNode(ctx context.Context, mb *Member) error {
	if mb == nil || mb.ID == "" || mb.ClusterAddr == "" {
		return &errApply{err: errors.New("add-node needs the node's id and cluster address")}
	}
	m, _ := c.metaSM.current()
	if cur := m.Member(mb.ID); cur != nil && cur.ClusterAddr != mb.ClusterAddr {
		return &errApply{err: fmt.Errorf("node %s is already a member, at %s", mb.ID, cur.ClusterAddr)}
	}
	// The node must be up and of this cluster (the transport's handshake
	// checks the key and the cluster id) before it counts in a quorum. The
	// hello tells it whether this map counts it already ("member", which
	// refuses a node over a new data dir) or not ("check": an admission
	// follows if nothing else refuses it); a node over a new data dir
	// waits for that before it opens a replica (newdir.go).
	verdict := "check"
	if m.Member(mb.ID) != nil {
		verdict = "member"
	}
	var hi hello
	err := c.helloTo(ctx, mb.ClusterAddr, verdict, &hi)
	if err != nil {
		return &errApply{err: fmt.Errorf("node %s does not answer at %s: start it first (tally serve --node-id %s --cluster-join ... with this cluster's id and key): %v", mb.ID, mb.ClusterAddr, mb.ID, err)}
	}
	if hi.Node != mb.ID {
		return &errApply{err: fmt.Errorf("the node at %s is %q, not %q", mb.ClusterAddr, hi.Node, mb.ID)}
	}
	if hi.Waiting && verdict == "member" {
		// A member answering over a new data dir lost its data: admitting
		// it again would make an empty replica a voter (it was told, and
		// refuses to start).
		return &errApply{err: wipedMember(mb.ID, "", m.GroupsOf(mb.ID), "the metadata leader's map")}
	}
	if len(m.Schema) > 0 {
		changes, err := store.SchemaChanges(m.Schema, hi.Schema)
		if err != nil {
			return &errApply{err: fmt.Errorf("node %s sent no readable repo schema (%v): does it run the same tally version?", mb.ID, err)}
		}
		if len(changes) > 0 {
			return &errApply{err: fmt.Errorf("node %s runs another feature repo than the cluster's (every node must run the same; restart it with the cluster's repo): %s", mb.ID, strings.Join(changes, "; "))}
		}
	}
	// A node started with other groups or replicas than the cluster's
	// refuses the map once it arrives: admitted first, it would count as a
	// metadata voter that never runs.
	if err := checkShape(Config{Groups: hi.ShapeGroups, Replicas: hi.ShapeReplicas}, m); err != nil {
		return &errApply{err: fmt.Errorf("node %s is not admitted, nothing was changed: its start would refuse the cluster's map: %w", mb.ID, err)}
	}
	if hi.Waiting {
		if err := c.helloTo(ctx, mb.ClusterAddr, "new", &hi); err != nil {
			return &errApply{err: fmt.Errorf("node %s stopped answering at %s: %v", mb.ID, mb.ClusterAddr, err)}
		}
	}
	cf := c.meta.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	voters, known := 0, false
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
		known = known || string(s.ID) == mb.ID
	}
	if !known {
		var f raft.IndexFuture
		if voters < 5 {
			f = c.meta.raft.AddVoter(raft.ServerID(mb.ID), raft.ServerAddress(mb.ClusterAddr), 0, 10*time.Second)
		} else {
			f = c.meta.raft.AddNonvoter(raft.ServerID(mb.ID), raft.ServerAddress(mb.ClusterAddr), 0, 10*time.Second)
		}
		if err := f.Error(); err != nil {
			return fmt.Errorf("metadata group: add %s: %w", mb.ID, err)
		}
	}
	return c.proposeMeta(ctx, metaCommand{Op: "add-member", Member: mb})
}

// helloTo asks the node at addr who it is, telling it add-node's verdict
// on it (noteAdmission).
func (c *Cluster) helloTo(ctx context.Context, addr, verdict string, hi *hello) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return c.post(ctx, addr, "/v1/hello?admit="+verdict, nil, hi)
}

// removeNode: see RemoveNode.
func (c *Cluster) removeNode(ctx context.Context, id string) (Plan, error) {
	m, _ := c.metaSM.current()
	if m.Member(id) == nil {
		if slices.Contains(m.Removed, id) {
			return Plan{}, nil // already gone: a removal run again
		}
		// Not an id the cluster knows (a typo): answering success would
		// tell the operator to stop and wipe the node meant, replicas
		// and all.
		ids := make([]string, len(m.Members))
		for i, mb := range m.Members {
			ids[i] = mb.ID
		}
		return Plan{}, &errApply{err: fmt.Errorf("node %q is not a member of the cluster (its members: %s): nothing removed; check the id with tally cluster nodes", id, strings.Join(ids, ", "))}
	}
	if len(m.Members) == 1 {
		return Plan{}, &errApply{err: errors.New("the cluster's last node cannot be removed")}
	}
	if err := c.checkGroups(ctx, m); err != nil {
		return Plan{}, err
	}
	up := c.membersUp(ctx, m)
	plan, err := planRebalance(m, map[string]bool{id: true}, func(x string) bool { return up[x] })
	if nt := (*errNoTarget)(nil); errors.As(err, &nt) {
		return plan, &errApply{err: fmt.Errorf("remove %s: %v. Nothing was removed: start the nodes down again (or add a node: tally cluster add-node) and run the removal again",
			id, err)}
	}
	if err != nil {
		return plan, &errApply{err: fmt.Errorf("remove %s: %v", id, err)}
	}
	plan.Moves = slices.DeleteFunc(plan.Moves, func(mv Move) bool { return mv.From != id })
	plan.Leaders = nil
	if err := c.checkRemovalQuorums(id, m, up, plan.Moves); err != nil {
		return plan, err
	}
	// Every group the removal changes is checked before the first move:
	// checkGroups sees only the groups listing more than R, and a group
	// listing at most R with a replica that is not a voter (an addition
	// cut short) would be refused at its own move, after the moves of
	// the groups before it.
	for _, mv := range plan.Moves {
		if err := c.checkMove(ctx, m, mv); err != nil {
			return plan, err
		}
	}
	for _, mv := range plan.Moves {
		if err := c.moveReplica(ctx, mv); err != nil {
			return plan, err
		}
	}
	if id == c.cfg.NodeID {
		// This node leads the metadata group: hand it over; the new leader
		// finishes (its replicas are gone already).
		if err := c.meta.raft.LeadershipTransfer().Error(); err != nil {
			return plan, fmt.Errorf("hand over the metadata leadership: %w", err)
		}
		return plan, errElsewhere
	}
	if err := c.meta.raft.RemoveServer(raft.ServerID(id), 0, 10*time.Second).Error(); err != nil {
		return plan, fmt.Errorf("metadata group: remove %s: %w", id, err)
	}
	if err := c.promoteMetaVoter(); err != nil {
		c.logger.Warn("cluster: promoting a metadata voter", "err", err)
	}
	return plan, c.proposeMeta(ctx, metaCommand{Op: "remove-member", ID: id})
}

// checkRemovalQuorums refuses to remove node id when a group the removal
// changes would be without a quorum of nodes that answer: the metadata
// group's voters other than id (they commit the removal and every later
// change of the map: left without a quorum, the cluster could not be
// changed again until the nodes down came back), and each group whose
// replica moves off id (its leader, elected by a majority of its listed
// replicas, runs the move; with one replica, that replica is id's). up
// says which members of m answered their status (membersUp); the moves
// were planned onto members up only. Nothing is changed before the check:
// a refused removal leaves the cluster as it was.
func (c *Cluster) checkRemovalQuorums(id string, m *Map, up map[string]bool, moves []Move) error {
	split := func(ids []string) (answering, down []string) {
		for _, x := range ids {
			if up[x] {
				answering = append(answering, x)
			} else {
				down = append(down, x)
			}
		}
		return answering, down
	}
	cf := c.meta.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return fmt.Errorf("remove %s: read the metadata group's configuration: %w", id, err)
	}
	var left []string
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter && string(s.ID) != id {
			left = append(left, string(s.ID))
		}
	}
	if answering, down := split(left); len(answering) < len(left)/2+1 {
		return &errApply{err: fmt.Errorf("remove %s: the metadata group would be left with the voters %s and needs %d of them to change the cluster map, but only %d answer (down: %s): the removal could not finish and the cluster could not be changed again until they came back. Nothing was removed: start %s again first (tally cluster status shows the nodes down)",
			id, strings.Join(left, ", "), len(left)/2+1, len(answering), strings.Join(down, ", "), strings.Join(down, ", "))}
	}
	for _, mv := range moves {
		reps := m.Groups[mv.Group].Replicas
		answering, down := split(reps)
		switch {
		case len(reps) == 1 && len(answering) == 0:
			return &errApply{err: fmt.Errorf("remove %s: group %d's only replica is on %s, which does not answer: no other node holds the group's writes to move. Nothing was removed: start %s again first",
				id, mv.Group, reps[0], reps[0])}
		case len(answering) < len(reps)/2+1:
			return &errApply{err: fmt.Errorf("remove %s: group %d has no quorum: moving %s's replica needs the group's leader, elected by %d of its replicas %s, but only %d answer (down: %s). Nothing was removed: start %s again first",
				id, mv.Group, id, len(reps)/2+1, strings.Join(reps, ", "), len(answering), strings.Join(down, ", "), strings.Join(down, ", "))}
		}
	}
	return nil
}

// membersUp asks every member of m for its status, in parallel
// (overviewTimeout each, as the overview does), and answers which ones
// did. Pass the metadata FSM's map, not the cached one (followMap may not
// have taken it yet): a node just added is a member there.
func (c *Cluster) membersUp(ctx context.Context, m *Map) map[string]bool {
	up := map[string]bool{}
	for _, n := range c.overviewOf(ctx, m).Nodes {
		up[n.ID] = n.Up
	}
	return up
}

// answers refuses a change that would place a replica on member mb when
// mb does not answer its status within overviewTimeout: the replica could
// not catch up, and the change would wait for it until it timed out,
// leaving group g half-moved.
func (c *Cluster) answers(ctx context.Context, mb Member, g int) error {
	if mb.ID == c.cfg.NodeID {
		return nil
	}
	if _, err := c.peerStatus(ctx, mb); err != nil {
		return &errApply{err: fmt.Errorf("node %s does not answer (%v): a replica of group %d placed there could not catch up, and the change would wait for it until it timed out. Nothing was changed: start %s again, or choose a node that answers (tally cluster status shows the nodes down)",
			mb.ID, err, g, mb.ID)}
	}
	return nil
}

// promoteMetaVoter makes a non-voter of the metadata group a voter while
// it has fewer than five voters.
func (c *Cluster) promoteMetaVoter() error {
	cf := c.meta.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	voters := 0
	var non []raft.Server
	for _, s := range cf.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
		} else {
			non = append(non, s)
		}
	}
	for _, s := range non {
		if voters >= 5 {
			break
		}
		if err := c.meta.raft.AddVoter(s.ID, s.Address, 0, 10*time.Second).Error(); err != nil {
			return err
		}
		voters++
	}
	return nil
}

// moveReplica: see MoveReplica; each step is skipped when already done.
func (c *Cluster) moveReplica(ctx context.Context, mv Move) error {
	m, _ := c.metaSM.current()
	if mv.Group < 0 || mv.Group >= len(m.Groups) {
		return &errApply{err: fmt.Errorf("no group %d: groups are 0 to %d", mv.Group, len(m.Groups)-1)}
	}
	to := m.Member(mv.To)
	if to == nil || m.Member(mv.From) == nil {
		return &errApply{err: fmt.Errorf("move-replica needs two members (from %q, to %q): see tally cluster nodes", mv.From, mv.To)}
	}
	if mv.From == mv.To {
		return &errApply{err: errors.New("from and to are the same node")}
	}
	g := mv.Group
	reps := m.Groups[g].Replicas
	hasFrom, hasTo := slices.Contains(reps, mv.From), slices.Contains(reps, mv.To)
	switch {
	case !hasFrom && !hasTo:
		return &errApply{err: fmt.Errorf("node %s holds no replica of group %d (its replicas: %v)", mv.From, g, reps)}
	case hasFrom && hasTo && len(reps) <= m.Replicas:
		// Both listed and no replica beyond R: not a move to mv.To left
		// after its step 1 (that lists R+1), but a node that already
		// holds the group. Going on would remove mv.From and leave the
		// group a replica short, unless mv.From is an addition's leftover
		// (dropLeftover).
		return c.dropLeftover(ctx, m, mv)
	}
	if hasFrom {
		if !hasTo || mv.To == c.cfg.NodeID {
			if err := c.answers(ctx, *to, g); err != nil {
				return err
			}
		} else if _, err := c.peerStatus(ctx, *to); err != nil {
			// The move run again (it stopped after its step 1).
			return stoppedMoveTargetDown(m, mv, err)
		}
		if err := c.checkMove(ctx, m, mv); err != nil {
			return err
		}
	}
	switch {
	case hasFrom && !hasTo:
		// 1. The map lists the new replica (last: not preferred yet).
		err := c.casMeta(ctx, func(m *Map) *metaCommand {
			reps := m.Groups[g].Replicas
			if slices.Contains(reps, mv.To) {
				return nil
			}
			return &metaCommand{Op: "set-replicas", Group: g, Replicas: append(slices.Clone(reps), mv.To)}
		})
		if err != nil {
			return fmt.Errorf("group %d: list %s in the map: %w", g, mv.To, err)
		}
	}
	if hasFrom {
		// 2. A non-voter first, then 3. a voter once caught up.
		if err := c.catchUpVoter(ctx, g, *to); err != nil {
			return err
		}
		// 4. Remove the old replica from the group's configuration.
		if _, err := c.changeVoters(ctx, g, voterChange{Op: "remove", ID: mv.From, Handoff: to.ID}); err != nil {
			return fmt.Errorf("group %d: remove %s: %w", g, mv.From, err)
		}
	}
	// 5. The map lists the new replica in the old one's place.
	err := c.casMeta(ctx, func(m *Map) *metaCommand {
		reps := slices.Clone(m.Groups[g].Replicas)
		if i := slices.Index(reps, mv.From); i >= 0 {
			j := slices.Index(reps, mv.To)
			reps[i] = mv.To
			if j >= 0 {
				reps = slices.Delete(reps, j, j+1)
			}
		}
		if !slices.Contains(reps, mv.To) {
			reps = append(reps, mv.To)
		}
		return &metaCommand{Op: "set-replicas", Group: g, Replicas: reps}
	})
	if err != nil {
		return fmt.Errorf("group %d: update the map: %w", g, err)
	}
	c.logger.Info("cluster: replica moved", "group", g, "from", mv.From, "to", mv.To)
	return nil
}

// stoppedMoveTargetDown is the refusal of move mv run again (the map
// lists both mv.From and mv.To, more than R) while mv.To does not answer
// (peerStatus's err): the move stopped half-way and cannot go on until
// mv.To answers (answers' "Nothing was changed" would hide the map's R+1).
// The move back undoes it without mv.To: mv.From is caught up again if it
// left the group, from the voters, which hold every acknowledged write.
func stoppedMoveTargetDown(m *Map, mv Move, err error) error {
	g := mv.Group
	return &errApply{err: fmt.Errorf("node %s does not answer (%v): the move of group %d from %s to %s stopped half-way (the map lists %s) and cannot go on until it does. Nothing more was changed: start %s again and run this move again; or, if %s stays down, undo the move: tally cluster move-replica --group %d --from %s --to %s",
		mv.To, err, g, mv.From, mv.To, strings.Join(m.Groups[g].Replicas, ", "), mv.To, mv.To, g, mv.To, mv.From)}
}

// dropLeftover takes mv.From out of group mv.Group, listing both mv.From
// and mv.To and at most R replicas, when mv.From is not a voter of the
// group and mv.To is: the leftover of an addition (or of a move of a
// group holding fewer than R) cut short. rebalance finishes such an
// addition, but only once the leftover answers; a leftover that stays
// down could not be taken out otherwise. Not a voter, it never counted
// in a quorum: the voters hold every acknowledged write, and the group is
// left with them (fewer than R: rebalance adds the missing replicas on
// nodes that answer). The leader removes it from the group's Raft
// configuration first (a non-voter there would be sent the log for
// ever), then the map drops it. Anything else is refused as a node that
// already holds the group, or as a move left half-way (halfMoved).
func (c *Cluster) dropLeftover(ctx context.Context, m *Map, mv Move) error {
	g := mv.Group
	reps := m.Groups[g].Replicas
	vctx, cancel := context.WithTimeout(ctx, configWait)
	voters, err := c.groupVoters(vctx, g)
	cancel()
	if err != nil {
		return fmt.Errorf("group %d: read its Raft configuration before changing it: %w", g, err)
	}
	if slices.Contains(voters, mv.From) || !slices.Contains(voters, mv.To) {
		return &errApply{err: fmt.Errorf("node %s already holds a replica of group %d (its replicas: %v): move it to a node that does not", mv.To, g, reps)}
	}
	for _, id := range disagreeing(reps, voters) {
		if !slices.Contains(reps, id) { // a voter the map does not list
			return halfMoved(m, g, voters, nil)
		}
	}
	if _, err := c.changeVoters(ctx, g, voterChange{Op: "remove", ID: mv.From}); err != nil {
		return fmt.Errorf("group %d: remove %s: %w", g, mv.From, err)
	}
	err = c.casMeta(ctx, func(m *Map) *metaCommand {
		reps := m.Groups[g].Replicas
		if !slices.Contains(reps, mv.From) {
			return nil
		}
		return &metaCommand{Op: "set-replicas", Group: g, Replicas: slices.DeleteFunc(slices.Clone(reps), func(id string) bool { return id == mv.From })}
	})
	if err != nil {
		return fmt.Errorf("group %d: take %s out of the map: %w", g, mv.From, err)
	}
	c.logger.Info("cluster: a replica that was not a voter taken out", "group", g, "node", mv.From)
	return nil
}

// catchUpVoter is steps 2 and 3 of a move, and what an addition does once
// the map lists its replica: group g's leader adds node to as a non-voter
// (Raft sends it a snapshot and the log after it); once to applied what
// the group had committed when it was added, the leader makes it a voter.
// Each step is a no-op when done (Raft keeps a voter a voter when asked to
// add it as a non-voter), so a change cut short goes on when run again.
func (c *Cluster) catchUpVoter(ctx context.Context, g int, to Member) error {
	ri, err := c.changeVoters(ctx, g, voterChange{Op: "add-nonvoter", ID: to.ID, Addr: to.ClusterAddr})
	if err != nil {
		return fmt.Errorf("group %d: add %s as a non-voter: %w", g, to.ID, err)
	}
	if err := c.waitCaughtUp(ctx, g, to.ID, ri.Commit); err != nil {
		return err
	}
	if _, err := c.changeVoters(ctx, g, voterChange{Op: "add-voter", ID: to.ID, Addr: to.ClusterAddr}); err != nil {
		return fmt.Errorf("group %d: make %s a voter: %w", g, to.ID, err)
	}
	return nil
}

// addReplica adds a replica of group g on node id, for a group holding
// fewer than R (after a recovery, recover.go): the first half of a move,
// without the removal. 1. The map lists id (last: not the preferred
// leader); id opens an empty replica, which does not bootstrap (the group
// changed). 2. and 3. as a move's (catchUpVoter): id counts in the
// group's quorum only once it applied what the group had committed. A
// replica listed and not yet a voter (an addition cut short after its
// step 1) is finished the same way. The caller (rebalance) checked that
// the group's voters are its listed replicas, but for id.
func (c *Cluster) addReplica(ctx context.Context, g int, id string) error {
	m, _ := c.metaSM.current()
	to := m.Member(id)
	if g < 0 || g >= len(m.Groups) || to == nil {
		return &errApply{err: fmt.Errorf("add a replica of group %d on %q: no such group or member", g, id)}
	}
	if reps := m.Groups[g].Replicas; !slices.Contains(reps, id) && len(reps) >= m.Replicas {
		return &errApply{err: fmt.Errorf("group %d holds %d replicas (%s), the cluster's %d: none to add", g, len(reps), strings.Join(reps, ", "), m.Replicas)}
	}
	err := c.casMeta(ctx, func(m *Map) *metaCommand {
		reps := m.Groups[g].Replicas
		if slices.Contains(reps, id) {
			return nil
		}
		return &metaCommand{Op: "set-replicas", Group: g, Replicas: append(slices.Clone(reps), id)}
	})
	if err != nil {
		return fmt.Errorf("group %d: list %s in the map: %w", g, id, err)
	}
	if err := c.catchUpVoter(ctx, g, *to); err != nil {
		return err
	}
	c.logger.Info("cluster: replica added", "group", g, "node", id)
	return nil
}

// checkMove refuses move mv while group mv.Group's map and Raft
// configuration disagree about a node other than mv.From and mv.To, or the
// map lists more than R replicas and mv.To is not one of them: another
// move was stopped half-way (see the top of this file). A move to a node
// not listed would then leave the leftover counted as one of the group's
// R replicas; a move between listed voters would take mv.From out with
// nobody added in its place. A move that finishes the stopped one, or
// undoes it (from its new replica to a voter), goes on: each of its steps
// keeps the voters and the map agreeing about every other node. Costs one
// RPC to the group's leader, bounded by configWait.
func (c *Cluster) checkMove(ctx context.Context, m *Map, mv Move) error {
	g := mv.Group
	reps := m.Groups[g].Replicas
	vctx, cancel := context.WithTimeout(ctx, configWait)
	voters, err := c.groupVoters(vctx, g)
	cancel()
	if len(reps) > m.Replicas && !slices.Contains(reps, mv.To) {
		return halfMoved(m, g, voters, err)
	}
	if err != nil {
		return fmt.Errorf("group %d: read its Raft configuration before changing it: %w", g, err)
	}
	for _, id := range disagreeing(reps, voters) {
		if id != mv.From && id != mv.To {
			return halfMoved(m, g, voters, nil)
		}
	}
	return nil
}

// checkGroups refuses a plan (rebalance, remove-node) while a group of m
// lists more than R replicas: planRebalance would count a move's leftover
// as a replica. Costs one RPC per such group.
func (c *Cluster) checkGroups(ctx context.Context, m *Map) error {
	for _, gi := range m.Groups {
		if len(gi.Replicas) > m.Replicas {
			vctx, cancel := context.WithTimeout(ctx, configWait)
			voters, err := c.groupVoters(vctx, gi.ID)
			cancel()
			return halfMoved(m, gi.ID, voters, err)
		}
	}
	return nil
}

// disagreeing lists the nodes listed and not voters, then the voters not
// listed.
func disagreeing(listed, voters []string) []string {
	var out []string
	for _, id := range listed {
		if !slices.Contains(voters, id) {
			out = append(out, id)
		}
	}
	for _, id := range voters {
		if !slices.Contains(listed, id) {
			out = append(out, id)
		}
	}
	return out
}

// halfMoved is the refusal of a change of group g while a move of it is
// left half-way: which node is left over (from the group's voters; verr
// when its leader did not answer) and the command that finishes or undoes
// that move.
func halfMoved(m *Map, g int, voters []string, verr error) error {
	reps := m.Groups[g].Replicas
	move := "tally cluster move-replica --group " + strconv.Itoa(g)
	if verr != nil {
		return &errApply{err: fmt.Errorf("group %d lists %d replicas (%s), more than the cluster's %d: a move of it stopped half-way, and its leader did not say which replica is left over (%v). Finish or undo that move before another change (tally cluster status shows the group)",
			g, len(reps), strings.Join(reps, ", "), m.Replicas, verr)}
	}
	var listedOnly, votersOnly []string
	for _, id := range disagreeing(reps, voters) {
		if slices.Contains(reps, id) {
			listedOnly = append(listedOnly, id)
		} else {
			votersOnly = append(votersOnly, id)
		}
	}
	var others []string
	for _, id := range reps {
		if slices.Contains(voters, id) {
			others = append(others, id)
		}
	}
	switch {
	case len(listedOnly) > 0 && len(votersOnly) == 0 && len(reps) <= m.Replicas:
		// No move of a group holding R leaves that: an addition (or a
		// move of a group holding fewer) stopped half-way, which
		// rebalance finishes (stoppedAdditions).
		x := listedOnly[0]
		return &errApply{err: fmt.Errorf("group %d: %s is listed as one of its replicas (%s) but is not a voter of the group (its voters: %s): a replica added to it (or moved within it while it held fewer than the cluster's %d) stopped before %s became a voter. Run tally cluster rebalance before another change of the group: it finishes that (%s is caught up, then made a voter); if %s stays down, %s --from %s --to %s takes it out instead",
			g, x, strings.Join(reps, ", "), strings.Join(voters, ", "), m.Replicas, x, x, x, move, x, nearestVoter(reps, x, voters))}
	case len(listedOnly) > 0:
		x := listedOnly[0]
		return &errApply{err: fmt.Errorf("group %d: %s is listed as one of its replicas (%s) but is not a voter of the group (its voters: %s): a move to %s stopped before %s became a voter, or a move from %s stopped after %s left the group. Finish or undo it before another change of the group: %s --from %s --to %s (or --to another voter) takes %s out of the group (its voters hold every acknowledged write); %s --from <one of %s> --to %s makes %s a replica in that node's place",
			g, x, strings.Join(reps, ", "), strings.Join(voters, ", "), x, x, x, x, move, x, nearestVoter(reps, x, voters), x, move, strings.Join(others, ", "), x, x)}
	case len(votersOnly) > 0:
		return &errApply{err: fmt.Errorf("group %d: %s is a voter of the group but not listed as one of its replicas (%s): no stopped move leaves that; check the group with tally cluster status before changing it",
			g, strings.Join(votersOnly, ", "), strings.Join(reps, ", "))}
	}
	// Every listed replica is a voter: a move stopped after its step 3.
	// Step 1 listed its new replica last (a transfer-leader since may have
	// reordered them).
	x := reps[len(reps)-1]
	return &errApply{err: fmt.Errorf("group %d lists %d replicas (%s), more than the cluster's %d, all of them voters: a move stopped after its new replica became a voter (listed last: %s, unless the replicas were reordered since). Finish it before another change of the group: %s --from <the node it replaces> --to %s; or undo it: %s --from %s --to %s",
		g, len(reps), strings.Join(reps, ", "), m.Replicas, x, move, x, move, x, nearestVoter(reps, x, voters))}
}

// nearestVoter is the voter listed nearest to x in reps, the one before x
// first: moving x to it takes x out of the list and leaves the order of
// the others (the first is the preferred leader) as it was.
func nearestVoter(reps []string, x string, voters []string) string {
	i := slices.Index(reps, x)
	for d := 1; d < len(reps); d++ {
		for _, j := range []int{i - d, i + d} {
			if j >= 0 && j < len(reps) && reps[j] != x && slices.Contains(voters, reps[j]) {
				return reps[j]
			}
		}
	}
	return voters[0]
}

// casMeta commits the change build makes of the current map, planned on
// its version; when the map moved on meanwhile (a node announcing its
// address, another change), it plans again. build returns nil when
// there is nothing to change.
func (c *Cluster) casMeta(ctx context.Context, build func(m *Map) *metaCommand) error {
	for {
		m, _ := c.metaSM.current()
		cmd := build(m)
		if cmd == nil {
			return nil
		}
		cmd.Version = m.Version
		err := c.proposeMeta(ctx, *cmd)
		if err == nil || !errors.Is(err, errMapMoved) && !strings.Contains(err.Error(), errMapMoved.Error()) {
			return err
		}
		if ctx.Err() != nil {
			return err
		}
	}
}

// waitCaughtUp waits until node id's replica of group g applied index
// (what the group had committed when it was added).
func (c *Cluster) waitCaughtUp(ctx context.Context, g int, id string, index uint64) error {
	var last error
	for {
		ri, err := c.replicaOf(ctx, id, g)
		if err == nil && ri.Applied >= index {
			return nil
		}
		if err != nil {
			last = err
		} else {
			last = fmt.Errorf("applied %d of %d", ri.Applied, index)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("group %d: %s did not catch up (%v): is it up? run the change again to go on", g, id, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// rebalance: see Rebalance. Before anything changes: the groups listing
// more than R are refused (checkGroups); every group's voters are read
// from its leader (additions cut short are finished first,
// stoppedAdditions); the members are asked whether they are up (a
// replica added or moved onto a node that is down would never catch up:
// additions and moves go to members up only); and the plan is refused
// whole when some group cannot be brought to R.
func (c *Cluster) rebalance(ctx context.Context, dryRun bool) (Plan, error) {
	m, _ := c.metaSM.current()
	if err := c.checkGroups(ctx, m); err != nil {
		return Plan{}, err
	}
	up := c.membersUp(ctx, m)
	finish, err := c.stoppedAdditions(ctx, m, up)
	if err != nil {
		return Plan{}, err
	}
	adds, next, short := planAdditions(m, func(id string) bool { return up[id] })
	if len(short) > 0 {
		return Plan{}, underReplicated(next, short, up)
	}
	plan, err := planRebalance(next, nil, func(id string) bool { return up[id] })
	if err != nil {
		return plan, err
	}
	plan.Adds = append(finish, adds...)
	if dryRun {
		return plan, nil
	}
	for _, a := range plan.Adds {
		if err := c.addReplica(ctx, a.Group, a.To); err != nil {
			return plan, err
		}
	}
	for _, mv := range plan.Moves {
		if err := c.moveReplica(ctx, mv); err != nil {
			return plan, err
		}
	}
	for _, g := range plan.Leaders {
		err := c.casMeta(ctx, func(m *Map) *metaCommand {
			if !sameSet(m.Groups[g.ID].Replicas, g.Replicas) {
				return nil // changed meanwhile: the next rebalance sees it
			}
			return &metaCommand{Op: "set-replicas", Group: g.ID, Replicas: g.Replicas}
		})
		if err != nil {
			return plan, fmt.Errorf("group %d: set its preferred leader: %w", g.ID, err)
		}
	}
	return plan, nil
}

// stoppedAdditions reads each group's voters from its leader and returns,
// as additions to finish, the replicas m lists that are not voters: in a
// group listing at most R (checkGroups refused the others), that is an
// addition, or a move of a group holding fewer than R, stopped before its
// new replica became a voter (or, for such a move, after its old replica
// left the group); either way, making the replica a voter again leaves
// the group with no replica it does not count. Refused: a voter m does not
// list, a listed replica on a node that is down (it could not catch up),
// a group whose leader does not answer. Costs one RPC per group, each
// bounded by configWait.
func (c *Cluster) stoppedAdditions(ctx context.Context, m *Map, up map[string]bool) ([]Move, error) {
	var finish []Move
	for _, gi := range m.Groups {
		vctx, cancel := context.WithTimeout(ctx, configWait)
		voters, err := c.groupVoters(vctx, gi.ID)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("read group %d's Raft configuration before changing the cluster (see tally cluster status): %w", gi.ID, err)
		}
		for _, id := range disagreeing(gi.Replicas, voters) {
			switch {
			case !slices.Contains(gi.Replicas, id):
				return nil, halfMoved(m, gi.ID, voters, nil)
			case !up[id]:
				return nil, &errApply{err: fmt.Errorf("group %d lists %s as a replica, which is not a voter of the group (its voters: %s): a replica added to it stopped half-way, and %s does not answer. Start %s and run rebalance again, which finishes the addition; or, if %s stays down, take it out of the group (not a voter, it holds no acknowledged write the voters lack): tally cluster move-replica --group %d --from %s --to %s, then run rebalance again, which adds the missing replica on a node that answers. Nothing was changed",
					gi.ID, id, strings.Join(voters, ", "), id, id, id, gi.ID, id, nearestVoter(gi.Replicas, id, voters))}
			}
			finish = append(finish, Move{Group: gi.ID, To: id})
		}
	}
	return finish, nil
}

// underReplicated is the refusal of a rebalance that cannot bring groups
// short (of m, with as many replicas added as there were nodes for) to
// R: it names them, the members up, and how many more nodes it takes.
func underReplicated(m *Map, short []int, up map[string]bool) error {
	var gs, ups, downs []string
	need := 0
	for _, g := range short {
		reps := m.Groups[g].Replicas
		gs = append(gs, fmt.Sprintf("%d (%s)", g, strings.Join(reps, ", ")))
		need = max(need, m.Replicas-len(reps))
	}
	for _, mb := range m.Members {
		if up[mb.ID] {
			ups = append(ups, mb.ID)
		} else {
			downs = append(downs, mb.ID)
		}
	}
	down := ""
	if len(downs) > 0 {
		down = fmt.Sprintf(" (%s do not answer: each one started again counts too)", strings.Join(downs, ", "))
	}
	return &errApply{err: fmt.Errorf("groups %s would stay under the cluster's %d replicas: each replica of a group needs a node of its own, and too few nodes answer (%s): start %d more node(s) with --cluster-join, admit each with tally cluster add-node, and run rebalance again%s; nothing was changed",
		strings.Join(gs, ", "), m.Replicas, strings.Join(ups, ", "), need, down)}
}

// reconcile makes this node's replicas those m gives it: it opens the
// replicas of groups newly placed here (empty, caught up by their
// leaders) and closes and deletes those moved away (their Raft
// configuration no longer has this node: a move changes the map last).
func (c *Cluster) reconcile(m *Map) {
	c.reconcileMu.Lock()
	defer c.reconcileMu.Unlock()
	select {
	case <-c.closing:
		return
	default:
	}
	if m.Member(c.cfg.NodeID) != nil {
		c.member.Store(true)
	} else if c.member.Load() {
		c.removed.Store(true)
	}
	want := m.GroupsOf(c.cfg.NodeID)
	for _, g := range want {
		if c.group(g) != nil {
			continue
		}
		if err := c.openGroup(m, g); err != nil {
			c.logger.Error("cluster: opening a replica placed here", "group", g, "err", err)
			continue
		}
		c.logger.Info("cluster: replica opened", "group", g, "map_version", m.Version)
	}
	for g, dg := range c.localGroups() {
		if slices.Contains(want, g) {
			continue
		}
		c.setGroup(g, nil)
		if err := dg.rep.close(); err != nil {
			c.logger.Warn("cluster: closing a replica moved away", "group", g, "err", err)
		}
		if err := removeReplicaDir(groupDir(c.cfg.DataDir, dg.rep.name)); err != nil {
			c.logger.Warn("cluster: deleting a replica moved away", "group", g, "err", err)
		}
		c.logger.Info("cluster: replica moved away, closed and deleted", "group", g, "map_version", m.Version)
	}
}

// announce puts this node's current addresses in the map when they
// differ (the first map knows only cluster addresses; a node admitted
// with add-node may not have said its HTTP address), retrying in the
// background until it succeeds or the node closes.
func (c *Cluster) announce() {
	defer c.wg.Done()
	me := Member{ID: c.cfg.NodeID, HTTPAddr: c.cfg.HTTPAddr, ClusterAddr: c.cfg.Advertise}
	backoff := 200 * time.Millisecond
	for {
		m, changed := c.metaSM.current()
		wait := (<-chan time.Time)(nil)
		if cur := m.Member(me.ID); cur != nil {
			if *cur == me {
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := c.proposeMeta(ctx, metaCommand{Op: "update-member", Member: &me})
			cancel()
			if err == nil {
				return
			}
			wait = time.After(backoff)
			backoff = min(2*backoff, 5*time.Second)
		}
		select {
		case <-c.closing:
			return
		case <-changed:
		case <-wait:
		}
	}
}
