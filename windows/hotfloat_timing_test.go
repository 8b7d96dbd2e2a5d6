package windows_test

import (
	"math/rand/v2"
	"testing"

	"github.com/tally-ml/tally/windows"
)

// BenchmarkIngestHotFloat: a hot entity (buckets built by a read) of values
// that are not whole cents, one event in 16 up to a minute late: add, one
// event an op, and add_read, an event and a read of the entity an op (the
// read merges again the buckets the late events made dirty).
func BenchmarkIngestHotFloat(b *testing.B) {
	for _, read := range []bool{false, true} {
		name := "add"
		if read {
			name = "add_read"
		}
		b.Run(name, func(b *testing.B) {
			v, _ := windows.New(hotSpecs()[2])
			key := []byte("US")
			rng := rand.New(rand.NewPCG(7, 8))
			jitter := make([]int64, 1<<16)
			for i := range jitter {
				jitter[i] = 800 + rng.Int64N(400)
				if i%16 == 0 {
					jitter[i] = -rng.Int64N(60_000)
				}
			}
			fields := []windows.Field{{Num: 12.5}}
			ts := int64(1000) * 86_400_000
			add := func(i int) {
				ts += 1000
				fields[0].Num = float64(i%997) + 0.0013
				_ = v.Add(key, ts+jitter[i&(1<<16-1)], fields)
			}
			for i := range 50_000 {
				add(i)
			}
			out := v.Read(key, ts, nil)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				add(i)
				if read {
					out = v.Read(key, ts, out[:0])
				}
			}
		})
	}
}
