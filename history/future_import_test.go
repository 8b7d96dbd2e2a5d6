package history

import (
	"math/rand/v2"
	"testing"
)

// TestFutureStampedImportParity: an import holding an event stamped ahead
// of the node's clock (within max_future) is joined as it was served: the
// live events acknowledged after the import, and before the import's
// timestamp, count in the rows between, as they did online.
func TestFutureStampedImportParity(t *testing.T) {
	const c = int64(1_800_000_000_000)
	ln := newLiveNode(t, c)
	ln.ingest(t, txn{user: "u", merchant: "m1", country: "FR", amt: 1, ts: c})
	ln.backfill(t, txn{user: "u", merchant: "m2", country: "FR", amt: 2, ts: c + 1000})
	ln.clock = c + 500
	ln.ingest(t, txn{user: "u", merchant: "m3", country: "FR", amt: 4, ts: c + 500})
	var probes []*probe
	for _, at := range []int64{c + 700, c + 1000, c + 1500} {
		ln.clock = at
		p := &probe{user: "u", merchant: "m1", country: "FR", amt: 1}
		ln.lookup(t, p)
		probes = append(probes, p)
	}
	cols, rows := join(t, ln, probes, rand.New(rand.NewPCG(1, 2)))
	for i, p := range probes {
		for k, v := range p.online {
			col := len(cols) - len(p.online) + k
			if !sameValue(rows[i][col], cols[col].Type, v) {
				t.Errorf("row at %d: %s = %+v in history, %v online", p.t-c, cols[col].Name, rows[i][col], v)
			}
		}
	}
}
