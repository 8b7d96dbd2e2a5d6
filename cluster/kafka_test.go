package cluster

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"testing/fstest"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/kafkasource"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/systemtest/kafkatest"
)

const kafkaTestRepo = `sources:
  - name: transactions
    lateness: 2h
    schema: {user_id: string, merchant: string, category: string, amt: float, country: string, lat: float, long: float}
entities:
  - {name: user, join_key: user_id}
  - {name: merchant, join_key: merchant}
feature_views:
  - name: u
    source: transactions
    entity: user
    aggregations:
      - {column: amt, function: count, window: 2h}
      - {column: amt, function: sum, window: 2h}
  - name: m
    source: transactions
    entity: merchant
    aggregations:
      - {column: amt, function: count, window: 2h}
feature_services:
  - {name: su, features: [u]}
  - {name: sm, features: [m]}
`

// streamFixture is a partition's records: offsets 0..n-1, every 7th a
// record the consumer rejected (a hole in the batch), the others events of
// 37 users and 11 merchants (an event's two keys mostly in two groups).
type streamFixture struct {
	n    int64
	base int64
	cl   *Cluster
}

func (f *streamFixture) valid(o int64) bool { return o%7 != 3 }

// batch is the records [first, next) as a consumer fetched them: the valid
// ones as events with their offsets.
func (f *streamFixture) batch(first, next int64) (*store.Batch, []int64, store.StreamPos) {
	sp := f.cl.proto.Sources()[0]
	col := func(name string) int { return sp.ColIndex[name] }
	var b store.Batch
	b.Reset(sp.Index, len(sp.Src.Columns))
	var offs []int64
	for o := first; o < next; o++ {
		if !f.valid(o) {
			continue
		}
		e := b.Grow(f.base + o)
		b.SetStr(e, col("user_id"), fmt.Appendf(nil, "u%d", o%37))
		b.SetStr(e, col("merchant"), fmt.Appendf(nil, "m%d", o%11))
		b.SetNum(e, col("amt"), float64(o%50))
		offs = append(offs, o)
	}
	return &b, offs, store.StreamPos{Source: "transactions", Topic: "t", Partition: 3, First: first, Next: next}
}

// TestWriteStreamExactlyOnce: batches of one partition written through
// three in-process nodes with the faults a consumer group produces: a
// writer that dies after half the groups took its batch, a second writer
// resuming at the lowest group offset with other batch boundaries, the
// first writer going on meanwhile with stale knowledge (two consumers of
// one partition during a rebalance), and a batch retried after it was
// applied. Every group ends at the partition's end, and every user's and
// merchant's count and sum equal the events', each counted once.
func TestWriteStreamExactlyOnce(t *testing.T) {
	cs, fronts := openTestCluster(t, fstest.MapFS{"repo.yaml": {Data: []byte(kafkaTestRepo)}}, 3, 8, 3)
	f := &streamFixture{n: 3000, base: time.Now().Add(-30 * time.Minute).UnixMilli(), cl: cs[0]}
	clock := func() int64 { return time.Now().UnixMilli() }
	write := func(c *Cluster, first, next int64) {
		t.Helper()
		b, offs, pos := f.batch(first, next)
		if err := c.WriteStream(b, offs, pos, clock()); err != nil {
			t.Fatalf("write [%d, %d): %v", first, next, err)
		}
	}
	resume := func(c *Cluster) int64 {
		t.Helper()
		next, ok, _, err := c.StreamResume("transactions", "t", 3)
		if err != nil || !ok {
			t.Fatalf("resume: %d %v %v", next, ok, err)
		}
		return next
	}
	if _, ok, _, err := cs[1].StreamResume("transactions", "t", 3); ok || err != nil {
		t.Fatalf("a partition no group holds resumes somewhere (%v, %v)", ok, err)
	}
	// Writer A (node 0) starts the partition and commits [0, 1000).
	b, offs, pos := f.batch(0, 0)
	if err := cs[0].WriteStream(b, offs, pos, clock()); err != nil {
		t.Fatal(err)
	}
	write(cs[0], 0, 1000)
	// A dies after groups 0-3 took [1000, 1500).
	b, offs, pos = f.batch(1000, 1500)
	parts, poffs, err := cs[0].splitStream(b, offs)
	if err != nil {
		t.Fatal(err)
	}
	known := cs[0].streamKnown(streamID{"transactions", "t", 3}, 8)
	for g := range 4 {
		if err := cs[0].writeStreamGroup(g, known, parts[g], poffs[g], pos, clock()); err != nil {
			t.Fatal(err)
		}
	}
	// Writer B (node 1) is assigned the partition: it resumes at the lowest
	// group offset and fetches with other boundaries.
	if got := resume(cs[1]); got != 1000 {
		t.Fatalf("resume at %d, want 1000 (the lowest group's offset)", got)
	}
	write(cs[1], 1000, 1700)
	// A was not dead after all: it goes on from what it knew (1500), past
	// B; then B, behind A now, goes on from 1700.
	write(cs[0], 1500, 2100)
	write(cs[0], 2100, 2400)
	write(cs[1], 1700, 2400)
	// Writer C (node 2) takes over and retries its batch (a 503 after the
	// groups applied it).
	from := resume(cs[2])
	if from != 2400 {
		t.Fatalf("resume at %d, want 2400", from)
	}
	write(cs[2], from, 2800)
	write(cs[2], from, 2800)
	write(cs[2], 2800, f.n)
	if got := resume(cs[0]); got != f.n {
		t.Fatalf("the partition ends at %d in some group, want %d", got, f.n)
	}
	userCount, userSum, merchCount := map[string]int{}, map[string]float64{}, map[string]int{}
	for o := range f.n {
		if f.valid(o) {
			u, m := fmt.Sprintf("u%d", o%37), fmt.Sprintf("m%d", o%11)
			userCount[u]++
			userSum[u] += float64(o % 50)
			merchCount[m]++
		}
	}
	get := func(nd *node.Node, service, key, value string) *client.Features {
		t.Helper()
		out, aerr := nd.GetFeatures(nil, fmt.Appendf(nil, `{"params":{"feature_service_name":%q,"join_key_map":{%q:%q}}}`, service, key, value))
		if aerr != nil {
			t.Fatal(aerr)
		}
		feats, err := client.DecodeFeatures(out)
		if err != nil {
			t.Fatal(err)
		}
		return feats
	}
	for i, nd := range fronts {
		for u, want := range userCount {
			feats := get(nd, "su", "user_id", u)
			c, _ := feats.Get("u.amt_count_2h")
			s, _ := feats.Get("u.amt_sum_2h")
			if c != float64(want) || s != userSum[u] {
				t.Fatalf("node %d: user %s: count %v sum %v, want %d and %v", i, u, c, s, want, userSum[u])
			}
		}
		for m, want := range merchCount {
			c, _ := get(nd, "sm", "merchant", m).Get("m.amt_count_2h")
			if c != float64(want) {
				t.Fatalf("node %d: merchant %s: count %v, want %d", i, m, c, want)
			}
		}
	}
}

func TestMain(m *testing.M) { kafkatest.Main(m) }

// kafkaGrowRepo is a repo whose source consumes topic from its end
// (start: latest), counting and summing per user.
func kafkaGrowRepo(t *testing.T, addr, topic string) fstest.MapFS {
	t.Helper()
	return fstest.MapFS{"repo.yaml": {Data: fmt.Appendf(nil, `sources:
  - name: transactions
    lateness: 2h
    schema: {user_id: string, amt: float}
    kafka: {brokers: [%s], topic: %s, group: g-%s, start: latest}
entities:
  - {name: user, join_key: user_id}
feature_views:
  - name: u
    source: transactions
    entity: user
    aggregations:
      - {column: amt, function: count, window: 2h}
      - {column: amt, function: sum, window: 2h}
feature_services:
  - {name: su, features: [u]}
`, addr, topic, topic)}}
}

// TestKafkaPartitionAddedLatest: a cluster consuming a topic with start:
// latest, a partition added to the topic while the cluster runs (records
// produced to it before the group's members notice it, at their next
// metadata refresh) and one added while the cluster's consumers are
// stopped: each new partition is read from its first record, and every
// record produced after the cluster started is counted once (records
// produced before it, the start position skips).
func TestKafkaPartitionAddedLatest(t *testing.T) {
	b := kafkatest.Shared(t)
	topic := "cluster-grow"
	b.CreateTopic(t, topic, 2)
	grow := func(total int) {
		t.Helper()
		resp, err := kadm.NewClient(b.Client(t)).CreatePartitions(context.Background(), total-len(ends(t, b, topic)), topic)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			t.Fatalf("add partitions: %v", err)
		}
		for deadline := time.Now().Add(30 * time.Second); len(ends(t, b, topic)) < total; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("topic %s has not %d partitions within 30 s", topic, total)
			}
		}
	}
	// Members notice a new partition at their metadata refresh: every 10 s
	// here (5 min by default), so the test is bounded and records reach
	// the new partition first.
	k := newKafkaCluster(t, b, topic, func(int) kafkasource.Options {
		return kafkasource.Options{ClientOpts: []kgo.Opt{kgo.MetadataMaxAge(10 * time.Second)}}
	})
	// History before the cluster starts: skipped (latest).
	k.produce(0, 20, false)
	k.produce(1, 20, false)
	k.start()
	k.waitHeld(map[int32]int64{0: 20, 1: 20}, 90*time.Second) // pinned at their ends
	k.produce(0, 30, true)
	k.produce(1, 30, true)
	k.waitHeld(ends(t, b, topic), 90*time.Second)
	// A partition added while the cluster consumes, records in it before
	// the members' next metadata refresh.
	grow(3)
	k.produce(2, 40, true)
	if _, ok, _, _ := k.cs[0].StreamResume("transactions", topic, 2); ok {
		t.Log("the members noticed partition 2 before its records were produced (the restart below still covers the case)")
	}
	k.produce(0, 10, true)
	k.waitHeld(ends(t, b, topic), 90*time.Second)
	// A partition added while the cluster's consumers are stopped.
	k.stop()
	grow(4)
	k.produce(3, 25, true)
	k.produce(1, 5, true)
	k.start()
	k.produce(3, 5, true)
	k.waitHeld(ends(t, b, topic), 90*time.Second)
	k.checkCounted("every record produced after the cluster started, once")
}

// TestKafkaFirstStartDiedMidway: the member doing the cluster's first
// start of a topic (start: latest) recorded the topic's ends, pinned
// partition 0 and died before pinning partition 1. The members started
// next start partition 1 at its recorded end, not at its log start: the
// records produced before the first start are not counted, those produced
// after it (before the members started, and since) are, once.
func TestKafkaFirstStartDiedMidway(t *testing.T) {
	b := kafkatest.Shared(t)
	topic := "cluster-first-died"
	b.CreateTopic(t, topic, 2)
	k := newKafkaCluster(t, b, topic, func(int) kafkasource.Options { return kafkasource.Options{} })
	k.produce(0, 20, false)
	k.produce(1, 20, false)
	// The dead member's first start, its ends recorded once: a later
	// listing, through either node (the metadata leader, and one that
	// forwards to it), answers the first.
	listed := ends(t, b, topic)
	for i, ends := range []map[int32]int64{listed, {0: 99, 1: 99}} {
		got, ok, err := k.cs[i].StreamStart("transactions", topic, ends)
		if err != nil || !ok || !maps.Equal(got, listed) {
			t.Fatalf("node %d records %v: the record reads %v (%v, %v), want the first %v", i, ends, got, ok, err, listed)
		}
	}
	sp := k.cs[0].proto.Sources()[0]
	var empty store.Batch
	empty.Reset(sp.Index, len(sp.Src.Columns))
	if err := k.cs[0].WriteStream(&empty, nil, store.StreamPos{Source: "transactions", Topic: topic, Partition: 0, First: listed[0], Next: listed[0]}, k.fronts[0].StreamClock()); err != nil {
		t.Fatal(err)
	}
	k.produce(0, 10, true)
	k.produce(1, 10, true)
	k.start()
	k.produce(0, 30, true)
	k.produce(1, 30, true)
	k.waitHeld(ends(t, b, topic), 60*time.Second)
	k.checkCounted("every record produced after the first start, once; none before it")
}

// ends is topic's end offset per partition.
func ends(t *testing.T, b *kafkatest.Broker, topic string) map[int32]int64 {
	t.Helper()
	listed, err := kadm.NewClient(b.Client(t)).ListEndOffsets(context.Background(), topic)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}
