package kafkasource_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tally-ml/tally/kafkasource"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/systemtest/kafkatest"
)

// produceTo produces evs to one partition of topic.
func produceTo(t testing.TB, cl *kgo.Client, topic string, p int32, evs []event) {
	t.Helper()
	recs := make([]*kgo.Record, len(evs))
	for i, e := range evs {
		recs[i] = &kgo.Record{Topic: topic, Partition: p, Key: []byte(e.User), Value: e.value()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// startConsumers opens the node in dir and starts its consumers; stop
// closes both.
func startConsumers(t *testing.T, dir string, topic, extra string, addr string) (*node.Instance, func()) {
	t.Helper()
	in := openNode(t, dir, testRepo(t, addr, topic, extra))
	cs, err := kafkasource.StartAll(in.Node, kafkasource.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return in, func() {
		for _, c := range cs {
			c.Close()
		}
		if err := in.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestResumeBelowLogStart: the node's offset of a partition fell below the
// log start while it was down (retention, or records deleted): it resumes
// at the log start, counting every record the broker still holds, even
// with start: latest (which is only for partitions the node holds no
// offset of).
func TestResumeBelowLogStart(t *testing.T) {
	b := kafkatest.Shared(t)
	topic := "below-start"
	b.CreateTopic(t, topic, 1)
	cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	evs := genEvents(21, 9)
	dir := t.TempDir()
	in, stop := startConsumers(t, dir, topic, "      start: latest", b.Addr)
	time.Sleep(2 * time.Second)
	produceTo(t, cl, topic, 0, evs[:10])
	waitCaught(t, in.Node, topic, map[int32]int64{0: 10})
	stop()
	produceTo(t, cl, topic, 0, evs[10:20])
	// Retention deletes offsets below 15 while the node is down.
	off := kadm.Offsets{}
	off.Add(kadm.Offset{Topic: topic, Partition: 0, At: 15, LeaderEpoch: -1})
	resp, err := kadm.NewClient(cl).DeleteRecords(context.Background(), off)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("delete records: %v", err)
	}
	in, stop = startConsumers(t, dir, topic, "      start: latest", b.Addr)
	defer stop()
	time.Sleep(2 * time.Second)
	produceTo(t, cl, topic, 0, evs[20:])
	waitCaught(t, in.Node, topic, endOffsets(t, cl, topic))
	want := append(append([]event{}, evs[:10]...), evs[15:]...)
	checkReference(t, in.Node, want)
}

// TestLatestPartitionIdleUntilRestart: with start: latest, a partition
// that received nothing while the node ran keeps the position the node
// started it at: records produced to it while the node is down are read
// after the restart, not skipped as "before latest".
func TestLatestPartitionIdleUntilRestart(t *testing.T) {
	b := kafkatest.Shared(t)
	topic := "latest-idle"
	b.CreateTopic(t, topic, 2)
	cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	evs := genEvents(31, 6)
	// History before the first start: not read (latest).
	produceTo(t, cl, topic, 0, genEvents(5, 7))
	produceTo(t, cl, topic, 1, genEvents(5, 8))
	dir := t.TempDir()
	in, stop := startConsumers(t, dir, topic, "      start: latest", b.Addr)
	time.Sleep(2 * time.Second) // the consumer resolves the end offsets
	produceTo(t, cl, topic, 0, evs[:10])
	waitCaught(t, in.Node, topic, map[int32]int64{0: 15})
	stop()
	// Partition 1 gets records while the node is down.
	produceTo(t, cl, topic, 1, evs[10:30])
	in, stop = startConsumers(t, dir, topic, "      start: latest", b.Addr)
	defer stop()
	time.Sleep(2 * time.Second)
	produceTo(t, cl, topic, 1, evs[30:])
	waitCaught(t, in.Node, topic, endOffsets(t, cl, topic))
	checkReference(t, in.Node, evs)
}

// addPartitions grows topic to total partitions.
func addPartitions(t *testing.T, cl *kgo.Client, topic string, total int) {
	t.Helper()
	resp, err := kadm.NewClient(cl).UpdatePartitions(context.Background(), total, topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("add partitions: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(endOffsets(t, cl, topic)) < total && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // every broker's metadata
}

// TestPartitionsAdded: with start: latest, a partition added to the topic
// while the node runs is read from its first record (not from the end
// when the node next starts), and so is one added while the node is down:
// every record produced to a partition after the node first started is
// counted.
func TestPartitionsAdded(t *testing.T) {
	b := kafkatest.Shared(t)
	topic := "grow"
	b.CreateTopic(t, topic, 1)
	cl := b.Client(t)
	evs := genEvents(26, 10)
	dir := t.TempDir()
	in, stop := startConsumers(t, dir, topic, "      start: latest", b.Addr)
	time.Sleep(2 * time.Second)
	pr := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceTo(t, pr, topic, 0, evs[:5])
	waitCaught(t, in.Node, topic, map[int32]int64{0: 5})
	// A partition added while the node runs.
	addPartitions(t, cl, topic, 2)
	pr = b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceTo(t, pr, topic, 1, evs[5:15])
	deadline := time.Now().Add(30 * time.Second)
	for in.Node.StreamOffsets("tx", topic)[1] < 10 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if got := in.Node.StreamOffsets("tx", topic); got[1] < 10 {
		t.Errorf("a partition added while the node runs is not read within 30 s: state offsets %v", got)
	}
	stop()
	// A partition added while the node is down.
	addPartitions(t, cl, topic, 3)
	pr = b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceTo(t, pr, topic, 2, evs[15:25])
	in, stop = startConsumers(t, dir, topic, "      start: latest", b.Addr)
	defer stop()
	time.Sleep(2 * time.Second)
	produceTo(t, pr, topic, 2, evs[25:])
	waitCaught(t, in.Node, topic, endOffsets(t, cl, topic))
	checkReference(t, in.Node, evs)
}
