package node

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/valyala/fastjson"

	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/windows"
)

// ReadLevel is how fresh a cluster lookup's reads must be. A single node
// has one copy of the state, always as fresh as its acknowledgements, and
// ignores it.
type ReadLevel uint8

const (
	// ReadDefault reads each key on its replica group's leader: an ingest
	// acknowledged before the lookup began is in the answer (the leader
	// applied it before the acknowledgement), as on a single node. During
	// a leader change a deposed leader that has not yet learnt it may
	// answer: the answer's metadata names the read level and reports the
	// change when the node saw one.
	ReadDefault ReadLevel = iota
	// ReadLinearizable is never stale: the leader confirms its leadership
	// with a quorum (raft's VerifyLeader) after the lookup began and reads
	// once it has applied everything committed before that.
	ReadLinearizable
	// ReadLocal reads any replica this node holds (else one it asks)
	// without coordination; the answer reports how far behind the
	// freshest replica's leader contact it may be (staleMs).
	ReadLocal
)

// String is the level's name in requests and answers.
func (l ReadLevel) String() string {
	switch l {
	case ReadLinearizable:
		return "linearizable"
	case ReadLocal:
		return "local"
	}
	return "default"
}

// ParseReadLevel parses a read level's name; "" is the default.
func ParseReadLevel(s string) (ReadLevel, error) {
	switch s {
	case "", "default":
		return ReadDefault, nil
	case "linearizable":
		return ReadLinearizable, nil
	case "local":
		return ReadLocal, nil
	}
	return 0, fmt.Errorf("read level %q: use default, linearizable or local", s)
}

// Cluster is where a node of a cluster writes its changes and reads its
// state: replica groups, each holding the partitions of the key space the
// cluster map gives it (package cluster). A node without one writes to and
// reads from its own store.
//
// The node front parses and validates a request whole (all valid or none
// applied) and plans its reads (Read); the Cluster places them by key.
type Cluster interface {
	// WriteEvents commits validated batches under request id (never ""):
	// every replica group that owns a key of them commits its share, and a
	// group that has already applied id drops it, so that a retry counts
	// nothing twice. It returns once every group has committed and applied
	// its share; deferred and tooLate are CommitEvents' counts.
	WriteEvents(id string, batches []*store.Batch, clock int64, backfill bool) (deferred, tooLate int, err error)
	// RequestApplied reports, for each replica group that owns a key of
	// batches (by group, ascending), whether it applied its share of them
	// under request id (WriteEvents), as far as its window of applied ids
	// tells; none when no group owns a key of them. batches must hold
	// every event of the request as first written. A node asks it of a
	// request whose events it now refuses as too late, to answer the retry
	// of a request applied when they were not as the retry it is, and that
	// of a request only some groups applied (a failed write) as what it
	// is. It changes nothing. A group that cannot answer (unavailable) is
	// ShareUnknown, never ShareNotApplied; an error means no group could
	// be asked.
	RequestApplied(id string, batches []*store.Batch) ([]GroupShare, error)
	// WriteTable commits a table upload likewise: every group gets the rows
	// of the keys it owns (all groups, for a replace).
	WriteTable(id string, t *store.Table, rows []store.TableRow, replace bool, validFrom int64) error
	// Read reads reads (one lookup row) at time t at level: feature views
	// into vals (one slice per feature view read, in order), tables (their
	// rows valid at t, store.Table.GetAt) into
	// tnums, tstrs and tok (one per table read, in order, each as long as
	// the table's columns), and whether each table had a row for its key
	// into TFound (when not nil).
	Read(level ReadLevel, reads []Read, t int64, out ReadOut) (ReadInfo, error)
	// Err says why the cluster refuses writes now (nil when it accepts
	// them): /readyz reports it.
	Err() error
}

// ReadInfo is what a cluster read reports with its answer (the metadata's
// "cluster" object).
type ReadInfo struct {
	// StaleMs bounds how old a local read may be: the longest time since a
	// replica read from last heard from its leader (0 when every read was
	// answered by a leader).
	StaleMs int64
	// LeaderChange: a group's leader was not where this node believed it
	// to be (a leader change), and the read went to the new one.
	LeaderChange bool
}

// Add folds o, what another read of the same answer reported, into i: the
// longest StaleMs, where -1 (a replica that never heard from a leader: its
// staleness unknown) outweighs any other.
func (i *ReadInfo) Add(o ReadInfo) {
	if i.StaleMs >= 0 && (o.StaleMs < 0 || o.StaleMs > i.StaleMs) {
		i.StaleMs = o.StaleMs
	}
	i.LeaderChange = i.LeaderChange || o.LeaderChange
}

// ReadOut is where Cluster.Read writes: the lookup's scratch.
type ReadOut struct {
	Vals  [][]windows.Value
	TNums [][]float64
	TStrs [][]string
	TOK   [][]bool
	// TFound says, per table read, whether the table had a row for its key
	// (a row's column may be null): Feast's NOT_FOUND is a missing row,
	// NULL_VALUE a null column. nil: not asked.
	TFound []bool
}

// ShareState is what a replica group (or, on a single node, the store)
// holds of its share of a request (Cluster.RequestApplied).
type ShareState uint8

const (
	// ShareNotApplied: it applied none of its share.
	ShareNotApplied ShareState = iota
	// ShareApplied: it applied all of its share.
	ShareApplied
	// SharePartlyApplied: of a request of several sources (one share per
	// source), it applied the share of some and not of others.
	SharePartlyApplied
	// ShareUnknown: it could not be asked (GroupShare.Err says why).
	ShareUnknown
)

// String is the state as an ingest error's body writes it.
func (s ShareState) String() string {
	switch s {
	case ShareNotApplied:
		return "not applied"
	case ShareApplied:
		return "applied"
	case SharePartlyApplied:
		return "partly applied"
	}
	return "unknown"
}

// MarshalText writes the state as String does.
func (s ShareState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// GroupShare is what one replica group holds of a request.
type GroupShare struct {
	Group int `json:"group"`
	// Records counts the request's records with a key the group owns (a
	// record whose keys several groups own counts in each).
	Records int        `json:"records"`
	State   ShareState `json:"share"`
	// Err says why the state is ShareUnknown.
	Err error `json:"-"`
}

// ErrUnavailable wraps a cluster's refusal to commit or read now (no
// leader, no quorum, a minority partition): the client should retry, with
// the same request id for a write. HTTP 503 UNAVAILABLE.
var ErrUnavailable = errors.New("cluster unavailable")

// ReadStore reads r from st, this node's replica, at time t into out at
// position v (feature views) or tb (tables): what a Cluster does with the
// reads it answers itself.
func ReadStore(st *store.Store, r Read, t int64, out ReadOut, v, tb int) {
	if r.Table {
		found := st.Table(r.View).GetAt(r.Key, t, out.TNums[tb], out.TStrs[tb], out.TOK[tb])
		if out.TFound != nil {
			out.TFound[tb] = found
		}
		return
	}
	out.Vals[v] = st.ReadView(r.View, r.Key, t, out.Vals[v][:0])
}

// readCluster is read for a node of a cluster.
func (n *Node) readCluster(reads []Read, t int64, w *lookupWork) *APIError {
	info, err := n.cluster.Read(w.level, reads, t, ReadOut{Vals: w.vals, TNums: w.tnums, TStrs: w.tstrs, TOK: w.tok, TFound: w.tfound})
	if err == nil {
		w.info.Add(info)
		return nil
	}
	if errors.Is(err, ErrUnavailable) {
		return &APIError{Status: 503, Code: "UNAVAILABLE", Message: err.Error()}
	}
	return &APIError{Status: 500, Code: "INTERNAL", Message: err.Error()}
}

// parseReadLevel reads params.read_level into w (cluster lookups only; a
// single node accepts and ignores it).
func parseReadLevel(params *fastjson.Value, w *lookupWork) *APIError {
	w.level, w.info = ReadDefault, ReadInfo{}
	v, name, msg := option(params, "params.", "read_level", "readLevel")
	if msg != "" {
		return badRequest("INVALID_REQUEST", "%s", msg)
	}
	if v == nil {
		return nil
	}
	if v.Type() != fastjson.TypeString {
		return badRequest("INVALID_REQUEST", "%s", wantType("params."+name, `"default", "linearizable" or "local"`, v))
	}
	s, _ := v.StringBytes()
	l, err := ParseReadLevel(string(s))
	if err != nil {
		return badRequest("INVALID_REQUEST", "params.%s: %v", name, err)
	}
	w.level = l
	return nil
}

// appendClusterMeta appends the metadata's "cluster" object of a cluster
// lookup: its read level and what the read reported.
func appendClusterMeta(dst []byte, w *lookupWork) []byte {
	dst = append(dst, `,"cluster":{"readLevel":"`...)
	dst = append(dst, w.level.String()...)
	dst = append(dst, `","staleMs":`...)
	dst = strconv.AppendInt(dst, w.info.StaleMs, 10)
	if w.info.LeaderChange {
		dst = append(dst, `,"leaderChange":true`...)
	}
	return append(dst, '}')
}

// prefetched holds the reads of every row of a cluster batch lookup, read
// at once: one sub-request per group for the whole batch instead of one
// per row.
type prefetched struct {
	out        ReadOut
	vOff, tOff []int // per row: its first feature-view and table read in out
}

// prefetch plans the reads of every row of a batch and reads them in one
// Cluster.Read.
func (n *Node) prefetch(p *servicePlan, rows []*fastjson.Value, w *lookupWork, t int64) (*prefetched, *APIError) {
	pre := &prefetched{}
	var reads []Read
	for i, row := range rows {
		if aerr := n.parseRow(p, row, w); aerr != nil {
			aerr.Message = fmt.Sprintf("request_data[%d]: %s", i, aerr.Message)
			return nil, aerr
		}
		pre.vOff = append(pre.vOff, len(pre.out.Vals))
		pre.tOff = append(pre.tOff, len(pre.out.TOK))
		start := len(reads)
		reads = p.appendReads(reads, w.keys)
		for k := start; k < len(reads); k++ {
			r := &reads[k]
			r.Key = append([]byte(nil), r.Key...)
			if r.Table {
				nc := len(n.Repo().Tables[r.View].Columns)
				pre.out.TNums = append(pre.out.TNums, make([]float64, nc))
				pre.out.TStrs = append(pre.out.TStrs, make([]string, nc))
				pre.out.TOK = append(pre.out.TOK, make([]bool, nc))
				pre.out.TFound = append(pre.out.TFound, false)
			} else {
				pre.out.Vals = append(pre.out.Vals, nil)
			}
		}
	}
	info, err := n.cluster.Read(w.level, reads, t, pre.out)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			return nil, &APIError{Status: 503, Code: "UNAVAILABLE", Message: err.Error()}
		}
		return nil, &APIError{Status: 500, Code: "INTERNAL", Message: err.Error()}
	}
	w.info = info
	return pre, nil
}

// row puts row i's prefetched reads into w and evaluates its request
// features: compute, without reading.
func (pre *prefetched) row(p *servicePlan, w *lookupWork, i int) {
	for j := range w.vals {
		w.vals[j] = pre.out.Vals[pre.vOff[i]+j]
	}
	for j := range w.tok {
		copy(w.tnums[j], pre.out.TNums[pre.tOff[i]+j])
		copy(w.tstrs[j], pre.out.TStrs[pre.tOff[i]+j])
		copy(w.tok[j], pre.out.TOK[pre.tOff[i]+j])
		w.tfound[j] = pre.out.TFound[pre.tOff[i]+j]
	}
	p.evalRequest(w)
}
