package systemtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/systemtest/harness"
	"github.com/tally-ml/tally/systemtest/kafkatest"
)

// TestKafkaKill9ExactlyOnce streams events over 8 partitions (a few users
// hold most of them) from a real broker into `tally serve`, kills the
// process with SIGKILL 10 times mid-stream and restarts it on the same data
// dir: once caught up, every user's count and sum equal a reference that
// counted each produced event once (none lost, none doubled).
func TestKafkaKill9ExactlyOnce(t *testing.T) {
	total := 1_000_000
	if testing.Short() {
		total = 100_000
	}
	if s := os.Getenv("TALLY_KAFKA_EVENTS"); s != "" {
		total, _ = strconv.Atoi(s)
	}
	b := kafkatest.Start(t)
	b.CreateTopic(t, "tx", 8)
	repoDir := t.TempDir()
	repo := fmt.Sprintf(`sources:
  - name: tx
    schema: {user_id: string, amt: float}
    kafka: {brokers: [%s], topic: tx, group: tally-kill9}
entities:
  - {name: user, join_key: user_id}
feature_views:
  - name: u
    source: tx
    entity: user
    aggregations:
      - {column: amt, function: count, window: 1h}
      - {column: amt, function: sum, window: 1h}
feature_services:
  - {name: s, features: [u]}
`, b.Addr)
	if err := os.WriteFile(filepath.Join(repoDir, "repo.yaml"), []byte(repo), 0o644); err != nil {
		t.Fatal(err)
	}
	// The events: in time order per user (one user's events share a
	// partition, by key), amounts integral so sums are exact.
	rng := rand.New(rand.NewPCG(16, 1))
	base := time.Now().Add(-30 * time.Minute).UnixMilli()
	count, sum := map[string]int{}, map[string]float64{}
	values := make([]*kgo.Record, total)
	for i := range values {
		u := "u" + strconv.Itoa(int(rng.ExpFloat64()*300))
		amt := float64(rng.IntN(500))
		ts := base + int64(i)*(20*60*1000)/int64(total)
		values[i] = &kgo.Record{Topic: "tx", Key: []byte(u), Value: fmt.Appendf(nil, `{"user_id":%q,"amt":%g,"timestamp":%d}`, u, amt, ts)}
		count[u]++
		sum[u] += amt
	}
	prod := b.Client(t, kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(1<<17))
	produced := make(chan error, 1)
	go func() {
		// In 20 chunks over about 15 s, so that the kills land while
		// records still arrive.
		for c := 0; c < 20; c++ {
			time.Sleep(700 * time.Millisecond)
			if err := prod.ProduceSync(context.Background(), values[c*total/20:(c+1)*total/20]...).FirstErr(); err != nil {
				produced <- err
				return
			}
		}
		produced <- nil
	}()

	dir := t.TempDir()
	opts := harness.Options{DataDir: dir, Args: []string{"--repo", repoDir}, Config: "durability:\n  snapshot_every: 500ms\n"}
	p := harness.Start(t, opts)
	for kill := 0; kill < envInt("TALLY_KAFKA_KILLS", 10); kill++ {
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		p.Kill()
		p.Restart()
	}
	if err := <-produced; err != nil {
		t.Fatalf("produce: %v", err)
	}
	waitLagZero(t, p, 8)
	for u, want := range count {
		f, err := p.Client.GetFeatures(context.Background(), client.LookupRequest{Service: "s", JoinKeys: map[string]any{"user_id": u}})
		if err != nil {
			t.Fatal(err)
		}
		c, _ := f.Get("u.amt_count_1h")
		s, _ := f.Get("u.amt_sum_1h")
		if c != float64(want) || s != sum[u] {
			m, _ := p.Client.Metrics(context.Background())
			for _, l := range strings.Split(string(m), "\n") {
				if strings.Contains(l, "kafka") || strings.Contains(l, "too_late") || strings.Contains(l, "skipped") || strings.Contains(l, "events_total") {
					t.Log(l)
				}
			}
			ends, _ := kadm.NewClient(prod).ListEndOffsets(context.Background(), "tx")
			var sumEnds int64
			ends.Each(func(o kadm.ListedOffset) { sumEnds += o.Offset })
			t.Logf("topic end offsets sum to %d", sumEnds)
			t.Fatalf("user %s: count %v sum %v, want %d and %v (each event once)", u, c, s, want, sum[u])
		}
	}
	t.Logf("%d events over 8 partitions, %d users, 10 kills: every count and sum exact", total, len(count))
}

var lagLine = regexp.MustCompile(`(?m)^tally_kafka_lag\{[^}]*\} (\d+)$`)

// waitLagZero waits until the node reports partitions partitions, all
// caught up with the high watermarks it last fetched.
func waitLagZero(t *testing.T, p *harness.Node, partitions int) {
	t.Helper()
	deadline := time.Now().Add(time.Duration(envInt("TALLY_KAFKA_CATCHUP_S", 240)) * time.Second)
	last := ""
	var zeroAt time.Time
	for time.Now().Before(deadline) {
		m, err := p.Client.Metrics(context.Background())
		if err == nil {
			lags := lagLine.FindAllStringSubmatch(string(m), -1)
			behind := 0
			for _, l := range lags {
				n, _ := strconv.Atoi(l[1])
				behind += n
			}
			// Lag is measured each second from the topic's end offsets:
			// zero twice, 1.5 s apart, is zero after every record produced.
			if len(lags) == partitions && behind == 0 {
				if !zeroAt.IsZero() && time.Since(zeroAt) > 1500*time.Millisecond {
					return
				}
				if zeroAt.IsZero() {
					zeroAt = time.Now()
				}
			} else {
				zeroAt = time.Time{}
			}
			last = strings.Join(lagLine.FindAllString(string(m), -1), "; ")
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.Signal(syscall.SIGQUIT) // its goroutines, in the output below
	time.Sleep(time.Second)
	t.Fatalf("consumer did not catch up: %s", last)
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}
