package windows_test

import (
	"encoding/binary"
	"testing"

	"github.com/tally-ml/tally/windows"
)

// FuzzAddRead decodes its input as a sequence of Adds and Reads over a few
// entities and checks every answerable read against the reference.
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
				for _, c := range cs {
					c.add(k, now+delta, fields)
				}
			case 3: // Read at now+delta, scaled to reach window edges
				t := now + int64(int8(b1))*int64(b2)
				if len(data) >= 8 && b2 == 255 {
					t = int64(binary.LittleEndian.Uint64(data))
					data = data[8:]
				}
				for _, c := range cs {
					c.read(k, t)
				}
			}
		}
		for _, c := range cs {
			for _, k := range keys {
				c.read(k, now)
			}
		}
	}
}
