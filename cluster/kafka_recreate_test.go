package cluster

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/kafkasource"
	"github.com/tally-ml/tally/systemtest/kafkatest"
)

// TestKafkaTopicRecreated: a cluster's members consume a topic (start:
// latest) that is deleted and created again under the same name (a new
// topic id, offsets from 0, below the offsets the cluster's groups hold)
// while they run, then once more while they are stopped. A recreated
// topic is a new log: every record produced to it is counted exactly once
// on every node, read from its first record, the members never hang on
// the old topic id, a restart neither re-reads nor skips it, and a warning
// naming the topic and tally_kafka_topic_recreations_total say what
// happened.
func TestKafkaTopicRecreated(t *testing.T) {
	b := kafkatest.Shared(t)
	topic := "cluster-recreated"
	b.CreateTopic(t, topic, 2)
	var logs logBuffer
	sets := []*metrics.Set{metrics.NewSet(), metrics.NewSet()}
	k := newKafkaCluster(t, b, topic, func(i int) kafkasource.Options {
		return kafkasource.Options{Metrics: sets[i], Logger: slog.New(slog.NewTextHandler(&logs, nil)).With("node", i)}
	})
	// produce produces n records to each partition.
	produce := func(n int, counted bool) {
		t.Helper()
		for p := range int32(2) {
			k.produce(p, n, counted)
		}
	}
	recreate := func() {
		t.Helper()
		b.DeleteTopic(t, topic)
		b.CreateTopic(t, topic, 2)
	}
	// waitCounted waits up to 15 s for every node to count every record
	// produced so far once, and says how far it is when it does not.
	waitCounted := func(what string) bool {
		t.Helper()
		var diff []string
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			diff = diff[:0]
			for i, nd := range k.fronts {
				got, want := 0, 0
				exact := true
				for u, w := range k.count {
					out, aerr := nd.GetFeatures(nil, fmt.Appendf(nil, `{"params":{"feature_service_name":"su","join_key_map":{"user_id":%q}}}`, u))
					if aerr != nil { // a group electing a leader: asked again
						diff = append(diff, fmt.Sprintf("node %d: %v", i, aerr))
						exact = true
						break
					}
					feats, err := client.DecodeFeatures(out)
					if err != nil {
						t.Fatal(err)
					}
					c, _ := feats.Get("u.amt_count_2h")
					s, _ := feats.Get("u.amt_sum_2h")
					n, _ := c.(float64)
					got += int(n)
					want += w
					exact = exact && c == float64(w) && s == k.sum[u]
				}
				if !exact {
					diff = append(diff, fmt.Sprintf("node %d counts %d records, want %d each once", i, got, want))
				}
			}
			if len(diff) == 0 {
				return true
			}
			if time.Now().After(deadline) {
				break
			}
		}
		t.Errorf("%s: %s (topic ends %v)", what, strings.Join(diff, "; "), ends(t, b, topic))
		return false
	}
	produce(10, false) // before the cluster starts: skipped (latest)
	k.start()
	t.Cleanup(func() {
		if t.Failed() {
			l := logs.String()
			if len(l) > 12000 {
				l = l[len(l)-12000:]
			}
			t.Logf("logs (tail):\n%s", l)
		}
	})
	k.waitHeld(map[int32]int64{0: 10, 1: 10}, 20*time.Second) // pinned at their ends
	produce(10, true)
	ok := waitCounted("before the recreation")

	// Recreated while the members consume: 3 records a partition (offsets
	// 0..2, below the 20 the groups hold), then 20 more (past them).
	recreate()
	produce(3, true)
	ok = waitCounted("recreated while consuming") && ok
	produce(20, true)
	ok = waitCounted("recreated while consuming, past the old offsets") && ok

	// Members restarted: they neither read the recreated topic again nor
	// skip it.
	k.stop()
	produce(4, true)
	k.start()
	produce(6, true)
	ok = waitCounted("members restarted after the recreation") && ok

	// Recreated while the members are stopped.
	k.stop()
	recreate()
	produce(4, true)
	k.start()
	produce(6, true)
	ok = waitCounted("recreated while the members were stopped") && ok

	recreations := 0
	for _, s := range sets {
		var prom strings.Builder
		s.WritePrometheus(&prom)
		for _, l := range strings.Split(prom.String(), "\n") {
			var n int
			if _, err := fmt.Sscanf(l, `tally_kafka_topic_recreations_total{source="transactions"} %d`, &n); err == nil {
				recreations += n
			}
		}
	}
	if recreations < 2 {
		t.Errorf("the members count %d topic recreations in tally_kafka_topic_recreations_total, want 2 or more (the topic was recreated twice)", recreations)
	}
	if want := "topic " + topic + " was deleted and created again"; !strings.Contains(logs.String(), want) {
		t.Errorf("no log says %q", want)
	}
	if ok && !t.Failed() {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "created again") {
				t.Log(l)
			}
		}
	}
}

// logBuffer is a log destination safe for concurrent writers.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
