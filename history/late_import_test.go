package history

import (
	"math/rand/v2"
	"testing"
)

// TestImportAfterLiveDataParity: an import that comes after live data, of
// events older than the live ones, becomes visible when it was loaded, as it
// did online: a spine row between the live data and the import does not see
// it (it did: online 1 transaction in the hour, history 2), a row after the
// import does.
func TestImportAfterLiveDataParity(t *testing.T) {
	const c = int64(1_800_000_000_000)
	ln := newLiveNode(t, c)
	ln.ingest(t, txn{user: "u", merchant: "m1", country: "FR", amt: 1, ts: c})
	var probes []*probe
	look := func(at int64) {
		ln.clock = at
		p := &probe{user: "u", merchant: "m1", country: "FR", amt: 1}
		ln.lookup(t, p)
		probes = append(probes, p)
	}
	look(c + 50)
	ln.clock = c + 100
	ln.backfill(t, txn{user: "u", merchant: "m2", country: "FR", amt: 2, ts: c - 10_000},
		txn{user: "u", merchant: "m2", country: "FR", amt: 8, ts: c})
	look(c + 101)
	ln.clock = c + 200
	ln.ingest(t, txn{user: "u", merchant: "m3", country: "FR", amt: 4, ts: c + 200})
	look(c + 250)
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
