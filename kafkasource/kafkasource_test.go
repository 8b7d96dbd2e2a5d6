package kafkasource_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/kafkasource"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/systemtest/kafkatest"
	"github.com/tally-ml/tally/windows"
	"github.com/tally-ml/tally/windows/windowstest"
)

func TestMain(m *testing.M) { kafkatest.Main(m) }

// testRepo is a repo whose source tx streams from topic.
func testRepo(t testing.TB, addr, topic, extra string) *features.Repo {
	t.Helper()
	y := fmt.Sprintf(`sources:
  - name: tx
    schema: {user_id: string, merchant: string, amt: float}
    kafka:
      brokers: [%s]
      topic: %s
      group: g-%s
      fields: {amt: payment.amount}
%s
entities:
  - {name: user, join_key: user_id}
feature_views:
  - name: user_amt
    source: tx
    entity: user
    aggregations:
      - {column: amt, function: count, window: 1h}
      - {column: amt, function: sum, window: 1h}
      - {column: amt, function: max, window: 1h}
      - {column: merchant, function: distinct_count, window: 1h}
`, addr, topic, topic, extra)
	repo, err := features.Load(fstest.MapFS{"repo.yaml": {Data: []byte(y)}})
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// event is one produced transaction.
type event struct {
	User, Merchant string
	Amt            float64
	TS             int64
}

func (e event) value() []byte {
	b, _ := json.Marshal(map[string]any{"user_id": e.User, "merchant": e.Merchant, "payment": map[string]any{"amount": e.Amt}, "timestamp": e.TS, "extra": "ignored"})
	return b
}

// genEvents makes n events of users with a skew (a few users hold most
// events), in time order per user, over the last minutes.
func genEvents(n int, seed uint64) []event {
	rng := rand.New(rand.NewPCG(seed, 1))
	base := time.Now().Add(-20 * time.Minute).UnixMilli()
	out := make([]event, n)
	for i := range out {
		u := int(rng.ExpFloat64() * 40)
		out[i] = event{User: fmt.Sprintf("u%d", u), Merchant: fmt.Sprintf("m%d", rng.IntN(50)), Amt: float64(rng.IntN(1000)), TS: base + int64(i)*int64(15*time.Minute/time.Millisecond)/int64(n)}
	}
	return out
}

func produce(t testing.TB, cl *kgo.Client, topic string, evs []event) {
	t.Helper()
	recs := make([]*kgo.Record, len(evs))
	for i, e := range evs {
		recs[i] = &kgo.Record{Topic: topic, Key: []byte(e.User), Value: e.value()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// endOffsets is the topic's end offset per partition.
func endOffsets(t testing.TB, cl *kgo.Client, topic string) map[int32]int64 {
	t.Helper()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

// waitCaught waits until the node's state holds every offset of topic
// below ends.
func waitCaught(t testing.TB, n *node.Node, topic string, ends map[int32]int64) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		got := n.StreamOffsets("tx", topic)
		done := true
		for p, end := range ends {
			if end > 0 && got[p] < end {
				done = false
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer did not catch up: state offsets %v, topic ends %v", got, ends)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkReference compares every user's features with a brute-force
// reference fed each event once.
func checkReference(t testing.TB, n *node.Node, evs []event) {
	t.Helper()
	v := n.Repo().Views[0]
	ref := windowstest.NewReference(v.Spec)
	users := map[string]bool{}
	for _, e := range evs {
		fields := make([]windows.Field, len(v.Spec.Columns))
		for i := range fields {
			switch v.Spec.Columns[i].Name {
			case "amt":
				fields[i] = windows.Field{Num: e.Amt}
			case "merchant":
				fields[i] = windows.Field{Str: []byte(e.Merchant)}
			}
		}
		if err := ref.Add([]byte(e.User), e.TS, fields); err != nil {
			t.Fatal(err)
		}
		users[e.User] = true
	}
	at := time.Now().UnixMilli()
	for u := range users {
		want, scales := ref.ReadScale([]byte(u), at)
		got := n.ReadView(0, []byte(u), at, nil)
		if err := windowstest.Compare(v.Spec, got, want, scales); err != nil {
			t.Fatalf("user %s: %v", u, err)
		}
		if got[0].Num != want[0].Num || got[1].Num != want[1].Num {
			t.Fatalf("user %s: count and sum %v %v, want %v %v (exactly)", u, got[0].Num, got[1].Num, want[0].Num, want[1].Num)
		}
	}
}

func openNode(t testing.TB, dir string, repo *features.Repo) *node.Instance {
	t.Helper()
	cfg := node.DefaultConfig()
	cfg.DataDir = dir
	cfg.Durability.SnapshotEvery = 200 * time.Millisecond
	in, err := node.Open(cfg, repo, node.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in.SetReady(true)
	return in
}

// TestExactlyOnceAcrossRestarts: events stream in while the node is closed
// and reopened (snapshots every 200 ms, so restarts recover from snapshot
// plus log) and the group's committed offsets are rewound between runs:
// the node resumes from its own offsets, and every user's features equal
// the reference fed each event once.
func TestExactlyOnceAcrossRestarts(t *testing.T) {
	b := kafkatest.Shared(t)
	topic := "restarts"
	b.CreateTopic(t, topic, 8)
	repo := testRepo(t, b.Addr, topic, "")
	evs := genEvents(40000, 1)
	cl := b.Client(t, kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	dir := t.TempDir()
	for cycle := 0; cycle < 5; cycle++ {
		produce(t, cl, topic, evs[cycle*8000:(cycle+1)*8000])
		in := openNode(t, dir, repo)
		cs, err := kafkasource.StartAll(in.Node, kafkasource.Options{MaxPollRecords: 700})
		if err != nil {
			t.Fatal(err)
		}
		if cycle == 4 {
			waitCaught(t, in.Node, topic, endOffsets(t, cl, topic))
			checkReference(t, in.Node, evs)
		} else {
			time.Sleep(time.Duration(100+cycle*150) * time.Millisecond)
		}
		for _, c := range cs {
			c.Close()
		}
		if err := in.Close(); err != nil {
			t.Fatal(err)
		}
		// Rewind the group: the next run must not read it.
		off := kadm.Offsets{}
		for p := range int32(8) {
			off.Add(kadm.Offset{Topic: topic, Partition: p, At: 0, LeaderEpoch: -1})
		}
		if _, err := kadm.NewClient(cl).CommitOffsets(context.Background(), "g-"+topic, off); err != nil {
			t.Fatalf("rewind group: %v", err)
		}
	}
}

// TestBadRecordsDeadLettered: malformed records among good ones are
// counted by reason and produced to the dead-letter topic with their
// position, and every good record is counted once.
func TestBadRecordsDeadLettered(t *testing.T) {
	b := kafkatest.Shared(t)
	topic, dlq := "mixed", "mixed_rejected"
	b.CreateTopic(t, topic, 2)
	b.CreateTopic(t, dlq, 1)
	repo := testRepo(t, b.Addr, topic, "      dead_letter_topic: "+dlq)
	good := genEvents(2000, 2)
	cl := b.Client(t)
	bad := map[string][]string{
		node.RejectNotJSON:      {`{"user_id": `, `[1,2]`, fmt.Sprintf("{\"user_id\":\"u\xff\",\"payment\":{\"amount\":1},\"timestamp\":%d}", time.Now().UnixMilli())},
		node.RejectMissingKey:   {fmt.Sprintf(`{"merchant":"m","payment":{"amount":1},"timestamp":%d}`, time.Now().UnixMilli())},
		node.RejectBadTimestamp: {`{"user_id":"x","payment":{"amount":1},"timestamp":"yesterday"}`, `{"user_id":"x","payment":{"amount":1}}`},
		node.RejectTooLate:      {`{"user_id":"x","payment":{"amount":1},"timestamp":1000}`},
		node.RejectBadField:     {fmt.Sprintf(`{"user_id":"x","payment":{"amount":"lots"},"timestamp":%d}`, time.Now().UnixMilli())},
	}
	var recs []*kgo.Record
	nbad := 0
	for i, e := range good {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(e.User), Value: e.value()})
		if i%250 == 0 {
			for _, vals := range bad {
				for _, v := range vals {
					recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(v)})
					nbad++
				}
			}
		}
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	in := openNode(t, t.TempDir(), repo)
	defer in.Close()
	cs, err := kafkasource.StartAll(in.Node, kafkasource.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs[0].Close()
	waitCaught(t, in.Node, topic, endOffsets(t, cl, topic))
	checkReference(t, in.Node, good)
	var prom strings.Builder
	in.Metrics().WritePrometheus(&prom)
	rounds := 8 // i%250 == 0 over 2000 events
	for reason, vals := range bad {
		line := fmt.Sprintf(`tally_kafka_records_rejected_total{source="tx",reason=%q} %d`, reason, rounds*len(vals))
		if !strings.Contains(prom.String(), line) {
			t.Errorf("metrics lack %s", line)
		}
	}
	// The dead-letter topic holds each bad record once, with its reason.
	rd := b.Client(t, kgo.ConsumeTopics(dlq), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for n := 0; n < nbad && ctx.Err() == nil; {
		rd.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			n++
			for _, h := range r.Headers {
				if h.Key == "tally-reason" {
					got[string(h.Value)]++
				}
			}
		})
	}
	for reason, vals := range bad {
		if got[reason] != rounds*len(vals) {
			t.Errorf("dead-letter topic holds %d records of reason %s, want %d (all: %v)", got[reason], reason, rounds*len(vals), got)
		}
	}
}

// TestBrokerRestart: the broker stops and starts again mid-stream; the
// consumer retries, resumes, and counts every event once.
func TestBrokerRestart(t *testing.T) {
	b := kafkatest.Shared(t)
	topic := "outage"
	b.CreateTopic(t, topic, 4)
	repo := testRepo(t, b.Addr, topic, "")
	evs := genEvents(20000, 3)
	in := openNode(t, t.TempDir(), repo)
	defer in.Close()
	cs, err := kafkasource.StartAll(in.Node, kafkasource.Options{MaxPollRecords: 500})
	if err != nil {
		t.Fatal(err)
	}
	defer cs[0].Close()
	cl := b.Client(t)
	produce(t, cl, topic, evs[:10000])
	b.Stop(t)
	time.Sleep(time.Second)
	b.Start(t)
	produce(t, cl, topic, evs[10000:])
	waitCaught(t, in.Node, topic, endOffsets(t, cl, topic))
	checkReference(t, in.Node, evs)
}

// TestTwoNodesOneGroup: two single nodes configured with the same group
// each read every partition into their own state, each exactly once (the
// documented topology: a replica, not a split), and /readyz holds while a
// node is further behind than max_lag.
func TestTwoNodesOneGroup(t *testing.T) {
	b := kafkatest.Shared(t)
	topic := "shared"
	b.CreateTopic(t, topic, 4)
	repo := testRepo(t, b.Addr, topic, "      max_lag: 100")
	evs := genEvents(20000, 4)
	cl := b.Client(t)
	produce(t, cl, topic, evs[:10000])
	var nodes []*node.Instance
	for range 2 {
		in := openNode(t, t.TempDir(), repo)
		defer in.Close()
		cs, err := kafkasource.StartAll(in.Node, kafkasource.Options{MaxPollRecords: 500})
		if err != nil {
			t.Fatal(err)
		}
		defer cs[0].Close()
		nodes = append(nodes, in)
	}
	produce(t, cl, topic, evs[10000:])
	ends := endOffsets(t, cl, topic)
	for i, in := range nodes {
		waitCaught(t, in.Node, topic, ends)
		checkReference(t, in.Node, evs)
		// Caught up: ready once the lag is measured again (each second).
		deadline := time.Now().Add(30 * time.Second)
		for in.Ready() != nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if err := in.Ready(); err != nil {
			t.Fatalf("node %d caught up but not ready: %v", i, err)
		}
	}
	// A backlog past max_lag that node 0 cannot commit (its log closed)
	// makes it answer not ready, saying why.
	nodes[0].Close()
	nodes[0].SetReady(true)
	produce(t, cl, topic, genEvents(1000, 5))
	deadline := time.Now().Add(30 * time.Second)
	for nodes[0].Ready() == nil && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if err := nodes[0].Ready(); !errors.Is(err, node.ErrStreamLagging) {
		t.Fatalf("a node 1000 records behind with max_lag 100 is ready: %v", err)
	}
}

// TestAbortedTransactionsAreNotCounted: records a transactional producer
// wrote and then aborted are not counted (the consumer reads committed
// records only), and the committed records around them each count once.
func TestAbortedTransactionsAreNotCounted(t *testing.T) {
	b := kafkatest.Shared(t)
	topic := "aborted"
	b.CreateTopic(t, topic, 2)
	repo := testRepo(t, b.Addr, topic, "")
	evs := genEvents(600, 7)
	cl := b.Client(t, kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	produce(t, cl, topic, evs[:200])

	tx := b.Client(t, kgo.TransactionalID("tally-aborted-test"), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produce(t, tx, topic, evs[200:400])
	if err := tx.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatalf("abort: %v", err)
	}
	// The coordinator writes the abort markers after EndTransaction
	// returns: let them land before the last records, so that the topic
	// ends with a record the consumer is handed.
	time.Sleep(2 * time.Second)
	produce(t, cl, topic, evs[400:])

	in := openNode(t, t.TempDir(), repo)
	defer in.Close()
	cs, err := kafkasource.StartAll(in.Node, kafkasource.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	waitCaught(t, in.Node, topic, endOffsets(t, cl, topic))
	checkReference(t, in.Node, append(append([]event(nil), evs[:200]...), evs[400:]...))
}

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDeadLetterTopicMissing: a dead_letter_topic the brokers do not know
// holds the source back, with a logged error saying to create it, like a
// missing topic: nothing is consumed (a rejected record could not be
// dead-lettered, and would be lost once its batch commits). Once the topic
// exists, the source starts: every good record counted once, the bad one
// dead-lettered.
func TestDeadLetterTopicMissing(t *testing.T) {
	b := kafkatest.Shared(t)
	topic, dlq := "dlq-missing", "dlq-missing_rejected"
	b.CreateTopic(t, topic, 1)
	good := genEvents(20, 11)
	cl := b.Client(t)
	produce(t, cl, topic, good[:10])
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Value: []byte(`{"user_id": `)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	produce(t, cl, topic, good[10:])
	in := openNode(t, t.TempDir(), testRepo(t, b.Addr, topic, "      dead_letter_topic: "+dlq))
	defer in.Close()
	var logs syncBuffer
	cs, err := kafkasource.StartAll(in.Node, kafkasource.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer cs[0].Close()
	want := "dead_letter_topic " + dlq + " does not exist: create it"
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), want); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no log says %q within 30 s; logs:\n%s", want, logs.String())
		}
	}
	time.Sleep(2 * time.Second)
	if got := in.Node.StreamOffsets("tx", topic); len(got) != 0 {
		t.Fatalf("the source consumed while its dead-letter topic is missing: state offsets %v", got)
	}
	b.CreateTopic(t, dlq, 1)
	waitCaught(t, in.Node, topic, endOffsets(t, cl, topic))
	checkReference(t, in.Node, good)
	rd := b.Client(t, kgo.ConsumeTopics(dlq), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var dead []*kgo.Record
	for len(dead) == 0 && ctx.Err() == nil {
		dead = append(dead, rd.PollFetches(ctx).Records()...)
	}
	if len(dead) != 1 || string(dead[0].Value) != `{"user_id": ` {
		t.Fatalf("dead-letter topic holds %d records, want the rejected one", len(dead))
	}
}

// pinCounter is a cluster's write path that holds nothing and counts the
// batches written through it.
type pinCounter struct{ writes atomic.Int32 }

func (r *pinCounter) WriteStream(*store.Batch, []int64, store.StreamPos, int64) error {
	r.writes.Add(1)
	return nil
}

func (r *pinCounter) StreamResume(string, string, int32) (int64, bool, []int32, error) {
	return 0, false, nil, nil
}

// StreamStart records nothing: its sources start at earliest, which reads no record.
func (r *pinCounter) StreamStart(string, string, map[int32]int64) (map[int32]int64, bool, error) {
	return nil, false, nil
}

// TestRoutedDeadLetterTopicMissing: a cluster member whose source's
// dead_letter_topic the brokers do not know does not join the group (no
// partition is assigned to it, none started) and logs why, until the
// topic exists.
func TestRoutedDeadLetterTopicMissing(t *testing.T) {
	b := kafkatest.Shared(t)
	topic, dlq := "routed-dlq-missing", "routed-dlq-missing_rejected"
	b.CreateTopic(t, topic, 2)
	n, err := node.New(testRepo(t, b.Addr, topic, "      dead_letter_topic: "+dlq), node.DefaultConfig(), node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	router := &pinCounter{}
	cs, err := kafkasource.StartAllRouted(n, router, kafkasource.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer cs[0].Close()
	want := "dead_letter_topic " + dlq + " does not exist: create it"
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(logs.String(), want); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no log says %q within 30 s; logs:\n%s", want, logs.String())
		}
	}
	time.Sleep(2 * time.Second)
	if w := router.writes.Load(); w != 0 {
		t.Fatalf("the member started %d partitions while its dead-letter topic is missing", w)
	}
	b.CreateTopic(t, dlq, 1)
	for deadline := time.Now().Add(60 * time.Second); router.writes.Load() < 2; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the member did not start the topic's 2 partitions within 60 s of its dead-letter topic's creation (%d started); logs:\n%s", router.writes.Load(), logs.String())
		}
	}
}
