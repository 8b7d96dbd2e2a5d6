package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/store"
)

// BenchmarkCheckpoint: how long a replica's applies stall while it applies
// a checkpoint entry (one pass over its state: store.Checksums), for a
// store of 200k events over 20k entities per key column.
func BenchmarkCheckpoint(b *testing.B) {
	repo, err := features.Default()
	if err != nil {
		b.Fatal(err)
	}
	fsm, err := newGroupFSM(func() (*store.Store, error) { return store.New(repo, store.Options{}) })
	if err != nil {
		b.Fatal(err)
	}
	st := fsm.Store()
	sp := st.Sources()[0]
	now := time.Now().UnixMilli() - 3_600_000
	index := uint64(0)
	for r := range 200 {
		var bt store.Batch
		bt.Reset(sp.Index, len(sp.Src.Columns))
		for e := range 1000 {
			i := bt.Grow(now + int64(r*1000+e))
			for _, c := range sp.KeyColumns() {
				bt.SetStr(i, c, fmt.Appendf(nil, "k%d", (r*1000+e)%20000))
			}
		}
		index++
		rec := st.AppendEventsRecord(nil, &bt, now+int64(r*1000), false)
		if a := fsm.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: appendRequest(nil, fmt.Sprint("r", r), rec)}).(applied); a.err != nil {
			b.Fatal(a.err)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		index++
		fsm.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: []byte{checkpointTag}})
	}
}
