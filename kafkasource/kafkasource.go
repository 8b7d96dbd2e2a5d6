package kafkasource

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/internal/retry"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/store"
)

// Sink is what a consumer writes through: the node itself for a single
// node; in a cluster, the router, which commits through the replicated log
// with pos as the request id. IngestStream commits the valid events of the
// range pos exactly once and reports whether they were applied (false: the
// state held the range already, and the consumer goes on from
// StreamOffset). StreamOffset is the state's next offset of a partition.
type Sink interface {
	IngestStream(b *store.Batch, pos store.StreamPos) (applied bool, err error)
	StreamOffset(source, topic string, partition int32) (next int64, ok bool)
}

var _ Sink = (*node.Node)(nil)

// Options are a consumer's settings beyond its source's kafka block.
type Options struct {
	Logger *slog.Logger // nil discards
	// Metrics receives the consumer's metrics; nil: the node's set.
	Metrics *metrics.Set
	// MaxPollRecords bounds one poll (and so one batch per partition);
	// default 10000.
	MaxPollRecords int
	// ClientOpts are appended to the franz-go client's options (tests).
	ClientOpts []kgo.Opt
}

// Consumer consumes one source's topic. Start it with Start; Close stops it.
type Consumer struct {
	src     *features.Source
	k       *features.Kafka
	sink    Sink
	dec     *node.StreamDecoder
	base    []kgo.Opt   // the clients' options
	admin   *kgo.Client // offsets, the group's commits, dead letters
	cl      *kgo.Client // consumes the assigned partitions; set by run
	partsMu sync.Mutex  // guards parts, key and topicID
	parts   []int32     // the topic's partitions, once listed
	// key names the topic in the state (StreamPos.Topic): the topic's
	// name, or, for a topic deleted and created again, the name and the
	// new topic's id (incarnation). topicID is the id consumed (zero: a
	// broker without topic ids, or not listed yet).
	key     string
	topicID kadm.TopicID
	logger  *slog.Logger
	set     *metrics.Set
	opts    Options

	cancel context.CancelFunc
	done   chan struct{}

	lagMu sync.Mutex
	lag   map[int32]*atomic.Int64 // per partition

	router Router          // a cluster's write path (group.go); nil on a single node
	node   *node.Node      // the acknowledgement clock, with a router
	heldMu sync.Mutex      // guards held
	held   map[int32]int64 // with a router: assigned partitions' next offsets

	// dlqErrors counts failed dead-letter produce attempts, each retried
	// with its batch held (deadLetter), not records lost; standIns counts
	// rejected records the dead-letter topic refuses for good, each
	// dead-lettered as a stand-in (produceAlone). recreations
	// (tally_kafka_topic_recreations_total) counts the topic recreations
	// this process noticed (incarnation), like every counter here a
	// process's own: in a cluster one recreation adds 1 to N over the N
	// members, so alert on any member's increase, and do not read the sum
	// as the number of recreations.
	fetchErrors, regressions, dlqErrors, standIns, committed, recreations *metrics.Counter
	logLimit, standInLog                                                  rateLimit
	// refetch paces the new clients foreign fetches start (pollLoop): a
	// topic id that keeps disagreeing with the one keyed (brokers whose
	// metadata has not yet converged after a recreation) restarts the
	// client at most every 100 ms, doubling to 5 s, not in a tight loop.
	refetch retry.Backoff
}

// StartAll starts a consumer for every source of n's repo with a kafka
// block; Close each to stop them. With none it returns nil.
func StartAll(n *node.Node, opts Options) ([]*Consumer, error) {
	var out []*Consumer
	for _, s := range n.Repo().Sources {
		if s.Kafka == nil {
			continue
		}
		c, err := Start(n, n, s, opts)
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

// Start starts consuming src's topic into sink; n decodes records (its
// limits and clock judge them) and holds the metrics and /readyz check.
func Start(n *node.Node, sink Sink, src *features.Source, opts Options) (*Consumer, error) {
	return start(n, sink, nil, src, opts)
}

func start(n *node.Node, sink Sink, router Router, src *features.Source, opts Options) (*Consumer, error) {
	k := src.Kafka
	if k == nil {
		return nil, fmt.Errorf("source %s has no kafka block", src.Name)
	}
	dec, err := n.NewStreamDecoder(src.Name, k.Fields, k.RecordTime)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = n.Metrics()
	}
	if opts.MaxPollRecords <= 0 {
		opts.MaxPollRecords = 10000
	}
	c := &Consumer{src: src, k: k, sink: sink, dec: dec, logger: opts.Logger.With("source", src.Name, "topic", k.Topic), set: opts.Metrics, opts: opts,
		refetch: retry.NewBackoff(100*time.Millisecond, 5*time.Second),
		done:    make(chan struct{}), lag: map[int32]*atomic.Int64{}, router: router, node: n, key: k.Topic}
	if router != nil {
		c.sink = (*routedSink)(c)
	}
	label := fmt.Sprintf(`{source=%q}`, src.Name)
	c.fetchErrors = c.set.GetOrCreateCounter("tally_kafka_fetch_errors_total" + label)
	c.regressions = c.set.GetOrCreateCounter("tally_kafka_offset_regressions_total" + label)
	c.dlqErrors = c.set.GetOrCreateCounter("tally_kafka_dead_letter_errors_total" + label)
	c.standIns = c.set.GetOrCreateCounter("tally_kafka_dead_letter_stand_ins_total" + label)
	c.committed = c.set.GetOrCreateCounter("tally_kafka_records_consumed_total" + label)
	c.recreations = c.set.GetOrCreateCounter("tally_kafka_topic_recreations_total" + label)
	for _, r := range []string{node.RejectNotJSON, node.RejectMissingKey, node.RejectBadTimestamp, node.RejectTooLate, node.RejectBadField} {
		c.rejected(r) // every reason exported from the start, at 0
	}
	if c.base, err = c.clientOpts(); err != nil {
		return nil, err
	}
	if c.admin, err = kgo.NewClient(c.base...); err != nil {
		return nil, fmt.Errorf("source %s: kafka client: %w", src.Name, err)
	}
	if k.MaxLag > 0 {
		n.AddReadyCheck(c.lagCheck)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go c.run(ctx)
	return c, nil
}

func (c *Consumer) rejected(reason string) *metrics.Counter {
	return c.set.GetOrCreateCounter(fmt.Sprintf(`tally_kafka_records_rejected_total{source=%q,reason=%q}`, c.src.Name, reason))
}

func (c *Consumer) clientOpts() ([]kgo.Opt, error) {
	k := c.k
	o := []kgo.Opt{
		kgo.SeedBrokers(k.Brokers...),
		kgo.FetchMaxBytes(16 << 20),
		kgo.FetchMaxWait(100 * time.Millisecond),
		// Only records of committed transactions (and of producers outside
		// transactions): an aborted transaction's records never happened.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RetryBackoffFn(func(tries int) time.Duration {
			return min(100*time.Millisecond<<min(tries, 6), 5*time.Second)
		}),
	}
	if k.DeadLetterTopic != "" {
		// A dead-letter produce attempt is bounded by its context
		// (deadLetter), which an idempotent producer otherwise ignores
		// once a request is in flight. A record cut short is produced
		// again: it may reach the topic twice, never zero times.
		o = append(o, kgo.DefaultProduceTopic(k.DeadLetterTopic), kgo.AllowIdempotentProduceCancellation())
	}
	if s := k.SASL; s != nil {
		pass, ok := os.LookupEnv(s.PasswordEnv)
		if !ok {
			return nil, fmt.Errorf("source %s: kafka sasl: set the environment variable %s to the password of %s", c.src.Name, s.PasswordEnv, s.Username)
		}
		var m sasl.Mechanism
		switch s.Mechanism {
		case "PLAIN":
			m = plain.Auth{User: s.Username, Pass: pass}.AsMechanism()
		case "SCRAM-SHA-256":
			m = scram.Auth{User: s.Username, Pass: pass}.AsSha256Mechanism()
		default:
			m = scram.Auth{User: s.Username, Pass: pass}.AsSha512Mechanism()
		}
		o = append(o, kgo.SASL(m))
	}
	if t := k.TLS; t != nil {
		cfg := &tls.Config{ServerName: t.ServerName, MinVersion: tls.VersionTLS12}
		if t.CAFile != "" {
			pem, err := os.ReadFile(t.CAFile)
			if err != nil {
				return nil, fmt.Errorf("source %s: kafka tls ca_file: %w", c.src.Name, err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("source %s: kafka tls ca_file %s holds no PEM certificate", c.src.Name, t.CAFile)
			}
		}
		if t.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("source %s: kafka tls client certificate: %w", c.src.Name, err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		o = append(o, kgo.DialTLSConfig(cfg))
	}
	if os.Getenv("TALLY_KAFKA_DEBUG") != "" { // the client's own log, for a stuck consumer
		o = append(o, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelDebug, nil)))
	}
	return append(o, c.opts.ClientOpts...), nil
}

// Close stops consuming (a batch being committed finishes first) and
// leaves the group.
func (c *Consumer) Close() {
	c.cancel()
	<-c.done
	c.commitGroup(context.Background())
	if c.cl != nil {
		c.cl.Close()
	}
	c.admin.Close()
}

// resetOffset is where a partition resumes when its offset is out of the
// log's range (retention deleted records below the state's offset while
// the node was down, or the broker lost data): the log start, whatever the
// source's start position, which applies only to partitions the state
// holds no offset of. Every record the broker still holds is then read,
// and those below the state's offset are skipped as counted.
var resetOffset = kgo.NewOffset().AtStart()

// checkTopics lists the topic's partitions (their end offsets) and checks
// that the dead-letter topic, if any, exists: a missing one fails the
// start like a missing topic, since a rejected record could not be
// produced there and would be lost once its batch commits. (The clients
// never ask the brokers to create a topic.)
func (c *Consumer) checkTopics(ctx context.Context) (kadm.ListedOffsets, error) {
	ends, missing, err := c.listEnds(ctx, c.k.Topic)
	if err == nil && missing {
		err = fmt.Errorf("topic %s does not exist", c.k.Topic)
	}
	if err != nil || c.k.DeadLetterTopic == "" {
		return ends, err
	}
	if _, missing, err = c.listEnds(ctx, c.k.DeadLetterTopic); err != nil {
		return nil, fmt.Errorf("list dead_letter_topic %s: %w", c.k.DeadLetterTopic, err)
	}
	if missing {
		return nil, fmt.Errorf("dead_letter_topic %s does not exist: create it (no record of topic %s is consumed until it exists, so that every rejected record reaches it)", c.k.DeadLetterTopic, c.k.Topic)
	}
	return ends, nil
}

// listEnds lists topic's end offsets; missing: the brokers do not know it.
func (c *Consumer) listEnds(ctx context.Context, topic string) (_ kadm.ListedOffsets, missing bool, _ error) {
	ends, err := kadm.NewClient(c.admin).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil, true, nil
	}
	return ends, err == nil && len(ends[topic]) == 0, err
}

// waitTopics retries checkTopics with backoff, counting and logging each
// failure, until it succeeds or ctx ends.
func (c *Consumer) waitTopics(ctx context.Context) (kadm.ListedOffsets, error) {
	backoff := retry.NewBackoff(100*time.Millisecond, 5*time.Second)
	for {
		ends, err := c.checkTopics(ctx)
		if err == nil {
			return ends, nil
		}
		c.fetchErrors.Inc()
		if c.logLimit.allow() {
			c.logger.Warn("kafka source not started: its topics are not listed; retrying with backoff", "err", err)
		}
		if !backoff.Wait(ctx) {
			return nil, ctx.Err()
		}
	}
}

// assign lists the topic's partitions and starts consuming each at the
// state's offset. A partition the state holds none of starts at the
// source's start position, resolved to a number (earliest: the log start;
// latest: the end) and committed first as an empty range, so that the
// state holds it: a restart resumes there even if the partition got no
// record before it (with latest, records produced to it while the node was
// down would otherwise be skipped as before the new end). It retries with
// backoff until the brokers answer and the log commits, or ctx ends.
func (c *Consumer) assign(ctx context.Context) error {
	backoff := retry.NewBackoff(100*time.Millisecond, 5*time.Second)
	for {
		ends, err := c.checkTopics(ctx)
		resumed := 0 // partitions the state held an offset of
		var key string
		var id kadm.TopicID
		if err == nil {
			key, id, err = c.incarnation(ctx)
		}
		if err == nil {
			resumed, err = c.pinStart(ctx, ends, key)
		}
		if err == nil {
			offsets := map[int32]kgo.Offset{}
			c.partsMu.Lock()
			c.key, c.topicID = key, id
			c.parts = c.parts[:0]
			for p := range ends[c.k.Topic] {
				c.parts = append(c.parts, p)
				next, _ := c.sink.StreamOffset(c.src.Name, key, p)
				offsets[p] = kgo.NewOffset().At(next).WithEpoch(-1)
			}
			c.partsMu.Unlock()
			c.lagMu.Lock()
			for p, g := range c.lag {
				if _, ok := offsets[p]; !ok {
					g.Store(0) // a partition the topic no longer has
				}
			}
			c.lagMu.Unlock()
			opts := append(c.base[:len(c.base):len(c.base)], kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{c.k.Topic: offsets}), kgo.ConsumeResetOffset(resetOffset))
			c.cl, err = kgo.NewClient(opts...)
			if err != nil {
				return err
			}
			c.logger.Info("kafka source consuming", "partitions", len(offsets), "group", c.k.Group, "resumed", resumed, "topic_id", id, "state_topic", key)
			return nil
		}
		c.fetchErrors.Inc()
		if c.logLimit.allow() {
			c.logger.Warn("kafka source not started: its topics not listed or its partitions' start not committed; retrying with backoff", "err", err)
		}
		if !backoff.Wait(ctx) {
			return ctx.Err()
		}
	}
}

// pinStart commits, for every partition of ends the state holds no offset
// of, the empty range at the source's start position (ends itself for
// latest, the log start for earliest). A partition missing while the state
// holds others of the topic was added after the node first consumed it,
// so every record in it is new: it starts at the log start, whatever the
// start position. resumed is the number of partitions the state held an
// offset of. key names the topic in the state: a recreated topic's key
// (not its name) starts every partition at the log start too.
func (c *Consumer) pinStart(ctx context.Context, ends kadm.ListedOffsets, key string) (resumed int, err error) {
	var missing []int32
	for p := range ends[c.k.Topic] {
		if _, ok := c.sink.StreamOffset(c.src.Name, key, p); ok {
			resumed++
		} else {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return resumed, nil
	}
	starts := ends
	if c.k.Start != "latest" || resumed > 0 || key != c.k.Topic {
		if starts, err = kadm.NewClient(c.admin).ListStartOffsets(ctx, c.k.Topic); err == nil {
			err = starts.Error()
		}
		if err != nil {
			return resumed, err
		}
	}
	var b store.Batch
	b.Reset(c.dec.Source().Index, len(c.dec.Source().Src.Columns))
	for _, p := range missing {
		o, ok := starts.Lookup(c.k.Topic, p)
		if !ok {
			return resumed, fmt.Errorf("partition %d of topic %s not listed", p, c.k.Topic)
		}
		pos := store.StreamPos{Source: c.src.Name, Topic: key, Partition: p, First: o.Offset, Next: o.Offset}
		if _, err := c.sink.IngestStream(&b, pos); err != nil {
			return resumed, err
		}
	}
	return resumed, nil
}

// addPartitions starts consuming the partitions of ends that were added to
// the topic since assign listed it, from their log start (every record in
// them came after the node started consuming the topic), pinned first in
// the state by pinStart, as in assign. Single node only: a cluster's group finds new
// partitions itself.
func (c *Consumer) addPartitions(ctx context.Context, ends kadm.ListedOffsets) {
	c.partsMu.Lock()
	key := c.key
	var added []int32
	for p := range ends[c.k.Topic] {
		if !slices.Contains(c.parts, p) {
			added = append(added, p)
		}
	}
	c.partsMu.Unlock()
	if len(added) == 0 {
		return
	}
	// The state holds the offsets of every partition listed before, so
	// pinStart starts the added ones at their log start.
	if _, err := c.pinStart(ctx, ends, key); err != nil {
		c.fetchErrors.Inc()
		if c.logLimit.allow() {
			c.logger.Warn("kafka partitions added to the topic not started yet; retrying", "partitions", added, "err", err)
		}
		return // the next listing tries again
	}
	offsets := map[int32]kgo.Offset{}
	for _, p := range added {
		next, _ := c.sink.StreamOffset(c.src.Name, key, p)
		offsets[p] = kgo.NewOffset().At(next).WithEpoch(-1)
	}
	c.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{c.k.Topic: offsets})
	c.partsMu.Lock()
	c.parts = append(c.parts, added...)
	c.partsMu.Unlock()
	c.logger.Info("kafka partitions added to the topic: consuming them from their first record", "partitions", added)
}

// commitGroup writes the state's offsets as the group's committed offsets,
// for monitoring tools (tally never reads them back).
func (c *Consumer) commitGroup(ctx context.Context) {
	if c.router != nil {
		c.commitMember(ctx)
		return
	}
	off := kadm.Offsets{}
	c.partsMu.Lock()
	parts, key := slices.Clone(c.parts), c.key
	c.partsMu.Unlock()
	for _, p := range parts {
		if next, ok := c.sink.StreamOffset(c.src.Name, key, p); ok {
			off.Add(kadm.Offset{Topic: c.k.Topic, Partition: p, At: next, LeaderEpoch: -1})
		}
	}
	if len(off) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(c.admin).CommitOffsets(ctx, c.k.Group, off)
	if err == nil {
		err = resp.Error()
	}
	if err != nil && c.logLimit.allow() {
		c.logger.Warn("kafka group offsets not committed (monitoring only; tally resumes from its own log)", "group", c.k.Group, "err", err)
	}
}

func (c *Consumer) run(ctx context.Context) {
	defer close(c.done)
	if c.router != nil {
		c.runGroup(ctx)
		return
	}
	var b store.Batch
	var dead []*kgo.Record
	for {
		if c.assign(ctx) != nil {
			return
		}
		// The lag loop cancels pctx when the topic was deleted and created
		// again: the client refuses the new topic's id (franz-go never
		// adopts it), so a new client reads it, under a new state key.
		pctx, cancel := context.WithCancel(ctx)
		lagDone := make(chan struct{})
		go func() {
			defer close(lagDone)
			c.lagLoop(pctx, cancel)
		}()
		c.pollLoop(ctx, pctx, c.cl, func(fetches kgo.Fetches) {
			fetches.EachPartition(func(p kgo.FetchTopicPartition) {
				if ctx.Err() == nil && len(p.Records) > 0 {
					dead = c.commitPartition(ctx, &b, dead[:0], p)
				}
			})
		}, c.commitGroup)
		cancel()
		<-lagDone
		if ctx.Err() != nil {
			return
		}
		c.cl.Close()
	}
}

// pollLoop polls cl until ctx or pctx ends or the client closes, for both
// topologies: a poll's fetch errors are counted, logged (rate-limited) and
// backed off exponentially (100 ms to 5 s); handle commits its records;
// commit (the group's offsets, for monitoring) runs at most once a second.
// Records a poll cut short by pctx (not ctx) returned are handled first.
//
// handle only ever sees records of the topic id the consumer keyed
// (incarnation): a poll holding a fetch of another id (the topic was
// deleted and created again after incarnation listed it, before the
// client first read its metadata) is dropped whole, logged, and ends the
// loop, after a pause that grows while fetches keep disagreeing (refetch),
// so that the caller starts a new client, keyed for the new id. Its
// records are read again by that client, under the new id's key: none is
// committed under the old id's key, where records below the old offsets
// would be skipped as counted and the others counted a second time once
// the new id is keyed.
func (c *Consumer) pollLoop(ctx, pctx context.Context, cl *kgo.Client, handle func(kgo.Fetches), commit func(context.Context)) {
	lastCommit := time.Now()
	backoff := retry.NewBackoff(100*time.Millisecond, 5*time.Second)
	for pctx.Err() == nil {
		fetches := cl.PollRecords(pctx, c.opts.MaxPollRecords)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return
		}
		if c.foreignFetch(fetches) {
			c.refetch.Wait(pctx)
			return
		}
		c.refetch.Reset()
		failed := false
		fetches.EachError(func(topic string, p int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			failed = true
			c.fetchErrors.Inc()
			if c.logLimit.allow() {
				c.logger.Warn("kafka fetch failed; retrying with backoff", "partition", p, "err", err)
			}
		})
		handle(fetches)
		if time.Since(lastCommit) >= time.Second {
			commit(ctx)
			lastCommit = time.Now()
		}
		if failed {
			backoff.Wait(pctx) // a cancelled pctx ends the loop
		} else {
			backoff.Reset()
		}
	}
}

// foreignFetch reports whether fetches hold a fetch of a topic id other
// than the one consumed (consumes), and logs the first such id.
func (c *Consumer) foreignFetch(fetches kgo.Fetches) bool {
	for _, f := range fetches {
		for _, t := range f.Topics {
			if c.consumes(t.TopicID) {
				continue
			}
			c.partsMu.Lock()
			held := c.topicID
			c.partsMu.Unlock()
			c.logger.Warn("kafka topic "+c.k.Topic+" was deleted and created again: its records were fetched under a new topic id, not the one keyed; the fetch is dropped, none of it counted, and a new client reads the new topic from its first record",
				"old_topic_id", held, "new_topic_id", kadm.TopicID(t.TopicID))
			return true
		}
	}
	return false
}

// consumes reports whether a fetch of the topic id is of the topic
// consumed (true when either id is unknown: brokers without topic ids).
func (c *Consumer) consumes(id [16]byte) bool {
	c.partsMu.Lock()
	defer c.partsMu.Unlock()
	return id == [16]byte{} || c.topicID == (kadm.TopicID{}) || kadm.TopicID(id) == c.topicID
}

// commitPartition decodes and commits one partition's fetched records,
// retrying a failing commit until it succeeds or the consumer stops.
func (c *Consumer) commitPartition(ctx context.Context, b *store.Batch, dead []*kgo.Record, p kgo.FetchTopicPartition) []*kgo.Record {
	key := c.stateTopic()
	stored, known := c.sink.StreamOffset(c.src.Name, key, p.Partition)
	if known && p.HighWatermark < stored && c.regressions != nil {
		c.regressions.Inc()
		c.logger.Error("the topic's high watermark is below the offset tally holds for this topic id: its log was truncated (or the brokers have no topic ids and it was recreated); its records are skipped until they pass the held offset",
			"partition", p.Partition, "high_watermark", p.HighWatermark, "held", stored)
	}
	recs := p.Records
	for len(recs) > 0 && known && recs[0].Offset < stored {
		recs = recs[1:] // counted already
	}
	if len(recs) == 0 {
		return dead
	}
	dead, _, stopped := c.decode(ctx, b, dead, recs, nil)
	if stopped {
		// The consumer stops with rejected records not dead-lettered:
		// committing the range would skip them for good; the next start
		// reads the batch again.
		return dead
	}
	pos := store.StreamPos{Source: c.src.Name, Topic: key, Partition: p.Partition, First: recs[0].Offset, Next: recs[len(recs)-1].Offset + 1}
	backoff := retry.NewBackoff(50*time.Millisecond, 5*time.Second)
	for {
		applied, err := c.sink.IngestStream(b, pos)
		if err == nil {
			if applied {
				c.committed.Add(len(recs))
			}
			next, _ := c.sink.StreamOffset(c.src.Name, key, p.Partition)
			if !applied && next != pos.Next {
				// Another writer committed part of this range first: go on
				// from the state's offset.
				c.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{p.Topic: {p.Partition: {Epoch: -1, Offset: next}}})
			}
			return dead
		}
		if c.logLimit.allow() {
			c.logger.Error("kafka batch not committed (the log refuses writes); retrying, fetching paused", "partition", p.Partition, "offsets", fmt.Sprintf("%d..%d", pos.First, pos.Next-1), "err", err)
		}
		if !backoff.Wait(ctx) {
			return dead
		}
	}
}

// decode decodes recs into b (reset first), appending each valid event's
// offset to offs; rejected records are counted, logged and, with a
// dead-letter topic, produced there before it returns (deadLetter: for as
// long as the produce fails). stopped: ctx ended before the rejected
// records were dead-lettered (the batch must not be committed).
func (c *Consumer) decode(ctx context.Context, b *store.Batch, dead []*kgo.Record, recs []*kgo.Record, offs []int64) (_ []*kgo.Record, _ []int64, stopped bool) {
	b.Reset(c.dec.Source().Index, len(c.dec.Source().Src.Columns))
	for _, r := range recs {
		reason, msg := c.dec.Decode(b, r.Value, r.Timestamp.UnixMilli())
		if reason == "" {
			for len(offs) < b.Len() {
				offs = append(offs, r.Offset)
			}
			continue
		}
		c.rejected(reason).Inc()
		if c.logLimit.allow() {
			c.logger.Warn("kafka record rejected", "partition", r.Partition, "offset", r.Offset, "reason", reason, "err", msg)
		}
		if c.k.DeadLetterTopic != "" {
			// deadHeaders counts the headers appended here.
			dead = append(dead, &kgo.Record{Key: r.Key, Value: r.Value, Headers: append(r.Headers[:len(r.Headers):len(r.Headers)],
				kgo.RecordHeader{Key: "tally-reason", Value: []byte(reason)},
				kgo.RecordHeader{Key: "tally-error", Value: []byte(msg)},
				kgo.RecordHeader{Key: "tally-topic", Value: []byte(r.Topic)},
				kgo.RecordHeader{Key: "tally-partition", Value: strconv.AppendInt(nil, int64(r.Partition), 10)},
				kgo.RecordHeader{Key: "tally-offset", Value: strconv.AppendInt(nil, r.Offset, 10)})})
		}
	}
	if len(dead) > 0 {
		stopped = !c.deadLetter(ctx, recs[0].Partition, dead)
	}
	return dead, offs, stopped
}

// deadHeaders is the number of headers decode appends to a dead letter,
// after the record's own: tally-reason, tally-error, tally-topic,
// tally-partition, tally-offset.
const deadHeaders = 5

// deadLetterAttempt bounds one produce of a batch's rejected records to the
// dead-letter topic (a topic deleted, a broker that does not answer): the
// attempt fails, is counted and logged, and deadLetter tries again.
const deadLetterAttempt = 10 * time.Second

// deadLetter produces a batch's rejected records (read from partition) to
// the dead-letter topic and waits for the broker, so that none is lost once
// the batch commits. A record the topic refuses for good (refusedRecord:
// too large for it, say) is dead-lettered as a stand-in instead
// (produceAlone), so that one record cannot hold its partition forever.
// Any other failed attempt (bounded by deadLetterAttempt) is counted in
// dlqErrors, logged (rate-limited) and retried with backoff (100 ms
// doubling to 5 s), for the records not yet produced, for as long as it
// fails: the batch, and so the partition, waits uncommitted meanwhile, and
// its lag grows. A record may reach the topic twice (an attempt cut short
// after the broker wrote it). It returns false when ctx ended first (the
// consumer stops): the batch must not be committed, so that the next start
// dead-letters its records.
func (c *Consumer) deadLetter(ctx context.Context, partition int32, recs []*kgo.Record) (done bool) {
	backoff := retry.NewBackoff(100*time.Millisecond, 5*time.Second)
	for {
		for _, r := range recs {
			r.Context = nil // else the client keeps the last attempt's, canceled
		}
		actx, cancel := context.WithTimeout(ctx, deadLetterAttempt)
		var (
			failed []*kgo.Record
			err    error // the first failure
		)
		for _, res := range c.admin.ProduceSync(actx, recs...) {
			if res.Err != nil && refusedRecord(res.Err) {
				res.Err = c.produceAlone(actx, partition, res.Record, res.Err)
			}
			if res.Err != nil {
				failed = append(failed, res.Record)
				err = cmp.Or(err, res.Err)
			}
		}
		cancel()
		if len(failed) == 0 {
			return true
		}
		recs = failed
		if errors.Is(err, kerr.UnknownTopicID) {
			// The topic was deleted and created again: the client refuses
			// the new one until it forgets the old.
			c.admin.PurgeTopicsFromProducing(c.k.DeadLetterTopic)
		}
		if ctx.Err() == nil {
			c.dlqErrors.Inc()
			if c.logLimit.allow() {
				c.logger.Error("dead-letter produce failed; the batch is held uncommitted (its partition waits, its lag grows) and the produce retried with backoff",
					"dead_letter_topic", c.k.DeadLetterTopic, "partition", partition, "records", len(recs), "err", err)
			}
			backoff.Wait(ctx) // a cancelled ctx is checked below
		}
		if ctx.Err() != nil {
			c.logger.Warn("dead-letter produce stopped with the consumer; the batch is not committed and is read again at the next start", "dead_letter_topic", c.k.DeadLetterTopic, "partition", partition, "records", len(recs), "err", err)
			return false
		}
	}
}

// refusedRecord reports whether a dead-letter produce failed because of
// the record itself, for good: larger than the topic's max.message.bytes
// (or the client's batch limit, checked before sending), or refused by the
// broker's validation (a record without a key for a compacted topic, say).
// The broker refuses a whole produce batch for one such record, so each
// is produced alone first (produceAlone). Any other error (a broker down,
// the topic missing, no authorization) concerns every record alike and is
// retried with the batch held.
func refusedRecord(err error) bool {
	return errors.Is(err, kerr.MessageTooLarge) || errors.Is(err, kerr.RecordListTooLarge) ||
		errors.Is(err, kerr.InvalidRecord) || errors.Is(err, kerr.CorruptMessage)
}

// standInKeyMax is the longest key a stand-in keeps (standIn).
const standInKeyMax = 256

// produceAlone produces d, a dead letter of partition's that the broker
// refused (err, refusedRecord) in a batch that may have held others, alone
// in its own batch. Refused again, it is refused for good: its stand-in
// (standIn) is dead-lettered in its place, counted in standIns and logged
// (rate-limited apart from the rejections), so that one record cannot hold
// its partition forever while its coordinates still reach the topic (the
// record itself stays in its topic until retention deletes it). It returns
// the error that leaves d not dead-lettered (then retried with the batch
// held), nil once d or its stand-in is.
func (c *Consumer) produceAlone(ctx context.Context, partition int32, d *kgo.Record, err error) error {
	d.Context = nil
	if err = c.admin.ProduceSync(ctx, d).FirstErr(); err == nil || !refusedRecord(err) {
		return err
	}
	s := standIn(d, err)
	if serr := c.admin.ProduceSync(ctx, s).FirstErr(); serr != nil {
		return fmt.Errorf("%w; its stand-in: %w", err, serr)
	}
	c.standIns.Inc()
	if c.standInLog.allow() {
		h := d.Headers[len(d.Headers)-deadHeaders:]
		c.logger.Error("rejected record refused by the dead-letter topic for good; a stand-in (its coordinates, the reasons, no value) was dead-lettered in its place and the partition goes on: the record itself is in its topic at that offset until retention deletes it",
			"dead_letter_topic", c.k.DeadLetterTopic, "partition", partition, "offset", string(h[4].Value),
			"reason", string(h[0].Value), "value_bytes", len(d.Value), "err", err)
	}
	return nil
}

// standIn is what is dead-lettered in place of d, a dead letter the topic
// refuses for good (err): d's key if at most standInKeyMax bytes, an empty
// value (not null: a compacted topic would read null as a deletion), and
// none of the record's own headers (they may be what is too large), only
// tally's (deadHeaders: the reason and the record's topic, partition and
// offset), tally-value-bytes (the size of the value left out) and
// tally-dead-letter-error (err), which marks a stand-in.
func standIn(d *kgo.Record, err error) *kgo.Record {
	s := &kgo.Record{Value: []byte{}}
	if len(d.Key) <= standInKeyMax {
		s.Key = d.Key
	}
	h := d.Headers[len(d.Headers)-deadHeaders:]
	s.Headers = append(h[:len(h):len(h)],
		kgo.RecordHeader{Key: "tally-value-bytes", Value: strconv.AppendInt(nil, int64(len(d.Value)), 10)},
		kgo.RecordHeader{Key: "tally-dead-letter-error", Value: []byte(err.Error())})
	return s
}

// setLag sets a partition's lag from its end offset hwm, once the state
// holds an offset of it (before, where reading starts is the broker's).
func (c *Consumer) setLag(p int32, hwm int64) {
	next, ok := c.sink.StreamOffset(c.src.Name, c.stateTopic(), p)
	if !ok {
		return
	}
	c.lagMu.Lock()
	g := c.lag[p]
	if g == nil {
		g = &atomic.Int64{}
		c.lag[p] = g
		c.set.GetOrCreateGauge(fmt.Sprintf(`tally_kafka_lag{source=%q,topic=%q,partition="%d"}`, c.src.Name, c.k.Topic, p), func() float64 { return float64(g.Load()) })
	}
	c.lagMu.Unlock()
	g.Store(max(0, hwm-next))
}

// lagLoop measures every partition's lag each second from the topic's end
// offsets, so lag shows while no records arrive and while commits are
// held back. With recreated, it first compares the topic's id with the one
// consumed: a topic deleted and created again calls recreated and ends the
// loop (run or runGroup starts a client for the new topic).
func (c *Consumer) lagLoop(ctx context.Context, recreated func()) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if recreated != nil && c.recreated(ctx) {
			recreated()
			return
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ends, err := kadm.NewClient(c.admin).ListEndOffsets(lctx, c.k.Topic)
		cancel()
		if err == nil {
			if c.router == nil && ends.Error() == nil {
				c.addPartitions(ctx, ends)
			}
			ends.Each(func(o kadm.ListedOffset) {
				if o.Err == nil {
					c.setLag(o.Partition, o.Offset)
				}
			})
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// stateTopic is the topic's name in the state (Consumer.key).
func (c *Consumer) stateTopic() string {
	c.partsMu.Lock()
	defer c.partsMu.Unlock()
	return c.key
}

// listTopicID returns the topic's id as the brokers list it now (zero:
// brokers without topic ids).
func (c *Consumer) listTopicID(ctx context.Context) (kadm.TopicID, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	md, err := kadm.NewClient(c.admin).Metadata(ctx, c.k.Topic)
	if err != nil {
		return kadm.TopicID{}, err
	}
	d, ok := md.Topics[c.k.Topic]
	if !ok {
		return kadm.TopicID{}, fmt.Errorf("topic %s not listed", c.k.Topic)
	}
	return d.ID, d.Err
}

// recreated reports whether the brokers list the topic under another id
// than the one consumed: it was deleted and created again. A topic listed
// as missing (deleted, not created again yet) is not.
func (c *Consumer) recreated(ctx context.Context) bool {
	c.partsMu.Lock()
	old := c.topicID
	c.partsMu.Unlock()
	id, err := c.listTopicID(ctx)
	if err != nil || id == (kadm.TopicID{}) || old == (kadm.TopicID{}) || id == old {
		return false
	}
	unread := int64(0)
	for _, l := range c.Lag() {
		unread += l
	}
	c.logger.Warn("kafka topic "+c.k.Topic+" was deleted and created again: the new topic is read from its first record; records of the old topic not yet read when it was deleted are gone with it",
		"old_topic_id", old, "new_topic_id", id, "unread_when_last_measured", unread)
	return true
}

// incarnation returns the key naming the topic's offsets in the state and
// the topic's id. The state keys offsets by topic name, and a topic
// deleted and created again restarts at offset 0, below the offsets held:
// so the first topic id a state consumes keeps the name as its key, and a
// later one (a recreated topic) gets the key name@id, whose partitions
// all start at their log start, whatever the start position. The state
// records which id owns which key in two markers, empty stream ranges:
// name#id (at partition 0, once some id owns the name) and name#id=<id>
// (offset 0: its key is the name; 1: name@id). A state written before the
// markers gives the name to the id listed at its first start after.
// Brokers without topic ids key every topic by its name.
//
// A cluster's markers live in its groups' states (readMark, writeMark), so
// its members agree on a topic id's key: each member decides from the
// markers the others wrote, and members deciding at once decide alike, as
// the name's marker is read before the id's and written after it. (Members
// starting the cluster's first consumption while the topic is recreated,
// each listing another id, could both give the name to theirs.) The
// recreation is counted once by each consumer that keys it: the one that
// found it, and one that was consuming the old topic id.
func (c *Consumer) incarnation(ctx context.Context) (_ string, _ kadm.TopicID, err error) {
	name := c.k.Topic
	id, err := c.listTopicID(ctx)
	if err != nil || id == (kadm.TopicID{}) {
		return name, id, err
	}
	hexID := hex.EncodeToString(id[:])
	marker := name + "#id=" + hexID
	owned := name + "#id"
	c.partsMu.Lock()
	old := c.topicID
	c.partsMu.Unlock()
	found := false // at a start, by this consumer
	defer func() {
		// Once keyed (a failed attempt is retried).
		if err == nil && (found || old != (kadm.TopicID{}) && old != id) {
			c.recreations.Inc()
		}
	}()
	_, isOwned, err := c.readMark(owned)
	if err != nil {
		return "", id, err
	}
	v, ok, err := c.readMark(marker)
	if err != nil {
		return "", id, err
	}
	if ok {
		if v != 0 {
			return name + "@" + hexID, id, nil
		}
		if !isOwned { // a stop between the two markers
			return name, id, c.writeMark(owned, 0)
		}
		return name, id, nil
	}
	if !isOwned {
		// The first id of this state (or the one of a state written
		// before the markers): it keeps the name. Its own marker first,
		// so that a stop between the two never takes it for a new topic.
		if err := c.writeMark(marker, 0); err != nil {
			return "", id, err
		}
		return name, id, c.writeMark(owned, 0)
	}
	key := name + "@" + hexID
	if old == (kadm.TopicID{}) {
		// Found at a start: the node was down when it happened.
		found = true
		c.logger.Warn("kafka topic "+name+" was deleted and created again: its new topic id is not the one tally consumed; the new topic is read from its first record",
			"new_topic_id", id, "state_topic", key)
	}
	return key, id, c.writeMark(marker, 1)
}

// readMark reads a marker of incarnation: partition 0's offset of the
// stream topic, in the node's state or, routed, the cluster's groups'
// (the lowest).
func (c *Consumer) readMark(topic string) (int64, bool, error) {
	if c.router == nil {
		v, ok := c.sink.StreamOffset(c.src.Name, topic, 0)
		return v, ok, nil
	}
	v, ok, _, err := c.router.StreamResume(c.src.Name, topic, 0)
	return v, ok, err
}

// writeMark commits a marker of incarnation, the empty range [v, v) of
// the stream topic's partition 0, to the node's state or, routed, to
// every group of the cluster.
func (c *Consumer) writeMark(topic string, v int64) error {
	var b store.Batch
	b.Reset(c.dec.Source().Index, len(c.dec.Source().Src.Columns))
	pos := store.StreamPos{Source: c.src.Name, Topic: topic, Partition: 0, First: v, Next: v}
	if c.router != nil {
		return c.router.WriteStream(&b, nil, pos, c.node.StreamClock())
	}
	_, err := c.sink.IngestStream(&b, pos)
	return err
}

// Lag returns the lag of every partition seen so far.
func (c *Consumer) Lag() map[int32]int64 {
	c.lagMu.Lock()
	defer c.lagMu.Unlock()
	out := make(map[int32]int64, len(c.lag))
	for p, g := range c.lag {
		out[p] = g.Load()
	}
	return out
}

func (c *Consumer) lagCheck() error {
	for p, l := range c.Lag() {
		if l > c.k.MaxLag {
			return fmt.Errorf("%w: source %s topic %s partition %d is %d records behind (max_lag %d)", node.ErrStreamLagging, c.src.Name, c.k.Topic, p, l, c.k.MaxLag)
		}
	}
	return nil
}

// rateLimit allows one log line a second.
type rateLimit struct{ last atomic.Int64 }

func (r *rateLimit) allow() bool {
	now := time.Now().UnixNano()
	last := r.last.Load()
	return now-last >= int64(time.Second) && r.last.CompareAndSwap(last, now)
}
