package cluster

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/store"
)

// Kafka in a cluster (DESIGN.md, "Kafka"): every group's state keeps, per
// (source, topic, partition), the next offset it has applied (the store's
// stream offsets, record kind 4). Each fetched batch is proposed to every
// group: its share of the events (possibly none) as a stream record whose
// range starts at the group's next offset as far as the proposer knows, so
// it holds only events at or after it. The store applies a stream record
// only if it starts at or after the group's next offset, else skips it
// whole; the answer carries the group's next offset after the record, and
// a proposer whose record was skipped (another consumer moved the group
// on) proposes the rest of its range from there. A group therefore applies
// every offset at most once, and a consumer that resumes a partition at
// the minimum over groups of their next offsets (StreamResume) and moves
// to its next batch only once every group holds the current one leaves no
// offset unapplied in any group.

// streamApplied is a stream record's partition in the group's state after
// the record: its next offset, and whether the state holds any.
type streamApplied struct {
	Next  int64 `json:"next"`
	Known bool  `json:"known"`
}

// streamResult adds to res the state's offset of rec's partition when rec
// is a stream record.
func (f *groupFSM) streamResult(rec []byte, res applied) applied {
	if pos, ok := store.StreamRecordPos(rec); ok {
		res.stream.Next, res.stream.Known = f.Store().StreamOffset(pos.Source, pos.Topic, pos.Partition)
	}
	return res
}

type streamID struct {
	source, topic string
	partition     int32
}

// streamKnown is what this node knows of a stream partition's next offset
// in each group: a lower bound of the group's (read from its leader after a
// barrier, or answered by an apply), -1 when unknown.
type streamKnown struct {
	mu   sync.Mutex
	next []int64
}

func (c *Cluster) streamKnown(id streamID, groups int) *streamKnown {
	v, ok := c.streams.Load(id)
	if !ok {
		k := &streamKnown{next: make([]int64, groups)}
		for g := range k.next {
			k.next[g] = -1
		}
		v, _ = c.streams.LoadOrStore(id, k)
	}
	k := v.(*streamKnown)
	k.mu.Lock()
	for len(k.next) < groups {
		k.next = append(k.next, -1)
	}
	k.mu.Unlock()
	return k
}

func (k *streamKnown) get(g int) int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.next[g]
}

// raise records that group g holds offsets below next (never lowers).
func (k *streamKnown) raise(g int, next int64) {
	k.mu.Lock()
	k.next[g] = max(k.next[g], next)
	k.mu.Unlock()
}

// WriteStream commits the valid events b read from the range pos of a
// stream partition (offsets[i] is event i's offset, ascending; b may be
// empty) to every group, each the events of its keys at or after its next
// offset, acknowledged at clock. It returns once every group's next offset
// is at or past pos.Next; on error (a group unavailable) some groups may
// hold the range and others not: retry the same batch, or resume from
// StreamResume. Concurrent writers of one partition (consumers overlapping
// during a rebalance) are safe: each group applies each offset once.
func (c *Cluster) WriteStream(b *store.Batch, offsets []int64, pos store.StreamPos, clock int64) error {
	if pos.Next < pos.First || pos.First < 0 {
		return fmt.Errorf("stream range [%d, %d) of %s/%d is empty or negative", pos.First, pos.Next, pos.Topic, pos.Partition)
	}
	if len(offsets) != b.Len() {
		return fmt.Errorf("stream batch of %d events with %d offsets", b.Len(), len(offsets))
	}
	parts, offs, err := c.splitStream(b, offsets)
	if err != nil {
		return err
	}
	groups := len(parts)
	known := c.streamKnown(streamID{pos.Source, pos.Topic, pos.Partition}, groups)
	errs := make([]error, groups)
	var wg sync.WaitGroup
	for g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[g] = c.writeStreamGroup(g, known, parts[g], offs[g], pos, clock)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// splitStream splits a stream batch by group: each group's events (those
// with a key it owns, once) and their offsets, for every group.
func (c *Cluster) splitStream(b *store.Batch, offsets []int64) ([]*store.Batch, [][]int64, error) {
	m := c.Map()
	groups := len(m.Groups)
	parts := make([]*store.Batch, groups)
	offs := make([][]int64, groups)
	for g := range parts {
		parts[g] = &store.Batch{}
		parts[g].Reset(b.Source(), b.Columns())
	}
	keys := c.proto.Sources()[b.Source()].KeyColumns()
	var gs []int
	for e := 0; e < b.Len(); e++ {
		if e > 0 && offsets[e] < offsets[e-1] {
			return nil, nil, fmt.Errorf("stream batch offsets not ascending at event %d", e)
		}
		gs = eventGroups(m, b, keys, e, gs)
		for _, g := range gs {
			parts[g].CopyEvent(b, e)
			offs[g] = append(offs[g], offsets[e])
		}
	}
	return parts, offs, nil
}

// writeStreamGroup brings group g's next offset of pos's partition to
// pos.Next or past it.
func (c *Cluster) writeStreamGroup(g int, known *streamKnown, b *store.Batch, offs []int64, pos store.StreamPos, clock int64) error {
	for attempt := 0; attempt < 8; attempt++ {
		at := known.get(g)
		if at >= 0 && at >= pos.Next {
			return nil // the group holds the range
		}
		p := pos
		p.First = max(pos.First, at)
		share := b
		if cut := sort.Search(len(offs), func(i int) bool { return offs[i] >= p.First }); cut > 0 {
			share = &store.Batch{}
			share.Reset(b.Source(), b.Columns())
			for e := cut; e < b.Len(); e++ {
				share.CopyEvent(b, e)
			}
		}
		id := "kafka/" + p.Source + "/" + p.Topic + "/" + strconv.Itoa(int(p.Partition)) + "/" + strconv.FormatInt(p.First, 10) + "-" + strconv.FormatInt(p.Next, 10)
		res, err := c.propose(g, appendRequest(nil, id, c.proto.AppendStreamRecord(nil, share, clock, p)))
		if err != nil {
			return err
		}
		if !res.stream.Known {
			return fmt.Errorf("group %d answered a stream record without its offset", g)
		}
		known.raise(g, res.stream.Next)
		if res.stream.Next >= pos.Next {
			return nil
		}
		// Skipped: the group was past p.First (another consumer); propose
		// the rest of the range from its offset.
		c.logger.Info("kafka batch partly committed by another writer; proposing the rest",
			"group", g, "topic", pos.Topic, "partition", pos.Partition, "proposed", p.First, "group_at", res.stream.Next, "batch_end", pos.Next)
	}
	return fmt.Errorf("%w: group %d: stream %s/%d kept moving under this writer", node.ErrUnavailable, g, pos.Topic, pos.Partition)
}

// StreamResume returns where a consumer newly assigned a stream partition
// resumes: the minimum over groups of their next offsets, read from each
// group's leader after a barrier (so none is higher than the group's
// state), ok false when no group holds any offset of it (the consumer
// starts at the source's start position and commits the empty range there
// first, so that every group learns it). A group holding none while
// others hold some is left out of the minimum: it applies whatever range
// comes first. held lists the partitions of the topic some group holds an
// offset of (read with the same requests): a consumer tells from it a
// state begun before first starts were recorded (StreamStart).
func (c *Cluster) StreamResume(source, topic string, partition int32) (next int64, ok bool, held []int32, err error) {
	m := c.Map()
	groups := len(m.Groups)
	known := c.streamKnown(streamID{source, topic, partition}, groups)
	res := make([]streamOffsets, groups)
	errs := make([]error, groups)
	var wg sync.WaitGroup
	for g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[g], errs[g] = c.streamOffset(g, source, topic, partition)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, false, nil, err
	}
	var highest int64
	for g, r := range res {
		for _, p := range r.Held {
			if !slices.Contains(held, p) {
				held = append(held, p)
			}
		}
		if !r.Known {
			continue
		}
		known.raise(g, r.Next)
		if !ok || r.Next < next {
			next, ok = r.Next, true
		}
		highest = max(highest, r.Next)
	}
	if ok && highest > next {
		// A writer stopped between groups (a node died mid-batch): the
		// groups ahead are sent only what they lack.
		c.logger.Info("kafka partition resumes at its lowest group's offset; groups ahead get only what they lack",
			"source", source, "topic", topic, "partition", partition, "lowest", next, "highest", highest)
	}
	return next, ok, held, nil
}

// streamOffsets is a group's answer to a stream offset read: the
// partition's next offset, and the partitions of its topic the group holds
// an offset of (Held; a node of an older version leaves it out).
type streamOffsets struct {
	streamApplied
	Held []int32 `json:"held,omitempty"`
}

func readStreamOffsets(st *store.Store, source, topic string, partition int32) streamOffsets {
	var r streamOffsets
	r.Next, r.Known = st.StreamOffset(source, topic, partition)
	for p := range st.StreamOffsets(source, topic) {
		r.Held = append(r.Held, p)
	}
	return r
}

// streamOffset reads group g's offset of a partition on its leader, after
// a barrier: every entry committed before the read is applied.
func (c *Cluster) streamOffset(g int, source, topic string, partition int32) (streamOffsets, error) {
	var r streamOffsets
	err := c.askLeader(g, c.cfg.WriteTimeout, "stream offset", func(dg *dataGroup) {
		r = readStreamOffsets(dg.fsm.Store(), source, topic, partition)
	}, func(ctx context.Context, attempt int) error {
		q := url.Values{"group": {strconv.Itoa(g)}, "source": {source}, "topic": {topic}, "partition": {strconv.Itoa(int(partition))}}
		b, err := c.callGroup(ctx, g, attempt, http.MethodGet, "/v1/stream?"+q.Encode(), nil)
		if err != nil {
			return err
		}
		r = streamOffsets{}
		return json.Unmarshal(b, &r)
	})
	if err != nil {
		return streamOffsets{}, err
	}
	return r, nil
}

// serveStreamOffset answers GET /v1/stream (streamOffset) on the leader.
func (c *Cluster) serveStreamOffset(w http.ResponseWriter, r *http.Request) {
	dg, ok := c.leaderGroup(w, r, true)
	if !ok {
		return
	}
	q := r.URL.Query()
	p, err := strconv.ParseInt(q.Get("partition"), 10, 32)
	if err != nil {
		http.Error(w, "bad partition", http.StatusBadRequest)
		return
	}
	if err := dg.bar.wait(); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	json.NewEncoder(w).Encode(readStreamOffsets(dg.fsm.Store(), q.Get("source"), q.Get("topic"), int32(p)))
}

// A first start (start: latest) resolves "the topic's end" once for the
// whole cluster: the members each start the partitions the consumer group
// gives them, and one lists the topic's end offsets for them all. Those
// are recorded in one metadata entry before any partition is pinned
// (kafkasource resumeOnce), so that a partition no group holds is told
// apart without timing: listed in the record, it started at its recorded
// end (pinned by whichever member gets it, even if the member that listed
// it died before pinning it); not listed, it was added to the topic after
// the first start, and starts at its log start. The first record of a
// topic wins: a member that listed other ends at the same time uses the
// recorded ones, so every member starts a partition at the same offset.
//
// The record lives in the metadata group, not in the data groups with the
// stream offsets: it must be one entry (all partitions or none), which
// the data groups, one entry per group, cannot give; the metadata group is
// one Raft group on every node, whose state survives restarts, snapshots
// (metaState), leader changes and a recovery (recover.go replays it like
// the map), and is not reshaped with the data groups. It is keyed by the
// topic's key in the groups' states (kafkasource's incarnation), so a
// recreated topic's key never reads the old topic's record. It is never
// deleted: a few bytes per partition of each topic a cluster ever
// started.

// streamStart is a topic's first start: the end offset of each of its
// partitions when the cluster first consumed it (Ends; none in a
// "stream-start" command that only reads).
type streamStart struct {
	Source string          `json:"source"`
	Topic  string          `json:"topic"`
	Ends   map[int32]int64 `json:"ends,omitempty"`
}

type streamStartKey struct{ source, topic string }

// applyStreamStart records s unless its topic has a record (the first
// wins), and answers the topic's record (nil: none, and s lists nothing).
// Called under f.mu.
func (f *metaFSM) applyStreamStart(s *streamStart) any {
	if s == nil || s.Source == "" || s.Topic == "" {
		return errors.New("stream-start: no source or topic")
	}
	k := streamStartKey{s.Source, s.Topic}
	ends, ok := f.starts[k]
	if !ok {
		if len(s.Ends) == 0 {
			return (*streamStart)(nil)
		}
		if f.starts == nil {
			f.starts = map[streamStartKey]map[int32]int64{}
		}
		ends = maps.Clone(s.Ends)
		f.starts[k] = ends
	}
	return &streamStart{Source: s.Source, Topic: s.Topic, Ends: maps.Clone(ends)}
}

// streamStarts lists the records, sorted (a snapshot's bytes depend on
// the state only). Called under f.mu.
func (f *metaFSM) streamStarts() []streamStart {
	out := make([]streamStart, 0, len(f.starts))
	for k, ends := range f.starts {
		out = append(out, streamStart{Source: k.source, Topic: k.topic, Ends: ends})
	}
	slices.SortFunc(out, func(a, b streamStart) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Topic, b.Topic))
	})
	return out
}

// StreamStart reads, through the metadata group's log (so that it sees
// every record committed before it), the end offsets topic's first start
// listed (ok false: none recorded). With ends, it records them first
// unless the topic has a record already, and answers the recorded ones:
// the caller's only when it was first. Each call is one metadata entry.
// A metadata leader of an older version refuses the command ("unknown
// op"): the caller retries until the leader is upgraded.
func (c *Cluster) StreamStart(source, topic string, ends map[int32]int64) (recorded map[int32]int64, ok bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.WriteTimeout)
	defer cancel()
	cmd := metaCommand{Op: "stream-start", Start: &streamStart{Source: source, Topic: topic, Ends: ends}}
	var res metaResult
	if c.meta.raft.State() == raft.Leader {
		res, err = c.applyMeta(cmd)
	} else {
		err = c.metaRPC(ctx, "/v1/meta", cmd, &res, true)
	}
	if err != nil {
		return nil, false, fmt.Errorf("first start of %s/%s in the metadata group: %w", source, topic, err)
	}
	if res.Start == nil {
		return nil, false, nil
	}
	return res.Start.Ends, true, nil
}
