package cluster

import (
	"fmt"
	"testing"
	"testing/fstest"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/store"
)

const kafkaTestRepo = `sources:
  - name: transactions
    lateness: 2h
    schema: {user_id: string, merchant: string, category: string, amt: float, country: string, lat: float, long: float}
entities:
  - {name: user, join_key: user_id}
  - {name: merchant, join_key: merchant}
feature_views:
  - name: u
    source: transactions
    entity: user
    aggregations:
      - {column: amt, function: count, window: 2h}
      - {column: amt, function: sum, window: 2h}
  - name: m
    source: transactions
    entity: merchant
    aggregations:
      - {column: amt, function: count, window: 2h}
feature_services:
  - {name: su, features: [u]}
  - {name: sm, features: [m]}
`

// streamFixture is a partition's records: offsets 0..n-1, every 7th a
// record the consumer rejected (a hole in the batch), the others events of
// 37 users and 11 merchants (an event's two keys mostly in two groups).
type streamFixture struct {
	n    int64
	base int64
	cl   *Cluster
}

func (f *streamFixture) valid(o int64) bool { return o%7 != 3 }

// batch is the records [first, next) as a consumer fetched them: the valid
// ones as events with their offsets.
func (f *streamFixture) batch(first, next int64) (*store.Batch, []int64, store.StreamPos) {
	sp := f.cl.proto.Sources()[0]
	col := func(name string) int { return sp.ColIndex[name] }
	var b store.Batch
	b.Reset(sp.Index, len(sp.Src.Columns))
	var offs []int64
	for o := first; o < next; o++ {
		if !f.valid(o) {
			continue
		}
		e := b.Grow(f.base + o)
		b.SetStr(e, col("user_id"), fmt.Appendf(nil, "u%d", o%37))
		b.SetStr(e, col("merchant"), fmt.Appendf(nil, "m%d", o%11))
		b.SetNum(e, col("amt"), float64(o%50))
		offs = append(offs, o)
	}
	return &b, offs, store.StreamPos{Source: "transactions", Topic: "t", Partition: 3, First: first, Next: next}
}

// TestWriteStreamExactlyOnce: batches of one partition written through
// three in-process nodes with the faults a consumer group produces: a
// writer that dies after half the groups took its batch, a second writer
// resuming at the lowest group offset with other batch boundaries, the
// first writer going on meanwhile with stale knowledge (two consumers of
// one partition during a rebalance), and a batch retried after it was
// applied. Every group ends at the partition's end, and every user's and
// merchant's count and sum equal the events', each counted once.
func TestWriteStreamExactlyOnce(t *testing.T) {
	cs, fronts := openTestCluster(t, fstest.MapFS{"repo.yaml": {Data: []byte(kafkaTestRepo)}}, 3, 8, 3)
	f := &streamFixture{n: 3000, base: time.Now().Add(-30 * time.Minute).UnixMilli(), cl: cs[0]}
	clock := func() int64 { return time.Now().UnixMilli() }
	write := func(c *Cluster, first, next int64) {
		t.Helper()
		b, offs, pos := f.batch(first, next)
		if err := c.WriteStream(b, offs, pos, clock()); err != nil {
			t.Fatalf("write [%d, %d): %v", first, next, err)
		}
	}
	resume := func(c *Cluster) int64 {
		t.Helper()
		next, ok, err := c.StreamResume("transactions", "t", 3)
		if err != nil || !ok {
			t.Fatalf("resume: %d %v %v", next, ok, err)
		}
		return next
	}
	if _, ok, err := cs[1].StreamResume("transactions", "t", 3); ok || err != nil {
		t.Fatalf("a partition no group holds resumes somewhere (%v, %v)", ok, err)
	}
	// Writer A (node 0) starts the partition and commits [0, 1000).
	b, offs, pos := f.batch(0, 0)
	if err := cs[0].WriteStream(b, offs, pos, clock()); err != nil {
		t.Fatal(err)
	}
	write(cs[0], 0, 1000)
	// A dies after groups 0-3 took [1000, 1500).
	b, offs, pos = f.batch(1000, 1500)
	parts, poffs, err := cs[0].splitStream(b, offs)
	if err != nil {
		t.Fatal(err)
	}
	known := cs[0].streamKnown(streamID{"transactions", "t", 3}, 8)
	for g := range 4 {
		if err := cs[0].writeStreamGroup(g, known, parts[g], poffs[g], pos, clock()); err != nil {
			t.Fatal(err)
		}
	}
	// Writer B (node 1) is assigned the partition: it resumes at the lowest
	// group offset and fetches with other boundaries.
	if got := resume(cs[1]); got != 1000 {
		t.Fatalf("resume at %d, want 1000 (the lowest group's offset)", got)
	}
	write(cs[1], 1000, 1700)
	// A was not dead after all: it goes on from what it knew (1500), past
	// B; then B, behind A now, goes on from 1700.
	write(cs[0], 1500, 2100)
	write(cs[0], 2100, 2400)
	write(cs[1], 1700, 2400)
	// Writer C (node 2) takes over and retries its batch (a 503 after the
	// groups applied it).
	from := resume(cs[2])
	if from != 2400 {
		t.Fatalf("resume at %d, want 2400", from)
	}
	write(cs[2], from, 2800)
	write(cs[2], from, 2800)
	write(cs[2], 2800, f.n)
	if got := resume(cs[0]); got != f.n {
		t.Fatalf("the partition ends at %d in some group, want %d", got, f.n)
	}
	userCount, userSum, merchCount := map[string]int{}, map[string]float64{}, map[string]int{}
	for o := range f.n {
		if f.valid(o) {
			u, m := fmt.Sprintf("u%d", o%37), fmt.Sprintf("m%d", o%11)
			userCount[u]++
			userSum[u] += float64(o % 50)
			merchCount[m]++
		}
	}
	get := func(nd *node.Node, service, key, value string) *client.Features {
		t.Helper()
		out, aerr := nd.GetFeatures(nil, fmt.Appendf(nil, `{"params":{"feature_service_name":%q,"join_key_map":{%q:%q}}}`, service, key, value))
		if aerr != nil {
			t.Fatal(aerr)
		}
		feats, err := client.DecodeFeatures(out)
		if err != nil {
			t.Fatal(err)
		}
		return feats
	}
	for i, nd := range fronts {
		for u, want := range userCount {
			feats := get(nd, "su", "user_id", u)
			c, _ := feats.Get("u.amt_count_2h")
			s, _ := feats.Get("u.amt_sum_2h")
			if c != float64(want) || s != userSum[u] {
				t.Fatalf("node %d: user %s: count %v sum %v, want %d and %v", i, u, c, s, want, userSum[u])
			}
		}
		for m, want := range merchCount {
			c, _ := get(nd, "sm", "merchant", m).Get("m.amt_count_2h")
			if c != float64(want) {
				t.Fatalf("node %d: merchant %s: count %v, want %d", i, m, c, want)
			}
		}
	}
}
