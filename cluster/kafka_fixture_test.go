package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/kafkasource"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/systemtest/kafkatest"
)

// kafkaCluster is a cluster of two nodes (two groups of two replicas)
// whose source transactions consumes topic from its end (kafkaGrowRepo),
// with a member of the source's consumer group on each node while
// started, and what the test produced to the topic: per user, the count
// and sum of the records the cluster must count.
type kafkaCluster struct {
	t      *testing.T
	b      *kafkatest.Broker
	topic  string
	cs     []*Cluster
	fronts []*node.Node
	opts   func(node int) kafkasource.Options
	// consumers are the running members (start, stop).
	consumers []*kafkasource.Consumer

	base  int64 // the event time of the first record produced
	seq   int   // records produced so far
	count map[string]int
	sum   map[string]float64
}

// newKafkaCluster opens the cluster, its members not started (start);
// each member gets opts(node). The members stop, and the cluster closes,
// when the test ends.
func newKafkaCluster(t *testing.T, b *kafkatest.Broker, topic string, opts func(node int) kafkasource.Options) *kafkaCluster {
	t.Helper()
	k := &kafkaCluster{t: t, b: b, topic: topic, opts: opts,
		base: time.Now().Add(-30 * time.Minute).UnixMilli(), count: map[string]int{}, sum: map[string]float64{}}
	k.cs, k.fronts = openTestCluster(t, kafkaGrowRepo(t, b.Addr, topic), 2, 2, 2)
	t.Cleanup(k.stop) // before the cluster closes
	return k
}

// start starts a member on every node.
func (k *kafkaCluster) start() {
	k.t.Helper()
	for i, c := range k.cs {
		got, err := kafkasource.StartAllRouted(k.fronts[i], c, k.opts(i))
		if err != nil {
			k.t.Fatal(err)
		}
		k.consumers = append(k.consumers, got...)
	}
}

// stop stops the members.
func (k *kafkaCluster) stop() {
	for _, c := range k.consumers {
		c.Close()
	}
	k.consumers = nil
}

// produce produces n records to partition p, each of one of 13 users,
// counted in count and sum when counted (a record the cluster must
// count). Each call uses a new client: one that knew the topic refuses a
// recreated topic's id, or does not know partitions added since.
func (k *kafkaCluster) produce(p int32, n int, counted bool) {
	k.t.Helper()
	var recs []*kgo.Record
	for range n {
		u := fmt.Sprintf("u%d", k.seq%13)
		amt := float64(k.seq % 50)
		recs = append(recs, &kgo.Record{Topic: k.topic, Partition: p, Value: fmt.Appendf(nil, `{"user_id":%q,"amt":%g,"timestamp":%d}`, u, amt, k.base+int64(k.seq))})
		if counted {
			k.count[u]++
			k.sum[u] += amt
		}
		k.seq++
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pr := k.b.Client(k.t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := pr.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		k.t.Fatalf("produce to partition %d: %v", p, err)
	}
}

// waitHeld waits up to within until the cluster holds an offset of every
// partition in want at or past it.
func (k *kafkaCluster) waitHeld(want map[int32]int64, within time.Duration) {
	k.t.Helper()
	deadline := time.Now().Add(within)
	for {
		done := true
		var got []string
		for p, end := range want {
			next, ok, _, err := k.cs[0].StreamResume("transactions", k.topic, p)
			got = append(got, fmt.Sprintf("%d: %d %v %v", p, next, ok, err))
			done = done && err == nil && ok && next >= end
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			k.t.Fatalf("the cluster does not hold the partitions' ends %v within %s: %v", want, within, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkCounted checks, on every node, each user's count and sum against
// the records produced that the cluster must count; want says which.
func (k *kafkaCluster) checkCounted(want string) {
	k.t.Helper()
	for i, nd := range k.fronts {
		for u, n := range k.count {
			out, aerr := nd.GetFeatures(nil, fmt.Appendf(nil, `{"params":{"feature_service_name":"su","join_key_map":{"user_id":%q}}}`, u))
			if aerr != nil {
				k.t.Fatal(aerr)
			}
			feats, err := client.DecodeFeatures(out)
			if err != nil {
				k.t.Fatal(err)
			}
			c, _ := feats.Get("u.amt_count_2h")
			s, _ := feats.Get("u.amt_sum_2h")
			if c != float64(n) || s != k.sum[u] {
				k.t.Errorf("node %d: user %s: count %v sum %v, want %d and %v (%s)", i, u, c, s, n, k.sum[u], want)
			}
		}
	}
}
