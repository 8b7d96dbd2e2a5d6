package kafkasource

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/store"
)

// firstStartRouter is a cluster's stream state during another member's
// first start of a topic: partition 0 is pinned at 20 (the end then), and
// partition 1 is pinned at 20 by that member after pinAfter.
type firstStartRouter struct {
	mu       sync.Mutex
	since    time.Time
	pinAfter time.Duration
}

func (r *firstStartRouter) WriteStream(*store.Batch, []int64, store.StreamPos, int64) error {
	panic("the member waiting for a first start wrote a position")
}

func (r *firstStartRouter) StreamResume(_, _ string, p int32) (int64, bool, []int32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p == 0 || time.Since(r.since) >= r.pinAfter {
		return 20, true, []int32{0, 1}, nil
	}
	return 0, false, []int32{0}, nil
}

// TestResumeWaitsForAnotherMembersFirstStart: two members of a cluster
// start consuming a topic (start: latest) together. One lists the end
// offsets and pins every partition, one group at a time; the other, given
// partition 1 while partition 0 is pinned and 1 not yet, took it for a
// partition added to the topic since and read it from its log start: the
// 20 records produced before the cluster started were counted
// (TestKafkaPartitionAddedLatest under load). It now waits for the first
// start to pin the partition, and resumes where it was pinned, without
// listing offsets or writing a position of its own.
func TestResumeWaitsForAnotherMembersFirstStart(t *testing.T) {
	r := &firstStartRouter{since: time.Now(), pinAfter: 300 * time.Millisecond}
	c := &Consumer{router: r, src: &features.Source{Name: "transactions"}, k: &features.Kafka{Topic: "t", Start: "latest"},
		key: "t", logger: slog.New(slog.DiscardHandler)}
	next, err := c.resumeOnce(context.Background(), 1)
	if err != nil || next != 20 {
		t.Fatalf("partition 1, pinned at 20 by another member's first start 300 ms in: resumes at %d (%v), want 20", next, err)
	}
}
