package kafkasource

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tally-ml/tally/internal/retry"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/store"
)

// Router is a cluster's write path for streams (*cluster.Cluster): a
// batch goes to every replica group, each applying the offsets it does not
// hold yet (cluster/DESIGN.md, "Kafka in a cluster"). The markers saying
// which topic id owns which key in the state (Consumer.incarnation) go
// through it too, as empty ranges, so that every member reads the same.
type Router interface {
	// WriteStream commits the valid events b read from the range pos
	// (offsets[i] is event i's offset) exactly once in every group, and
	// returns once every group holds offsets up to pos.Next.
	WriteStream(b *store.Batch, offsets []int64, pos store.StreamPos, clock int64) error
	// StreamResume is where a newly assigned partition resumes: the
	// minimum over groups of their next offsets (ok false: none holds any);
	// held lists the partitions of the topic some group holds an offset of.
	StreamResume(source, topic string, partition int32) (next int64, ok bool, held []int32, err error)
	// StreamStart reads the end offsets the cluster's first start of the
	// topic recorded (ok false: none), seeing every record committed
	// before the call. With ends, it records them unless the topic has a
	// record (the first wins), and answers the recorded ones.
	StreamStart(source, topic string, ends map[int32]int64) (recorded map[int32]int64, ok bool, err error)
}

// Session timings of a cluster node's group member: a node killed without
// leaving the group has its partitions moved to the others within about
// the session timeout (the broker's group.min.session.timeout.ms, 6 s by
// default, bounds it from below).
const (
	groupSessionTimeout = 10 * time.Second
	groupHeartbeat      = time.Second
)

// StartAllRouted starts a group consumer for every source of n's repo with
// a kafka block, committing through r (a cluster node's). Every node of
// the cluster runs one per source in the source's consumer group (the
// repo's kafka.group, by default tally-<source>: the same on every node
// serving the same repo), so the group's balancing spreads the partitions
// over the nodes and moves them when a node leaves or joins.
func StartAllRouted(n *node.Node, r Router, opts Options) ([]*Consumer, error) {
	var out []*Consumer
	for _, s := range n.Repo().Sources {
		if s.Kafka == nil {
			continue
		}
		c, err := start(n, nil, r, s, opts)
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// routedSink is a routed consumer's view of its partitions for the lag
// metrics and the group's commits: the offsets this node has committed of
// the partitions assigned to it.
type routedSink Consumer

func (s *routedSink) IngestStream(*store.Batch, store.StreamPos) (bool, error) {
	return false, errors.New("a routed consumer commits through its router")
}

func (s *routedSink) StreamOffset(_, _ string, partition int32) (int64, bool) {
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	next, ok := s.held[partition]
	return next, ok
}

// runGroup consumes the partitions the group assigns this member. Like a
// single node's run, it starts a new client when the topic was deleted
// and created again (the lag loop notices the new id; franz-go never
// adopts it): the member leaves the group and joins it again for the new
// topic, keyed in the cluster's state as incarnation agrees with the
// other members.
func (c *Consumer) runGroup(ctx context.Context) {
	var work []*partitionWork
	var dead []*kgo.Record
	for {
		if c.joinGroup(ctx) != nil {
			return // stopped
		}
		pctx, cancel := context.WithCancel(ctx)
		lagDone := make(chan struct{})
		go func() {
			defer close(lagDone)
			c.lagLoop(pctx, cancel)
		}()
		c.pollLoop(ctx, pctx, c.cl, func(fetches kgo.Fetches) {
			// Decode every partition's records (the decoder is one), then
			// commit the partitions' batches in parallel: each waits for
			// every replica group, so one partition at a time would leave
			// the groups idle between batches.
			n := 0
			fetches.EachTopic(func(t kgo.FetchTopic) {
				t.EachPartition(func(fp kgo.FetchPartition) {
					if ctx.Err() != nil || len(fp.Records) == 0 {
						return
					}
					if n == len(work) {
						work = append(work, &partitionWork{})
					}
					w := work[n]
					n++
					w.p = kgo.FetchTopicPartition{Topic: t.Topic, FetchPartition: fp}
					dead, w.offs, w.stopped = c.decode(ctx, &w.b, dead[:0], fp.Records, w.offs[:0])
				})
			})
			var wg sync.WaitGroup
			for _, w := range work[:n] {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c.writePartition(ctx, w)
				}()
			}
			wg.Wait()
		}, c.commitMember)
		cancel()
		<-lagDone
		if ctx.Err() != nil {
			return
		}
		c.cl.Close() // leaves the group
	}
}

// joinGroup keys the topic in the cluster's state (incarnation) and
// starts a client joining the source's group, with no partition held
// yet. It retries with backoff until it succeeds or ctx ends.
func (c *Consumer) joinGroup(ctx context.Context) error {
	c.heldMu.Lock()
	c.held = map[int32]int64{}
	c.heldMu.Unlock()
	backoff := retry.NewBackoff(100*time.Millisecond, 5*time.Second)
	for {
		if _, err := c.waitTopics(ctx); err != nil {
			return err
		}
		key, id, err := c.incarnation(ctx)
		if err == nil {
			c.partsMu.Lock()
			c.key, c.topicID = key, id
			c.partsMu.Unlock()
			opts := append(c.base[:len(c.base):len(c.base)], kgo.ConsumerGroup(c.k.Group), kgo.ConsumeTopics(c.k.Topic),
				kgo.DisableAutoCommit(), kgo.ConsumeResetOffset(resetOffset),
				kgo.SessionTimeout(groupSessionTimeout), kgo.HeartbeatInterval(groupHeartbeat),
				kgo.AdjustFetchOffsetsFn(c.resume), kgo.OnPartitionsRevoked(c.drop), kgo.OnPartitionsLost(c.drop))
			cl, err := kgo.NewClient(opts...)
			if err != nil {
				c.logger.Error("kafka group consumer not started", "err", err)
				return err
			}
			c.cl = cl
			c.logger.Info("kafka source consuming in its group (cluster)", "group", c.k.Group, "topic_id", id, "state_topic", key)
			return nil
		}
		c.fetchErrors.Inc()
		if c.logLimit.allow() {
			c.logger.Warn("kafka source not started: the topic's key in the cluster's state not agreed yet; retrying with backoff", "err", err)
		}
		if !backoff.Wait(ctx) {
			return ctx.Err()
		}
	}
}

// partitionWork is one partition's fetched records, decoded.
type partitionWork struct {
	p    kgo.FetchTopicPartition
	b    store.Batch
	offs []int64
	// stopped: the consumer stopped before the batch's rejected records
	// were dead-lettered; the batch is not written (decode).
	stopped bool
}

// writePartition commits one partition's decoded batch through the
// router, retrying until every group holds it or the consumer stops.
func (c *Consumer) writePartition(ctx context.Context, w *partitionWork) {
	if w.stopped {
		return // its range is read again by whoever consumes it next
	}
	recs := w.p.Records
	pos := store.StreamPos{Source: c.src.Name, Topic: c.stateTopic(), Partition: w.p.Partition, First: recs[0].Offset, Next: recs[len(recs)-1].Offset + 1}
	backoff := retry.NewBackoff(50*time.Millisecond, 5*time.Second)
	for {
		err := c.router.WriteStream(&w.b, w.offs, pos, c.node.StreamClock())
		if err == nil {
			c.committed.Add(len(recs))
			c.heldMu.Lock()
			if next, ok := c.held[pos.Partition]; ok {
				c.held[pos.Partition] = max(next, pos.Next)
			}
			c.heldMu.Unlock()
			return
		}
		if c.logLimit.allow() {
			c.logger.Error("kafka batch not committed by every group; retrying, fetching paused", "partition", pos.Partition, "offsets", fmt.Sprintf("%d..%d", pos.First, pos.Next-1), "err", err)
		}
		if !backoff.Wait(ctx) {
			return
		}
	}
}

// resume replaces the group's committed offsets of newly assigned
// partitions with the cluster's (Router.StreamResume): tally never resumes
// from the group's commits.
func (c *Consumer) resume(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	for topic, parts := range offsets {
		if topic != c.k.Topic {
			continue
		}
		for p := range parts {
			next, err := c.resumeAt(ctx, p)
			if err != nil {
				return nil, err
			}
			parts[p] = kgo.NewOffset().At(next).WithEpoch(-1)
			c.heldMu.Lock()
			c.held[p] = next
			c.heldMu.Unlock()
		}
	}
	c.logger.Info("kafka partitions assigned", "partitions", len(offsets[c.k.Topic]))
	return offsets, nil
}

// resumeAt is partition p's resume offset (resumeOnce). It retries for up
// to 30 s (within the group's rebalance timeout), then fails the
// assignment (the client rejoins).
func (c *Consumer) resumeAt(ctx context.Context, p int32) (int64, error) {
	deadline := time.Now().Add(30 * time.Second)
	backoff := retry.NewBackoff(100*time.Millisecond, 2*time.Second)
	for {
		next, err := c.resumeOnce(ctx, p)
		if err == nil {
			return next, nil
		}
		c.fetchErrors.Inc()
		if c.logLimit.allow() {
			c.logger.Warn("kafka partition's resume offset not read from the cluster; retrying", "partition", p, "err", err)
		}
		if time.Now().After(deadline) {
			return 0, err
		}
		if !backoff.Wait(ctx) {
			return 0, ctx.Err()
		}
	}
}

// resumeOnce is partition p's resume offset: the cluster's, or for a
// partition no group holds an offset of, a start committed first as an
// empty range to every group (a pin), as a single node's pinStart does:
// the log start, except for a partition that existed when the cluster
// first consumed the topic with start: latest, which starts at the end
// listed then (firstStart). The partitions are those of the topic's key
// in the cluster's state (incarnation): a recreated topic's start at
// their log start, whatever the start position.
func (c *Consumer) resumeOnce(ctx context.Context, p int32) (int64, error) {
	key := c.stateTopic()
	next, ok, held, err := c.router.StreamResume(c.src.Name, key, p)
	if err != nil || ok {
		return next, err
	}
	if c.k.Start == "latest" && key == c.k.Topic {
		next, ok, err := c.firstStart(ctx, key, p, held)
		if err != nil || ok {
			return next, err
		}
	}
	o, err := c.listOffset(ctx, p, false)
	if err != nil {
		return 0, err
	}
	if err := c.pin(key, p, o); err != nil {
		return 0, err
	}
	if c.k.Start == "latest" && key == c.k.Topic {
		c.logger.Info("kafka partition added to the topic: consuming it from its first record", "partition", p, "offset", o)
	}
	return o, nil
}

// firstStart is, for partition p that no group holds (start: latest), the
// end offset the cluster's first start of the topic recorded
// (StreamStart), pinned. The first start lists the topic's end offsets and
// records them, in one metadata entry, before it pins any partition: so
// a partition the record lists starts at its recorded end, whoever pins
// it and however long after (the member that listed it may have died
// before pinning it), and one it does not list was added to the topic
// after the first start, every record in it newer (ok false: it starts
// at its log start). With no record, this member is the first start: it
// records its listing, and pins at what was recorded (another member's,
// when both listed at once), then every other partition listed. The
// record is read after held: a record precedes every pin, so held
// partitions without a record are of a state begun before records were
// kept (awaitFirstStart).
func (c *Consumer) firstStart(ctx context.Context, key string, p int32, held []int32) (next int64, ok bool, err error) {
	ends, recorded, err := c.router.StreamStart(c.src.Name, key, nil)
	if err != nil {
		return 0, false, err
	}
	if !recorded && len(held) > 0 {
		return c.awaitFirstStart(ctx, key, p)
	}
	first := !recorded
	if first {
		listed, err := c.listOffsets(ctx, true)
		if err != nil {
			return 0, false, err
		}
		mine := map[int32]int64{}
		listed.Each(func(o kadm.ListedOffset) { mine[o.Partition] = o.Offset })
		if ends, recorded, err = c.router.StreamStart(c.src.Name, key, mine); err != nil {
			return 0, false, err
		}
		if !recorded {
			return 0, false, fmt.Errorf("the first start of topic %s was not recorded", key)
		}
	}
	at, listed := ends[p]
	if !listed {
		return 0, false, nil
	}
	if err := c.pin(key, p, at); err != nil {
		return 0, false, err
	}
	if first {
		// Every other partition too, so that a member of an older version
		// (which reads no record) finds them held. The record makes it
		// optional: a pin that fails is left to the partition's member.
		for q, at := range ends {
			if q == p {
				continue
			}
			_, ok, _, err := c.router.StreamResume(c.src.Name, key, q)
			if err == nil && !ok {
				err = c.pin(key, q, at)
			}
			if err != nil {
				c.logger.Warn("kafka partition not pinned at the first start's end; its member pins it", "partition", q, "offset", at, "err", err)
				break
			}
		}
	}
	return at, true, nil
}

// listOffset is partition p's end offset (end) or log start offset.
func (c *Consumer) listOffset(ctx context.Context, p int32, end bool) (int64, error) {
	listed, err := c.listOffsets(ctx, end)
	if err != nil {
		return 0, err
	}
	o, found := listed.Lookup(c.k.Topic, p)
	if !found {
		return 0, fmt.Errorf("partition %d of topic %s not listed", p, c.k.Topic)
	}
	return o.Offset, nil
}

// listOffsets lists the topic's partitions' end offsets (end) or log
// start offsets.
func (c *Consumer) listOffsets(ctx context.Context, end bool) (kadm.ListedOffsets, error) {
	adm := kadm.NewClient(c.admin)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	list := adm.ListStartOffsets
	if end {
		list = adm.ListEndOffsets
	}
	listed, err := list(ctx, c.k.Topic)
	if err == nil {
		err = listed.Error()
	}
	return listed, err
}

// pin commits the empty range [at, at) of partition p to every group: a
// group holding none of p starts it at at; one at or past at is left as
// it is (another member took p meanwhile). Only for a partition no group
// held when read: a group below at would move up to it.
func (c *Consumer) pin(key string, p int32, at int64) error {
	var b store.Batch
	b.Reset(c.dec.Source().Index, len(c.dec.Source().Src.Columns))
	pos := store.StreamPos{Source: c.src.Name, Topic: key, Partition: p, First: at, Next: at}
	return c.router.WriteStream(&b, nil, pos, c.node.StreamClock())
}

// firstStartWait bounds awaitFirstStart: a first start pins a topic's
// partitions one Raft write each, well within it; a partition really
// added to such a state's topic waits it out once.
var firstStartWait = 5 * time.Second

// awaitFirstStart is partition p's start in a state whose topic has
// held partitions and no first-start record: a state begun by a version
// that kept none. p was added to the topic since, or a member of that
// version is mid-way through the first start, pinning the partitions it
// listed one at a time: it polls p's resume offset until that pins it
// (ok) or firstStartWait passes (not ok: p was added since, and starts at
// its log start). A member of that version that died mid-way leaves p
// unheld: p is then read from its log start, history included.
func (c *Consumer) awaitFirstStart(ctx context.Context, key string, p int32) (next int64, ok bool, err error) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for deadline := time.Now().Add(firstStartWait); time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return 0, false, ctx.Err()
		case <-t.C:
		}
		if next, ok, _, err = c.router.StreamResume(c.src.Name, key, p); err != nil || ok {
			return next, ok, err
		}
	}
	return 0, false, nil
}

// drop forgets partitions revoked from or lost by this member.
func (c *Consumer) drop(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
	c.heldMu.Lock()
	for _, p := range parts[c.k.Topic] {
		delete(c.held, p)
	}
	c.heldMu.Unlock()
	c.lagMu.Lock()
	for _, p := range parts[c.k.Topic] {
		if g := c.lag[p]; g != nil {
			g.Store(0) // another node reports it now
		}
	}
	c.lagMu.Unlock()
}

// commitMember commits the offsets this member holds to the group, for
// monitoring tools (tally resumes from its groups' states, not from these).
func (c *Consumer) commitMember(ctx context.Context) {
	if c.cl == nil {
		return
	}
	off := map[int32]kgo.EpochOffset{}
	c.heldMu.Lock()
	for p, next := range c.held {
		off[p] = kgo.EpochOffset{Epoch: -1, Offset: next}
	}
	c.heldMu.Unlock()
	if len(off) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{c.k.Topic: off}, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
		if err != nil && c.logLimit.allow() {
			c.logger.Warn("kafka group offsets not committed (monitoring only; tally resumes from its own state)", "group", c.k.Group, "err", err)
		}
	})
}
