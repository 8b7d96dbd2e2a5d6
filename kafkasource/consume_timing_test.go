package kafkasource_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/kafkasource"
	"github.com/tally-ml/tally/systemtest/kafkatest"
)

// BenchmarkConsume: events/s from a topic of 8 partitions into a fresh
// node on its own data dir (write-ahead log, fsync policy always), from
// the consumer's start to the last offset committed (kafka), beside the
// same events as bulk NDJSON ingest into the same kind of node (bulk).
//
//	TALLY_REQUIRE_KAFKA=1 go test -run '^$' -bench Consume -benchtime 3x ./kafkasource/
func BenchmarkConsume(b *testing.B) {
	br := kafkatest.Shared(b)
	topic := fmt.Sprintf("bench%d", time.Now().UnixNano())
	br.CreateTopic(b, topic, 8)
	repo := testRepo(b, br.Addr, topic, "")
	evs := genEvents(500000, 9)
	produce(b, br.Client(b, kgo.ProducerLinger(5*time.Millisecond)), topic, evs)
	ends := endOffsets(b, br.Client(b), topic)
	b.Run("kafka", func(b *testing.B) { consumeAll(b, repo, topic, ends, len(evs)) })
	// The same events as bulk ingest (NDJSON, 10k a request, the node's
	// parse and commit without HTTP), beside it in the same run.
	b.Run("bulk", func(b *testing.B) {
		var bodies [][]byte
		for i := 0; i < len(evs); i += 10000 {
			var body []byte
			for _, e := range evs[i:min(i+10000, len(evs))] {
				body = append(append(body, fmt.Sprintf(`{"user_id":%q,"merchant":%q,"amt":%g,"timestamp":%d}`, e.User, e.Merchant, e.Amt, e.TS)...), '\n')
			}
			bodies = append(bodies, body)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			in := openNode(b, b.TempDir(), repo)
			b.StartTimer()
			for _, body := range bodies {
				if _, err := in.IngestNDJSON("tx", body, false); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			in.Close()
			b.StartTimer()
		}
		b.ReportMetric(float64(len(evs))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

func consumeAll(b *testing.B, repo *features.Repo, topic string, ends map[int32]int64, events int) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		in := openNode(b, b.TempDir(), repo)
		b.StartTimer()
		cs, err := kafkasource.StartAll(in.Node, kafkasource.Options{})
		if err != nil {
			b.Fatal(err)
		}
		waitCaught(b, in.Node, topic, ends)
		b.StopTimer()
		cs[0].Close()
		in.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkFreshness: produce one event, then read its user's count until
// the event shows: the end-to-end freshness of the stream (producer ack
// excluded), as p50 and p99 over b.N events.
//
//	TALLY_REQUIRE_KAFKA=1 go test -run '^$' -bench Freshness -benchtime 300x ./kafkasource/
func BenchmarkFreshness(b *testing.B) {
	br := kafkatest.Shared(b)
	topic := fmt.Sprintf("fresh%d", time.Now().UnixNano())
	br.CreateTopic(b, topic, 8)
	repo := testRepo(b, br.Addr, topic, "")
	in := openNode(b, b.TempDir(), repo)
	defer in.Close()
	cs, err := kafkasource.StartAll(in.Node, kafkasource.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer cs[0].Close()
	cl := br.Client(b, kgo.ProducerLinger(0))
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		user := fmt.Sprintf("fresh-%d", i)
		e := event{User: user, Merchant: "m", Amt: 1, TS: time.Now().UnixMilli()}
		t0 := time.Now()
		cl.Produce(b.Context(), &kgo.Record{Topic: topic, Key: []byte(user), Value: e.value()}, nil)
		for deadline := t0.Add(10 * time.Second); ; {
			if v := in.ReadView(0, []byte(user), time.Now().UnixMilli(), nil); v[0].Present && v[0].Num == 1 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("event %d not visible after 10 s", i)
			}
			time.Sleep(200 * time.Microsecond)
		}
		lat = append(lat, time.Since(t0))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
