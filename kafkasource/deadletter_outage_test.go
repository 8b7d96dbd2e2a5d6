package kafkasource_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tally-ml/tally/systemtest/kafkatest"
)

// TestDeadLetterOutageHoldsBatch: the dead-letter topic is deleted while
// a single node consumes, and good and bad records keep arriving. No
// batch holding a rejected record may commit while its dead-letter
// produce fails (that would skip the record for good): the partition
// stops at the failing batch, the failures are counted and logged, and
// its lag shows. Once the topic exists again, every good record is
// counted once and every bad one is in the dead-letter topic. Before the
// fix, the consumer gave up after 5 tries and committed the batch (or its
// produce hung for good).
func TestDeadLetterOutageHoldsBatch(t *testing.T) { deadLetterOutage(t, false) }

// TestRoutedDeadLetterOutageHoldsBatch: the same for a cluster member,
// whose batches go through its router.
func TestRoutedDeadLetterOutageHoldsBatch(t *testing.T) { deadLetterOutage(t, true) }

func deadLetterOutage(t *testing.T, routed bool) {
	b := kafkatest.Shared(t)
	topic, dlq := dlqTopics(t, b, "dlq-outage", routed)
	b.CreateTopic(t, dlq, 1)
	cl := b.Client(t)
	good := genEvents(400, 13)
	// produceMixed produces evs with a bad record after every
	// len(evs)/bad of them, the first right after evs[0], and returns the
	// bad records' offsets.
	produceMixed := func(evs []event, bad int) (offsets []string) {
		var recs []*kgo.Record
		for i, e := range evs {
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(e.User), Value: e.value()})
			if i%(len(evs)/bad) == 0 {
				recs = append(recs, &kgo.Record{Topic: topic, Value: []byte(`{"user_id": ` + strconv.Itoa(i))})
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, r := range cl.ProduceSync(ctx, recs...) {
			if r.Err != nil {
				t.Fatalf("produce: %v", r.Err)
			}
			if r.Record.Key == nil {
				offsets = append(offsets, strconv.FormatInt(r.Record.Offset, 10))
			}
		}
		return offsets
	}

	d := startDLQNode(t, b, topic, dlq, routed)
	logs, offset := d.logs, d.offset
	waitOffset := func(end int64, what string) {
		t.Helper()
		for deadline := time.Now().Add(40 * time.Second); offset() < end; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the partition is at %d, not %d, 40 s after %s; logs:\n%s", offset(), end, what, logs.String())
			}
		}
	}

	// A first batch with a bad record: the dead-letter client now knows
	// the topic (its partitions, its id, the producer's sequence).
	produceMixed(good[:200], 1)
	waitOffset(endOffsets(t, cl, topic)[0], "the first records were produced")
	held := offset()

	b.DeleteTopic(t, dlq)
	bad := produceMixed(good[200:], 5)
	end := endOffsets(t, cl, topic)[0]
	// The dead-letter produce fails (the topic is gone): wait for the
	// log that says so, and 3 s more (a consumer that gives up on the
	// dead letter commits the batch then).
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(logs.String(), "dead-letter produce failed"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("no log says the dead-letter produce fails within 20 s of the topic's deletion (does it hang?)")
			break
		}
	}
	time.Sleep(3 * time.Second)
	if got := offset(); got != held {
		t.Fatalf("the partition moved from offset %d to %d while its rejected records could not be dead-lettered (the topic ends at %d): they are lost; logs:\n%s", held, got, end, logs.String())
	}
	var prom strings.Builder
	d.n.Metrics().WritePrometheus(&prom)
	if !strings.Contains(prom.String(), `tally_kafka_dead_letter_errors_total{source="tx"} `) || strings.Contains(prom.String(), `tally_kafka_dead_letter_errors_total{source="tx"} 0`) {
		t.Errorf("failed dead-letter produces not counted in tally_kafka_dead_letter_errors_total")
	}
	if lag := d.c.Lag()[0]; lag != end-held {
		t.Errorf("lag %d while the partition is held at %d of %d, want %d", lag, held, end, end-held)
	}

	b.CreateTopic(t, dlq, 1)
	waitOffset(end, "the dead-letter topic was created again")
	d.counted(good)
	// Every bad record of the held batches is in the new dead-letter topic
	// (at least once: an attempt cut short after the broker wrote it is
	// produced again).
	rd := b.Client(t, kgo.ConsumeTopics(dlq), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got := map[string]int{}
	for len(got) < len(bad) && ctx.Err() == nil {
		rd.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == "tally-offset" {
					got[string(h.Value)]++
				}
			}
		})
	}
	for _, o := range bad {
		if got[o] == 0 {
			t.Errorf("the bad record at offset %s is not in the dead-letter topic (it holds offsets %v)", o, got)
		}
	}
	if t.Failed() {
		t.Logf("logs:\n%s", logs.String())
	}
}
