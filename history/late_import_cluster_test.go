package history

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/tally-ml/tally/ring"
	"github.com/tally-ml/tally/tabular"
)

// TestImportAfterLiveDataInAnotherGroup: in a cluster's join, a live change
// acknowledged in one group takes the cluster past its time for every
// group: an import into another group that comes after it, of events older
// than it, becomes visible when it was loaded, as in a single node's join.
// (Each group's store judged by its own live changes only: a row of a key
// of the importing group, between the live change and the import, counted
// the imported event.)
func TestImportAfterLiveDataInAnotherGroup(t *testing.T) {
	const c = int64(1_800_000_000_000)
	// Group 0's log holds a live event of user a; group 1's, later, an
	// import of an event of user b stamped before it. Group 1 owns every
	// partition but one, which holds none of the keys read here.
	a := newLiveNode(t, c)
	a.ingest(t, txn{user: "a", merchant: "ma", country: "FR", amt: 1, ts: c})
	b := newLiveNode(t, c+100)
	b.backfill(t, txn{user: "b", merchant: "mb", country: "DE", amt: 2, ts: c - 10_000})
	var own0, own1 [ring.Partitions]bool
	free := -1
	for p := range own1 {
		own1[p] = true
	}
	for p := range ring.Partitions {
		used := false
		for _, k := range []string{"a", "b", "ma", "mb", "FR", "DE"} {
			used = used || int(ring.Partition(ring.Hash([]byte(k)))) == p
		}
		if !used {
			free = p
			break
		}
	}
	own0[free], own1[free] = true, false
	j, err := New(Options{Repo: a.repo, Service: "fraud_detection", Groups: []Group{{Archive: a.log, Owns: &own0}, {Archive: b.log, Owns: &own1}}})
	if err != nil {
		t.Fatal(err)
	}
	probes := []*probe{
		{user: "b", merchant: "mb", country: "DE", amt: 1, lat: 1, long: 2, t: c + 50},
		{user: "b", merchant: "mb", country: "DE", amt: 1, lat: 1, long: 2, t: c + 101},
	}
	s, err := j.ReadSpine(spineOf(t, probes, rand.New(rand.NewPCG(1, 2))), "timestamp", 0)
	if err != nil {
		t.Fatal(err)
	}
	var w rowsWriter
	if _, err := j.Run(context.Background(), s, &w); err != nil {
		t.Fatal(err)
	}
	cols := j.Columns(s)
	count := func(row []tabular.Value) tabular.Value {
		for i, col := range cols {
			if col.Name == "user_transaction_counts.amt_count_1h" {
				return row[i]
			}
		}
		t.Fatal("no count_1h")
		return tabular.Value{}
	}
	for i, want := range []int64{0, 1} {
		if got := count(w.rows[i]); got.Int != want {
			t.Errorf("row at c%+d: user b's count_1h %+v, want %d", w.rows[i][4].Int-c, got, want)
		}
	}
}
