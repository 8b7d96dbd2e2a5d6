package cluster

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/ring"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/windows"
)

func members(n int) []Member {
	var ms []Member
	for i := range n {
		ms = append(ms, Member{ID: fmt.Sprintf("n%d", i), ClusterAddr: fmt.Sprintf("127.0.0.1:%d", 7000+i)})
	}
	return ms
}

// TestNewMapSpreadsReplicas: every group has R distinct replicas, every
// node holds G*R/N of them and is the first replica of G/N groups, every
// partition belongs to exactly one group, and a map survives its JSON.
func TestNewMapSpreadsReplicas(t *testing.T) {
	m, err := NewMap("c", members(5), 10, 3)
	if err != nil {
		t.Fatal(err)
	}
	held, first := map[string]int{}, map[string]int{}
	for _, g := range m.Groups {
		seen := map[string]bool{}
		for _, r := range g.Replicas {
			if seen[r] {
				t.Fatalf("group %d lists %s twice", g.ID, r)
			}
			seen[r] = true
			held[r]++
		}
		first[g.Replicas[0]]++
	}
	for _, mb := range m.Members {
		if held[mb.ID] != 6 || first[mb.ID] != 2 {
			t.Errorf("%s holds %d replicas and leads %d groups first; want 6 and 2", mb.ID, held[mb.ID], first[mb.ID])
		}
	}
	owned := 0
	for g := range m.Groups {
		for _, o := range m.Owns(g) {
			if o {
				owned++
			}
		}
	}
	if owned != ring.Partitions {
		t.Fatalf("groups own %d partitions, want %d", owned, ring.Partitions)
	}
	back, err := DecodeMap(m.Encode())
	if err != nil || !bytes.Equal(back.Encode(), m.Encode()) {
		t.Fatalf("map JSON round trip: %v", err)
	}
	if _, err := NewMap("c", members(2), 4, 3); err == nil {
		t.Fatal("3 replicas on 2 nodes accepted")
	}
	if _, err := NewMap("c", append(members(2), Member{ID: "n1"}), 4, 1); err == nil {
		t.Fatal("a node id given twice accepted")
	}
	if _, err := DecodeMap([]byte(`{"version":1,"groups":[{"id":0,"replicas":["ghost"]}]}`)); err == nil {
		t.Fatal("a map naming an unknown node accepted")
	}
}

// TestWireRoundTrip: reads and answers (tables, values with every field)
// decode to what was encoded; a request entry splits back into id and
// record.
func TestWireRoundTrip(t *testing.T) {
	reads := []node.Read{{View: 2, Key: []byte("ユーザー")}, {Table: true, View: 0, Key: []byte("u1")}, {View: 0, Key: nil}}
	idx := []int{0, 1, 2}
	tm, got, err := decodeReads(appendReads(nil, -42, reads, idx))
	if err != nil || tm != -42 || len(got) != 3 || got[1].Table != true || string(got[0].Key) != "ユーザー" || got[2].View != 0 {
		t.Fatalf("reads: t=%d %+v %v", tm, got, err)
	}
	out := node.ReadOut{
		Vals:  [][]windows.Value{{{Present: true, Num: 1.5, Str: "x", Nums: []float64{1, 2}, Strs: []string{"a", ""}}, {}}, {{Present: true, Num: -3}}},
		TNums: [][]float64{{1, 2}}, TStrs: [][]string{{"", "s"}}, TOK: [][]bool{{true, false}}, TFound: []bool{true},
	}
	ans := appendAnswer(nil, reads, out)
	in := node.ReadOut{Vals: make([][]windows.Value, 2), TNums: [][]float64{make([]float64, 2)}, TStrs: [][]string{make([]string, 2)}, TOK: [][]bool{make([]bool, 2)}, TFound: make([]bool, 1)}
	if err := decodeAnswer(ans, reads, idx, []int{0, 0, 1}, []int{0, 0, 0}, in); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(in) != fmt.Sprint(out) {
		t.Fatalf("answer round trip:\n got %v\nwant %v", in, out)
	}
	// A key without a row (Feast's NOT_FOUND) is told from a row of nulls
	// (NULL_VALUE); an answer without TFound (a node before it) reads as a row.
	for _, found := range []bool{false, true} {
		out.TOK, out.TFound = [][]bool{{false, false}}, []bool{found}
		in.TFound[0] = !found
		if err := decodeAnswer(appendAnswer(nil, reads, out), reads, idx, []int{0, 0, 1}, []int{0, 0, 0}, in); err != nil || in.TFound[0] != found || in.TOK[0][0] || in.TOK[0][1] {
			t.Fatalf("found %v: decoded found %v ok %v (%v)", found, in.TFound[0], in.TOK[0], err)
		}
	}
	out.TFound = nil
	in.TFound[0] = false
	if err := decodeAnswer(appendAnswer(nil, reads, out), reads, idx, []int{0, 0, 1}, []int{0, 0, 0}, in); err != nil || !in.TFound[0] {
		t.Fatalf("an answer without TFound: decoded found %v (%v)", in.TFound[0], err)
	}
	out.TOK, out.TFound = [][]bool{{true, false}}, []bool{true}
	if err := decodeAnswer(ans[:len(ans)-1], reads, idx, []int{0, 0, 1}, []int{0, 0, 0}, in); err == nil {
		t.Fatal("a truncated answer decoded")
	}
	id, rec, err := decodeRequest(appendRequest(nil, "req-1", []byte{9, 8, 7}))
	if err != nil || string(id) != "req-1" || !bytes.Equal(rec, []byte{9, 8, 7}) {
		t.Fatalf("request entry: %q %v %v", id, rec, err)
	}
}

// FuzzWire: no input makes the read, answer or request decoders panic or
// read out of bounds; what they accept re-encodes to an equal message.
func FuzzWire(f *testing.F) {
	f.Add(appendReads(nil, 5, []node.Read{{View: 1, Key: []byte("k")}, {Table: true, Key: []byte("t")}}, []int{0, 1}))
	f.Add(appendRequest(nil, "id", []byte("rec")))
	f.Add([]byte{0x80, 0x80, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		if tm, reads, err := decodeReads(b); err == nil {
			idx := make([]int, len(reads))
			for i := range idx {
				idx[i] = i
			}
			if tm2, reads2, err := decodeReads(appendReads(nil, tm, reads, idx)); err != nil || tm2 != tm || len(reads2) != len(reads) {
				t.Fatalf("reads re-encode: %v", err)
			}
		}
		decodeRequest(b)
		reads := []node.Read{{View: 0}, {Table: true}}
		out := node.ReadOut{Vals: make([][]windows.Value, 1), TNums: [][]float64{make([]float64, 2)}, TStrs: [][]string{make([]string, 2)}, TOK: [][]bool{make([]bool, 2)}}
		decodeAnswer(b, reads, []int{0, 1}, []int{0, 0}, []int{0, 0}, out)
	})
}

// TestFSMAppliesARequestOnce: a request id applies once (its repeat is
// acknowledged as a repeat, changing nothing), and a record the store
// refuses is refused again on a retry rather than acknowledged.
func TestFSMAppliesARequestOnce(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	fsm, err := newGroupFSM(func() (*store.Store, error) { return store.New(repo, store.Options{}) })
	if err != nil {
		t.Fatal(err)
	}
	st := fsm.Store()
	sp := st.Sources()[0]
	var b store.Batch
	b.Reset(sp.Index, len(sp.Src.Columns))
	b.Grow(1_700_000_000_000)
	for _, c := range sp.KeyColumns() {
		b.SetStr(0, c, []byte("k"))
	}
	rec := st.AppendEventsRecord(nil, &b, 1_700_000_000_000, false)
	apply := func(index uint64, id string, rec []byte) applied {
		return fsm.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: appendRequest(nil, id, rec)}).(applied)
	}
	if a := apply(1, "r1", rec); a.err != nil || a.repeat {
		t.Fatalf("first apply: %+v", a)
	}
	if a := apply(2, "r1", rec); !a.repeat || fsm.Store().AppliedIndex() != 1 || fsm.repeats.Load() != 1 {
		t.Fatalf("repeat: %+v, store applied %d, %d repeats counted", a, fsm.Store().AppliedIndex(), fsm.repeats.Load())
	}
	bad := []byte{0xff, 0xff}
	if a := apply(3, "r2", bad); a.err == nil {
		t.Fatal("an undecodable record applied")
	}
	if a := apply(4, "r2", bad); a.err == nil || a.repeat {
		t.Fatalf("the retry of a refused record: %+v, want refused again", a)
	}
}
