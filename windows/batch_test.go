package windows_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/tally-ml/tally/ring"
	"github.com/tally-ml/tally/windows"
)

// TestAddBatchMatchesAdd feeds the same random stream (out of order, too
// late, null, NaN and expiring events) to one view by Add and to another by
// AddBatch in batches of random sizes, with and without the callers'
// hashes: the refused counts, the snapshots (byte for byte), the stats and
// every read are the same.
func TestAddBatchMatchesAdd(t *testing.T) {
	specs := append(testSpecs(1000), defaultUserSpecs()...)
	for i, spec := range specs {
		for _, collide := range []bool{false, true} {
			name := spec.Name
			if collide {
				name += "/collisions"
			}
			t.Run(name, func(t *testing.T) {
				a, _ := windows.New(spec)
				b, _ := windows.New(spec)
				if collide { // a test hash: AddBatch must ignore the ring.Hash values given
					h := func(k []byte) uint64 { return ring.Hash(k) & (0xffff_0000_0000_0007) }
					windows.SetHash(a, h)
					windows.SetHash(b, h)
				}
				u := int64(1000)
				if i >= 3 { // the default views' windows are up to a day
					u = 100_000
				}
				s := newStream(uint64(10+i), 300, u)
				rng := rand.New(rand.NewPCG(uint64(i), 9))
				nc := len(spec.Columns)
				var keys [][]byte
				var hashes []uint64
				var ts []int64
				var fields []windows.Field
				wantLate, wantBad, gotLate, gotBad := 0, 0, 0, 0
				flush := func() {
					hs := hashes
					if rng.IntN(2) == 0 {
						hs = nil
					}
					l, bd := b.AddBatch(keys, hs, ts, fields)
					gotLate += l
					gotBad += bd
					keys, hashes, ts, fields = keys[:0], hashes[:0], ts[:0], fields[:0]
				}
				size := 1 + rng.IntN(300)
				for range 30_000 {
					k, at, f := s.next()
					f = f[:nc]
					if rng.IntN(500) == 0 {
						f[0] = windows.Field{Num: math.NaN()}
					}
					switch err := a.Add(k, at, f); {
					case errors.Is(err, windows.ErrTooLate):
						wantLate++
					case err != nil:
						wantBad++
					}
					keys = append(keys, k)
					hashes = append(hashes, ring.Hash(k))
					ts = append(ts, at)
					for _, x := range f {
						x.Str = append([]byte(nil), x.Str...)
						fields = append(fields, x)
					}
					if len(ts) == size {
						flush()
						size = 1 + rng.IntN(300)
					}
				}
				flush()
				if gotLate != wantLate || gotBad != wantBad || wantLate == 0 {
					t.Fatalf("AddBatch refused %d too late and %d bad; Add %d and %d (too late must be > 0)", gotLate, gotBad, wantLate, wantBad)
				}
				if sa, sb := snapshot(t, a), snapshot(t, b); !bytes.Equal(sa, sb) {
					t.Fatalf("snapshots differ: %d and %d bytes", len(sa), len(sb))
				}
				sameStats(t, a, b)
				sameReads(t, a, b, s.keys, s.now, s.u)
			})
		}
	}
}

func TestAddBatchPanicsOnLengths(t *testing.T) {
	v, _ := windows.New(defaultUserSpecs()[0])
	defer func() {
		if recover() == nil {
			t.Fatal("AddBatch with 2 keys and 1 time did not panic")
		}
	}()
	v.AddBatch([][]byte{[]byte("a"), []byte("b")}, nil, []int64{1}, make([]windows.Field, 2))
}

// BenchmarkIngestBatch is BenchmarkIngest through AddBatch, 256 events a
// call (no hashes given: AddBatch computes them), the keys drawn the same
// way.
func BenchmarkIngestBatch(b *testing.B) { benchIngestBatch(b, 0) }

// BenchmarkIngestWarmBatch is BenchmarkIngestWarm through AddBatch.
func BenchmarkIngestWarmBatch(b *testing.B) { benchIngestBatch(b, 1<<22) }

// keyTable holds the keys of a stream of events in one buffer, in event
// order, as the store holds a batch's keys (slices of its request, read in
// order). A [][]byte of a million keys would be a million pointers for
// every garbage collection during the run to scan, and a key looked up at
// random a cache miss: costs of the benchmark's own data (about a fifth of
// its CPU time: 420 vs 337 ns per event for the group, over the same
// code), not of the view.
type keyTable struct {
	buf  []byte
	ends []uint32
}

// newKeyTable returns the keys user-<order[i]>, in order.
func newKeyTable(order []uint32) keyTable {
	var k keyTable
	for _, u := range order {
		k.buf = fmt.Appendf(k.buf, "user-%d", u)
		k.ends = append(k.ends, uint32(len(k.buf)))
	}
	return k
}

func (k keyTable) at(i uint32) []byte {
	start := uint32(0)
	if i > 0 {
		start = k.ends[i-1]
	}
	return k.buf[start:k.ends[i]:k.ends[i]]
}

func benchIngestBatch(b *testing.B, warm int) {
	for _, spec := range append(defaultUserSpecs(), tiledSpec(), userGroupSpec()) {
		b.Run(spec.Name, func(b *testing.B) {
			v, _ := windows.New(spec)
			rng := rand.New(rand.NewPCG(1, 2))
			n := max(warm, 1<<20)
			order := make([]uint32, n)
			for i := range order {
				order[i] = uint32(rng.IntN(1 << 20)) // among a million users
			}
			keys := newKeyTable(order)
			fields := []windows.Field{{Num: 12.5}, {Str: []byte("merchant-7")}, {Num: 1}}[:len(spec.Columns)]
			nc := len(fields)
			const batch = 256
			ks := make([][]byte, batch)
			ts := make([]int64, batch)
			fs := make([]windows.Field, 0, batch*nc)
			for range batch {
				fs = append(fs, fields...)
			}
			t, step := int64(0), int64(1)
			if warm > 0 {
				step = 20
				for i := 0; i < warm; i += batch { // about 4 events per user
					for j := range batch {
						t += step
						ks[j], ts[j] = keys.at(uint32(i+j)), t
					}
					v.AddBatch(ks, nil, ts, fs)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i += batch {
				m := min(batch, b.N-i)
				for j := range m {
					t += step
					ks[j], ts[j] = keys.at(uint32((i+j)%n)), t
				}
				v.AddBatch(ks[:m], nil, ts[:m], fs[:m*nc])
			}
			reportIngest(b, cpu0)
		})
	}
}

// TestWritersTakeTurns runs AddBatch and Add from several goroutines on one
// view, each on its own keys, while others Read (run with
// -race: AddBatch's prefetch stages read partitions without their locks,
// which holds only while writers take turns). Every read at the end equals
// a view fed each writer's events one writer at a time.
func TestWritersTakeTurns(t *testing.T) {
	spec := defaultUserSpecs()[1]
	v, _ := windows.New(spec)
	ref, _ := windows.New(spec)
	const writers, perWriter, events = 4, 300, 6_000
	keys := benchKeys(writers * perWriter)
	feed := func(w int, into *windows.View, batched bool) {
		const batch = 64
		ks := make([][]byte, 0, batch)
		ts := make([]int64, 0, batch)
		fs := make([]windows.Field, 0, 2*batch)
		for i := range events {
			k := keys[w*perWriter+i%perWriter]
			f := []windows.Field{{Num: float64(i%997) / 100}, {Str: []byte{'m', byte('a' + i%7)}}}
			at := int64(i) * 1000
			if !batched || i%5 == 0 { // some single Adds between the batches
				if err := into.Add(k, at, f); err != nil {
					t.Error(err)
				}
				continue
			}
			ks, ts, fs = append(ks, k), append(ts, at), append(fs, f...)
			if len(ks) == batch || i == events-1 {
				if late, bad := into.AddBatch(ks, nil, ts, fs); late+bad != 0 {
					t.Errorf("writer %d: %d too late, %d bad", w, late, bad)
				}
				ks, ts, fs = ks[:0], ts[:0], fs[:0]
			}
		}
		if len(ks) > 0 {
			into.AddBatch(ks, nil, ts, fs)
		}
	}
	var writing, reading sync.WaitGroup
	stop := make(chan struct{})
	for r := range 2 {
		reading.Add(1)
		go func() {
			defer reading.Done()
			var dst []windows.Value
			for i := r; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := keys[i%len(keys)]
				dst = v.Read(k, int64(events)*1000, dst[:0])
				if len(dst) != len(spec.Aggregations) {
					t.Errorf("read %d values", len(dst))
					return
				}
			}
		}()
	}
	for w := range writers {
		writing.Add(1)
		go func() {
			defer writing.Done()
			feed(w, v, true)
		}()
	}
	writing.Wait()
	close(stop)
	reading.Wait()
	for w := range writers {
		feed(w, ref, false)
	}
	sameReads(t, v, ref, keys, events*1000, 1000)
	sameStats(t, v, ref)
}
