package windows

// SetHash replaces v's key hash, to force collisions in tests. It must be
// called before the first Add.
func SetHash(v *View, h func([]byte) uint64) { v.hash = h }
