package store

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/ring"
	"github.com/tally-ml/tally/windows"
)

// TestApplyMatchesEventByEventAdds commits batches of random users, out of
// order and partly too late, to a store that owns every partition and to
// one that owns half (a replica group's), and checks every view against
// views fed event by event as applyTarget did before it batched: Add for
// an owned key, AdvanceWatermark for another group's. Snapshots are equal
// byte for byte, and so are the refused counts.
func TestApplyMatchesEventByEventAdds(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	var half [ring.Partitions]bool
	for p := range half {
		half[p] = p%2 == 0
	}
	for _, owns := range []*[ring.Partitions]bool{nil, &half} {
		t.Run(fmt.Sprintf("owns all %v", owns == nil), func(t *testing.T) {
			n, err := New(repo, Options{Owns: owns})
			if err != nil {
				t.Fatal(err)
			}
			sp := n.sources[0]
			ref := make([]*windows.View, len(n.views))
			for i, v := range n.views {
				ref[i], _ = windows.New(v.Spec())
			}
			rng := rand.New(rand.NewPCG(1, 2))
			wantLate := 0
			now := t0
			for range 20 {
				var b Batch
				b.Reset(0, len(sp.Src.Columns))
				for range 1 + rng.IntN(700) {
					now += rng.Int64N(60_000)
					ts := now - rng.Int64N(600_000)
					if rng.IntN(50) == 0 {
						ts = now - 3*86_400_000 // too late for every view
					}
					e := b.Grow(ts)
					b.SetStr(e, sp.ColIndex["user_id"], fmt.Appendf(nil, "u%d", rng.IntN(300)))
					b.SetStr(e, sp.ColIndex["merchant"], fmt.Appendf(nil, "m%d", rng.IntN(40)))
					b.SetStr(e, sp.ColIndex["country"], fmt.Appendf(nil, "c%d", rng.IntN(10)))
					b.SetNum(e, sp.ColIndex["amt"], float64(rng.IntN(100000))/100)
				}
				for _, tg := range sp.targets {
					v := ref[tg.group]
					for e := range b.Len() {
						key := b.Str(e, tg.keyCol)
						if owns != nil && !owns[ring.Partition(ring.Hash(key))] {
							v.AdvanceWatermark(b.ts[e])
							continue
						}
						var f []windows.Field
						for _, c := range tg.cols {
							f = append(f, b.field(e, c))
						}
						if err := v.Add(key, b.ts[e], f); errors.Is(err, windows.ErrTooLate) {
							wantLate++
						} else if err != nil {
							t.Fatal(err)
						}
					}
				}
				if _, _, err := n.CommitEvents("", []*Batch{&b}, now, false); err != nil {
					t.Fatal(err)
				}
			}
			var gotLate int64
			for i, v := range n.views {
				gotLate += v.Stats().TooLate
				var a, r bytes.Buffer
				if err := v.WriteMeta(&a); err != nil {
					t.Fatal(err)
				}
				if err := ref[i].WriteMeta(&r); err != nil {
					t.Fatal(err)
				}
				for p := range uint32(ring.Partitions) {
					_ = v.WritePartition(&a, p)
					_ = ref[i].WritePartition(&r, p)
				}
				if !bytes.Equal(a.Bytes(), r.Bytes()) {
					t.Fatalf("view %s: state differs from event-by-event Adds", v.Spec().Name)
				}
				if ref[i].Stats().Events == 0 {
					t.Fatalf("view %s: no events", v.Spec().Name)
				}
			}
			if gotLate != int64(wantLate) || wantLate == 0 {
				t.Fatalf("too late: %d, event by event %d (want > 0)", gotLate, wantLate)
			}
		})
	}
}
