package windows_test

import (
	"math/rand/v2"
	"testing"

	"github.com/tally-ml/tally/windows"
)

// BenchmarkIngestHotFloat: a hot entity (buckets built by a read) of values
// that are not whole cents, one event in 16 up to a minute late.
func BenchmarkIngestHotFloat(b *testing.B) {
	spec := hotSpecs()[2]
	v, _ := windows.New(spec)
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
	out := make([]windows.Value, 0, 8)
	out = v.Read(key, ts, out)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		add(i)
	}
}
