// Package wal is tally's write-ahead log: a segmented, append-only sequence
// of records, each identified by a consecutive index starting at 1.
//
// # Guarantees
//
// Append returns once its records are written, and, under SyncAlways (the
// default), fsynced: an acknowledged record survives kill -9 and power loss.
// Concurrent appenders share one write and one fsync (group commit). Under
// SyncInterval the log fsyncs every Options.SyncEvery, so a power loss may
// lose the records acknowledged in that window (a process crash loses
// nothing: the data is in the page cache). SyncNever is for tests and
// benchmarks. A failed write or fsync fails every Append waiting on it and
// every later one: the log is then broken and must be reopened, which
// recovers exactly the records that reached the disk whole.
//
// # On-disk format
//
// A log is a directory of segments named by the index of their first record,
// 20 decimal digits: 00000000000000000001.wal. A sealed segment may be
// replaced by its zstd-compressed copy, 00000000000000000001.wal.zst, which
// holds the same bytes. Segments are preallocated to Options.SegmentSize
// (fallocate; zeros) and rolled when the next write would not fit.
//
//	segment = header frame*  (zeros up to the preallocated size)
//	header  = "TALLYWAL" first-index:u64le                      16 bytes
//	frame   = length:u32le crc:u32le payload padding            8-byte aligned
//	crc     = CRC-32C (Castagnoli) of index:u64le || payload
//	padding = zeros to the next multiple of 8
//
// Every frame header is one aligned 8-byte word, so it never straddles a
// sector and is never half written. A length of zero marks the end of the
// written data. The CRC covers the record's index, so a stale frame left
// from earlier contents of the file can never validate in another place.
//
// # Torn writes and corruption
//
// A crash in the middle of a write leaves a torn tail: the last frames of the
// last segment are partly written (bad CRC, impossible length, or zeros where
// payload should be). Open detects it — the first bad frame of the last
// segment after which no valid frame follows — and truncates the segment
// there (zeroing the rest), logging nothing as lost that was acknowledged:
// acknowledgement comes only after the whole write (and its fsync) completed.
//
// A bad frame anywhere else — in a sealed segment, or followed by valid
// frames — is corruption of acknowledged data: Open (for the last segment)
// and Replay (for any segment it reads) refuse with a *CorruptionError
// naming the segment and byte offset, and change nothing.
// Repair is the documented way out (tally admin wal repair): it keeps every
// record before the corruption, moves the corrupt segment's original and
// every later segment into dir/corrupt-<unix time>/ (never deleting them),
// and leaves a log that Open accepts.
package wal
