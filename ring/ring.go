package ring

import "github.com/cespare/xxhash/v2"

// Partitions is the fixed number of partitions every key space is cut into.
// It is a power of two so that Partition is a mask.
const Partitions = 1024

// Hash returns the 64-bit xxhash of key. It is the only hash tally uses to
// identify entities: the windows store indexes by it and Partition derives from it.
func Hash(key []byte) uint64 { return xxhash.Sum64(key) }

// HashString is Hash for a string key, without converting it.
func HashString(key string) uint64 { return xxhash.Sum64String(key) }

// Partition returns the partition of a key hash, in [0, Partitions).
// It uses the high bits so that it is independent of the low bits that
// in-partition hash tables use.
func Partition(h uint64) uint32 { return uint32(h >> (64 - 10)) }
