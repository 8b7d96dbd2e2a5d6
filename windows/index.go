package windows

// index maps key hashes to entity slots within a partition: open addressing
// with linear probing over a pointer-free table, so that the garbage
// collector never scans it and a lookup is one or two cache lines. An entry
// is the hash's low 32 bits << 32 | slot+1; 0 is empty. Keys whose hashes are
// equal simply take several entries: the caller compares key bytes.
// Deletion shifts the following entries back, so there are no tombstones.
type index struct {
	tab []uint64 // length a power of two, at most 3/4 full
	n   int
}

const slotMask = 1<<32 - 1

func (x *index) insert(h uint64, slot uint32) {
	if (x.n+1)*4 > len(x.tab)*3 {
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
