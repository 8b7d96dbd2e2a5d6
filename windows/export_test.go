package windows

// SetHash replaces v's key hash, to force collisions in tests. It must be
// called before the first Add.
func SetHash(v *View, h func([]byte) uint64) { v.hash = h }

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
