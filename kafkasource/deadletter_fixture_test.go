package kafkasource_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/tally-ml/tally/kafkasource"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/systemtest/kafkatest"
)

// dlqTopics names a dead-letter test's topic after name (routed- first for
// a cluster member, so that both variants share the broker) and its
// dead-letter topic, and creates the topic with one partition; the test
// creates the dead-letter topic as its scenario needs.
func dlqTopics(t *testing.T, b *kafkatest.Broker, name string, routed bool) (topic, dlq string) {
	t.Helper()
	topic = name
	if routed {
		topic = "routed-" + name
	}
	b.CreateTopic(t, topic, 1)
	return topic, topic + "_rejected"
}

// createSmallTopic creates a one-partition topic whose records may be at
// most maxBytes long (max.message.bytes).
func createSmallTopic(t *testing.T, b *kafkatest.Broker, topic, maxBytes string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(b.Client(t)).CreateTopics(ctx, 1, 1, map[string]*string{"max.message.bytes": kadm.StringPtr(maxBytes)}, topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}

// dlqNode is a node consuming topic (testRepo's source tx) with the
// dead-letter topic dlq: on its own, its state on disk, or, routed, as a
// cluster member committing through a memRouter. Both are closed when the
// test ends.
type dlqNode struct {
	n    *node.Node
	c    *kafkasource.Consumer
	logs *syncBuffer // the consumer's log
	// offset is the partition's committed next offset.
	offset func() int64
	// counted checks that every record of good was counted, once.
	counted func(good []event)
}

func startDLQNode(t *testing.T, b *kafkatest.Broker, topic, dlq string, routed bool) *dlqNode {
	t.Helper()
	repo := testRepo(t, b.Addr, topic, "      dead_letter_topic: "+dlq)
	d := &dlqNode{logs: &syncBuffer{}}
	opts := kafkasource.Options{Logger: slog.New(slog.NewTextHandler(d.logs, nil))}
	var (
		cs  []*kafkasource.Consumer
		err error
	)
	if routed {
		if d.n, err = node.New(repo, node.DefaultConfig(), node.Options{}); err != nil {
			t.Fatal(err)
		}
		r := &memRouter{next: map[int32]int64{}}
		cs, err = kafkasource.StartAllRouted(d.n, r, opts)
		d.offset = func() int64 { next, _, _, _ := r.StreamResume("", "", 0); return next }
		d.counted = func(good []event) {
			t.Helper()
			if got := r.counted(); got != len(good) {
				t.Errorf("the router got %d good records, want %d", got, len(good))
			}
		}
	} else {
		in := openNode(t, t.TempDir(), repo)
		t.Cleanup(func() { in.Close() })
		d.n = in.Node
		cs, err = kafkasource.StartAll(d.n, opts)
		d.offset = func() int64 { return d.n.StreamOffsets("tx", topic)[0] }
		d.counted = func(good []event) { t.Helper(); checkReference(t, d.n, good) }
	}
	if err != nil {
		t.Fatal(err)
	}
	d.c = cs[0]
	t.Cleanup(d.c.Close) // before the node's
	return d
}

// memRouter is a cluster's write path held in memory: one group holding
// each partition's next offset, counting the events it applies.
type memRouter struct {
	mu     sync.Mutex
	next   map[int32]int64
	events int
}

func (r *memRouter) WriteStream(b *store.Batch, offsets []int64, pos store.StreamPos, _ int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	next, ok := r.next[pos.Partition]
	for _, o := range offsets {
		if !ok || o >= next {
			r.events++
		}
	}
	r.next[pos.Partition] = max(next, pos.Next)
	return nil
}

func (r *memRouter) StreamResume(_, _ string, p int32) (int64, bool, []int32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var held []int32
	for q := range r.next {
		held = append(held, q)
	}
	next, ok := r.next[p]
	return next, ok, held, nil
}

// StreamStart records nothing: its sources start at earliest, which reads no record.
func (r *memRouter) StreamStart(string, string, map[int32]int64) (map[int32]int64, bool, error) {
	return nil, false, nil
}

func (r *memRouter) counted() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.events
}
