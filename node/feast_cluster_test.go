package node

import (
	"fmt"
	"testing"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/store"
)

// downCluster is a cluster whose reads fail: no group has a leader.
type downCluster struct{}

func (downCluster) WriteEvents(string, []*store.Batch, int64, bool) (int, int, error) {
	return 0, 0, fmt.Errorf("%w: no leader", ErrUnavailable)
}
func (downCluster) WriteTable(string, *store.Table, []store.TableRow, bool, int64) error {
	return fmt.Errorf("%w: no leader", ErrUnavailable)
}
func (downCluster) Read(ReadLevel, []Read, int64, ReadOut) (ReadInfo, error) {
	return ReadInfo{}, fmt.Errorf("%w: no leader for partition 3", ErrUnavailable)
}
func (downCluster) Err() error { return nil }

// TestFeastOnlineFeaturesClusterReadFails: when a cluster read fails, Feast's
// get-online-features fails as get-features does (503), instead of answering
// the zero values of a read that never happened as PRESENT counts of 0.
func TestFeastOnlineFeaturesClusterReadFails(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(repo, DefaultConfig(), Options{Clock: func() int64 { return t0 }, RepoFS: features.DefaultFS(), Cluster: downCluster{}})
	if err != nil {
		t.Fatal(err)
	}
	n.SetReady(true)
	out, ferr := n.FeastOnlineFeatures(nil, []byte(`{"features":["user_transaction_counts:amt_count_1m"],"entities":{"user_id":["u1"]}}`))
	if ferr == nil {
		t.Fatalf("a failed cluster read was answered:\n%s", out)
	}
	if ferr.Status != 503 {
		t.Errorf("status %d (%s), want 503", ferr.Status, ferr.body())
	}
}
