package cluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/windows"
)

// readTimeout bounds a read sub-request.
const readTimeout = 3 * time.Second

// Read answers one lookup row's reads: the groups this node can answer at
// level from its own replica, the others with one sub-request per group
// (per maxPeerReads reads of a group), in parallel.
func (c *Cluster) Read(level node.ReadLevel, reads []node.Read, t int64, out node.ReadOut) (node.ReadInfo, error) {
	var info node.ReadInfo
	m := c.Map()
	var (
		groups [8]int
		gs     = groups[:0]
		local  [8]*store.Store
		lst    = local[:0]
	)
	vpos := make([]int, len(reads))
	tpos := make([]int, len(reads))
	v, tb := 0, 0
	for i, r := range reads {
		vpos[i], tpos[i] = v, tb
		if r.Table {
			tb++
		} else {
			v++
		}
	}
	// Decide each group once.
	gOf := make([]int, len(reads))
	for i, r := range reads {
		g := m.GroupOfKey(r.Key)
		gOf[i] = g
		if !slices.Contains(gs, g) {
			gs = append(gs, g)
			st, err := c.localFor(g, level)
			if err != nil {
				return info, err
			}
			if st != nil {
				info.Add(node.ReadInfo{StaleMs: c.group(g).staleMs()})
			}
			lst = append(lst, st)
		}
	}
	var remote map[int][]int
	for i, r := range reads {
		k := slices.Index(gs, gOf[i])
		if st := lst[k]; st != nil {
			node.ReadStore(st, r, t, out, vpos[i], tpos[i])
			continue
		}
		if remote == nil {
			remote = map[int][]int{}
		}
		remote[gOf[i]] = append(remote[gOf[i]], i)
	}
	if len(remote) == 0 {
		return info, nil
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	parts := make(map[int][][]int, len(remote))
	for g, idx := range remote {
		// A peer refuses a request of more than maxPeerReads reads or
		// maxPeerReadBody bytes.
		p, err := peerReadParts(reads, idx)
		if err != nil {
			return info, fmt.Errorf("group %d: %w", g, err)
		}
		parts[g] = p
	}
	for g, ps := range parts {
		for _, part := range ps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ri, err := c.readRemote(g, level, reads, part, vpos, tpos, t, out)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				}
				info.Add(ri)
			}()
		}
	}
	wg.Wait()
	return info, errors.Join(errs...)
}

// staleMs is how long ago this replica last heard from its leader (0 on
// the leader).
func (dg *dataGroup) staleMs() int64 {
	if dg.rep.raft.State() == raft.Leader {
		return 0
	}
	lc := dg.rep.raft.LastContact()
	if lc.IsZero() {
		return -1
	}
	return time.Since(lc).Milliseconds()
}

// localFor returns this node's store to answer group g at level, or nil
// when another node must: default and linearizable need the leader (for
// linearizable, after a read barrier); local takes any replica here that
// applied something.
func (c *Cluster) localFor(g int, level node.ReadLevel) (*store.Store, error) {
	dg := c.group(g)
	if dg == nil {
		return nil, nil
	}
	switch level {
	case node.ReadLocal:
		// A replica that applied nothing holds nothing: one a move placed
		// here that its leader has not caught up yet, or one restarted
		// without a snapshot and not yet told what is committed. Its
		// answer would be every feature empty, as fresh as its last
		// heartbeat: the leader answers instead.
		if dg.rep.raft.State() != raft.Leader && dg.rep.raft.AppliedIndex() == 0 {
			return nil, nil
		}
		return dg.fsm.Store(), nil
	case node.ReadLinearizable:
		if dg.rep.raft.State() != raft.Leader {
			return nil, nil
		}
		if err := dg.bar.wait(); err != nil {
			return nil, fmt.Errorf("%w: group %d: linearizable read: %v", node.ErrUnavailable, g, err)
		}
		return dg.fsm.Store(), nil
	}
	if dg.rep.raft.State() != raft.Leader {
		return nil, nil
	}
	return dg.fsm.Store(), nil
}

// readRemote asks a replica of g for the reads idx, retrying on the
// leader it names and on other replicas until readTimeout. A refusal
// (4xx: a request the peer does not take, as one of more reads than it
// allows or of a view its repo lacks) ends it at once: asking again would
// be refused alike.
func (c *Cluster) readRemote(g int, level node.ReadLevel, reads []node.Read, idx, vpos, tpos []int, t int64, out node.ReadOut) (node.ReadInfo, error) {
	var info node.ReadInfo
	body := appendReads(nil, t, reads, idx)
	deadline := time.Now().Add(readTimeout)
	var last error
	// Retried until the deadline: an election (no leader known anywhere)
	// takes one to three election timeouts.
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		if attempt > 0 {
			time.Sleep(min(time.Duration(attempt)*50*time.Millisecond, 200*time.Millisecond))
		}
		// An attempt gets at most two election timeouts (as a forwarded
		// write does): a replica that stopped answering mid-change must not
		// take the whole budget while another attempt would be answered.
		ctx, cancel := context.WithTimeout(context.Background(), min(max(time.Until(deadline), 50*time.Millisecond), max(2*c.cfg.Timing.Election, time.Second)))
		ans, err := c.callGroup(ctx, g, attempt, http.MethodPost, "/v1/read?group="+strconv.Itoa(g)+"&level="+level.String(), body)
		cancel()
		var (
			nl *errNotLeader
			re *errRPC
		)
		switch {
		case errors.Is(err, errNoReplica):
			return info, fmt.Errorf("%w: group %d has no other replica", node.ErrUnavailable, g)
		case errors.As(err, &nl):
			info.LeaderChange = true
		case errors.As(err, &re) && re.status >= 400 && re.status < 500:
			c.logger.Warn("cluster: a peer refused a read sub-request", "group", g, "peer", re.peer, "answer", re.msg)
			return info, fmt.Errorf("group %d: read: node %s refused the request: %s", g, re.peer, re.msg)
		}
		if err != nil {
			last = err
			continue
		}
		r := wireReader{b: ans}
		info.StaleMs = r.varint()
		if r.err != nil {
			return info, r.err
		}
		return info, decodeAnswer(r.b, reads, idx, vpos, tpos, out)
	}
	c.logger.Warn("cluster: no replica answered a read in time (503)", "group", g, "level", level.String(), "last", last)
	return info, fmt.Errorf("%w: group %d: read: %v", node.ErrUnavailable, g, last)
}

// barrier batches linearizable reads on a leader: a read waits for a Raft
// barrier that began after the read did (committed in this term through a
// quorum, and applied here), so concurrent reads share one.
type barrier struct {
	r       *raft.Raft
	mu      sync.Mutex
	running bool
	next    *barrierRound // the round the next barrier serves
}

type barrierRound struct {
	done chan struct{}
	err  error
}

func (b *barrier) wait() error {
	b.mu.Lock()
	if b.next == nil {
		b.next = &barrierRound{done: make(chan struct{})}
	}
	round := b.next
	if !b.running {
		b.running = true
		go b.run()
	}
	b.mu.Unlock()
	<-round.done
	return round.err
}

// run issues barriers while reads wait for one.
func (b *barrier) run() {
	for {
		b.mu.Lock()
		round := b.next
		if round == nil {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.next = nil
		b.mu.Unlock()
		round.err = b.r.Barrier(readTimeout).Error()
		close(round.done)
	}
}

// rpcHandler serves the internal RPCs on the cluster port (every
// connection already authenticated by the transport's handshake).
func (c *Cluster) rpcHandler() http.Handler {
	mux := http.NewServeMux()
	c.membershipRPCs(mux)
	mux.HandleFunc("POST /v1/propose", func(w http.ResponseWriter, r *http.Request) {
		dg, ok := c.leaderGroup(w, r, true)
		if !ok {
			return
		}
		entry, err := io.ReadAll(io.LimitReader(r.Body, 256<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		res, err := c.apply(dg, entry, c.cfg.WriteTimeout)
		var ae *errApply
		switch {
		case errors.As(err, &ae):
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost):
			c.notLeader(w, dg)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(wireApplied{TooLate: res.tooLate, Deferred: res.deferred, Repeat: res.repeat, Stream: res.stream})
	})
	mux.HandleFunc("POST /v1/read", func(w http.ResponseWriter, r *http.Request) {
		if !c.checkMap(w, r) {
			return
		}
		dg, ok := c.groupParam(w, r)
		if !ok {
			return
		}
		level, err := node.ParseReadLevel(r.URL.Query().Get("level"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// No more than a request of maxPeerReads reads may hold is read
		// (Cluster.Read sends no more): a peer cannot make this node hold
		// more.
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPeerReadBody()))
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			http.Error(w, fmt.Sprintf("cluster wire: a read sub-request body of more than %d bytes, what %d reads of %d-byte keys take: the sender must split it (a node of another version?)",
				mbe.Limit, maxPeerReads, peerReadKeyBytes), http.StatusRequestEntityTooLarge)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		t, reads, err := decodeReads(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, rd := range reads {
			if rd.Table && rd.View >= len(c.repo.Tables) || !rd.Table && rd.View >= len(c.repo.Views) {
				http.Error(w, "read names a view this node's repo does not have", http.StatusBadRequest)
				return
			}
		}
		st, err := c.localFor(dg.id, level)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if st == nil {
			c.notLeader(w, dg)
			return
		}
		out := c.scratch(reads)
		v, tb := 0, 0
		for _, rd := range reads {
			node.ReadStore(st, rd, t, out, v, tb)
			if rd.Table {
				tb++
			} else {
				v++
			}
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(appendAnswer(binary.AppendVarint(nil, dg.staleMs()), reads, out))
	})
	mux.HandleFunc("GET /v1/stream", c.serveStreamOffset)
	mux.HandleFunc("POST /v1/applied", c.serveRequestApplied)
	mux.HandleFunc("POST /v1/progress", c.serveProgress)
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(c.Status())
	})
	c.ctlRoutes(mux)
	schema := store.SchemaOf(c.repo)
	hello := func(w http.ResponseWriter, r *http.Request) {
		hi := hello{Node: c.cfg.NodeID, Schema: schema, Waiting: c.waiting.Load(), Instance: c.instance,
			ShapeGroups: c.cfg.Groups, ShapeReplicas: c.cfg.Replicas, Recovery: c.recovery.Load()}
		id := r.URL.Query().Get("id")
		if id != "" {
			hi.Progress = c.book.of(id)
		}
		if helloHeard != nil {
			helloHeard(c, id)
		}
		if m := c.Map(); m != nil {
			hi.MapVersion = m.Version
			hi.Removed = id != "" && m.Member(id) == nil && slices.Contains(m.Removed, id)
			for _, mb := range m.Members {
				hi.Members = append(hi.Members, mb.ID)
			}
			if id != "" {
				hi.Groups = m.GroupsOf(id)
				if mb := m.Member(id); mb != nil {
					hi.Addr = mb.ClusterAddr
				}
			}
		} else {
			hi.New = c.isNew
			if c.isNew && !c.cfg.Join {
				hi.Creation = creation(c.cfg)
			}
		}
		// The answer goes out whole before add-node's verdict is passed
		// on: a verdict that refuses this node's start closes its port.
		b, _ := json.Marshal(hi)
		b = append(b, '\n')
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		c.noteAdmission(r.URL.Query())
	}
	mux.HandleFunc("GET /v1/hello", hello)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Before the node's groups are open only the hello answers (the
		// others need the map and the groups); peers retry. A change of
		// the map or the cluster is answered as by a follower: a node
		// restarting after it led the metadata group is still its leader
		// to a peer that has not seen the election, and the peer
		// forwarding an admin change (which does not retry a 503: the
		// change failed) then follows the leader instead of failing it.
		if !c.opened.Load() && r.URL.Path != "/v1/hello" {
			if r.URL.Path == "/v1/admin" || r.URL.Path == "/v1/meta" {
				w.WriteHeader(http.StatusMisdirectedRequest)
				json.NewEncoder(w).Encode(map[string]string{"leader": ""})
				return
			}
			http.Error(w, "node starting", http.StatusServiceUnavailable)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// helloHeard, when a test sets it (before any node opens), is called at
// each hello a node answers, with the asking node's id ("" when not
// given): a test counts how often a start asks its peers.
var helloHeard func(to *Cluster, id string)

// scratch is a ReadOut for reads.
func (c *Cluster) scratch(reads []node.Read) node.ReadOut {
	var out node.ReadOut
	for _, r := range reads {
		if r.Table {
			nc := len(c.repo.Tables[r.View].Columns)
			out.TNums = append(out.TNums, make([]float64, nc))
			out.TStrs = append(out.TStrs, make([]string, nc))
			out.TOK = append(out.TOK, make([]bool, nc))
			out.TFound = append(out.TFound, false)
		} else {
			out.Vals = append(out.Vals, []windows.Value(nil))
		}
	}
	return out
}

func (c *Cluster) groupParam(w http.ResponseWriter, r *http.Request) (*dataGroup, bool) {
	g, err := strconv.Atoi(r.URL.Query().Get("group"))
	dg := c.group(g)
	if err != nil || dg == nil {
		// Not a replica here (an old map at the sender): name the leader we know of nothing.
		w.WriteHeader(http.StatusMisdirectedRequest)
		json.NewEncoder(w).Encode(map[string]string{"leader": ""})
		return nil, false
	}
	return dg, true
}

// leaderGroup is the group of r's "group" parameter when this node's
// replica of it leads, after checking r's map stamp (withMap). Otherwise it
// has answered r (a stale map, no replica here, or the leader this node
// knows of) and returns false.
func (c *Cluster) leaderGroup(w http.ResponseWriter, r *http.Request, withMap bool) (*dataGroup, bool) {
	if withMap && !c.checkMap(w, r) {
		return nil, false
	}
	dg, ok := c.groupParam(w, r)
	if !ok {
		return nil, false
	}
	if dg.rep.raft.State() != raft.Leader {
		c.notLeader(w, dg)
		return nil, false
	}
	return dg, true
}

func (c *Cluster) notLeader(w http.ResponseWriter, dg *dataGroup) {
	_, id := dg.rep.raft.LeaderWithID()
	w.WriteHeader(http.StatusMisdirectedRequest)
	json.NewEncoder(w).Encode(map[string]string{"leader": string(id)})
}

// GroupStatus is one replica's view of its group.
type GroupStatus struct {
	Group       int    `json:"group"`
	State       string `json:"state"`
	Leader      string `json:"leader"`
	Term        uint64 `json:"term"`
	CommitIndex uint64 `json:"commitIndex"`
	Applied     uint64 `json:"appliedIndex"`
	LastContact string `json:"lastContact,omitempty"`
	Checksum    string `json:"checksum,omitempty"`
	// Layout is how the replica's store holds its views (with checksums;
	// store.Layout): checksums of different layouts are not comparable.
	Layout string `json:"layout,omitempty"`
	// AppliedRecord is the index of the last log record the group's
	// store applied (with checksums).
	AppliedRecord uint64 `json:"appliedRecord,omitempty"`
	// SnapshotRestores counts the snapshots this replica restored since
	// the process started: its own at start, then any the leader sent
	// because the replica was behind the leader's log (InstallSnapshot).
	SnapshotRestores uint64 `json:"snapshotRestores,omitempty"`
}

// Status is this node's view of the cluster.
type Status struct {
	Node       string        `json:"node"`
	MapVersion uint64        `json:"mapVersion"`
	MetaLeader string        `json:"metaLeader"`
	Groups     []GroupStatus `json:"groups"`
	// HTTPAddr, NotReady (why /readyz fails, "" when ready) and Requests
	// (the node front's totals): ops.go, nodeStatus.
	HTTPAddr string         `json:"httpAddr,omitempty"`
	NotReady string         `json:"notReady,omitempty"`
	Requests *node.Counters `json:"requests,omitempty"`
	// Repo is the digest of the feature repo this node runs (RepoDigest).
	Repo string `json:"repo,omitempty"`
}

// Status reports this node's replicas.
func (c *Cluster) Status() Status {
	s := Status{Node: c.cfg.NodeID}
	c.nodeStatus(&s)
	if m := c.Map(); m != nil {
		s.MapVersion = m.Version
	}
	if c.meta != nil {
		_, id := c.meta.raft.LeaderWithID()
		s.MetaLeader = string(id)
	}
	for g := range len(c.hints) {
		dg := c.group(g)
		if dg == nil {
			continue
		}
		_, id := dg.rep.raft.LeaderWithID()
		term, _ := strconv.ParseUint(dg.rep.raft.Stats()["term"], 10, 64)
		gs := GroupStatus{Group: g, State: dg.rep.raft.State().String(), Leader: string(id), Term: term,
			CommitIndex: dg.rep.raft.CommitIndex(), Applied: dg.rep.raft.AppliedIndex(), SnapshotRestores: dg.fsm.restores.Load()}
		if lc := dg.rep.raft.LastContact(); !lc.IsZero() {
			gs.LastContact = time.Since(lc).Round(time.Millisecond).String()
		}
		s.Groups = append(s.Groups, gs)
	}
	return s
}

// StatusWithChecksums is Status with each replica's applied record index
// and the checksum of its partitions (store.Checksums folded into one):
// replicas of a group at the same applied index and of the same layout
// (store.Layout) have equal checksums.
func (c *Cluster) StatusWithChecksums() (Status, error) {
	s := c.Status()
	for i := range s.Groups {
		dg := c.group(s.Groups[i].Group)
		st := dg.fsm.Store()
		applied, sums, err := st.Checksums()
		if err != nil {
			return s, err
		}
		d := xxhash.New()
		var b [8]byte
		for _, x := range sums {
			binary.LittleEndian.PutUint64(b[:], x)
			d.Write(b[:])
		}
		s.Groups[i].Checksum = strconv.FormatUint(d.Sum64(), 16)
		s.Groups[i].AppliedRecord, s.Groups[i].Layout = applied, st.Layout()
	}
	return s, nil
}

// mapHeader carries the sender's cluster map version on internal RPCs.
const mapHeader = "X-Tally-Map-Version"

// stampMap marks an internal request with this node's map version.
func (c *Cluster) stampMap(r *http.Request) {
	if m := c.Map(); m != nil {
		r.Header.Set(mapHeader, strconv.FormatUint(m.Version, 10))
	}
}

// checkMap answers a request routed on an older map than this node's
// with 409 and the current map, which the sender adopts and retries with.
func (c *Cluster) checkMap(w http.ResponseWriter, r *http.Request) bool {
	v, err := strconv.ParseUint(r.Header.Get(mapHeader), 10, 64)
	m := c.Map()
	if err != nil || v >= m.Version {
		return true
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusConflict)
	w.Write(m.Encode())
	return false
}

// newerMap adopts a map a peer answered 409 with when it is newer than
// this node's (the metadata group will deliver it too; this is sooner).
func (c *Cluster) newerMap(body []byte) error {
	m, err := DecodeMap(body)
	if err != nil {
		return fmt.Errorf("stale map answer: %w", err)
	}
	for {
		cur := c.Map()
		if m.Version <= cur.Version || c.m.CompareAndSwap(cur, m) {
			break
		}
	}
	return fmt.Errorf("routed on an old cluster map; now at version %d", c.Map().Version)
}
