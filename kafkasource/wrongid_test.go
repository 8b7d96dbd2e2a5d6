package kafkasource_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tally-ml/tally/kafkasource"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/systemtest/kafkatest"
)

// TestRoutedRecreatedBeforeClientStarts: a cluster member keys the topic
// (incarnation lists its id) and the topic is deleted and created again
// before the member's group client first reads the topic's metadata, so
// the client consumes the new topic while the member holds the old id.
// None of the new topic's records may be committed under the old id's key
// (there they would be skipped or counted twice): the member drops the
// fetch, joins again under the new id's key, and counts each record once.
//
// The lag loop, which also notices a new id (at once, then each second),
// is held for that time: its warning blocks in the test's log handler
// until the client has polled the new topic's records, so that the fetch
// guard (Consumer.foreignFetch) is what the test exercises.
func TestRoutedRecreatedBeforeClientStarts(t *testing.T) {
	b := kafkatest.Shared(t)
	topic := "routed-recreated-early"
	b.CreateTopic(t, topic, 1)
	const records = 30
	r := &keyedRouter{next: map[string]map[int32]int64{}, events: map[string]int{}}
	var once sync.Once
	r.onResume = func(key string) {
		if key != topic+"#id" {
			return
		}
		// incarnation listed the topic's id and now reads its markers:
		// the topic is recreated, with records, before the client starts.
		once.Do(func() {
			if err := recreateWith(b, topic, records); err != nil {
				t.Errorf("recreate %s: %v", topic, err)
			}
		})
	}
	lagLoop := &heldWarning{msg: "records of the old topic not yet read", release: make(chan struct{})}
	t.Cleanup(lagLoop.free)
	var polled sync.Once
	hook := fetchHook(func() { polled.Do(func() { time.AfterFunc(time.Second, lagLoop.free) }) })
	time.AfterFunc(30*time.Second, lagLoop.free) // a client that never polls

	var logs syncBuffer
	n, err := node.New(testRepo(t, b.Addr, topic, ""), node.DefaultConfig(), node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kafkasource.StartAllRouted(n, r, kafkasource.Options{
		Logger:     slog.New(&heldHandler{Handler: slog.NewTextHandler(&logs, nil), held: lagLoop}),
		ClientOpts: []kgo.Opt{kgo.WithHooks(hook)},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cs[0].Close()

	newKey := ""
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		for k, e := range r.counts() {
			if strings.HasPrefix(k, topic+"@") && e >= records {
				newKey = k
			}
		}
		if newKey != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the recreated topic's %d records are not counted under a key name@id within 60 s (events per key: %v); logs:\n%s", records, r.counts(), logs.String())
		}
	}
	time.Sleep(time.Second) // a late write under a wrong key
	counts := r.counts()
	if got := counts[topic]; got != 0 {
		t.Errorf("%d records of the recreated topic were committed under the old topic id's key %q (a fetch of the new topic id kept, not dropped); events per key: %v", got, topic, counts)
	}
	if got := counts[newKey]; got != records {
		t.Errorf("%d records counted under the new topic id's key %s, want %d (each once)", got, newKey, records)
	}
	if t.Failed() {
		t.Logf("logs:\n%s", logs.String())
	}
}

// TestRecreatedBeforeClientStarts is the single-node version of
// TestRoutedRecreatedBeforeClientStarts: a node that consumed 20 records
// of the topic restarts, keys the topic (incarnation lists its id) and the
// topic is deleted and created again, with 30 records, before the node's
// new client first reads the topic's metadata. The client then reads the
// new topic from the old topic's offset (20): none of its records may be
// committed under the old id's key (there records 0..19 would be skipped
// as counted, and 20..29 counted twice once the lag loop keys the new
// id): the node drops the fetch, keys the new id and counts each record
// once. The lag loop is held as in the routed test.
func TestRecreatedBeforeClientStarts(t *testing.T) {
	b := kafkatest.Shared(t)
	topic := "recreated-early"
	b.CreateTopic(t, topic, 1)
	const records = 30
	old := genEvents(20, 29)
	produce(t, b.Client(t), topic, old)
	repo := testRepo(t, b.Addr, topic, "")
	dir := t.TempDir()
	in := openNode(t, dir, repo)
	cs, err := kafkasource.StartAll(in.Node, kafkasource.Options{})
	if err != nil {
		t.Fatal(err)
	}
	waitCaught(t, in.Node, topic, map[int32]int64{0: int64(len(old))})
	cs[0].Close()
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}

	in = openNode(t, dir, repo)
	defer in.Close()
	sink := &keyedSink{Node: in.Node, events: map[string]int{}}
	var once sync.Once
	sink.onOffset = func(key string) {
		if key != topic+"#id" {
			return
		}
		once.Do(func() {
			if err := recreateWith(b, topic, records); err != nil {
				t.Errorf("recreate %s: %v", topic, err)
			}
		})
	}
	lagLoop := &heldWarning{msg: "records of the old topic not yet read", release: make(chan struct{})}
	t.Cleanup(lagLoop.free)
	var polled sync.Once
	hook := fetchHook(func() { polled.Do(func() { time.AfterFunc(time.Second, lagLoop.free) }) })
	time.AfterFunc(30*time.Second, lagLoop.free) // a client that never polls

	var logs syncBuffer
	c, err := kafkasource.Start(in.Node, sink, repo.Sources[0], kafkasource.Options{
		Logger:     slog.New(&heldHandler{Handler: slog.NewTextHandler(&logs, nil), held: lagLoop}),
		ClientOpts: []kgo.Opt{kgo.WithHooks(hook)},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	newKey := ""
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		for k, e := range sink.counts() {
			if strings.HasPrefix(k, topic+"@") && e >= records {
				newKey = k
			}
		}
		if newKey != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the recreated topic's %d records are not counted under a key name@id within 60 s (events per key: %v); logs:\n%s", records, sink.counts(), logs.String())
		}
	}
	time.Sleep(time.Second) // a late write under a wrong key
	counts := sink.counts()
	if got := counts[topic]; got != 0 {
		t.Errorf("%d records of the recreated topic were committed under the old topic id's key %q (a fetch of the new topic id kept, not dropped); events per key: %v, state offsets %v",
			got, topic, counts, in.Node.StreamOffsets("tx", topic))
	}
	if got := counts[newKey]; got != records {
		t.Errorf("%d records counted under the new topic id's key %s, want %d (each once)", got, newKey, records)
	}
	if total, exact := counted(in.Node, append(old, genEvents(records, 23)...)); !exact {
		t.Errorf("the node counts %d events over both topics, want %d each once", total, len(old)+records)
	}
	if t.Failed() {
		t.Logf("logs:\n%s", logs.String())
	}
}

// keyedSink is a node as a consumer's sink, counting the events it
// applies per key (StreamPos.Topic). onOffset, if set, runs at each
// StreamOffset, before it answers.
type keyedSink struct {
	*node.Node
	mu       sync.Mutex
	events   map[string]int
	onOffset func(key string)
}

func (s *keyedSink) IngestStream(b *store.Batch, pos store.StreamPos) (bool, error) {
	applied, err := s.Node.IngestStream(b, pos)
	if applied {
		s.mu.Lock()
		s.events[pos.Topic] += b.Len()
		s.mu.Unlock()
	}
	return applied, err
}

func (s *keyedSink) StreamOffset(source, key string, p int32) (int64, bool) {
	if s.onOffset != nil {
		s.onOffset(key)
	}
	return s.Node.StreamOffset(source, key, p)
}

// counts is the events applied per key.
func (s *keyedSink) counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, e := range s.events {
		out[k] = e
	}
	return out
}

// recreateWith deletes topic, creates it again with one partition and
// produces n records to the new topic. (Not kafkatest's helpers: it runs
// on the consumer's goroutine, where a test may not stop.)
func recreateWith(b *kafkatest.Broker, topic string, n int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := adm.DeleteTopic(ctx, topic); err != nil {
		return err
	}
	for {
		if md, err := adm.Metadata(ctx, topic); err == nil && md.Topics[topic].Err != nil {
			break
		}
		if ctx.Err() != nil {
			return fmt.Errorf("still listed after its deletion: %w", ctx.Err())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		return err
	}
	pr, err := kgo.NewClient(kgo.SeedBrokers(b.Addr))
	if err != nil {
		return err
	}
	defer pr.Close()
	var recs []*kgo.Record
	for _, e := range genEvents(n, 23) {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(e.User), Value: e.value()})
	}
	return pr.ProduceSync(ctx, recs...).FirstErr()
}

// keyedRouter is a cluster's write path held in memory, by the topic's
// key in the state (StreamPos.Topic): one group holding each key's
// partitions' next offsets, counting the events it applies per key.
// onResume, if set, runs at each StreamResume, before it answers.
type keyedRouter struct {
	mu       sync.Mutex
	next     map[string]map[int32]int64
	events   map[string]int
	onResume func(key string)
}

func (r *keyedRouter) WriteStream(b *store.Batch, offsets []int64, pos store.StreamPos, _ int64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	parts := r.next[pos.Topic]
	if parts == nil {
		parts = map[int32]int64{}
		r.next[pos.Topic] = parts
	}
	next, ok := parts[pos.Partition]
	for _, o := range offsets {
		if !ok || o >= next {
			r.events[pos.Topic]++
		}
	}
	parts[pos.Partition] = max(next, pos.Next)
	return nil
}

func (r *keyedRouter) StreamResume(_, key string, p int32) (int64, bool, []int32, error) {
	if r.onResume != nil {
		r.onResume(key)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var held []int32
	for q := range r.next[key] {
		held = append(held, q)
	}
	next, ok := r.next[key][p]
	return next, ok, held, nil
}

// counts is the events applied per key.
func (r *keyedRouter) counts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]int{}
	for k, e := range r.events {
		out[k] = e
	}
	return out
}

// heldWarning holds the goroutine logging a message containing msg until
// free is called (once or more).
type heldWarning struct {
	msg     string
	once    sync.Once
	release chan struct{}
}

func (h *heldWarning) free() { h.once.Do(func() { close(h.release) }) }

// heldHandler is a log handler that holds the records of held (see
// heldWarning) before handing them on.
type heldHandler struct {
	slog.Handler
	held *heldWarning
}

func (h *heldHandler) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.held.msg) {
		<-h.held.release
	}
	return h.Handler.Handle(ctx, r)
}

func (h *heldHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &heldHandler{Handler: h.Handler.WithAttrs(as), held: h.held}
}

func (h *heldHandler) WithGroup(name string) slog.Handler {
	return &heldHandler{Handler: h.Handler.WithGroup(name), held: h.held}
}

// fetchHook calls itself each time a client hands a fetched record to its
// poller.
type fetchHook func()

func (f fetchHook) OnFetchRecordUnbuffered(_ *kgo.Record, polled bool) {
	if polled {
		f()
	}
}
