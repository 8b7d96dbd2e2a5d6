package store

import (
	"bytes"
	"maps"
	"testing"

	"github.com/tally-ml/tally/features"
)

// recLog is a Log that keeps its records in memory, for replays.
type recLog struct{ recs [][]byte }

func (l *recLog) Append(recs ...[]byte) (uint64, error) {
	for _, r := range recs {
		l.recs = append(l.recs, bytes.Clone(r))
	}
	return uint64(len(l.recs)), nil
}
func (l *recLog) Err() error { return nil }

func streamBatch(t testing.TB, n *Store, users ...string) *Batch {
	t.Helper()
	sp := n.sources[0]
	var b Batch
	b.Reset(0, len(sp.Src.Columns))
	for i, u := range users {
		e := b.Grow(t0 + int64(i))
		b.SetStr(e, sp.ColIndex["user_id"], []byte(u))
		b.SetStr(e, sp.ColIndex["merchant"], []byte("m"))
		b.SetStr(e, sp.ColIndex["country"], []byte("c"))
		b.SetNum(e, sp.ColIndex["amt"], float64(i+1))
	}
	return &b
}

func events(n *Store) int64 { return n.ViewStats(0).Events }

// TestStreamExactlyOnce: a batch whose offsets the state holds is skipped
// whole, live and in every replay (Apply of the log, a snapshot plus the
// log after it), and the offsets survive both.
func TestStreamExactlyOnce(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	log := &recLog{}
	n, err := New(repo, Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	pos := func(first, next int64) StreamPos {
		return StreamPos{Source: "transactions", Topic: "tx", Partition: 3, First: first, Next: next}
	}
	steps := []struct {
		pos   StreamPos
		users []string
		apply bool
	}{
		{pos(0, 3), []string{"a", "b", "a"}, true},
		{pos(0, 3), []string{"a", "b", "a"}, false}, // the same batch again
		{pos(2, 4), []string{"a", "c"}, false},      // overlaps: skipped whole
		{pos(3, 5), []string{"d"}, true},            // offset 4 was a rejected record
		{pos(5, 6), nil, true},                      // only rejected records: the offset moves
		{pos(9, 11), []string{"e", "f"}, true},      // a gap (retention, a recreated topic)
	}
	var snap bytes.Buffer
	var snapAfter int
	for i, s := range steps {
		applied, _, err := n.CommitStream(streamBatch(t, n, s.users...), t0+int64(i), s.pos)
		if err != nil || applied != s.apply {
			t.Fatalf("step %d: applied %v, %v; want applied %v", i, applied, err, s.apply)
		}
		if i == 2 {
			if _, err := n.WriteSnapshot(&snap); err != nil {
				t.Fatal(err)
			}
			snapAfter = len(log.recs)
		}
	}
	if got := events(n); got != 6 {
		t.Fatalf("events held %d, want 6 (3 + 1 + 2)", got)
	}
	if next, ok := n.StreamOffset("transactions", "tx", 3); !ok || next != 11 {
		t.Fatalf("next offset %d %v, want 11", next, ok)
	}
	want := n.StreamOffsets("transactions", "tx")

	replayed, _ := New(repo, Options{})
	for i, rec := range log.recs {
		if err := replayed.Apply(uint64(i+1), rec); err != nil {
			t.Fatal(err)
		}
	}
	restored, _ := New(repo, Options{})
	if err := restored.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	if got := restored.StreamOffsets("transactions", "tx"); got[3] != 3 {
		t.Fatalf("snapshot holds offsets %v, want partition 3 at 3", got)
	}
	for i := snapAfter; i < len(log.recs); i++ {
		if err := restored.Apply(uint64(i+1), log.recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	for name, s := range map[string]*Store{"log replay": replayed, "snapshot and log": restored} {
		if got := events(s); got != 6 {
			t.Errorf("%s: events held %d, want 6", name, got)
		}
		if got := s.StreamOffsets("transactions", "tx"); !maps.Equal(got, want) {
			t.Errorf("%s: offsets %v, want %v", name, got, want)
		}
	}
}

// FuzzStreamRecord: a corrupt stream record is an error, never a panic.
func FuzzStreamRecord(f *testing.F) {
	repo, err := features.Default()
	if err != nil {
		f.Fatal(err)
	}
	n, _ := New(repo, Options{})
	b := streamBatch(f, n, "a", "b")
	f.Add(appendEventsRecord(appendStreamHeader(nil, StreamPos{"transactions", "tx", 1, 5, 7}), n.sources[0], b))
	f.Fuzz(func(t *testing.T, rec []byte) {
		inner, pos, ok, err := unwrapStream(rec)
		if err != nil || !ok {
			return
		}
		if pos.Next < pos.First || pos.Partition < 0 {
			t.Fatalf("bad range accepted: %+v", pos)
		}
		var out Batch
		n.decodeEventsRecord(inner, &out)
		m, _ := New(repo, Options{})
		m.Apply(1, rec)
	})
}

// TestAppendStreamRecordAppliesAsCommitStream: the record a replicated
// writer proposes (AppendStreamRecord) names its range (StreamRecordPos)
// and applies as CommitStream's own: counted once, a range starting below
// the held offset skipped whole, the offset moved to its end.
func TestAppendStreamRecordAppliesAsCommitStream(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pos := StreamPos{Source: "transactions", Topic: "t", Partition: 2, First: 5, Next: 9}
	rec := n.AppendStreamRecord(nil, streamBatch(t, n, "a", "b"), t0, pos)
	if got, ok := StreamRecordPos(rec); !ok || got != pos {
		t.Fatalf("StreamRecordPos: %+v %v, want %+v", got, ok, pos)
	}
	if _, ok := StreamRecordPos(n.AppendEventsRecord(nil, streamBatch(t, n, "a"), t0, false)); ok {
		t.Fatal("an events record taken for a stream record")
	}
	if err := n.Apply(1, rec); err != nil {
		t.Fatal(err)
	}
	overlap := n.AppendStreamRecord(nil, streamBatch(t, n, "c"), t0, StreamPos{Source: "transactions", Topic: "t", Partition: 2, First: 8, Next: 12})
	if err := n.Apply(2, overlap); err != nil {
		t.Fatal(err)
	}
	if next, ok := n.StreamOffset("transactions", "t", 2); !ok || next != 9 || events(n) != 2 {
		t.Fatalf("offset %d (%v), %d events; want 9 and 2 (the overlapping range skipped)", next, ok, events(n))
	}
}

// TestStreamRecordThatFailsMovesNoOffset: a stream record that fails to
// apply (here cut short) leaves the partition's offset where it was, so the
// intact record, proposed again, is applied and not skipped as counted.
func TestStreamRecordThatFailsMovesNoOffset(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(repo, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pos := StreamPos{Source: "transactions", Topic: "t", Partition: 1, First: 0, Next: 10}
	rec := n.AppendStreamRecord(nil, streamBatch(t, n, "a", "b", "c"), t0, pos)
	if err := n.Apply(1, rec[:len(rec)-1]); err == nil {
		t.Fatal("a stream record cut short applied")
	}
	if next, ok := n.StreamOffset("transactions", "t", 1); ok {
		t.Fatalf("the failed record moved the offset to %d", next)
	}
	if err := n.Apply(2, rec); err != nil {
		t.Fatal(err)
	}
	if next, ok := n.StreamOffset("transactions", "t", 1); !ok || next != 10 || events(n) != 3 {
		t.Fatalf("offset %d (%v), %d events; want 10 and 3: the intact record applied", next, ok, events(n))
	}
}
