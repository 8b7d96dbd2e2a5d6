package kafkasource

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/systemtest/kafkatest"
)

// firstStartRouter is a cluster's stream state during another member's
// first start of a topic, that member of a version that records no first
// start: partition 0 is pinned at 20 (the end then), and partition 1 is
// pinned at 20 by that member after pinAfter.
type firstStartRouter struct {
	mu       sync.Mutex
	since    time.Time
	pinAfter time.Duration
}

func (r *firstStartRouter) WriteStream(*store.Batch, []int64, store.StreamPos, int64) error {
	panic("the member waiting for a first start wrote a position")
}

func (r *firstStartRouter) StreamResume(_, _ string, p int32) (int64, bool, []int32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p == 0 || time.Since(r.since) >= r.pinAfter {
		return 20, true, []int32{0, 1}, nil
	}
	return 0, false, []int32{0}, nil
}

// StreamStart answers no record: the first start is a member's of a
// version that kept none.
func (r *firstStartRouter) StreamStart(string, string, map[int32]int64) (map[int32]int64, bool, error) {
	return nil, false, nil
}

// TestResumeWaitsForAnotherMembersFirstStart: two members of a cluster
// start consuming a topic (start: latest) together, the one doing the
// first start of a version that records none (a rolling upgrade). It
// lists the end offsets and pins every partition, one group at a time;
// the other, given partition 1 while partition 0 is pinned and 1 not yet,
// finds no record: it waits for the first start to pin the partition, and
// resumes where it was pinned, without listing offsets or writing a
// position of its own (taken for a partition added to the topic since, it
// would be read from its log start, the 20 records produced before the
// cluster started counted).
func TestResumeWaitsForAnotherMembersFirstStart(t *testing.T) {
	r := &firstStartRouter{since: time.Now(), pinAfter: 300 * time.Millisecond}
	c := &Consumer{router: r, src: &features.Source{Name: "transactions"}, k: &features.Kafka{Topic: "t", Start: "latest"},
		key: "t", logger: slog.New(slog.DiscardHandler)}
	next, err := c.resumeOnce(context.Background(), 1)
	if err != nil || next != 20 {
		t.Fatalf("partition 1, pinned at 20 by another member's first start 300 ms in: resumes at %d (%v), want 20", next, err)
	}
}

// recordRouter is a cluster's stream state and first-start record as
// cluster.Cluster keeps them: a pin (an empty range) sets an unheld
// partition's offset, and the first record of the topic wins. rival, when
// set, is recorded by another member between this member's read of the
// record and its write.
type recordRouter struct {
	mu      sync.Mutex
	held    map[int32]int64
	start   map[int32]int64 // the first start's record (nil: none)
	rival   map[int32]int64
	resumes int // StreamResume calls
	// pinnedUnrecorded: a partition was pinned while the topic had no record.
	pinnedUnrecorded bool
}

func (r *recordRouter) WriteStream(b *store.Batch, _ []int64, pos store.StreamPos, _ int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b.Len() != 0 || pos.First != pos.Next {
		return fmt.Errorf("a resume wrote events or a range [%d, %d), not a pin", pos.First, pos.Next)
	}
	r.pinnedUnrecorded = r.pinnedUnrecorded || r.start == nil
	if _, ok := r.held[pos.Partition]; !ok {
		r.held[pos.Partition] = pos.First
	}
	return nil
}

func (r *recordRouter) StreamResume(_, _ string, p int32) (int64, bool, []int32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.resumes++
	next, ok := r.held[p]
	return next, ok, slices.Collect(maps.Keys(r.held)), nil
}

func (r *recordRouter) StreamStart(_, _ string, ends map[int32]int64) (map[int32]int64, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.start == nil && len(ends) > 0 {
		r.start = ends
		if r.rival != nil {
			r.start = r.rival
		}
	}
	return maps.Clone(r.start), r.start != nil, nil
}

// historyTopic creates a topic of two partitions holding 20 records each
// (offsets 0..19), produced before the cluster consumes it, and returns a
// cluster member's consumer of it (start: latest), not started, resuming
// through r.
func historyTopic(t *testing.T, name string, r Router) *Consumer {
	t.Helper()
	b := kafkatest.Shared(t)
	b.CreateTopic(t, name, 2)
	var recs []*kgo.Record
	for p := range int32(2) {
		for i := range 20 {
			recs = append(recs, &kgo.Record{Topic: name, Partition: p, Value: fmt.Appendf(nil, `{"user_id":"u%d","amt":1}`, i)})
		}
	}
	pr := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := pr.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	repo, err := features.Load(fstest.MapFS{"repo.yaml": {Data: fmt.Appendf(nil, `sources:
  - name: tx
    schema: {user_id: string, amt: float}
    kafka: {brokers: [%s], topic: %s, start: latest}
entities:
  - {name: user, join_key: user_id}
feature_views:
  - name: u
    source: tx
    entity: user
    aggregations:
      - {column: amt, function: count, window: 1h}
`, b.Addr, name)}})
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
	c := &Consumer{src: src, k: src.Kafka, router: r, node: n, dec: dec, key: name, logger: slog.New(slog.DiscardHandler)}
	if c.base, err = c.clientOpts(); err != nil {
		t.Fatal(err)
	}
	if c.admin, err = kgo.NewClient(c.base...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.admin.Close)
	return c
}

// TestResumeAfterAFirstStartDiedMidway: the member doing the cluster's
// first start of a topic (start: latest) recorded the topic's ends (20
// and 20), pinned partition 0 and died before pinning partition 1. The
// member given partition 1 then took it for a partition added to the
// topic since the first start and read it from its log start: the 20
// records produced before the cluster started consuming were counted. It
// now starts at the recorded end, as when the first start died before
// pinning any partition.
func TestResumeAfterAFirstStartDiedMidway(t *testing.T) {
	c := historyTopic(t, "first-start-died", nil)
	for pinned, held := range map[string]map[int32]int64{"partition 0": {0: 20}, "none": {}} {
		r := &recordRouter{held: held, start: map[int32]int64{0: 20, 1: 20}}
		c.router = r
		next, err := c.resumeOnce(context.Background(), 1)
		if err != nil || next != 20 {
			t.Fatalf("partition 1, listed at 20 by a first start that died having pinned %s: resumes at %d (%v), want 20 (the records before are history)", pinned, next, err)
		}
		if at := r.held[1]; at != 20 {
			t.Errorf("partition 1 pinned at %d, want 20", at)
		}
	}
}

// TestResumeFirstStartUsesTheRecordedEnds: two members start the topic at
// once, both finding no record; the other one records its ends (5 and 5)
// between this one's read and its write. This one uses the recorded ends,
// not its own listing (20 and 20), and pins every partition only once the
// record exists.
func TestResumeFirstStartUsesTheRecordedEnds(t *testing.T) {
	r := &recordRouter{held: map[int32]int64{}, rival: map[int32]int64{0: 5, 1: 5}}
	c := historyTopic(t, "first-start-race", r)
	next, err := c.resumeOnce(context.Background(), 0)
	if err != nil || next != 5 {
		t.Fatalf("partition 0, recorded at 5 by another member's first start: resumes at %d (%v), want 5", next, err)
	}
	if !maps.Equal(r.held, map[int32]int64{0: 5, 1: 5}) {
		t.Errorf("pinned %v, want both partitions at their recorded 5", r.held)
	}
	if r.pinnedUnrecorded {
		t.Error("a partition was pinned before the first start's record was written")
	}
}

// TestResumeAddedPartitionAtItsLogStart: a partition the first start's
// record does not list was added to the topic after it: it starts at its
// log start, at once (it used to poll for 5 s for a first start pinning
// it).
func TestResumeAddedPartitionAtItsLogStart(t *testing.T) {
	r := &recordRouter{held: map[int32]int64{0: 20}, start: map[int32]int64{0: 20}}
	c := historyTopic(t, "first-start-added", r)
	next, err := c.resumeOnce(context.Background(), 1)
	if err != nil || next != 0 {
		t.Fatalf("partition 1, added after the first start: resumes at %d (%v), want its log start 0", next, err)
	}
	if r.resumes != 1 {
		t.Errorf("partition 1's offset read %d times, want once (no waiting for a first start that the record says is over)", r.resumes)
	}
}
