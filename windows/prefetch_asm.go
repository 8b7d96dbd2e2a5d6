//go:build amd64 || arm64

package windows

// prefetch asks the CPU to bring the cache line at addr closer (PREFETCHT0,
// PRFM PLDL1KEEP). It never faults and changes nothing a program can
// observe but timing; a prefetch is not ordered by locked instructions, so
// it stays in flight across the partition locks AddBatch takes.
//
//go:noescape
func prefetch(addr uintptr)
