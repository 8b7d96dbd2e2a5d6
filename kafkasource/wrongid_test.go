package kafkasource_test

import (
	"fmt"
	"testing"

	"github.com/tally-ml/tally/kafkasource"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/systemtest/kafkatest"
)

// TestRoutedRecreatedBeforeClientStarts: a cluster member keys the topic
// (incarnation lists its id) and the topic is deleted and created again
// before the member's group client first reads the topic's metadata, so
// the client consumes the new topic while the member holds the old id.
// None of the new topic's records may be committed under the old id's key
// (there they would be skipped or counted twice): the member drops the
// fetch, joins again under the new id's key, and counts each record once.
// The lag loop, which would also notice the new id, is held meanwhile
// (recreatedEarly), so that the fetch guard is what the test exercises.
func TestRoutedRecreatedBeforeClientStarts(t *testing.T) {
	b := kafkatest.Shared(t)
	topic := "routed-recreated-early"
	b.CreateTopic(t, topic, 1)
	f := newRecreatedEarly(t, b, topic, 30)
	r := &keyedRouter{next: map[string]map[int32]int64{}, events: map[string]int{}, onResume: f.onKey}
	n, err := node.New(testRepo(t, b.Addr, topic, ""), node.DefaultConfig(), node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kafkasource.StartAllRouted(n, r, f.options())
	if err != nil {
		t.Fatal(err)
	}
	defer cs[0].Close()
	f.check(r.counts, nil)
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
	f := newRecreatedEarly(t, b, topic, records)
	sink := &keyedSink{Node: in.Node, events: map[string]int{}, onOffset: f.onKey}
	c, err := kafkasource.Start(in.Node, sink, repo.Sources[0], f.options())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f.check(sink.counts, func() string { return fmt.Sprintf("state offsets %v", in.Node.StreamOffsets("tx", topic)) })
	if total, exact := counted(in.Node, append(old, genEvents(records, 23)...)); !exact {
		t.Errorf("the node counts %d events over both topics, want %d each once", total, len(old)+records)
	}
}
