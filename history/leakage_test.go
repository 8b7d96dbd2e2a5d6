package history

import (
	"math/rand/v2"
	"testing"

	"github.com/tally-ml/tally/tabular"
)

// TestNoLeakage: a label-correlated event (a large fraudulent amount) that
// arrives one millisecond after a spine row's time is not in that row's
// features, whether it streamed in live or was backfilled, and is in a row
// one millisecond later. An event acknowledged at exactly the row's
// millisecond is not in it either (a row reads at the start of its
// millisecond, before its own transaction is ingested).
func TestNoLeakage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const T = int64(1_790_000_000_000)
	for _, mode := range []string{"live", "backfill"} {
		t.Run(mode, func(t *testing.T) {
			ln := newLiveNode(t, T-60_000)
			normal := func(ts int64) txn {
				return txn{user: "u1", merchant: "m1", country: "FR", amt: 10, lat: 1, long: 2, ts: ts}
			}
			fraud := txn{user: "u1", merchant: "m-evil", country: "FR", amt: 9999, lat: 1, long: 2, fraud: 1, ts: T + 1}
			atT := normal(T)
			if mode == "backfill" {
				ln.clock = T + 60_000
				ln.backfill(t, normal(T-30_000), normal(T-20_000), atT, fraud)
			} else {
				ln.clock = T - 30_000
				ln.ingest(t, normal(T-30_000))
				ln.clock = T - 20_000
				ln.ingest(t, normal(T-20_000))
				ln.clock = T
				ln.ingest(t, atT)
				ln.clock = T + 1
				ln.ingest(t, fraud)
			}
			probes := []*probe{
				{user: "u1", merchant: "m-evil", country: "FR", amt: 5, lat: 1, long: 2, t: T},
				{user: "u1", merchant: "m-evil", country: "FR", amt: 5, lat: 1, long: 2, t: T + 1},
				{user: "u1", merchant: "m-evil", country: "FR", amt: 5, lat: 1, long: 2, t: T + 2},
			}
			cols, rows := join(t, ln, probes, rng)
			get := func(row []tabular.Value, name string) tabular.Value {
				for i, c := range cols {
					if c.Name == name {
						return row[i]
					}
				}
				t.Fatalf("no column %s", name)
				return tabular.Value{}
			}
			byTime := map[int64][]tabular.Value{}
			for _, r := range rows {
				byTime[r[4].Int] = r
			}
			check := func(at int64, count int64, max float64, merchantCount int64) {
				t.Helper()
				r := byTime[at]
				if got := get(r, "user_transaction_counts.amt_count_1h"); got.Int != count {
					t.Errorf("row at T%+d: count_1h %d, want %d", at-T, got.Int, count)
				}
				if got := get(r, "user_transaction_amounts.amt_max_1h"); got.Num != max {
					t.Errorf("row at T%+d: max_1h %v, want %v", at-T, got.Num, max)
				}
				if got := get(r, "merchant_transaction_counts.amt_count_1h"); got.Int != merchantCount {
					t.Errorf("row at T%+d: the fraudulent merchant's count_1h %d, want %d", at-T, got.Int, merchantCount)
				}
			}
			check(T, 2, 10, 0)     // neither the event at T nor the fraud at T+1
			check(T+1, 3, 10, 0)   // the event at T, not the fraud
			check(T+2, 4, 9999, 1) // both
		})
	}
}
