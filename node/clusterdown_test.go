package node

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/store"
)

// downCluster is a cluster whose reads fail: no group has a leader.
type downCluster struct{}

func (downCluster) WriteEvents(string, []*store.Batch, int64, bool) (int, int, error) {
	return 0, 0, fmt.Errorf("%w: no leader", ErrUnavailable)
}
func (downCluster) RequestApplied(string, []*store.Batch) ([]GroupShare, error) {
	return nil, fmt.Errorf("%w: no leader", ErrUnavailable)
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

// levelCluster answers reads from one store and records each read's level.
type levelCluster struct {
	downCluster
	st     *store.Store
	levels []ReadLevel
}

func (c *levelCluster) Read(level ReadLevel, reads []Read, t int64, out ReadOut) (ReadInfo, error) {
	c.levels = append(c.levels, level)
	v, tb := 0, 0
	for _, r := range reads {
		ReadStore(c.st, r, t, out, v, tb)
		if r.Table {
			tb++
		} else {
			v++
		}
	}
	return ReadInfo{}, nil
}

// TestFeastReadLevelIsDefault: Feast's API has no read level, so its reads
// are at the default level, whatever level an earlier get-features on the
// same pooled scratch asked for.
func TestFeastReadLevelIsDefault(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	c := &levelCluster{}
	n, err := New(repo, DefaultConfig(), Options{Clock: func() int64 { return t0 }, RepoFS: features.DefaultFS(), Cluster: c})
	if err != nil {
		t.Fatal(err)
	}
	c.st = n.Store
	n.SetReady(true)
	for range 3 {
		c.levels = c.levels[:0]
		if _, aerr := n.GetFeatures(nil, []byte(`{"params":{"feature_service_name":"fraud_detection","read_level":"linearizable","join_key_map":{"user_id":"u","merchant":"m","country":"FR"},"request_context_map":{"amt":1,"lat":1,"long":2}}}`)); aerr != nil {
			t.Fatal(aerr)
		}
		if _, ferr := n.FeastOnlineFeatures(nil, []byte(`{"features":["user_transaction_counts:amt_count_1m"],"entities":{"user_id":["u1"]}}`)); ferr != nil {
			t.Fatalf("%s", ferr.body())
		}
		if got := c.levels[len(c.levels)-1]; got != ReadDefault {
			t.Fatalf("the Feast read went at level %v (get-features read at %v), want %v", got, c.levels[0], ReadDefault)
		}
	}
}

// TestUnavailableWriteSaysHowToRetry: a cluster's 503 to a write tells a
// client that sent an Idempotency-Key to retry under it, and one that sent
// none that a retry could count the write twice.
func TestUnavailableWriteSaysHowToRetry(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(repo, DefaultConfig(), Options{Clock: func() int64 { return t0 }, RepoFS: features.DefaultFS(), Cluster: downCluster{}})
	if err != nil {
		t.Fatal(err)
	}
	n.SetReady(true)
	base := serve(t, n)
	body := string(ingestBody(txn("u1", "m1", "FR", 1, t0-1000)))
	status, out := do(t, "POST", base+"/api/v1/ingest", "", "application/json", body)
	if status != 503 || !strings.Contains(out, "had no Idempotency-Key") {
		t.Errorf("a write without a key: %d %s", status, out)
	}
	req, _ := http.NewRequest("POST", base+"/api/v1/ingest", strings.NewReader(body))
	req.Header.Set("Idempotency-Key", "k1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(b), "retry with the same Idempotency-Key") {
		t.Errorf("a write with a key: %d %s", resp.StatusCode, b)
	}
}
