// Package snapshot is the snapshots directory of a data dir: where a state
// machine's snapshots are written, verified, set aside and kept. Its shape
// is hashicorp/raft's SnapshotStore: Create returns a Sink the state
// machine writes into (Close makes it durable, Cancel drops it), List
// names the snapshots newest first, Open reads one back. Retain applies the
// retention after a new snapshot.
//
// The store does not know what a snapshot holds, only its frame, which the
// state machine writes (AppendHeader, ChecksumWriter):
//
//	magic:8 version:u32 index:u64 ...content... crc:u32
//
// index is the log index the snapshot's replay starts after (its ID says
// it too), crc the CRC-32C of every byte before it. A file is
// <index, 20 digits>.snap, the frame zstd-compressed. It is written to a
// temporary file, fsynced, renamed into place and the directory fsynced
// (walfs.Atomic), so a crash never leaves a partial snapshot under a
// snapshot's name.
//
// A snapshot verifies when its checksum holds and its header's index is
// the one in its name. One that does not (a bad checksum or header, content
// that does not decompress or ends early) is moved to corrupt-<name> (never
// deleted), logged, and reported as ErrCorrupt; the caller goes on with
// the next older one. One that cannot be read (its open or a read fails
// with an OS error: no file descriptor left, a disk error, a permission)
// is not known to be corrupt: it stays under its name, and the error
// names it and wraps the OS error, not ErrCorrupt, so that the caller
// stops rather than fall back to an older snapshot. Only verified
// snapshots count toward the Keep kept.
package snapshot
