package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/ring"
)

// A checkpoint entry is the single byte checkpointTag: every replica's FSM
// computes its per-partition checksums when it applies one, at exactly
// that log position (DESIGN.md "Checking replicas"). It is not a request:
// no id, nothing for the dedup or the archive's replay.
const checkpointTag = 'C'

// isCheckpoint reports whether a group entry is a checkpoint.
func isCheckpoint(b []byte) bool { return len(b) == 1 && b[0] == checkpointTag }

// keptCheckpoints is how many checkpoint results a replica keeps (8 KiB
// each): enough for concurrent checks, bounded.
const keptCheckpoints = 8

// Checkpoint is a replica's state at a checkpoint entry.
type Checkpoint struct {
	Index uint64 `json:"index"` // the checkpoint entry's Raft index
	// Record is the index of the last log record the store applied
	// before it.
	Record uint64                  `json:"record"`
	Sums   [ring.Partitions]uint64 `json:"sums"`
	// Layout is how the replica's store holds its views (store.Layout):
	// only replicas of one layout have comparable sums. Builds before
	// groups send none, which is the layout they hold ("").
	Layout string `json:"layout,omitempty"`
	Err    string `json:"err,omitempty"` // the checksums could not be computed
}

// checkpoints are the results a replica's FSM computed, by index.
type checkpoints struct {
	mu   sync.Mutex
	byIx map[uint64]*Checkpoint
}

func (cs *checkpoints) put(cp *Checkpoint) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.byIx == nil {
		cs.byIx = map[uint64]*Checkpoint{}
	}
	cs.byIx[cp.Index] = cp
	for len(cs.byIx) > keptCheckpoints {
		oldest := cp.Index
		for ix := range cs.byIx {
			oldest = min(oldest, ix)
		}
		delete(cs.byIx, oldest)
	}
}

func (cs *checkpoints) get(ix uint64) *Checkpoint {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.byIx[ix]
}

// checkpoint is the FSM's Apply of a checkpoint entry at index.
func (f *groupFSM) checkpoint(index uint64) any {
	cp := &Checkpoint{Index: index}
	st := f.Store()
	rec, sums, err := st.Checksums()
	if err != nil {
		cp.Err = err.Error()
	}
	cp.Record, cp.Sums, cp.Layout = rec, sums, st.Layout()
	f.cps.put(cp)
	return applied{}
}

// checkTimeout bounds how long a check waits for one group: the
// checkpoint's commit and every replica applying it.
const checkTimeout = 20 * time.Second

// ReplicaCheck is one replica's answer to a check.
type ReplicaCheck struct {
	Node     string `json:"node"`
	Checksum string `json:"checksum,omitempty"` // every partition's checksum folded into one
	Record   uint64 `json:"record,omitempty"`   // the last record its store applied
	Error    string `json:"error,omitempty"`    // it could not answer
	// Layout is how it holds its views (Checkpoint.Layout); its checksums
	// are compared with those of the replicas of its layout only.
	Layout string `json:"layout,omitempty"`
	sums   *[ring.Partitions]uint64
}

// PartitionDiff is a partition whose replicas differ.
type PartitionDiff struct {
	Partition int `json:"partition"`
	// Odd are the replicas that differ from the majority's value; with no
	// majority (2 replicas, or every value different) every replica.
	Odd      []string          `json:"odd"`
	Majority bool              `json:"majority"` // a majority agreed: Odd are wrong
	Sums     map[string]string `json:"sums"`     // node -> checksum
}

// GroupCheck is the answer for one group.
type GroupCheck struct {
	Group    int             `json:"group"`
	Index    uint64          `json:"index,omitempty"` // the checkpoint's Raft index
	OK       bool            `json:"ok"`
	Error    string          `json:"error,omitempty"` // the checkpoint could not be committed
	Replicas []ReplicaCheck  `json:"replicas"`
	Differ   []PartitionDiff `json:"differ,omitempty"`
	// LayoutsDiffer: the replicas hold their views in more than one
	// layout (Checkpoint.Layout), whose checksums cannot be compared
	// with each other; Differ compares the replicas of each layout.
	LayoutsDiffer bool `json:"layouts_differ,omitempty"`
}

// CheckResult is the answer of Check.
type CheckResult struct {
	OK     bool         `json:"ok"`
	Groups []GroupCheck `json:"groups"`
	Advice string       `json:"advice,omitempty"` // what to do when not OK
}

// Check compares the replicas of each group (all when groups is empty):
// the group's leader commits a checkpoint entry, every replica computes
// its per-partition checksums when it applies it, and the replicas'
// answers at that one index are compared, partition by partition. Clients
// may write meanwhile. The cost is one pass over the group's state on
// every replica, on its apply path (writes to the group wait that long).
func (c *Cluster) Check(groups []int) (CheckResult, error) {
	m := c.Map()
	if len(groups) == 0 {
		for g := range m.Groups {
			groups = append(groups, g)
		}
	}
	for _, g := range groups {
		if g < 0 || g >= len(m.Groups) {
			return CheckResult{}, fmt.Errorf("no group %d: the cluster has groups 0 to %d", g, len(m.Groups)-1)
		}
	}
	res := CheckResult{OK: true, Groups: make([]GroupCheck, len(groups))}
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Add(1)
		go func() { defer wg.Done(); res.Groups[i] = c.checkGroup(m, g) }()
	}
	wg.Wait()
	var differ, layouts, unanswered bool
	for _, gc := range res.Groups {
		if !gc.OK {
			res.OK = false
		}
		differ = differ || len(gc.Differ) > 0
		layouts = layouts || gc.LayoutsDiffer
		unanswered = unanswered || gc.Error != "" || slices.ContainsFunc(gc.Replicas, func(r ReplicaCheck) bool { return r.Error != "" })
	}
	var advice []string
	if differ {
		advice = append(advice, "replicas differ: rebuild each odd replica from a good one's snapshot by removing it from its group and adding it back (tally cluster move-replica, or remove-node and add-node); with no majority, compare the data with the client's source of truth first")
	}
	if layouts {
		advice = append(advice, "replicas hold their views in different layouts (a replica that restored a snapshot written before version 4 keeps each view apart; one built since groups a source's views), so only replicas of one layout were compared: to compare them all, rebuild each replica whose layout is not its group leader's from the leader's snapshot (tally cluster move-replica, or remove-node and add-node)")
	}
	if unanswered {
		advice = append(advice, "some replicas did not answer: check that their nodes are up (tally cluster status) and run check again")
	}
	res.Advice = strings.Join(advice, "; ")
	return res, nil
}

// checkGroup commits a checkpoint in group g and gathers every replica's
// result at its index.
func (c *Cluster) checkGroup(m *Map, g int) GroupCheck {
	gc := GroupCheck{Group: g}
	deadline := time.Now().Add(checkTimeout)
	body, err := c.onLeader(g, "/v1/checkpoint", "", deadline)
	if err != nil {
		gc.Error = "commit a checkpoint: " + err.Error()
		return gc
	}
	ix, err := strconv.ParseUint(string(bytes.TrimSpace(body)), 10, 64)
	if err != nil {
		gc.Error = fmt.Sprintf("checkpoint answer %q: %v", body, err)
		return gc
	}
	gc.Index = ix
	reps := m.Groups[g].Replicas
	gc.Replicas = make([]ReplicaCheck, len(reps))
	var wg sync.WaitGroup
	for i, id := range reps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc := ReplicaCheck{Node: id}
			cp, err := c.checkpointOf(m, id, g, ix, deadline)
			switch {
			case err != nil:
				rc.Error = err.Error()
			case cp.Err != "":
				rc.Error = "checksums: " + cp.Err
			default:
				rc.Record, rc.sums, rc.Layout = cp.Record, &cp.Sums, cp.Layout
				rc.Checksum = strconv.FormatUint(foldSums(&cp.Sums), 16)
			}
			gc.Replicas[i] = rc
		}()
	}
	wg.Wait()
	gc.Differ, gc.LayoutsDiffer = compareReplicas(gc.Replicas)
	gc.OK = len(gc.Differ) == 0 && !gc.LayoutsDiffer && !slices.ContainsFunc(gc.Replicas, func(r ReplicaCheck) bool { return r.Error != "" })
	return gc
}

// compareReplicas compares the answering replicas of each layout with
// each other (diffPartitions), in partition order, and reports whether
// there was more than one layout. Replicas of different layouts applied
// the same records alike when each agrees with its own kind; their sums
// say nothing of each other (store.Layout).
func compareReplicas(reps []ReplicaCheck) (differ []PartitionDiff, layoutsDiffer bool) {
	var layouts []string
	for _, r := range reps {
		if r.sums != nil && !slices.Contains(layouts, r.Layout) {
			layouts = append(layouts, r.Layout)
		}
	}
	for _, l := range layouts {
		differ = append(differ, diffPartitions(slices.DeleteFunc(slices.Clone(reps), func(r ReplicaCheck) bool { return r.Layout != l }))...)
	}
	slices.SortStableFunc(differ, func(a, b PartitionDiff) int { return a.Partition - b.Partition })
	return differ, len(layouts) > 1
}

// diffPartitions names, per partition where the answering replicas
// disagree, the ones that differ from the majority.
func diffPartitions(reps []ReplicaCheck) []PartitionDiff {
	var ok []ReplicaCheck
	for _, r := range reps {
		if r.sums != nil {
			ok = append(ok, r)
		}
	}
	var out []PartitionDiff
	for p := range ring.Partitions {
		count := map[uint64]int{}
		for _, r := range ok {
			count[r.sums[p]]++
		}
		if len(count) <= 1 {
			continue
		}
		d := PartitionDiff{Partition: p, Sums: map[string]string{}}
		var maj uint64
		for v, n := range count {
			if 2*n > len(ok) {
				maj, d.Majority = v, true
			}
		}
		for _, r := range ok {
			d.Sums[r.Node] = strconv.FormatUint(r.sums[p], 16)
			if !d.Majority || r.sums[p] != maj {
				d.Odd = append(d.Odd, r.Node)
			}
		}
		sort.Strings(d.Odd)
		out = append(out, d)
	}
	return out
}

// checkpointOf is replica id's result at index ix of group g, waiting
// until it applied the entry.
func (c *Cluster) checkpointOf(m *Map, id string, g int, ix uint64, deadline time.Time) (*Checkpoint, error) {
	if id == c.cfg.NodeID {
		dg := c.group(g)
		if dg == nil {
			return nil, fmt.Errorf("the map names this node (%s) a replica of group %d, but it holds none", id, g)
		}
		return dg.waitCheckpoint(ix, deadline)
	}
	mb := m.Member(id)
	if mb == nil {
		return nil, fmt.Errorf("node %s is not in the cluster map", id)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(time.Second))
	defer cancel()
	url := fmt.Sprintf("http://%s/v1/checkpoint?group=%d&index=%d&wait=%d", mb.ClusterAddr, g, ix, time.Until(deadline).Milliseconds())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.rpc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("unreachable: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New(string(bytes.TrimSpace(body)))
	}
	var cp Checkpoint
	if err := json.Unmarshal(body, &cp); err != nil {
		return nil, fmt.Errorf("checkpoint answer: %w", err)
	}
	return &cp, nil
}

// checkpointGrace: see waitCheckpoint.
const checkpointGrace = 3 * time.Second

// waitCheckpoint waits until this replica applied checkpoint ix.
// Raft's applied index counts entries handed to the FSM, which applies
// them a moment later: a result still missing checkpointGrace after Raft
// passed its index will not come (a snapshot restore skipped the entry).
func (dg *dataGroup) waitCheckpoint(ix uint64, deadline time.Time) (*Checkpoint, error) {
	var passed time.Time
	for {
		if cp := dg.fsm.cps.get(ix); cp != nil {
			return cp, nil
		}
		applied := dg.rep.raft.AppliedIndex()
		if applied >= ix && passed.IsZero() {
			passed = time.Now()
		}
		if time.Now().After(deadline) || !passed.IsZero() && time.Since(passed) > checkpointGrace {
			if applied >= ix {
				return nil, fmt.Errorf("has no result at index %d (applied %d): its state came from a snapshot past it, or the result was dropped; run check again", ix, applied)
			}
			return nil, fmt.Errorf("did not apply index %d in time (applied %d): it is behind or cut off from its leader", ix, applied)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// onLeader runs leader operation path (with query, "&k=v...") on group
// g's leader (this node's replica when it leads), retrying until deadline
// through elections.
func (c *Cluster) onLeader(g int, path, query string, deadline time.Time) ([]byte, error) {
	var last error
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		if attempt > 0 {
			time.Sleep(min(time.Duration(attempt)*50*time.Millisecond, 300*time.Millisecond))
		}
		if dg := c.group(g); dg != nil && dg.rep.raft.State() == raft.Leader {
			b, err := c.leaderOp(dg, path, query, time.Until(deadline))
			if err == nil {
				return b, nil
			}
			if !leadershipErr(err) {
				return nil, err
			}
			last = err
			continue
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		b, err := c.callGroup(ctx, g, attempt, http.MethodPost, path+"?group="+strconv.Itoa(g)+query, nil)
		cancel()
		var ae *errApply
		switch {
		case err == nil:
			return b, nil
		case errors.Is(err, errNoReplica):
			return nil, fmt.Errorf("group %d has no replica to ask", g)
		case errors.As(err, &ae):
			return nil, err
		}
		last = err
	}
	return nil, fmt.Errorf("group %d: no leader answered in time: %v", g, last)
}

// leadershipErr reports whether a leader operation failed only because
// leadership is moving or the leader is busy: worth retrying on whichever
// replica leads next. Any other failure (a transfer whose target could not
// catch up, say) is the answer.
func leadershipErr(err error) bool {
	for _, e := range []error{raft.ErrNotLeader, raft.ErrLeadershipLost, raft.ErrLeadershipTransferInProgress, raft.ErrEnqueueTimeout, raft.ErrRaftShutdown} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// foldSums folds a replica's partition checksums into one.
func foldSums(sums *[ring.Partitions]uint64) uint64 {
	d := xxhash.New()
	var b [8]byte
	for _, x := range sums {
		binary.LittleEndian.PutUint64(b[:], x)
		d.Write(b[:])
	}
	return d.Sum64()
}

// leaderOp runs the leader operation path on this node's replica, the
// group's leader: commit a checkpoint, or hand the leadership over.
func (c *Cluster) leaderOp(dg *dataGroup, path, query string, left time.Duration) ([]byte, error) {
	switch path {
	case "/v1/checkpoint":
		f := dg.rep.raft.Apply([]byte{checkpointTag}, max(left, 100*time.Millisecond))
		if err := f.Error(); err != nil {
			return nil, err
		}
		return strconv.AppendUint(nil, f.Index(), 10), nil
	case "/v1/transfer":
		q, _ := url.ParseQuery(strings.TrimPrefix(query, "&"))
		to := q.Get("to")
		var f raft.Future
		switch to {
		case c.cfg.NodeID:
			return []byte("already"), nil
		case "":
			f = dg.rep.raft.LeadershipTransfer()
		default:
			mb := c.Map().Member(to)
			if mb == nil {
				return nil, fmt.Errorf("%s is not in the cluster map", to)
			}
			f = dg.rep.raft.LeadershipTransferToServer(raft.ServerID(to), raft.ServerAddress(mb.ClusterAddr))
		}
		if err := f.Error(); err != nil {
			return nil, err
		}
		return []byte("ok"), nil
	}
	return nil, fmt.Errorf("no leader operation %s", path)
}

// ctlRoutes adds the internal RPCs of Check, SnapshotNow and
// TransferLeader to the cluster port's mux.
func (c *Cluster) ctlRoutes(mux *http.ServeMux) {
	c.snapshotRoutes(mux)
	c.transferRoutes(mux)
	for _, path := range []string{"/v1/checkpoint", "/v1/transfer"} {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
			dg, ok := c.leaderGroup(w, r, false)
			if !ok {
				return
			}
			q := r.URL.Query()
			q.Del("group")
			query := ""
			if len(q) > 0 {
				query = "&" + q.Encode()
			}
			b, err := c.leaderOp(dg, path, query, checkTimeout)
			switch {
			case errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost):
				c.notLeader(w, dg)
				return
			case err != nil && leadershipErr(err):
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			case err != nil:
				// Not worth retrying elsewhere (see leadershipErr).
				http.Error(w, err.Error(), http.StatusConflict)
				return
			}
			w.Write(b)
		})
	}
	mux.HandleFunc("GET /v1/checkpoint", func(w http.ResponseWriter, r *http.Request) {
		g, _ := strconv.Atoi(r.URL.Query().Get("group"))
		dg := c.group(g)
		if dg == nil {
			http.Error(w, fmt.Sprintf("holds no replica of group %d", g), http.StatusNotFound)
			return
		}
		ix, err := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
		if err != nil {
			http.Error(w, "index: "+err.Error(), http.StatusBadRequest)
			return
		}
		wait, _ := strconv.Atoi(r.URL.Query().Get("wait"))
		cp, err := dg.waitCheckpoint(ix, time.Now().Add(min(time.Duration(wait)*time.Millisecond, checkTimeout)))
		if err != nil {
			http.Error(w, err.Error(), http.StatusGatewayTimeout)
			return
		}
		json.NewEncoder(w).Encode(cp)
	})
}
