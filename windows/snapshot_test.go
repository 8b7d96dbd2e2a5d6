package windows_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/tally-ml/tally/ring"
	"github.com/tally-ml/tally/windows"
)

// stream is a reproducible random event stream over a few hundred entities:
// out of order, too-late, tile-edge and idle-then-expired events.
type stream struct {
	rng    *rand.Rand
	keys   [][]byte
	now    int64
	u      int64
	fields []windows.Field
}

func newStream(seed uint64, entities int, u int64) *stream {
	s := &stream{rng: rand.New(rand.NewPCG(seed, 1)), now: -50 * u, u: u, fields: make([]windows.Field, 3)}
	for i := range entities {
		s.keys = append(s.keys, fmt.Appendf(nil, "user-%d", i))
	}
	return s
}

// next returns the next event; fields are reused.
func (s *stream) next() ([]byte, int64, []windows.Field) {
	r, u := s.rng, s.u
	s.now += r.Int64N(u / 4)
	k := r.IntN(len(s.keys) / 2)
	if r.IntN(2) == 0 {
		// Entities take turns: the others go idle and expire.
		k = (int(s.now/(300*u))*37 + r.IntN(20)) % len(s.keys)
		k = max(k, 0)
	} else if r.IntN(4) == 0 {
		k = r.IntN(5) // hot entities: tiles
	}
	ts := s.now - r.Int64N(u/2)
	switch x := r.IntN(100); {
	case x < 10:
		ts = s.now - r.Int64N(25*u)
	case x < 12:
		ts = s.now - 1300*u
	case x < 25:
		ts = floorDiv(ts, 10*u)*10*u - int64(r.IntN(2))
	}
	s.fields[0] = windows.Field{Num: (r.Float64()*200 - 50) * scales[r.IntN(len(scales))], Null: r.IntN(20) == 0}
	s.fields[1] = windows.Field{Str: []byte(merchants[r.IntN(len(merchants))]), Null: r.IntN(20) == 0}
	s.fields[2] = windows.Field{Num: float64(r.IntN(5)), Null: r.IntN(3) == 0}
	return s.keys[k], ts, s.fields
}

// snapshot writes v's meta then every partition to one buffer.
func snapshot(t testing.TB, v *windows.View) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := v.WriteMeta(&buf); err != nil {
		t.Fatal(err)
	}
	for p := range uint32(ring.Partitions) {
		if err := v.WritePartition(&buf, p); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func restore(t testing.TB, spec windows.Spec, snap []byte) *windows.View {
	t.Helper()
	v, err := windows.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	r := bytes.NewReader(snap)
	if err := v.ReadMeta(r); err != nil {
		t.Fatal(err)
	}
	for p := range uint32(ring.Partitions) {
		if err := v.ReadPartition(r, p); err != nil {
			t.Fatal(err)
		}
	}
	if r.Len() != 0 {
		t.Fatalf("%d bytes left after the snapshot", r.Len())
	}
	return v
}

// sameValues compares two reads bit for bit.
func sameValues(a, b []windows.Value) bool {
	return slices.EqualFunc(a, b, func(x, y windows.Value) bool {
		return x.Present == y.Present && math.Float64bits(x.Num) == math.Float64bits(y.Num) && x.Str == y.Str &&
			slices.Equal(x.Strs, y.Strs) && slices.EqualFunc(x.Nums, y.Nums, func(p, q float64) bool {
			return math.Float64bits(p) == math.Float64bits(q)
		})
	})
}

// sameReads checks that a and b answer every key alike at times around now.
func sameReads(t *testing.T, a, b *windows.View, keys [][]byte, now, u int64) {
	t.Helper()
	var ga, gb []windows.Value
	keys = append(keys, []byte("never-seen"))
	for _, k := range keys {
		for _, dt := range []int64{-1300 * u, -600 * u, -60 * u, -20 * u, -5 * u, -1, 0, 1, 7 * u, 600 * u, 5000 * u} {
			ga, gb = a.Read(k, now+dt, ga[:0]), b.Read(k, now+dt, gb[:0])
			if !sameValues(ga, gb) {
				t.Fatalf("%s: Read(%q, now%+d):\noriginal %+v\nrestored %+v", a.Spec().Name, k, dt, ga, gb)
			}
		}
	}
}

func sameStats(t *testing.T, a, b *windows.View) {
	t.Helper()
	sa, sb := a.Stats(), b.Stats()
	sa.Bytes, sb.Bytes, sa.Values, sb.Values = 0, 0, 0, 0
	if sa != sb {
		t.Fatalf("%s: stats differ: original %+v, restored %+v", a.Spec().Name, sa, sb)
	}
}

// TestSnapshotRoundTrip restores a snapshot taken after a random stream into
// a fresh view: every read is identical bit for bit, and the same further
// events keep both views (and the reference) identical.
func TestSnapshotRoundTrip(t *testing.T) {
	const u = 1000
	for si, spec := range testSpecs(u) {
		t.Run(spec.Name, func(t *testing.T) {
			c := newChecker(t, spec)
			s := newStream(uint64(si), 300, u)
			for range 30_000 {
				c.add(s.next())
			}
			snap := snapshot(t, c.v)
			r := restore(t, spec, snap)
			sameReads(t, c.v, r, s.keys, s.now, u)
			sameStats(t, c.v, r)
			if again := snapshot(t, r); len(again) != len(snap) {
				t.Fatalf("snapshot of the restored view: %d bytes, original %d", len(again), len(snap))
			}
			// Continue both with the same events; the restored view must
			// agree with the original and the reference at every step.
			rc := &checker{t: t, spec: spec, v: r, ref: c.ref}
			for i := range 30_000 {
				k, ts, f := s.next()
				err := c.v.Add(k, ts, f)
				if err2 := rc.add(k, ts, f); !errors.Is(err, err2) || (err == nil) != (err2 == nil) {
					t.Fatalf("Add(%q, %d): original %v, restored %v", k, ts, err, err2)
				}
				if i%7 == 0 {
					rc.read(k, s.now-int64(s.rng.IntN(30))*u)
				}
			}
			sameReads(t, c.v, r, s.keys, s.now, u)
			sameStats(t, c.v, r)
			for _, k := range s.keys {
				rc.read(k, s.now)
			}
			t.Logf("%d-byte snapshot, %+v", len(snap), r.Stats())
		})
	}
}

// TestSnapshotCollisions round-trips entities whose hashes collide.
func TestSnapshotCollisions(t *testing.T) {
	spec := testSpecs(1000)[0]
	hash := func(b []byte) uint64 { return uint64(len(b)&1) | 7<<54 }
	v, _ := windows.New(spec)
	windows.SetHash(v, hash)
	s := newStream(5, 40, 1000)
	for range 5000 {
		_ = v.Add(s.next())
	}
	r, _ := windows.New(spec)
	windows.SetHash(r, hash)
	var buf bytes.Buffer
	if err := v.WritePartition(&buf, 7); err != nil {
		t.Fatal(err)
	}
	if err := r.ReadPartition(&buf, 7); err != nil {
		t.Fatal(err)
	}
	sameReads(t, v, r, s.keys, s.now, 1000)
}

// TestSnapshotRefuses checks that sections for another spec or partition,
// truncated or altered ones are refused with ErrSnapshot and change nothing.
func TestSnapshotRefuses(t *testing.T) {
	spec := testSpecs(1000)[0]
	v, _ := windows.New(spec)
	s := newStream(6, 50, 1000)
	for range 3000 {
		_ = v.Add(s.next())
	}
	key := s.keys[0]
	p := ring.Partition(ring.Hash(key))
	var sec bytes.Buffer
	if err := v.WritePartition(&sec, p); err != nil {
		t.Fatal(err)
	}
	other := spec
	other.Lateness++
	ov, _ := windows.New(other)
	if err := ov.ReadPartition(bytes.NewReader(sec.Bytes()), p); !errors.Is(err, windows.ErrSnapshot) {
		t.Fatalf("another spec: %v", err)
	}
	r, _ := windows.New(spec)
	if err := r.ReadPartition(bytes.NewReader(sec.Bytes()), p+1); !errors.Is(err, windows.ErrSnapshot) {
		t.Fatalf("another partition: %v", err)
	}
	for n := range sec.Len() {
		if err := r.ReadPartition(bytes.NewReader(sec.Bytes()[:n]), p); !errors.Is(err, windows.ErrSnapshot) {
			t.Fatalf("truncated at %d: %v", n, err)
		}
	}
	if st := r.Stats(); st.Entities != 0 || st.Values != 0 {
		t.Fatalf("refused sections changed the view: %+v", st)
	}
}

// TestSnapshotConcurrentReads writes partitions while other goroutines read.
func TestSnapshotConcurrentReads(t *testing.T) {
	spec := testSpecs(1000)[1]
	v, _ := windows.New(spec)
	s := newStream(7, 200, 1000)
	for range 10_000 {
		_ = v.Add(s.next())
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := range 2 {
		wg.Go(func() {
			var dst []windows.Value
			for i := g; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				dst = v.Read(s.keys[i%len(s.keys)], s.now, dst[:0])
			}
		})
	}
	snap := snapshot(t, v)
	close(stop)
	wg.Wait()
	sameReads(t, v, restore(t, spec, snap), s.keys, s.now, 1000)
}

// FuzzReadPartition feeds arbitrary bytes to ReadPartition and ReadMeta: they
// must refuse or accept without panicking, and an accepted partition must be
// readable, writable and usable.
func FuzzReadPartition(f *testing.F) {
	spec := testSpecs(10)[0]
	v, _ := windows.New(spec)
	s := newStream(8, 6, 10)
	for range 400 {
		_ = v.Add(s.next())
	}
	var meta bytes.Buffer
	_ = v.WriteMeta(&meta)
	f.Add(meta.Bytes())
	for _, k := range s.keys {
		var sec bytes.Buffer
		_ = v.WritePartition(&sec, ring.Partition(ring.Hash(k)))
		f.Add(sec.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, _ := windows.New(spec)
		if err := v.ReadMeta(bytes.NewReader(data)); err == nil {
			v.AdvanceWatermark(0)
		}
		p := uint32(0)
		if len(data) >= 18 {
			p = uint32(data[14]) | uint32(data[15])<<8
			p %= ring.Partitions
		}
		if err := v.ReadPartition(bytes.NewReader(data), p); err != nil {
			return
		}
		var sec bytes.Buffer
		if err := v.WritePartition(&sec, p); err != nil {
			t.Fatal(err)
		}
		r, _ := windows.New(spec)
		if err := r.ReadPartition(&sec, p); err != nil {
			t.Fatalf("an accepted section, written again, is refused: %v", err)
		}
		var dst []windows.Value
		fields := []windows.Field{{Num: 1}, {Str: []byte("x")}, {Num: 2}}
		for _, k := range windows.Keys(v, p) {
			for _, at := range []int64{math.MinInt64, -1000, 0, 1000, math.MaxInt64} {
				dst = v.Read(k, at, dst[:0])
			}
			_ = v.Add(k, 5, fields)
			dst = v.Read(k, 5, dst[:0])
		}
	})
}

// TestSweepFloorInStep keeps 60 entities in one partition busy long enough
// for sweeps to learn that none can be idle (and skip), snapshots it, then
// feeds the original and its restored copy (which does not know that) the
// same events while half the entities fall silent and go idle: the two stay
// byte for byte the same at every step, and the silent ones are dropped
// within a few passes of the sweep.
func TestSweepFloorInStep(t *testing.T) {
	spec := defaultUserSpecs()[0]                                         // counts up to 1 h: horizon about an hour
	hash := func(b []byte) uint64 { return ring.Hash(b) &^ (1023 << 54) } // all in partition 0
	orig, _ := windows.New(spec)
	windows.SetHash(orig, hash)
	keys := benchKeys(60)
	f := []windows.Field{{Num: 1}, {Str: []byte("m")}}
	const step = 1000 // ms between events
	at := int64(0)
	for i := range 6000 { // 100 events each, every entity active: sweeps find nothing
		at += step
		if err := orig.Add(keys[i%len(keys)], at, f); err != nil {
			t.Fatal(err)
		}
	}
	part := func(v *windows.View) []byte {
		var b bytes.Buffer
		if err := v.WritePartition(&b, 0); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	cp, _ := windows.New(spec)
	windows.SetHash(cp, hash)
	if err := cp.ReadPartition(bytes.NewReader(part(orig)), 0); err != nil {
		t.Fatal(err)
	}
	for i := range 30_000 { // only the first 30 entities from now on: the rest go idle after an hour
		at += step
		k := keys[i%30]
		for _, v := range []*windows.View{orig, cp} {
			if err := v.Add(k, at, f); err != nil {
				t.Fatal(err)
			}
		}
		if i%997 == 0 && !bytes.Equal(part(orig), part(cp)) {
			t.Fatalf("after %d more events the original and its restored copy differ", i+1)
		}
	}
	if !bytes.Equal(part(orig), part(cp)) {
		t.Fatal("the original and its restored copy differ")
	}
	if s := orig.Stats(); s.Entities != 30 || s.Expired != 30 {
		t.Fatalf("stats %+v: want the 30 silent entities dropped", s)
	}
}
