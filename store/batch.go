package store

import (
	"github.com/tally-ml/tally/windows"
)

// Batch holds validated events of one source, column-major-free and
// pointer-free: strings live in one arena and are addressed by offset, so a
// batch is cheap to build, to apply and to write to a log as it is.
type Batch struct {
	source int
	ncols  int
	ts     []int64   // per event
	nums   []float64 // per event x column
	null   []bool    // per event x column
	soff   []uint32  // per event x column: string offset in arena
	slen   []uint32  // per event x column: string length
	arena  []byte
}

func (b *Batch) Reset(source, ncols int) {
	b.source, b.ncols = source, ncols
	b.ts, b.nums, b.null, b.soff, b.slen, b.arena = b.ts[:0], b.nums[:0], b.null[:0], b.soff[:0], b.slen[:0], b.arena[:0]
}

func (b *Batch) Len() int { return len(b.ts) }

// grow adds one event with every column null and returns its index.
func (b *Batch) Grow(ts int64) int {
	b.ts = append(b.ts, ts)
	for c := 0; c < b.ncols; c++ {
		b.nums = append(b.nums, 0)
		b.null = append(b.null, true)
		b.soff = append(b.soff, 0)
		b.slen = append(b.slen, 0)
	}
	return len(b.ts) - 1
}

// truncate drops events from index i on (a refused record).
func (b *Batch) Truncate(i int) {
	b.ts = b.ts[:i]
	k := i * b.ncols
	b.nums, b.null, b.soff, b.slen = b.nums[:k], b.null[:k], b.soff[:k], b.slen[:k]
}

func (b *Batch) SetNum(e, c int, v float64) {
	k := e*b.ncols + c
	b.nums[k], b.null[k] = v, false
}

func (b *Batch) SetStr(e, c int, s []byte) {
	k := e*b.ncols + c
	b.soff[k], b.slen[k], b.null[k] = uint32(len(b.arena)), uint32(len(s)), false
	b.arena = append(b.arena, s...)
}

func (b *Batch) Str(e, c int) []byte {
	k := e*b.ncols + c
	return b.arena[b.soff[k] : b.soff[k]+b.slen[k]]
}

// field returns event e's column c as a windows.Field.
func (b *Batch) field(e, c int) windows.Field {
	k := e*b.ncols + c
	if c < 0 || b.null[k] { // c < 0: a column the source no longer has
		return windows.Field{Null: true}
	}
	return windows.Field{Num: b.nums[k], Str: b.arena[b.soff[k] : b.soff[k]+b.slen[k]]}
}

// Source is the index (in the repo's Sources) of the source b holds events of.
func (b *Batch) Source() int { return b.source }

// Timestamp is event e's timestamp.
func (b *Batch) Timestamp(e int) int64 { return b.ts[e] }

// CopyEvent appends event e of src (a batch of the same source) to b: how
// a cluster's router splits a batch into the share of each replica group.
func (b *Batch) CopyEvent(src *Batch, e int) {
	i := b.Grow(src.ts[e])
	for c := 0; c < b.ncols; c++ {
		k, d := e*src.ncols+c, i*b.ncols+c
		b.nums[d], b.null[d] = src.nums[k], src.null[k]
		if src.slen[k] > 0 {
			b.soff[d], b.slen[d] = uint32(len(b.arena)), src.slen[k]
			b.arena = append(b.arena, src.arena[src.soff[k]:src.soff[k]+src.slen[k]]...)
		}
	}
}

// Columns is the number of columns of b's source.
func (b *Batch) Columns() int { return b.ncols }
