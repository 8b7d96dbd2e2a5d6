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

// recreatedEarly is the fixture of the tests of a topic deleted and created
// again, with records, once the consumer keys the topic (its sink or router
// asks for the offsets under topic+"#id": onKey) and before its client
// first reads the topic's metadata. The lag loop, which also notices a new
// id (at once, then each second), is held meanwhile: its warning blocks in
// the consumer's log handler (options) until the client has polled the new
// topic's records, plus a second (at most 30 s, for a client that never
// polls), so that the fetch guard (Consumer.foreignFetch) is what the tests
// exercise. The consumer's log is printed if the test fails.
type recreatedEarly struct {
	t       *testing.T
	b       *kafkatest.Broker
	topic   string
	records int // the new topic's
	once    sync.Once
	lagLoop *heldWarning
	polled  sync.Once
	logs    syncBuffer
}

func newRecreatedEarly(t *testing.T, b *kafkatest.Broker, topic string, records int) *recreatedEarly {
	f := &recreatedEarly{t: t, b: b, topic: topic, records: records,
		lagLoop: &heldWarning{msg: "records of the old topic not yet read", release: make(chan struct{})}}
	t.Cleanup(f.lagLoop.free)
	time.AfterFunc(30*time.Second, f.lagLoop.free) // a client that never polls
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", f.logs.String())
		}
	})
	return f
}

// onKey recreates the topic the first time the consumer asks for the
// offsets of key topic+"#id" (the consumer listed the topic's id and now
// reads its markers).
func (f *recreatedEarly) onKey(key string) {
	if key != f.topic+"#id" {
		return
	}
	f.once.Do(func() {
		if err := recreateWith(f.b, f.topic, f.records); err != nil {
			f.t.Errorf("recreate %s: %v", f.topic, err)
		}
	})
}

// options are the consumer's: its log through the handler that holds the
// lag loop, and the hook that frees it a second after the first poll.
func (f *recreatedEarly) options() kafkasource.Options {
	hook := fetchHook(func() { f.polled.Do(func() { time.AfterFunc(time.Second, f.lagLoop.free) }) })
	return kafkasource.Options{
		Logger:     slog.New(&heldHandler{Handler: slog.NewTextHandler(&f.logs, nil), held: f.lagLoop}),
		ClientOpts: []kgo.Opt{kgo.WithHooks(hook)},
	}
}

// check waits (60 s at most) until counts (events per key) counts the new
// topic's records under a key name@id, then checks, a second later, that
// none was committed under the old id's key (the topic's name) and that
// each was counted once. state, if set, adds to the first failure's
// message.
func (f *recreatedEarly) check(counts func() map[string]int, state func() string) {
	t := f.t
	t.Helper()
	newKey := ""
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		for k, e := range counts() {
			if strings.HasPrefix(k, f.topic+"@") && e >= f.records {
				newKey = k
			}
		}
		if newKey != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the recreated topic's %d records are not counted under a key name@id within 60 s (events per key: %v)", f.records, counts())
		}
	}
	time.Sleep(time.Second) // a late write under a wrong key
	got := counts()
	if n := got[f.topic]; n != 0 {
		more := ""
		if state != nil {
			more = ", " + state()
		}
		t.Errorf("%d records of the recreated topic were committed under the old topic id's key %q (a fetch of the new topic id kept, not dropped); events per key: %v%s", n, f.topic, got, more)
	}
	if n := got[newKey]; n != f.records {
		t.Errorf("%d records counted under the new topic id's key %s, want %d (each once)", n, newKey, f.records)
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

// StreamStart records nothing: its sources start at earliest, which reads no record.
func (r *keyedRouter) StreamStart(string, string, map[int32]int64) (map[int32]int64, bool, error) {
	return nil, false, nil
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
