package windows

// index maps key hashes to entity slots within a partition: open addressing
// with linear probing over a pointer-free table, so that the garbage
// collector never scans it and a lookup is one or two cache lines. An entry
// is the hash's low 32 bits << 32 | slot+1; 0 is empty. Keys whose hashes are
// equal simply take several entries: the caller compares key bytes.
// Deletion shifts the following entries back, so there are no tombstones.
//
// A table grows when it would be more than 7/8 full: 11 B per card holder
// where 3/4 took 16 (TestMemoryPerUser: ~98 card holders a partition fit
// 128 entries, not 256), for no measurable cost in BenchmarkRead/user_group
// (422 vs 418 ns, medians of 4 alternating). Probes stay short on average
// (a table is between 7/16 and 7/8 full: a present key takes about 2, at
// the fullest 4.5, within one or two cache lines of 8 entries); a missing
// key's probe run is longer, up to about 32 entries at the fullest.
type index struct {
	tab []uint64 // length a power of two, at most 7/8 full
	n   int
}

const slotMask = 1<<32 - 1

func (x *index) insert(h uint64, slot uint32) {
	if (x.n+1)*8 > len(x.tab)*7 {
		x.grow()
	}
	x.put(h<<32 | uint64(slot) + 1)
	x.n++
}

func (x *index) put(e uint64) {
	mask := uint64(len(x.tab) - 1)
	i := e >> 32 & mask
	for x.tab[i] != 0 {
		i = (i + 1) & mask
	}
	x.tab[i] = e
}

func (x *index) grow() {
	old := x.tab
	x.tab = make([]uint64, max(8, 2*len(old)))
	for _, e := range old {
		if e != 0 {
			x.put(e)
		}
	}
}

// remove deletes the entry of slot, whose key hash is h.
func (x *index) remove(h uint64, slot uint32) {
	t := x.tab
	mask := uint64(len(t) - 1)
	want := h<<32 | uint64(slot) + 1
	i := h & mask
	for t[i] != want {
		i = (i + 1) & mask
	}
	// Backward shift: move later entries of the probe run into the hole
	// when their home position is not between the hole and them.
	for j := (i + 1) & mask; t[j] != 0; j = (j + 1) & mask {
		home := t[j] >> 32 & mask
		if (j-home)&mask >= (j-i)&mask {
			t[i] = t[j]
			i = j
		}
	}
	t[i] = 0
	x.n--
}

func (x *index) bytes() int64 { return int64(cap(x.tab)) * 8 }
