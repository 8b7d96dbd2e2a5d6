// Package wal is tally's write-ahead log: a segmented, append-only sequence
// of records, each identified by a consecutive index (1 for a new log).
// RaftStore puts hashicorp/raft's LogStore and StableStore on top of it, so
// that in clustered mode events are written once.
//
// # Guarantees
//
// Append returns once its records are written and, under SyncAlways (the
// default), fsynced: an acknowledged record survives kill -9 and power loss.
// Concurrent appenders share one write and one fsync (group commit: a
// single writer goroutine takes every Append waiting). The records of one
// Append land in one segment, and after a crash either all of them are in
// the log or none. Under SyncInterval the log fsyncs every
// Options.SyncEvery, so a power loss may lose the records acknowledged in
// the last SyncEvery (a process crash loses nothing: the data is in the
// page cache); a power loss may leave a later unsynced write on disk but not
// an earlier one, and Open cuts the log at the first bad frame (below).
// SyncNever is for tests and benchmarks.
//
// A failed write or fsync (a full disk, an I/O error) fails every Append
// waiting on it, acknowledges none of their records (LastIndex, Get and
// Replay do not show them), and breaks the log: every later Append, Sync
// and truncation returns the error, until the log is closed and reopened.
// Reopening recovers exactly the records that reached the disk whole, which
// may include the failed batch (written, but its fsync failed) — whole, or
// not at all.
//
// Failing to start a new segment is different: nothing was written to it,
// so nothing can be lost. The Appends that needed the new segment fail
// (those of the same group commit sealed in the old one succeed), the
// half-made file is removed, and the log rolls again before the next write
// and every second until it succeeds; Err reports the failure meanwhile.
// The log keeps what a roll needs open ahead of time, so that a process
// out of file descriptors can still roll: the directory (to fsync it) and
// the next segment's file, next.wal.tmp, created and preallocated after
// each roll (a second preallocated segment on disk).
//
// Replay streams records from any index through a 64 KiB buffer (sealed,
// compressed segments through a streaming zstd decoder); Get reads one
// record at random (the active segment with one positioned read; a sealed
// segment is indexed on first use, and a cache keeps two). TruncateFront
// deletes whole segments (retention after a snapshot; TruncateFrontOlderThan
// also keeps those sealed less than an age ago); TruncateBack deletes
// a suffix (Raft's conflict resolution); Reset starts the log over at any
// index (a Raft follower installing a snapshot).
//
// # On-disk format
//
// A log is a directory of segments named by the index of their first
// record, 20 decimal digits: 00000000000000000001.wal. A sealed segment may
// be replaced by its zstd-compressed copy, 00000000000000000001.wal.zst,
// which holds the same bytes up to the end of its data; when both exist the
// plain file is authoritative. The copy is a zstd stream of independent
// chunks, each 256 KiB of the plain bytes (the last one fewer) behind an
// index frame that says where they go, so that a bad byte loses one chunk
// and Repair reads the chunks after it:
//
//	segment.zst = chunk*
//	chunk       = index zstd-frame
//	index       = magic:0x184D2A5B size:u32le=20 plain-offset:u64le
//	              plain-length:u32le zstd-length:u32le crc:u32le   28 bytes
//	crc         = CRC-32C of plain-offset, plain-length, zstd-length
//
// An index is a zstd skippable frame, which decoders pass over. A segment
// compressed before chunks is one zstd frame, and reads the same way. Files ending in .tmp are unfinished copies
// or the next segment made ahead, and Open removes them. New segments are preallocated to
// Options.SegmentSize (fallocate; on file systems without it, ftruncate,
// which leaves a sparse file that reads as zeros) and the log rolls to a new
// segment when the next Append's records would not fit, so only an Append
// larger than a segment makes one larger.
//
//	segment = header frame*  zeros (to the preallocated size)
//	header  = magic:"TALLYWL2" first-index:u64le             16 bytes
//	frame   = word:u32le crc:u32le payload padding           8-byte aligned
//	word    = length (bits 0..30) | commit (bit 31)
//	crc     = CRC-32C (Castagnoli) of index:u64le || payload
//	padding = zeros to the next multiple of 8
//
// Every frame header is one aligned 8-byte word, so it never straddles a
// sector and is never half written. A zero header marks the end of the
// written data. The CRC covers the record's index, so a frame left from
// earlier contents of a file never validates in another place. The commit
// bit marks the last frame of each write (one group commit); a segment
// written with the older magic "TALLYWAL" has no commit bits and all its
// frames count as committed. Records are at most 1 GiB; segments at most
// 4 GiB.
//
// # Torn writes
//
// A crash in the middle of a write leaves a torn tail in the last segment:
// some sectors of the last write reached the disk, in any order, and some
// did not, so its frames end in a bad CRC, an impossible length, or zeros
// where a header or payload should be. Open scans the last segment to its
// first bad or zero frame header; it then looks at every 8-byte position
// after it for a frame that validates. If a frame with the commit bit is
// followed by another valid frame, a later write completed after the one at
// the bad frame — under SyncAlways, only after that one was fsynced and
// acknowledged — so the damage is to acknowledged data: Open refuses (see
// below). Under SyncInterval and SyncNever that proves nothing (unsynced
// pages reach the disk in any order): Open cuts there too, but first copies
// the segment as it was into corrupt-<time>/ and reports it (TailCut; the
// node logs a warning), in case the bad frame was a failing disk rather
// than a power loss; but not at or before an index the log is known to
// have synced (Options.Synced: a node's newest snapshot), where no power
// loss tears anything: that is corruption, refused as under SyncAlways, so
// that repair keeps the records after the snapshot. Otherwise the tail is torn: Open cuts the segment back to the end
// of the last frame with the commit bit (dropping the unacknowledged write
// whole), zeroes the rest, fsyncs, and appends from there. A segment that
// ends cleanly (a zero frame header) but holds other bytes after its end
// (a crash kept a later sector of a lost write, not the first) is zeroed
// after its end the same way: otherwise new appends that happened to end
// where an old frame begins would bring that frame back under the index it
// carries, after the next crash. A last segment
// whose header never reached the disk (a crash while creating it; the file
// holds only zeros) is created again. Only the last segment can be torn:
// a segment is sealed after an fsync.
//
// # Corruption
//
// A bad frame anywhere else is corruption of acknowledged data: in the last
// segment when a later write follows it under SyncAlways (above), in a
// sealed segment, or a segment that ends before the next one begins. Open
// (for the last segment) and Replay and Get (for any segment they read)
// refuse with a *CorruptionError naming the segment file and the byte
// offset of the bad frame, and change nothing; for a segment that ends
// cleanly before the next one begins, it names the records no segment
// holds and the file that would (CorruptionError.Next, MissingSegment):
// most likely a segment removed by hand, which put back loses nothing,
// where a repair would move every later record aside. Inspect classifies the
// last segment with the same code (as under SyncAlways) and returns the
// same error. Open does not read sealed segments; a node
// replays the log at startup, which does. A damaged record that is the last
// thing in the log is indistinguishable from a torn write and is cut like
// one.
//
// A segment that cannot be read (an OS error at its open or a read: a disk
// error, a permission, no memory) is neither torn nor corrupt: nothing is
// known of its bytes. Open, Replay, Get and Repair fail with that error,
// naming the segment, not a *CorruptionError, and change nothing.
//
// Repair is the documented way out (with the log closed): it finds the
// first bad frame, keeps every record before it, copies the corrupt
// segment as it was and moves every later segment into
// dir/corrupt-<unix time>/ (it never deletes them), cuts the corrupt
// segment before the bad frame, and leaves a log that Open accepts. Given
// the index a snapshot covers, it keeps the records after it instead: a
// corrupt segment the snapshot covers whole is moved aside with the ones
// before it, and one that also holds later records has them copied, from
// the frame of the first record after the snapshot on (found at an 8-byte
// position where it validates, the frame after it too), into a new segment
// before it is moved aside. It reads a compressed segment chunk by chunk:
// a chunk that does not decompress (or whose index does not validate: the
// next index that does is found by its magic) reads as bytes that never
// validate, and the chunks after it as they are, so only the records of
// the bad chunk are lost. A corrupt record after the snapshot, or a lost
// chunk there, is still a cut: the log has no gaps.
//
// # Raft
//
// Each raft.Log is one record, little-endian: version:u8=1 type:u8
// index:u64 term:u64 appended-at:i64 (Unix ns, 0 for the zero time)
// len(data):u32 data len(extensions):u32 extensions. The Raft index is the
// record's index. The stable store (term, vote, and where a deleted prefix
// ends) is the file "stable" beside the log directory:
// "TALLYSTB" crc32c:u32 count:u32 (len:u32 key len:u32 value)*, rewritten
// whole on every Set (temporary file, fsync, rename, fsync of the
// directory).
package wal
