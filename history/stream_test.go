package history

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tally-ml/tally/store"
)

// TestStreamParity: events committed as a stream consumer commits them
// (node.StreamDecoder, node.IngestStream: one record per batch with its
// offsets, the path of kafkasource) carry the clock they were acknowledged
// at, so a point-in-time join gives, row for row, what lookups served; and
// a batch committed again (a retried range) is skipped in the replay as it
// was online.
func TestStreamParity(t *testing.T) {
	rows := 5000
	rng := rand.New(rand.NewPCG(16, 3))
	start := int64(1_790_000_000_000)
	ln := newLiveNode(t, start)
	dec, err := ln.n.NewStreamDecoder("transactions", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	users := make([]string, 100)
	for i := range users {
		users[i] = fmt.Sprintf("u%d", i)
	}
	newTxn := func(ts int64) txn {
		return txn{user: users[rng.IntN(len(users))], merchant: fmt.Sprintf("m%d", rng.IntN(20)), country: "FR",
			amt: float64(rng.IntN(10000)) / 100, lat: 1, long: 2, ts: ts}
	}
	var b store.Batch
	var next int64 // the partition's next offset
	var last store.StreamPos
	var probes []*probe
	skipped := 0
	for len(probes) < rows {
		ln.clock += 1 + rng.Int64N(40)
		for k := rng.IntN(3); k > 0 && len(probes) < rows; k-- {
			x := newTxn(0)
			p := &probe{user: x.user, merchant: x.merchant, country: x.country, amt: x.amt, lat: x.lat, long: x.long}
			ln.lookup(t, p)
			probes = append(probes, p)
		}
		if rng.IntN(20) == 0 && last.Next > 0 {
			// The same range again: skipped, online and in the replay.
			if applied, err := ln.n.IngestStream(&b, last); err != nil || applied {
				t.Fatalf("a range committed twice was applied again (%v, %v)", applied, err)
			}
			skipped++
			continue
		}
		n := 1 + rng.IntN(5)
		b.Reset(dec.Source().Index, len(dec.Source().Src.Columns))
		for range n {
			if reason, msg := dec.Decode(&b, []byte(newTxn(ln.clock-rng.Int64N(2000)).json()), 0); reason != "" {
				t.Fatalf("rejected: %s %s", reason, msg)
			}
		}
		last = store.StreamPos{Source: "transactions", Topic: "tx", Partition: 0, First: next, Next: next + int64(n)}
		next += int64(n)
		if applied, err := ln.n.IngestStream(&b, last); err != nil || !applied {
			t.Fatalf("stream batch not applied (%v, %v)", applied, err)
		}
	}
	cols, got := join(t, ln, probes, rng)
	feats := cols[8:]
	mismatches, present := 0, 0
	for _, row := range got {
		p := probes[row[0].Int]
		for f, v := range row[8:] {
			if !v.Null {
				present++
			}
			if !sameValue(v, feats[f].Type, p.online[f]) {
				mismatches++
				if mismatches <= 5 {
					t.Errorf("probe %d (%s at %d) %s: historical %+v, online %v", row[0].Int, p.user, p.t, feats[f].Name, v, p.online[f])
				}
			}
		}
	}
	t.Logf("%d rows, %d stream events, %d ranges committed twice: %d mismatches", len(got), next, skipped, mismatches)
	if mismatches > 0 || present < len(got)*len(feats)/3 || skipped == 0 {
		t.Fatalf("%d mismatches, %d of %d present, %d skipped", mismatches, present, len(got)*len(feats), skipped)
	}
}
