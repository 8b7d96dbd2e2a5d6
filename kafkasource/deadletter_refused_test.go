package kafkasource_test

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tally-ml/tally/kafkasource"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/systemtest/kafkatest"
)

// TestDeadLetterRefusedRecordStandIn: a rejected record larger than the
// dead-letter topic's max.message.bytes can never be produced there
// (MESSAGE_TOO_LARGE, whatever the retries). The partition must not stop
// for good on it: a stand-in (no value, headers giving the record's
// coordinates, size and the produce error) is dead-lettered in its place,
// counted and logged, and the partition goes on. The small rejected
// records around it, which the broker may refuse in the same produce
// batch, still reach the topic as they were. Before the fix, the batch
// was held and the produce retried for as long as the node ran.
func TestDeadLetterRefusedRecordStandIn(t *testing.T) { deadLetterRefused(t, false) }

// TestRoutedDeadLetterRefusedRecordStandIn: the same for a cluster member.
func TestRoutedDeadLetterRefusedRecordStandIn(t *testing.T) { deadLetterRefused(t, true) }

func deadLetterRefused(t *testing.T, routed bool) {
	b := kafkatest.Shared(t)
	topic, dlq := dlqTopics(t, b, "dlq-refused", routed)
	createSmallTopic(t, b, dlq, "1024")
	cl := b.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	good := genEvents(200, 17)
	// Not JSON, 4 KB that no compression shrinks below 1 KB.
	big := append([]byte(`{"user_id": "`), make([]byte, 4000)...)
	rand.NewChaCha8([32]byte{1}).Read(big[13:])
	var recs []*kgo.Record
	for i, e := range good {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(e.User), Value: e.value()})
		if i == 100 {
			recs = append(recs,
				&kgo.Record{Topic: topic, Value: []byte(`{"user_id": 1`)},
				&kgo.Record{Topic: topic, Key: []byte("big"), Value: big, Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t1")}}},
				&kgo.Record{Topic: topic, Value: []byte(`{"user_id": 2`)},
				&kgo.Record{Topic: topic, Value: []byte(`{"user_id": 3`)})
		}
	}
	var smallOffsets []string
	bigOffset := ""
	for _, r := range cl.ProduceSync(ctx, recs...) {
		if r.Err != nil {
			t.Fatalf("produce: %v", r.Err)
		}
		switch {
		case r.Record.Key == nil:
			smallOffsets = append(smallOffsets, strconv.FormatInt(r.Record.Offset, 10))
		case string(r.Record.Key) == "big":
			bigOffset = strconv.FormatInt(r.Record.Offset, 10)
		}
	}
	end := endOffsets(t, cl, topic)[0]

	d := startDLQNode(t, b, topic, dlq, routed)
	logs, offset := d.logs, d.offset
	for deadline := time.Now().Add(20 * time.Second); offset() < end; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the partition is held at offset %d of %d 20 s after the start: the record at offset %s, too large for the dead-letter topic, stops it for good; logs:\n%s", offset(), end, bigOffset, logs.String())
		}
	}
	d.counted(good)

	rd := b.Client(t, kgo.ConsumeTopics(dlq), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := map[string]*kgo.Record{}
	for len(got) < len(smallOffsets)+1 && ctx.Err() == nil {
		rd.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == "tally-offset" {
					got[string(h.Value)] = r
				}
			}
		})
	}
	for _, o := range smallOffsets {
		r := got[o]
		if r == nil {
			t.Errorf("the small rejected record at offset %s is not in the dead-letter topic", o)
		} else if !bytes.HasPrefix(r.Value, []byte(`{"user_id": `)) || header(r, "tally-dead-letter-error") != "" {
			t.Errorf("the small rejected record at offset %s was dead-lettered as %q (headers %v), not as it was", o, r.Value, r.Headers)
		}
	}
	s := got[bigOffset]
	if s == nil {
		t.Fatalf("no stand-in of the record at offset %s in the dead-letter topic (it holds offsets of %d records); logs:\n%s", bigOffset, len(got), logs.String())
	}
	want := map[string]string{"tally-reason": node.RejectNotJSON, "tally-topic": topic, "tally-partition": "0", "tally-offset": bigOffset,
		"tally-value-bytes": strconv.Itoa(len(big))}
	for k, v := range want {
		if h := header(s, k); h != v {
			t.Errorf("the stand-in's header %s is %q, want %q", k, h, v)
		}
	}
	if len(s.Value) != 0 || string(s.Key) != "big" {
		t.Errorf("the stand-in holds key %q and %d bytes of value, want key %q and no value", s.Key, len(s.Value), "big")
	}
	if h := header(s, "tally-dead-letter-error"); !strings.Contains(h, "MESSAGE_TOO_LARGE") {
		t.Errorf("the stand-in's tally-dead-letter-error is %q, want the broker's MESSAGE_TOO_LARGE", h)
	}
	if h := header(s, "trace"); h != "" {
		t.Errorf("the stand-in carries the record's own header trace=%q (the original headers may be what made it too large)", h)
	}
	var prom strings.Builder
	d.n.Metrics().WritePrometheus(&prom)
	if !strings.Contains(prom.String(), `tally_kafka_dead_letter_stand_ins_total{source="tx"} 1`+"\n") {
		t.Errorf("the stand-in is not counted in tally_kafka_dead_letter_stand_ins_total")
	}
	if !strings.Contains(logs.String(), "stand-in") || !strings.Contains(logs.String(), "offset="+bigOffset) {
		t.Errorf("no log names the stand-in and the record's offset %s", bigOffset)
	}
	if t.Failed() {
		t.Logf("logs:\n%s", logs.String())
	}
}

// header is r's last header named key ("" if none).
func header(r *kgo.Record, key string) string {
	v := ""
	for _, h := range r.Headers {
		if h.Key == key {
			v = string(h.Value)
		}
	}
	return v
}

// TestDeadLetterStandInRefusedHoldsBatch: a dead-letter topic too small
// even for a stand-in (max.message.bytes 100) takes nothing: the batch is
// held as in an outage (a record reaches the topic twice, never zero
// times), the failure counted and logged, naming the stand-in's error.
func TestDeadLetterStandInRefusedHoldsBatch(t *testing.T) {
	b := kafkatest.Shared(t)
	topic, dlq := "dlq-refused-standin", "dlq-refused-standin_rejected"
	b.CreateTopic(t, topic, 1)
	createSmallTopic(t, b, dlq, "100")
	cl := b.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	good := genEvents(20, 19)
	recs := []*kgo.Record{{Topic: topic, Value: []byte(`{"user_id": 1`)}}
	for _, e := range good {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(e.User), Value: e.value()})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}

	in := openNode(t, t.TempDir(), testRepo(t, b.Addr, topic, "      dead_letter_topic: "+dlq))
	defer in.Close()
	var logs syncBuffer
	cs, err := kafkasource.StartAll(in.Node, kafkasource.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer cs[0].Close()
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(logs.String(), "its stand-in: MESSAGE_TOO_LARGE"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no log says the stand-in is refused too within 20 s; logs:\n%s", logs.String())
		}
	}
	time.Sleep(2 * time.Second)
	if off := in.StreamOffsets("tx", topic)[0]; off > 0 {
		t.Fatalf("the partition moved to offset %d although neither its rejected record nor a stand-in reached the dead-letter topic; logs:\n%s", off, logs.String())
	}
	var prom strings.Builder
	in.Metrics().WritePrometheus(&prom)
	if !strings.Contains(prom.String(), `tally_kafka_dead_letter_stand_ins_total{source="tx"} 0`+"\n") ||
		strings.Contains(prom.String(), `tally_kafka_dead_letter_errors_total{source="tx"} 0`+"\n") {
		t.Errorf("want no stand-in counted and the failed attempts counted; metrics:\n%s", prom.String())
	}
}
