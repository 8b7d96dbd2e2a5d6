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
	"github.com/tally-ml/tally/wal"
)

// WriteEvents splits batches by group (an event goes to the group of each
// of its keys, once per group), proposes every group its share in
// parallel, and returns when all have committed and applied it.
func (c *Cluster) WriteEvents(id string, batches []*store.Batch, clock int64, backfill bool) (deferred, tooLate int, err error) {
	if id == "" {
		id = newID()
	}
	m := c.Map()
	shares := map[int][][]byte{}
	var gs []int
	for _, b := range batches {
		sp := c.proto.Sources()[b.Source()]
		keys := sp.KeyColumns()
		parts := map[int]*store.Batch{}
		for e := 0; e < b.Len(); e++ {
			gs = eventGroups(m, b, keys, e, gs)
			for _, g := range gs {
				pb := parts[g]
				if pb == nil {
					pb = &store.Batch{}
					pb.Reset(b.Source(), b.Columns())
					parts[g] = pb
				}
				pb.CopyEvent(b, e)
			}
		}
		for g, pb := range parts {
			rec := c.proto.AppendEventsRecord(nil, pb, clock, backfill)
			shares[g] = append(shares[g], appendRequest(nil, shareID(id, b.Source()), rec))
		}
	}
	res, err := c.proposeAll(shares)
	return res.deferred, res.tooLate, err
}

// shareID is the request id under which a group applies its share of the
// events of source of request id.
func shareID(id string, source int) string { return id + "/s" + strconv.Itoa(source) }

// RequestApplied reports what each group owning a key of batches holds
// of its share of them under id (WriteEvents): each group is asked, in
// parallel, whether its FSM holds the ids of its shares (groupApplied);
// a group with the shares of several sources that holds some of them is
// SharePartlyApplied, and one that cannot be asked ShareUnknown.
func (c *Cluster) RequestApplied(id string, batches []*store.Batch) ([]node.GroupShare, error) {
	m := c.Map()
	keys := map[int][]uint64{} // by group: the hashed ids of its shares
	records := map[int]int{}   // by group: the events with a key it owns
	var gs []int
	for _, b := range batches {
		k := xxhash.Sum64String(shareID(id, b.Source()))
		srcKeys := c.proto.Sources()[b.Source()].KeyColumns()
		for e := 0; e < b.Len(); e++ {
			gs = eventGroups(m, b, srcKeys, e, gs)
			for _, g := range gs {
				records[g]++
				if !slices.Contains(keys[g], k) {
					keys[g] = append(keys[g], k)
				}
			}
		}
	}
	shares := make([]node.GroupShare, 0, len(keys))
	for g := range keys {
		shares = append(shares, node.GroupShare{Group: g, Records: records[g]})
	}
	slices.SortFunc(shares, func(a, b node.GroupShare) int { return a.Group - b.Group })
	var wg sync.WaitGroup
	for i := range shares {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := &shares[i]
			s.State, s.Err = c.groupShare(s.Group, keys[s.Group])
		}()
	}
	wg.Wait()
	return shares, nil
}

// groupShare is what group g holds of the shares whose hashed ids are
// keys: all, none, some (asked one by one once it holds not all), or
// unknown (with why).
func (c *Cluster) groupShare(g int, keys []uint64) (node.ShareState, error) {
	ok, err := c.groupApplied(g, keys)
	switch {
	case err != nil:
		return node.ShareUnknown, err
	case ok:
		return node.ShareApplied, nil
	case len(keys) == 1:
		return node.ShareNotApplied, nil
	}
	held := 0
	for _, k := range keys {
		ok, err := c.groupApplied(g, []uint64{k})
		if err != nil {
			return node.ShareUnknown, fmt.Errorf("it did not apply all of its share, and could not tell which part: %w", err)
		}
		if ok {
			held++
		}
	}
	switch held {
	case 0:
		return node.ShareNotApplied, nil
	case len(keys):
		return node.ShareApplied, nil // applied meanwhile
	}
	return node.SharePartlyApplied, nil
}

// groupApplied reports whether group g applied every request whose hashed
// id is in keys, as far as its window of applied ids tells. A replica of
// g on this node that holds them all answers at once (it applies only
// committed entries); otherwise g's leader answers after a barrier (every
// entry committed before the question is applied), here or over the
// cluster port, retried within readTimeout.
func (c *Cluster) groupApplied(g int, keys []uint64) (bool, error) {
	if dg := c.group(g); dg != nil && dg.fsm.holds(keys) {
		return true, nil
	}
	body := make([]byte, 0, 8*len(keys))
	for _, k := range keys {
		body = binary.LittleEndian.AppendUint64(body, k)
	}
	var a wireRequestApplied
	err := c.askLeader(g, readTimeout, "applied requests", func(dg *dataGroup) {
		a.Applied = dg.fsm.holds(keys)
	}, func(ctx context.Context, attempt int) error {
		b, err := c.callGroup(ctx, g, attempt, http.MethodPost, "/v1/applied?group="+strconv.Itoa(g), body)
		if re := (*errRPC)(nil); errors.As(err, &re) && re.status < 500 {
			// A question the replica does not take (a node older than
			// this RPC): asking again changes nothing.
			return errFinal{err}
		}
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &a)
	})
	return a.Applied, err
}

// askLeader asks group g's leader a question after a barrier (every entry
// committed before it is applied): here, with local, while this node's
// replica leads, else over the cluster port, where remote sends it and
// decodes the answer. It retries with backoff within budget; an errFinal
// from remote ends it at once.
func (c *Cluster) askLeader(g int, budget time.Duration, what string, local func(*dataGroup), remote func(ctx context.Context, attempt int) error) error {
	deadline := time.Now().Add(budget)
	var last error
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(time.Duration(min(20<<attempt, 400)) * time.Millisecond):
			case <-c.closing:
				return fmt.Errorf("%w: node shutting down", node.ErrUnavailable)
			}
		}
		if dg := c.group(g); dg != nil && dg.rep.raft.State() == raft.Leader {
			if last = dg.bar.wait(); last == nil {
				local(dg)
				return nil
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
		last = remote(ctx, attempt)
		cancel()
		if f := (errFinal{}); errors.As(last, &f) {
			return fmt.Errorf("group %d: %s: %w", g, what, f.err)
		}
		if last == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: group %d: %s not read within %s: %v", node.ErrUnavailable, g, what, budget, last)
}

// errFinal is an error askLeader's remote answers that asking again does
// not mend.
type errFinal struct{ err error }

func (e errFinal) Error() string { return e.err.Error() }

// wireRequestApplied is the answer of POST /v1/applied.
type wireRequestApplied struct {
	Applied bool `json:"applied"`
}

// serveRequestApplied answers POST /v1/applied (groupApplied) on the
// leader: whether the group applied every request whose hashed id the
// body holds (8 bytes each, little-endian).
func (c *Cluster) serveRequestApplied(w http.ResponseWriter, r *http.Request) {
	dg, ok := c.leaderGroup(w, r, true)
	if !ok {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || len(body)%8 != 0 {
		http.Error(w, "body must be request keys, 8 bytes each", http.StatusBadRequest)
		return
	}
	keys := make([]uint64, len(body)/8)
	for i := range keys {
		keys[i] = binary.LittleEndian.Uint64(body[8*i:])
	}
	if err := dg.bar.wait(); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	json.NewEncoder(w).Encode(wireRequestApplied{Applied: dg.fsm.holds(keys)})
}

// WriteTable sends every group the rows of its keys (every group, for a
// replace: the rows it no longer has must go).
func (c *Cluster) WriteTable(id string, t *store.Table, rows []store.TableRow, replace bool, validFrom int64) error {
	if id == "" {
		id = newID()
	}
	m := c.Map()
	per := map[int][]store.TableRow{}
	for _, r := range rows {
		g := m.GroupOfKey([]byte(r.Key))
		per[g] = append(per[g], r)
	}
	shares := map[int][][]byte{}
	for g := range m.Groups {
		if len(per[g]) == 0 && !replace {
			continue
		}
		rec := c.proto.AppendTableRecord(nil, t, per[g], replace, validFrom)
		shares[g] = [][]byte{appendRequest(nil, id+"/t", rec)}
	}
	_, err := c.proposeAll(shares)
	return err
}

// eventGroups returns gs[:0] holding the groups event e of b goes to: the
// group of each of its non-null key columns, each once.
func eventGroups(m *Map, b *store.Batch, keys []int, e int, gs []int) []int {
	gs = gs[:0]
	for _, kc := range keys {
		if b.Null(e, kc) {
			continue
		}
		if g := m.GroupOfKey(b.Str(e, kc)); !slices.Contains(gs, g) {
			gs = append(gs, g)
		}
	}
	return gs
}

// proposeAll proposes each group its entries (in order), groups in
// parallel, and sums what they applied.
func (c *Cluster) proposeAll(shares map[int][][]byte) (applied, error) {
	for g, entries := range shares {
		for _, e := range entries {
			if len(e) > maxEntryBytes {
				// Nothing is proposed: a leader whose log refused the
				// entry would step down, and so would the next one.
				return applied{}, fmt.Errorf("%w: group %d's share is a Raft entry of %d bytes, over the %d its log takes", store.ErrTooLarge, g, len(e), maxEntryBytes)
			}
		}
	}
	var (
		mu   sync.Mutex
		sum  applied
		errs []error
		wg   sync.WaitGroup
	)
	var done []int // the groups that applied all their entries
	for g, entries := range shares {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, e := range entries {
				res, err := c.propose(g, e)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					sum.tooLate += res.tooLate
					sum.deferred += res.deferred
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
			mu.Lock()
			done = append(done, g)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		err := errors.Join(errs...)
		if len(done) > 0 {
			// The client must not read the error as "nothing written".
			slices.Sort(done)
			verb := "applied its share"
			if len(done) > 1 {
				verb = "applied their share"
			}
			err = fmt.Errorf("%w; %s %s of this write", err, groupList(done), verb)
		}
		return applied{}, err
	}
	return sum, nil
}

// maxEntryBytes is the largest Raft entry a write proposes: the log's
// record limit less room for the entry's own header (a var: tests lower
// it).
var maxEntryBytes = wal.MaxRecordBytes - 64<<10

// groupList names groups gs: "group 3", "groups 0, 2".
func groupList(gs []int) string {
	if len(gs) == 1 {
		return "group " + strconv.Itoa(gs[0])
	}
	s := "groups "
	for i, g := range gs {
		if i > 0 {
			s += ", "
		}
		s += strconv.Itoa(g)
	}
	return s
}

// errNotLeader: the replica asked does not lead the group (hint: who does).
type errNotLeader struct{ hint string }

func (e *errNotLeader) Error() string {
	if e.hint == "" {
		return "not the leader (no leader known)"
	}
	return "not the leader (leader: " + e.hint + ")"
}

// errApply is a committed entry the state machine could not apply: not
// worth retrying.
type errApply struct{ err error }

func (e *errApply) Error() string { return e.err.Error() }

// propose commits entry in group g on its leader, retrying (with the
// same request id, so at most once applied) until WriteTimeout.
func (c *Cluster) propose(g int, entry []byte) (applied, error) {
	deadline := time.Now().Add(c.cfg.WriteTimeout)
	backoff := 20 * time.Millisecond
	var last error
	for attempt := 0; ; attempt++ {
		res, err := c.proposeOnce(g, entry, attempt, time.Until(deadline))
		if err == nil {
			return res, nil
		}
		var ae *errApply
		if errors.As(err, &ae) {
			return applied{}, err
		}
		last = err
		if time.Until(deadline) <= backoff {
			return applied{}, fmt.Errorf("%w: group %d did not commit within %s: %v", node.ErrUnavailable, g, c.cfg.WriteTimeout, last)
		}
		select {
		case <-time.After(backoff):
		case <-c.closing:
			return applied{}, fmt.Errorf("%w: node shutting down", node.ErrUnavailable)
		}
		backoff = min(backoff*2, 400*time.Millisecond)
	}
}

// proposeOnce tries once: locally when this node leads g, else on the
// replica it believes leads.
func (c *Cluster) proposeOnce(g int, entry []byte, attempt int, left time.Duration) (applied, error) {
	if dg := c.group(g); dg != nil && dg.rep.raft.State() == raft.Leader {
		return c.apply(dg, entry, left)
	}
	// A forwarded attempt gets at most two election timeouts of the
	// budget, not all of it: a leader cut off by a partition never
	// answers, while the others elect a new one within about an election
	// timeout; the next attempt (same request id: applied at most once)
	// goes to the leader learnt meanwhile. Without the cap, every write
	// forwarded to a blackholed leader answered 503 after the whole write
	// timeout (systemtest TestClusterBlackholedNode).
	ctx, cancel := context.WithTimeout(context.Background(), min(max(left, 100*time.Millisecond), max(2*c.cfg.Timing.Election, time.Second)))
	defer cancel()
	b, err := c.callGroup(ctx, g, attempt, http.MethodPost, "/v1/propose?group="+strconv.Itoa(g), entry)
	if err != nil {
		return applied{}, err
	}
	var a wireApplied
	if err := json.Unmarshal(b, &a); err != nil {
		return applied{}, err
	}
	return applied{tooLate: a.TooLate, deferred: a.Deferred, repeat: a.Repeat, stream: a.Stream}, nil
}

// target is the member to send group g's request to: the leader this node
// knows (its replica's view, else the last hint), else the replicas in
// turn. A leader its replica knows and its map does not yet (the map lags
// the leader's admission) is asked at the address Raft knows: it answers
// 409 with its newer map.
func (c *Cluster) target(g int, attempt int) *Member {
	m := c.Map()
	if dg := c.group(g); dg != nil {
		if addr, id := dg.rep.raft.LeaderWithID(); id != "" && string(id) != c.cfg.NodeID {
			if mb := m.Member(string(id)); mb != nil {
				return mb
			}
			return &Member{ID: string(id), ClusterAddr: string(addr)}
		}
	}
	if h, _ := c.hints[g].Load().(string); h != "" && h != c.cfg.NodeID && attempt%3 != 2 {
		if mb := m.Member(h); mb != nil {
			return mb
		}
	}
	reps := m.Groups[g].Replicas
	for i := range reps {
		id := reps[(attempt+i)%len(reps)]
		if id != c.cfg.NodeID {
			return m.Member(id)
		}
	}
	return nil
}

// wireApplied is a forwarded proposal's answer.
type wireApplied struct {
	TooLate  int  `json:"tooLate"`
	Deferred int  `json:"deferred"`
	Repeat   bool `json:"repeat"`
	// Stream: for a stream record, its partition's next offset after it.
	Stream streamApplied `json:"stream"`
}

// apply commits entry through this replica (the leader) and returns what
// the FSM applied.
func (dg *dataGroup) apply(entry []byte, timeout time.Duration) (applied, error) {
	f := dg.rep.raft.Apply(entry, max(timeout, 100*time.Millisecond))
	if err := f.Error(); err != nil {
		return applied{}, err
	}
	res, _ := f.Response().(applied)
	if res.err != nil {
		return applied{}, &errApply{err: res.err}
	}
	return res, nil
}
