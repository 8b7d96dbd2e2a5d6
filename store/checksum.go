package store

import (
	"encoding/binary"
	"math"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"

	"github.com/tally-ml/tally/ring"
)

// Checksums returns, at the applied index it also returns, a checksum of
// every partition's state (each view's snapshot image of the partition and
// the table rows whose key falls in it): replicas that applied the same
// records in the same order have equal checksums, partition by partition
// (a cluster's `check`). Partitions the store does not own hold nothing.
func (n *Store) Checksums() (applied uint64, sums [ring.Partitions]uint64, err error) {
	n.seq.mu.Lock()
	defer n.seq.mu.Unlock()
	d := xxhash.New()
	for p := uint32(0); p < ring.Partitions; p++ {
		d.Reset()
		for _, v := range n.views {
			if err := v.WritePartition(d, p); err != nil {
				return 0, sums, err
			}
		}
		sums[p] = d.Sum64()
	}
	for _, t := range n.tables {
		t.mu.RLock()
		offs := t.offsets()
		slices.SortFunc(offs, func(a, b int) int { return strings.Compare(t.key(a), t.key(b)) })
		r := NewRow(t.def)
		var b []byte
		for _, o := range offs {
			t.rowAt(o, &r)
			p := ring.Partition(ring.HashString(r.Key))
			b = append(b[:0], r.Key...)
			for c := range t.def.Columns {
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(r.Nums[c]))
				b = append(b, r.Strs[c]...)
				if r.Null[c] {
					b = append(b, 1)
				}
			}
			sums[p] = sums[p]*31 + xxhash.Sum64(b)
		}
		t.mu.RUnlock()
	}
	return n.seq.applied, sums, nil
}
