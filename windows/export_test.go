package windows

import (
	"fmt"
	"math"
	"unsafe"
)

// SetHash replaces v's key hash, to force collisions in tests. It must be
// called before the first Add.
func SetHash(v *View, h func([]byte) uint64) { v.hash, v.ownHash = h, true }

// Keys returns the keys of the live entities of partition p of v.
func Keys(v *View, p uint32) [][]byte {
	part := &v.parts[p]
	part.mu.Lock()
	defer part.mu.Unlock()
	var keys [][]byte
	for i := range part.ents {
		if e := &part.ents[i]; e.live {
			keys = append(keys, append([]byte(nil), part.keys[e.keyOff:e.keyOff+e.keyLen]...))
		}
	}
	return keys
}

// MemoryBreakdown describes v's memory per live entity, by structure.
func MemoryBreakdown(v *View) string {
	var capW, lenW, dead, ents, keys, idx, free, live int64
	for i := range v.parts {
		p := &v.parts[i]
		capW += int64(cap(p.words))*8 + int64(cap(p.rw))
		lenW += int64(len(p.words))*8 + int64(len(p.rw))
		dead += int64(p.deadW)*8 + int64(p.deadR)
		ents += int64(cap(p.ents))*int64(unsafe.Sizeof(entity{})) + int64(cap(p.tls))*int64(unsafe.Sizeof(tileHdr{}))
		keys += int64(cap(p.keys))
		idx += p.index.bytes()
		for _, l := range p.free {
			free += int64(cap(l)) * 4
		}
		live += int64(p.live)
	}
	live = max(live, 1)
	return fmt.Sprintf("per entity: arenas %d B (used %d, free blocks %d), entities %d, keys %d, index %d, free lists %d", capW/live, lenW/live, dead/live, ents/live, keys/live, idx/live, free/live)
}

// SetHotMin sets how many raw events in a window make a read use bucket
// moments (see hot.go), and returns a func that restores it.
func SetHotMin(n uint32) func() {
	old := hotMin
	hotMin = n
	return func() { hotMin = old }
}

// SetIDBitsMax sets the widest id field whose raw distinct counts use a
// bitmap (0: none do, every one uses a hash set); the returned function
// restores it.
func SetIDBitsMax(n uint8) func() {
	old := idBitsMax
	idBitsMax = n
	return func() { idBitsMax = old }
}

func init() { countHotReads = true }

// HotReads counts the reads answered from hot buckets so far.
func HotReads() int64 { return hotReads.Load() }

// Widen holds every Float column of v as a float64 in every partition
// from now on (see layout.go), as the first value that is not whole cents
// would in each.
func Widen(v *View) {
	widenAll(v, func(f field) bool { return f.kind == kCents }, math.Float64bits(1.0/3))
}

// WidenIDs holds every String column of v in 32 bits in every partition
// from now on, as the first dictionary id of 2^31 or more would in each.
func WidenIDs(v *View) {
	widenAll(v, func(f field) bool { return f.kind == kID && f.bits < 32 }, 1<<31)
}

func widenAll(v *View, which func(field) bool, x uint64) {
	v.wmu.Lock()
	defer v.wmu.Unlock()
	for k := range v.parts {
		p := &v.parts[k]
		p.mu.Lock()
		for i := range v.stored {
			if which(p.lay.cols[i]) {
				p.widen(v, i, x)
			}
		}
		p.mu.Unlock()
	}
}

// RawStride is the bytes per raw record of v's widest partition layout.
func RawStride(v *View) int {
	s := 0
	for k := range v.parts {
		p := &v.parts[k]
		p.mu.Lock()
		s = max(s, p.lay.stride)
		p.mu.Unlock()
	}
	return s
}

// Strides counts v's partitions by the bytes per raw record of their
// layouts.
func Strides(v *View) map[int]int {
	n := map[int]int{}
	for k := range v.parts {
		p := &v.parts[k]
		p.mu.Lock()
		n[p.lay.stride]++
		p.mu.Unlock()
	}
	return n
}
