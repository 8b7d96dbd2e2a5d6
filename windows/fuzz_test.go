package windows_test

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"github.com/tally-ml/tally/windows"
)

// FuzzAddRead decodes its input as a sequence of Adds and Reads over a few
// entities and checks every answerable read against the reference. A second
// view of each spec gets the same events through AddBatch, a batch of those
// since the last read at a time, and must answer every read (answerable or
// not), count the same refusals and hold the same stats as the first.
func FuzzAddRead(f *testing.F) {
	f.Add([]byte("\x00\x01\x10\x00\x05\x01\x00\x02\x20\x03"))
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x02\x00\x00\x03\x04\x00\x05\x06\x07\x08\x09"))
	f.Fuzz(fuzzBody)
}

func fuzzBody(t *testing.T, data []byte) {
	{
		const u = 10 // small windows: the fuzzer reaches edges quickly
		var cs []*checker
		for _, s := range testSpecs(u) {
			cs = append(cs, newChecker(t, s))
		}
		bs := make([]*batched, len(cs))
		for i, c := range cs {
			bs[i] = newBatched(t, c.spec)
		}
		keys := [][]byte{[]byte("a"), []byte("b"), []byte("é"), []byte("")}
		vals := []float64{0, 1, -1, 2.5, 1e15, -1e15, 1e-9, 3}
		fields := make([]windows.Field, 3)
		now := int64(0)
		for len(data) >= 4 {
			op, k, b1, b2 := data[0], keys[data[1]%4], data[2], data[3]
			data = data[4:]
			delta := int64(int8(b1)) * int64(1+b2%8)
			switch op % 4 {
			case 0, 1, 2: // Add at now+delta; op also advances now
				if op%4 == 0 {
					now += int64(b2) * u / 4
				}
				fields[0] = windows.Field{Num: vals[b1%8], Null: b2%11 == 0}
				fields[1] = windows.Field{Str: []byte(merchants[b2%uint8(len(merchants))]), Null: b1%13 == 0}
				fields[2] = windows.Field{Num: float64(b2 % 3), Null: b2%2 == 0}
				for i, c := range cs {
					bs[i].add(k, now+delta, fields, c.add(k, now+delta, fields))
				}
			case 3: // Read at now+delta, scaled to reach window edges
				t := now + int64(int8(b1))*int64(b2)
				if len(data) >= 8 && b2 == 255 {
					t = int64(binary.LittleEndian.Uint64(data))
					data = data[8:]
				}
				for i, c := range cs {
					c.read(k, t)
					bs[i].same(c.v, k, t)
				}
			}
		}
		for i, c := range cs {
			for _, k := range keys {
				c.read(k, now)
				bs[i].same(c.v, k, now)
			}
			if bs[i].late != bs[i].wantLate || bs[i].bad != bs[i].wantBad {
				t.Fatalf("%s: AddBatch refused %d too late and %d bad, Add %d and %d", c.spec.Name, bs[i].late, bs[i].bad, bs[i].wantLate, bs[i].wantBad)
			}
			if got, want := bs[i].v.Stats(), c.v.Stats(); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: stats after AddBatch %+v, after Add %+v", c.spec.Name, got, want)
			}
		}
	}
}

// batched is a view fed through AddBatch, with the events since its last
// flush and what Add said of each.
type batched struct {
	t                 *testing.T
	spec              windows.Spec
	v                 *windows.View
	keys              [][]byte
	ts                []int64
	fields            []windows.Field
	late, bad         int
	wantLate, wantBad int
	got, want         []windows.Value
}

func newBatched(t *testing.T, spec windows.Spec) *batched {
	v, err := windows.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	return &batched{t: t, spec: spec, v: v}
}

// add queues an event; err is what Add answered for it.
func (b *batched) add(k []byte, ts int64, f []windows.Field, err error) {
	switch {
	case errors.Is(err, windows.ErrTooLate):
		b.wantLate++
	case err != nil:
		b.wantBad++
	}
	b.keys, b.ts = append(b.keys, k), append(b.ts, ts)
	b.fields = append(b.fields, f[:len(b.spec.Columns)]...)
}

// same flushes the queued events and checks that b answers the read of k
// at t as v does.
func (b *batched) same(v *windows.View, k []byte, t int64) {
	b.t.Helper()
	if len(b.keys) > 0 {
		late, bad := b.v.AddBatch(b.keys, nil, b.ts, b.fields)
		b.late, b.bad = b.late+late, b.bad+bad
		b.keys, b.ts, b.fields = b.keys[:0], b.ts[:0], b.fields[:0]
	}
	b.got, b.want = b.v.Read(k, t, b.got[:0]), v.Read(k, t, b.want[:0])
	if !reflect.DeepEqual(b.got, b.want) {
		b.t.Fatalf("%s: Read(%q, %d) after AddBatch %+v, after Add %+v", b.spec.Name, k, t, b.got, b.want)
	}
}
