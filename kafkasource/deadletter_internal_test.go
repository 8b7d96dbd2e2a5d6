package kafkasource

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/store"
)

// countingSink counts the batches committed through it.
type countingSink struct{ commits atomic.Int32 }

func (s *countingSink) IngestStream(*store.Batch, store.StreamPos) (bool, error) {
	s.commits.Add(1)
	return true, nil
}

func (s *countingSink) StreamOffset(string, string, int32) (int64, bool) { return 0, false }

// countingRouter counts the batches written through it.
type countingRouter struct{ writes atomic.Int32 }

func (r *countingRouter) WriteStream(*store.Batch, []int64, store.StreamPos, int64) error {
	r.writes.Add(1)
	return nil
}

func (r *countingRouter) StreamResume(string, string, int32) (int64, bool, []int32, error) {
	return 0, false, nil, nil
}

// StreamStart records nothing: its sources start at earliest, which reads no record.
func (r *countingRouter) StreamStart(string, string, map[int32]int64) (map[int32]int64, bool, error) {
	return nil, false, nil
}

// stoppingConsumer is a consumer of a source with a dead-letter topic whose
// broker is unreachable, built without starting it.
func stoppingConsumer(t *testing.T, sink Sink, router Router) *Consumer {
	t.Helper()
	repo, err := features.Load(fstest.MapFS{"repo.yaml": {Data: []byte(`sources:
  - name: tx
    schema: {user_id: string, amt: float}
    kafka:
      brokers: ["127.0.0.1:1"]
      topic: t
      dead_letter_topic: t-dead
entities:
  - {name: user, join_key: user_id}
feature_views:
  - name: u
    source: tx
    entity: user
    aggregations:
      - {column: amt, function: count, window: 1h}
`)}})
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(repo, node.DefaultConfig(), node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	src := repo.Sources[0]
	dec, err := n.NewStreamDecoder(src.Name, src.Kafka.Fields, src.Kafka.RecordTime)
	if err != nil {
		t.Fatal(err)
	}
	c := &Consumer{src: src, k: src.Kafka, sink: sink, router: router, node: n, dec: dec, logger: slog.New(slog.DiscardHandler), set: metrics.NewSet(), lag: map[int32]*atomic.Int64{}, held: map[int32]int64{}}
	c.dlqErrors = c.set.GetOrCreateCounter("dlq")
	c.committed = c.set.GetOrCreateCounter("committed")
	if c.base, err = c.clientOpts(); err != nil {
		t.Fatal(err)
	}
	if c.admin, err = kgo.NewClient(c.base...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.admin.Close)
	return c
}

// fetchWithABadRecord is a fetched partition: a record the decoder rejects
// (dead-lettered) and a valid one.
func fetchWithABadRecord() kgo.FetchTopicPartition {
	now := time.Now()
	return kgo.FetchTopicPartition{Topic: "t", FetchPartition: kgo.FetchPartition{Partition: 0, Records: []*kgo.Record{
		{Topic: "t", Partition: 0, Offset: 0, Timestamp: now, Value: []byte(`not json`)},
		{Topic: "t", Partition: 0, Offset: 1, Timestamp: now, Value: []byte(`{"user_id":"u1","amt":1,"timestamp":` + strconv.FormatInt(now.UnixMilli(), 10) + `}`)},
	}}}
}

// TestStopDoesNotCommitPastUndeadletteredRecords: a consumer stopping
// (its context canceled) while it dead-letters a batch's rejected records
// gives the produce up; it must not then commit the batch's offsets, which
// would move the partition past rejected records that never reached the
// dead-letter topic (the next start would not read them again). Both
// topologies: a single node's commit and a cluster member's.
func TestStopDoesNotCommitPastUndeadletteredRecords(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the consumer is being closed

	sink := &countingSink{}
	c := stoppingConsumer(t, sink, nil)
	var b store.Batch
	c.commitPartition(ctx, &b, nil, fetchWithABadRecord())
	if got := c.rejected(node.RejectNotJSON).Get(); got != 1 {
		t.Fatalf("%d records rejected, want 1 (the test does not exercise a dead letter)", got)
	}
	if n := sink.commits.Load(); n != 0 {
		t.Fatalf("single node: the batch was committed (%d times) although its rejected record was not dead-lettered", n)
	}

	router := &countingRouter{}
	c = stoppingConsumer(t, nil, router)
	c.sink = (*routedSink)(c)
	w := &partitionWork{p: fetchWithABadRecord()}
	_, w.offs, w.stopped = c.decode(ctx, &w.b, nil, w.p.Records, nil)
	if len(w.offs) != 1 {
		t.Fatalf("%d valid events decoded, want 1", len(w.offs))
	}
	c.writePartition(ctx, w)
	if n := router.writes.Load(); n != 0 {
		t.Fatalf("cluster: the batch was written (%d times) although its rejected record was not dead-lettered", n)
	}
}

// TestInvalidUTF8RecordDeadLettered: a record whose value is not UTF-8
// (here in its join key) is rejected as not JSON and goes to the
// dead-letter path, as other bad records do, and the valid record beside
// it is decoded; it used to be ingested, its key a string no Parquet or
// Spark reader takes.
func TestInvalidUTF8RecordDeadLettered(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the dead-letter produce is given up at once: only decode's verdict is tested
	c := stoppingConsumer(t, &countingSink{}, nil)
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	recs := []*kgo.Record{
		{Topic: "t", Offset: 0, Value: []byte("{\"user_id\":\"u\xff\",\"amt\":1,\"timestamp\":" + ts + "}")},
		{Topic: "t", Offset: 1, Value: []byte(`{"user_id":"u1","amt":1,"timestamp":` + ts + `}`)},
		{Topic: "t", Offset: 2, Value: []byte("{\"user_id\":\"u2\",\"amt\":1,\"note\":\"\xc3(\",\"timestamp\":" + ts + "}")},
	}
	var b store.Batch
	dead, offs, _ := c.decode(ctx, &b, nil, recs, nil)
	if len(offs) != 1 || offs[0] != 1 {
		t.Errorf("decoded the events of offsets %v, want [1]", offs)
	}
	if got := c.rejected(node.RejectNotJSON).Get(); got != 2 {
		t.Errorf("%d records rejected as not JSON, want 2", got)
	}
	if len(dead) != 2 {
		t.Fatalf("%d records for the dead-letter topic, want 2", len(dead))
	}
	for _, r := range dead {
		var reason, msg string
		for _, h := range r.Headers {
			switch h.Key {
			case "tally-reason":
				reason = string(h.Value)
			case "tally-error":
				msg = string(h.Value)
			}
		}
		if reason != node.RejectNotJSON || !strings.Contains(msg, "invalid UTF-8") {
			t.Errorf("dead letter %q: reason %q, error %q; want %s naming invalid UTF-8", r.Value, reason, msg, node.RejectNotJSON)
		}
	}
}
