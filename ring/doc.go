// Package ring places entity keys.
//
// A key's xxhash (64 bits) picks one of a fixed number of partitions
// (Partitions). Partitions, not keys, are the unit the rest of tally moves,
// snapshots and replicates: the windows store is organised by partition, so
// that a cluster can later hand a whole partition to another replica group
// without re-keying anything. The hash and the partition count are part of the
// on-disk and on-wire contract: changing either re-homes every key.
package ring
