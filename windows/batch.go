package windows

import (
	"fmt"
	"unsafe"

	"github.com/tally-ml/tally/ring"
)

// AddBatch places events as len(ts) calls of Add would, in order: event i
// is of entity keys[i] at time ts[i] with fields
// fields[i*C : (i+1)*C], C the spec's columns. hashes, if not nil, holds
// ring.Hash(keys[i]) for each event (a caller that routed the events has
// them; nil makes AddBatch compute them). It returns how many events were
// refused as too late (ErrTooLate) and as bad (ErrBadEvent, or a full
// dictionary); a refused event changes nothing, as with Add. Slices of
// different lengths are a programming error: AddBatch panics.
//
// Every read afterwards is bit for bit what the same Adds give. The
// difference is speed: an Add of a random entity among many waits for a
// chain of cache misses (index slot, entity header, key, raw ring), and
// AddBatch overlaps those of the next few events with the current one: it
// walks each event through stages some events ahead of the one it places,
// each stage prefetching the lines the next stage will read. It holds the
// view's writer lock throughout (see View.wmu), so its stages read the
// partitions without their locks; it places each event under its
// partition's lock, as Add does. The events' accepted times raise the watermark
// as they go for AddBatch's own too-late decisions; other goroutines see
// the watermark raised when AddBatch returns.
func (v *View) AddBatch(keys [][]byte, hashes []uint64, ts []int64, fields []Field) (tooLate, bad int) {
	n, nc := len(ts), len(v.spec.Columns)
	if len(keys) != n || (hashes != nil && len(hashes) != n) || len(fields) != n*nc {
		panic(fmt.Sprintf("windows: AddBatch of %d times with %d keys, %d hashes and %d fields (want %d per event)",
			n, len(keys), len(hashes), len(fields), nc))
	}
	if v.ownHash {
		hashes = nil // a test's hash: the caller's ring.Hash would disagree
	}
	v.wmu.Lock()
	defer v.wmu.Unlock()
	wm0 := v.watermark.Load()
	wm := wm0
	var hr [pfRing]uint64 // hashes of events in flight, by index mod pfRing
	var sr [pfRing]uint32 // their slots found by stage B, plus one (0: none)
	for i := 0; i < n+pfApply; i++ {
		if j := i + pfKey; j < n && len(keys[j]) > 0 {
			prefetch(uintptr(unsafe.Pointer(&keys[j][0]))) // the caller's key bytes, to hash
		}
		if j := i; j < n {
			// Stage A: the hash, and the index slot's line.
			h := uint64(0)
			if hashes != nil {
				h = hashes[j]
			} else {
				h = v.hash(keys[j])
			}
			hr[j%pfRing] = h
			p := &v.parts[ring.Partition(h)]
			if t := p.index.tab; len(t) > 0 {
				prefetch(uintptr(unsafe.Pointer(&t[h&uint64(len(t)-1)])))
			}
		}
		if j := i - pfEntity; j >= 0 && j < n {
			// Stage B: the index slot is cached; the entity's header line.
			h := hr[j%pfRing]
			p := &v.parts[ring.Partition(h)]
			s := p.probe(h)
			if s != 0 && int(s-1) < len(p.ents) {
				prefetch(uintptr(unsafe.Pointer(&p.ents[s-1])))
			}
			sr[j%pfRing] = s
		}
		if j := i - pfBlocks; j >= 0 && j < n && sr[j%pfRing] != 0 {
			// Stage C: the header is cached; the key and the raw ring's
			// newest record and the next (or the newest tile).
			p := &v.parts[ring.Partition(hr[j%pfRing])]
			if s := int(sr[j%pfRing] - 1); s < len(p.ents) {
				p.prefetchEntity(v, uint32(s))
			}
		}
		if j := i - pfApply; j >= 0 {
			switch err := v.add(keys[j], hr[j%pfRing], ts[j], fields[j*nc:(j+1)*nc], wm); {
			case err == nil:
				wm = max(wm, ts[j])
			case err == ErrTooLate:
				tooLate++
			default:
				bad++
			}
		}
	}
	v.publish(wm0, wm)
	return tooLate, bad
}

// How many events ahead of the one placed AddBatch's stages run: the key
// bytes are prefetched pfKey events before stage A; stage A
// (hash, index line) pfApply ahead, stage B (entity line) pfApply-pfEntity
// ahead, stage C (key, raw ring) pfApply-pfBlocks ahead. pfRing > pfApply.
const (
	pfKey    = 4
	pfEntity = 2
	pfBlocks = 4
	pfApply  = 6
	pfRing   = 8
)

// probe returns the slot+1 of the first index entry whose fingerprint
// matches h, or 0: a guess, for prefetching, without comparing keys.
func (p *partition) probe(h uint64) uint32 {
	t := p.index.tab
	if len(t) == 0 {
		return 0
	}
	mask := uint64(len(t) - 1)
	fp := h << 32
	for i := h & mask; ; i = (i + 1) & mask {
		x := t[i]
		if x == 0 {
			return 0
		}
		if x&^slotMask == fp {
			return uint32(x)
		}
	}
}

// prefetchEntity prefetches the lines an Add of the entity of slot reads
// first: its key, the newest and oldest raw records and the slot after the
// newest, and its newest tile.
func (p *partition) prefetchEntity(v *View, slot uint32) {
	e := &p.ents[slot]
	if !e.live {
		return
	}
	if int(e.keyOff) < len(p.keys) {
		prefetch(uintptr(unsafe.Pointer(&p.keys[e.keyOff])))
	}
	if e.rawCls != noBlock {
		// The newest record, the oldest (maintain reads it) and the slot
		// after the newest: each line once (a small ring is one or two).
		last := ^uintptr(0)
		line := func(i uint32) {
			a := uintptr(unsafe.Pointer(&p.rw[p.rawAt(e, i)]))
			if a>>6 != last>>6 {
				prefetch(a)
				last = a
			}
		}
		if e.rawLen > 0 {
			line(0)
			line(e.rawLen - 1)
		}
		if e.rawLen < classCap[e.rawCls] {
			line(e.rawLen)
		} else if fi := 2*int(e.rawCls+1) + rawKind; fi < len(p.free) && len(p.free[fi]) > 0 {
			// The ring is full: the Add takes a block of the next class,
			// from its free list if it has one (see allocBlock).
			prefetch(uintptr(unsafe.Pointer(&p.free[fi][len(p.free[fi])-1])))
		}
	}
	if t := p.tl(slot); t.tileCls != noBlock && t.tileLen > 0 {
		prefetch(uintptr(unsafe.Pointer(&p.words[v.tileAt(t, t.tileLen-1)])))
	}
}
