package kafkasource_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tally-ml/tally/kafkasource"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/systemtest/kafkatest"
)

// TestTopicRecreatedEarliest: the topic is deleted and created again under
// the same name (a new topic id, offsets from 0 again, below the offsets
// the node holds) while a single node consumes it, and again while the
// node is down. A recreated topic is a new log: every record produced to
// it is counted exactly once, read from its first record, the node never
// hangs on the old topic id, a restart neither re-reads nor skips it, and
// a warning naming the topic and a metric say what happened.
func TestTopicRecreatedEarliest(t *testing.T) { topicRecreated(t, "earliest") }

// TestTopicRecreatedLatest: the same with start: latest (which applies
// only to the first topic the node consumes: a recreated topic is read
// from its first record).
func TestTopicRecreatedLatest(t *testing.T) { topicRecreated(t, "latest") }

func topicRecreated(t *testing.T, start string) {
	b := kafkatest.Shared(t)
	topic := "recreated-" + start
	b.CreateTopic(t, topic, 2)
	evs := genEvents(80, 17)
	extra := "      start: " + start
	repo := testRepo(t, b.Addr, topic, extra)
	dir := t.TempDir()
	var logs syncBuffer
	open := func() (*node.Instance, func()) {
		in := openNode(t, dir, repo)
		cs, err := kafkasource.StartAll(in.Node, kafkasource.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return in, func() {
			cs[0].Close()
			if err := in.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	// produceSplit produces evs alternately to partitions 0 and 1 (a new
	// client each time: a producer refuses a recreated topic).
	produceSplit := func(evs []event) {
		pr := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
		var p0, p1 []event
		for i, e := range evs {
			if i%2 == 0 {
				p0 = append(p0, e)
			} else {
				p1 = append(p1, e)
			}
		}
		produceTo(t, pr, topic, 0, p0)
		produceTo(t, pr, topic, 1, p1)
	}
	// waitCounted waits up to 20 s for every user's count to equal evs
	// counted once, and reports how many events the node counted.
	waitCounted := func(in *node.Instance, evs []event, what string) bool {
		t.Helper()
		var got int
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			var exact bool
			got, exact = counted(in.Node, evs)
			if exact {
				return true
			}
			if time.Now().After(deadline) {
				break
			}
		}
		var prom strings.Builder
		in.Metrics().WritePrometheus(&prom)
		var metrics []string
		for _, l := range strings.Split(prom.String(), "\n") {
			if strings.HasPrefix(l, "tally_kafka_") && !strings.Contains(l, "rejected") {
				metrics = append(metrics, l)
			}
		}
		t.Errorf("%s: the node counts %d events, want %d each once (state offsets %v, topic ends %v); metrics:\n%s",
			what, got, len(evs), in.Node.StreamOffsets("tx", topic), endOffsets(t, b.Client(t), topic), strings.Join(metrics, "\n"))
		return false
	}

	in, stop := open()
	time.Sleep(2 * time.Second) // latest: the start is resolved
	produceSplit(evs[:20])
	waitCaught(t, in.Node, topic, map[int32]int64{0: 10, 1: 10})

	// Recreated while the node consumes: 3 records a partition (offsets
	// 0..2, below the 10 the node holds), then 10 more (past it).
	b.DeleteTopic(t, topic)
	b.CreateTopic(t, topic, 2)
	produceSplit(evs[20:26])
	ok := waitCounted(in, evs[:26], "recreated while consuming")
	produceSplit(evs[26:46])
	ok = waitCounted(in, evs[:46], "recreated while consuming, past the old offsets") && ok
	var prom strings.Builder
	in.Metrics().WritePrometheus(&prom)
	if want := `tally_kafka_topic_recreations_total{source="tx"} 1`; !strings.Contains(prom.String(), want) {
		t.Errorf("metrics lack %s", want)
	}
	if want := "topic " + topic + " was deleted and created again"; !strings.Contains(logs.String(), want) {
		t.Errorf("no log says %q", want)
	}

	// A restart neither reads the recreated topic again nor skips it.
	stop()
	produceSplit(evs[46:50])
	in, stop = open()
	produceSplit(evs[50:56])
	ok = waitCounted(in, evs[:56], "restarted after the recreation") && ok

	// Recreated while the node is down.
	stop()
	b.DeleteTopic(t, topic)
	b.CreateTopic(t, topic, 2)
	produceSplit(evs[56:60])
	in, stop = open()
	defer stop()
	produceSplit(evs[60:])
	ok = waitCounted(in, evs, "recreated while the node was down") && ok
	if ok {
		checkReference(t, in.Node, evs)
	}
	if t.Failed() {
		t.Logf("logs:\n%s", logs.String())
		return
	}
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, "created again") {
			t.Log(l)
		}
	}
}

// counted reports how many events the node counts over the users of evs,
// and whether every user's count is exactly its number of events.
func counted(n *node.Node, evs []event) (total int, exact bool) {
	want := map[string]int{}
	for _, e := range evs {
		want[e.User]++
	}
	exact = true
	at := time.Now().UnixMilli()
	for u, w := range want {
		got := int(n.ReadView(0, []byte(u), at, nil)[0].Num)
		total += got
		if got != w {
			exact = false
		}
	}
	return total, exact
}
