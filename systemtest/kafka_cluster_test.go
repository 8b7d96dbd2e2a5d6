package systemtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/systemtest/harness"
	"github.com/tally-ml/tally/systemtest/kafkatest"
)

// kafkaStream is a test stream: records of users and merchants (an
// event's two keys usually belong to two different replica groups) and
// the reference counts and sums, each event counted once.
type kafkaStream struct {
	records               []*kgo.Record
	userCount, merchCount map[string]int
	userSum, merchSum     map[string]float64
	topic                 string
}

func newKafkaStream(topic string, total int, seed uint64) *kafkaStream {
	rng := rand.New(rand.NewPCG(seed, 16))
	s := &kafkaStream{topic: topic, userCount: map[string]int{}, merchCount: map[string]int{}, userSum: map[string]float64{}, merchSum: map[string]float64{}}
	base := time.Now().Add(-40 * time.Minute).UnixMilli()
	for i := range total {
		u := "u" + strconv.Itoa(int(rng.ExpFloat64()*200))
		m := "m" + strconv.Itoa(rng.IntN(300))
		amt := float64(rng.IntN(500))
		ts := base + int64(i)*(20*60*1000)/int64(total)
		s.records = append(s.records, &kgo.Record{Topic: topic, Key: []byte(u),
			Value: fmt.Appendf(nil, `{"user_id":%q,"merchant":%q,"amt":%g,"timestamp":%d}`, u, m, amt, ts)})
		s.userCount[u]++
		s.userSum[u] += amt
		s.merchCount[m]++
		s.merchSum[m] += amt
	}
	return s
}

// kafkaRepo writes a repo consuming topic in group, counting and summing
// per user and per merchant, and returns its directory. Lateness is wide:
// partitions are consumed at different paces (a killed node's stall), so
// a merchant's events arrive far out of order.
func kafkaRepo(t *testing.T, broker, topic, group string) string {
	dir := t.TempDir()
	repo := fmt.Sprintf(`sources:
  - name: tx
    lateness: 2h
    schema: {user_id: string, merchant: string, amt: float}
    kafka: {brokers: [%s], topic: %s, group: %s}
entities:
  - {name: user, join_key: user_id}
  - {name: merchant, join_key: merchant}
feature_views:
  - name: u
    source: tx
    entity: user
    aggregations:
      - {column: amt, function: count, window: 2h}
      - {column: amt, function: sum, window: 2h}
  - name: m
    source: tx
    entity: merchant
    aggregations:
      - {column: amt, function: count, window: 2h}
      - {column: amt, function: sum, window: 2h}
feature_services:
  - {name: su, features: [u]}
  - {name: sm, features: [m]}
`, broker, topic, group)
	if err := os.WriteFile(filepath.Join(dir, "repo.yaml"), []byte(repo), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// produce sends the stream in chunks chunks, pausing between them, and
// reports the outcome on the channel it returns.
func (s *kafkaStream) produce(t *testing.T, b *kafkatest.Broker, chunks int, pause time.Duration) <-chan error {
	prod := b.Client(t, kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(1<<17))
	done := make(chan error, 1)
	go func() {
		n := len(s.records)
		for c := range chunks {
			time.Sleep(pause)
			if err := prod.ProduceSync(context.Background(), s.records[c*n/chunks:(c+1)*n/chunks]...).FirstErr(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	return done
}

// mismatches compares the node's answers with the reference: the number
// of keys whose count or sum differ, the total count the node holds, and
// one difference described.
func (s *kafkaStream) mismatches(cl *client.Client) (bad, counted int, first string, err error) {
	check := func(service, view, key string, count map[string]int, sum map[string]float64) error {
		for k, want := range count {
			f, err := cl.GetFeatures(context.Background(), client.LookupRequest{Service: service, JoinKeys: map[string]any{key: k}})
			if err != nil {
				return err
			}
			c, _ := f.Get(view + ".amt_count_2h")
			v, _ := f.Get(view + ".amt_sum_2h")
			n, _ := c.(float64)
			if view == "u" {
				counted += int(n)
			}
			if n != float64(want) || v != sum[k] {
				bad++
				if first == "" {
					first = fmt.Sprintf("%s %s: count %v sum %v, want %d and %v", key, k, c, v, want, sum[k])
				}
			}
		}
		return nil
	}
	if err = check("su", "u", "user_id", s.userCount, s.userSum); err != nil {
		return
	}
	err = check("sm", "m", "merchant", s.merchCount, s.merchSum)
	return
}

// waitExact waits (bounded) until every key's count and sum read through
// cl equal the reference, then checks again a few seconds later (a late
// double count shows then), and fails with the differences otherwise.
func (s *kafkaStream) waitExact(t *testing.T, cl *client.Client, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		bad, counted, first, err := s.mismatches(cl)
		if err == nil && bad == 0 {
			time.Sleep(3 * time.Second)
			bad, counted, first, err = s.mismatches(cl)
			if err == nil && bad == 0 {
				return
			}
		}
		last = fmt.Sprintf("%d keys differ, %d of %d events counted per user (%s) err %v", bad, counted, len(s.records), first, err)
		time.Sleep(time.Second)
	}
	t.Fatalf("not exactly once within %s: %s", timeout, last)
}

// TestKafkaClusterExactlyOnce: a 3-node cluster (8 groups, 3 replicas)
// consumes a topic of 8 partitions in one consumer group while (a) two
// nodes in turn are killed with SIGKILL mid-stream and restarted (their
// partitions move to the others, then the group rebalances again), (b) a
// node is frozen past its group session and thawed (a consumer going on
// beside the partitions' new owners), and (c) the leader of a replica
// group is killed and restarted. Afterwards every user's and
// every merchant's count and sum, read through any node, equal a reference
// that counted each produced event once.
func TestKafkaClusterExactlyOnce(t *testing.T) {
	total := envInt("TALLY_KAFKA_CLUSTER_EVENTS", 100_000)
	b := kafkatest.Start(t)
	b.CreateTopic(t, "ctx", 8)
	s := newKafkaStream("ctx", total, 12)
	repo := kafkaRepo(t, b.Addr, "ctx", "tally-cluster")
	// The stream goes in three parts: a backlog waiting in the topic, so
	// the nodes are busy consuming it when the first one dies (mid-batch:
	// some groups may hold the batch, others not); a burst just before a
	// node freezes (SIGSTOP) past its group session, so it freezes holding
	// a batch, its partitions move, and when it thaws it goes on with that
	// batch beside their new owners; the rest while a group's leader dies.
	part := func(from, to int) *kafkaStream { return &kafkaStream{topic: s.topic, records: s.records[from:to]} }
	if err := <-part(0, total*2/5).produce(t, b, 1, 0); err != nil {
		t.Fatalf("produce: %v", err)
	}
	c := startCluster(t, 3, 8, 3, "--repo", repo)
	for i, victim := range []int{1, 2} {
		c.nodes[victim].Kill()
		time.Sleep(time.Duration(2+i) * time.Second)
		c.nodes[victim].Restart()
		time.Sleep(time.Second)
	}
	if err := <-part(total*2/5, total*4/5).produce(t, b, 1, 0); err != nil {
		t.Fatalf("produce: %v", err)
	}
	c.nodes[0].Pause()
	time.Sleep(12 * time.Second)
	c.nodes[0].Resume()
	produced := part(total*4/5, total).produce(t, b, 10, 300*time.Millisecond)
	time.Sleep(time.Second)
	l := c.leaderOf(3)
	if l < 0 {
		t.Fatal("group 3 has no leader")
	}
	c.nodes[l].Kill()
	time.Sleep(2 * time.Second)
	c.nodes[l].Restart()
	if err := <-produced; err != nil {
		t.Fatalf("produce: %v", err)
	}
	s.waitExact(t, c.nodes[0].Client, 150*time.Second)
	c.waitConverged(30 * time.Second)
	resumedLow, overlapped := 0, 0
	for _, n := range c.nodes {
		resumedLow += strings.Count(n.Output(), "resumes at its lowest group's offset")
		overlapped += strings.Count(n.Output(), "partly committed by another writer")
	}
	// How often the faults split a batch between groups (the current runs'
	// logs only; timing decides, so it is reported, not asserted).
	t.Logf("partitions resumed below some group: %d; batches partly committed by another writer: %d", resumedLow, overlapped)
	t.Logf("%d events over 8 partitions into 3 nodes, two nodes killed, one frozen, a group leader killed: every count and sum exact", total)
}

// TestKafkaSingleNodesOwnGroups: two single nodes consuming one topic in
// different consumer groups each count every event exactly once (the
// single-node topology: one node per group; a single node reads every
// partition itself).
func TestKafkaSingleNodesOwnGroups(t *testing.T) {
	b := kafkatest.Start(t)
	b.CreateTopic(t, "stx", 8)
	s := newKafkaStream("stx", envInt("TALLY_KAFKA_PAIR_EVENTS", 20_000), 7)
	var nodes []*harness.Node
	for _, g := range []string{"tally-a", "tally-b"} {
		nodes = append(nodes, harness.Start(t, harness.Options{Args: []string{"--repo", kafkaRepo(t, b.Addr, "stx", g)}}))
	}
	if err := <-s.produce(t, b, 4, 200*time.Millisecond); err != nil {
		t.Fatalf("produce: %v", err)
	}
	for _, n := range nodes {
		s.waitExact(t, n.Client, 60*time.Second)
	}
}

// TestKafkaClusterSplitBatch: a node's batches stall half committed (its
// connections to one other node are blackholed: the groups that node
// leads cannot take the batch, the others do), then the node is killed.
// Its partitions move to the others, which resume at the lowest group's
// offset and send each group only what it lacks; then the blackhole heals
// and delivers the dead node's held proposals late. Every count and sum
// equals the reference (a per-batch skip would drop, in the groups ahead,
// the records between their offset and the end of the next batch).
func TestKafkaClusterSplitBatch(t *testing.T) {
	total := envInt("TALLY_KAFKA_SPLIT_EVENTS", 60_000)
	b := kafkatest.Start(t)
	b.CreateTopic(t, "split", 8)
	s := newKafkaStream("split", total, 21)
	repo := kafkaRepo(t, b.Addr, "split", "tally-split")
	c, net := startProxiedCluster(t, 3, 8, 3, "--repo", repo)
	waitGroupStable(t, b, "tally-split", 3)
	// The split needs a y that leads some groups (x's proposals to them
	// stall) and an x beside it (x's other groups commit): pick them from
	// the leaderships as they are, once the leaders have spread out (a CI
	// run where n1 led nothing yet split no batch).
	x, y := c.splitPair(8, 30*time.Second)
	produced := s.produce(t, b, 40, 300*time.Millisecond)
	time.Sleep(2 * time.Second)
	t.Logf("blackholing n%d's requests to n%d (n%d leads groups %v)", x, y, y, c.leaderships(8)[y])
	net.Proxies[y].Blackhole(net.IPs[x]) // x's requests to y stall; y's to x flow
	time.Sleep(3 * time.Second)
	c.nodes[x].Kill()
	// Past x's group session (10 s) its partitions move, while y still
	// lacks x's last batches; the heal then delivers the requests the
	// blackhole held (late proposals of a dead writer, under the new
	// owners'). It waits for a new owner to have resumed below some group
	// (up to 90 s), not a fixed time: healing after a fixed 12 s raced the
	// rebalance, and a heal that came first let y catch up before anyone
	// resumed, so the split went unseen (2 runs in 3 on 2026-11-27); 45 s
	// ran out once on a machine loaded with other test runs (2026-11-28).
	resumedBelow := func() int {
		n := 0
		for i := range c.nodes {
			if i != x {
				n += strings.Count(c.nodes[i].Output(), "resumes at its lowest group's offset")
			}
		}
		return n
	}
	t0 := time.Now()
	for time.Since(t0) < 90*time.Second && resumedBelow() == 0 {
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("healed %s after the kill", time.Since(t0).Round(100*time.Millisecond))
	net.Heal()
	c.nodes[x].Restart()
	if err := <-produced; err != nil {
		t.Fatalf("produce: %v", err)
	}
	s.waitExact(t, c.nodes[2].Client, 150*time.Second)
	c.waitConverged(30 * time.Second)
	resumedLow := resumedBelow()
	if resumedLow == 0 {
		t.Fatal("no partition resumed below some group: the fault did not split a batch between groups, so this test proved nothing")
	}
	t.Logf("%d events, %d partitions resumed below some group after the split: every count and sum exact", total, resumedLow)
}

// leaderships lists, per node, the groups (of groups) it leads, as the
// running nodes report them.
func (c *testCluster) leaderships(groups int) [][]int {
	led := make([][]int, len(c.nodes))
	for g := range groups {
		if l := c.leaderOf(g); l >= 0 {
			led[l] = append(led[l], g)
		}
	}
	return led
}

// splitPair picks the nodes for a split-batch fault: y leads at least one
// group and x is another node. It waits (at most timeout) until every node
// leads a group, then takes y as the node leading the most groups; past the
// timeout it takes the best pair there is (and fails when no node leads).
func (c *testCluster) splitPair(groups int, timeout time.Duration) (x, y int) {
	c.t.Helper()
	var led [][]int
	for deadline := time.Now().Add(timeout); ; time.Sleep(250 * time.Millisecond) {
		led = c.leaderships(groups)
		every := true
		for _, l := range led {
			every = every && len(l) > 0
		}
		if every || time.Now().After(deadline) {
			break
		}
	}
	y = 0
	for i, l := range led {
		if len(l) > len(led[y]) {
			y = i
		}
	}
	if len(led[y]) == 0 {
		c.t.Fatalf("no node leads any of the %d groups after %s", groups, timeout)
	}
	return (y + 1) % len(c.nodes), y
}

// waitGroupStable waits (at most a minute) until the consumer group has
// members members and is stable: the nodes have their partitions.
func waitGroupStable(t *testing.T, b *kafkatest.Broker, group string, members int) {
	t.Helper()
	adm := kadm.NewClient(b.Client(t))
	last := ""
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		gs, err := adm.DescribeGroups(context.Background(), group)
		g, ok := gs[group]
		if err == nil && ok && g.State == "Stable" && len(g.Members) == members {
			return
		}
		last = fmt.Sprintf("state %q, %d members, err %v", g.State, len(g.Members), err)
	}
	t.Fatalf("consumer group %s not stable with %d members within a minute: %s", group, members, last)
}
