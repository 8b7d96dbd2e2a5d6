// Package windows is tally's aggregation engine: in-memory, event-time
// sliding windows over per-entity event streams. It does no I/O and never
// reads the clock: the same events in the same order give the same state
// and the same answers, which is what log replay and replicas rely on.
//
// A View (New) holds one feature view: the Spec names its columns and its
// aggregations (function, column, window, optional tile interval). Add
// places one event of an entity; Read answers every aggregation of an
// entity as of a time t, ReadRange some of them (a view may hold several
// feature views of one entity: package store groups them so).
//
// # Windows
//
// Times are epoch milliseconds (int64, within [MinTime, MaxTime]). A read of
// window W at time t aggregates the events with
//
//	t - W < ts <= t
//
// when the aggregation is exact (Interval 0). With Interval g > 0 the
// aggregation is tiled: tile k covers [k*g, (k+1)*g) (floor division, so
// negative times tile the same way), and an event counts iff ts <= t and its
// tile start k*g > t - W. The window's tail edge is thus rounded up to a
// tile boundary: events older than W are never counted, and the events of
// the oldest, partial tile (at most g of time) are not counted. These rules
// hold identically whether an event is still held raw or already folded
// into its tile. W must be a multiple of g.
//
// # Functions
//
// Null fields are ignored by every function.
//
//   - count: number of non-null values. sum. mean.
//   - min, max.
//   - last: the value of the event with the greatest ts; among equal ts, the
//     one added last.
//   - last_n: the N most recent values, newest first, duplicates kept.
//   - last_distinct_n: the N most recent distinct values, newest first.
//   - distinct_count: exact number of distinct values.
//   - variance, stddev: POPULATION variance (divided by n) and its square
//     root, computed stably (two passes over raw events, Welford per tile,
//     merged with Chan's formula; sums are compensated). Never negative.
//
// String columns support count, last, last_n, last_distinct_n and
// distinct_count; Float columns support all. last_n, last_distinct_n and
// distinct_count of a Float column are exact only (Interval 0). Floats are
// compared by value with one zero (-0 is stored as 0); Add refuses NaN and
// infinities (ErrBadEvent).
//
// Over an empty window, or for an entity never seen, count, sum and
// distinct_count are Present and 0; last_n and last_distinct_n are Present
// with an empty list; mean, min, max, last, stddev and variance are not
// Present.
//
// # Late events and what reads are exact
//
// Let horizon = the view's longest window + Spec.Lateness, and the watermark
// be the greatest ts the view has accepted. Events may arrive in any order;
// an event with ts <= watermark - horizon is refused with ErrTooLate and
// counted in Stats.TooLate (no read the view answers could count it).
//
// Reads of an entity are exact for any t >= watermark - Lateness. They are
// exact for any t >= newest - Lateness too, where newest is the entity's
// greatest ts, as long as the entity has not been idle (see below) since
// the events those reads count were placed: a sweep may drop an idle
// entity, and a late event that brings it back (its ts still above
// watermark - horizon) starts it anew, without the older events a read
// well before the watermark would count. Reads as of earlier times are not
// guaranteed: state they would need may have been folded into tiles or
// dropped.
//
// # Memory
//
// Each entity keeps a ring of its recent raw events, bit-packed records (see
// layout.go): the ts as an offset from a base derived from the entity's
// newest ts, in the fewest bits the horizon needs when it is at most 2^31
// ms (about 24 days; 27 bits for a day), then the columns its aggregations
// read, each in the fewest bits that have held all the values of its
// partition so far: strings dictionary-encoded per column, view-wide, as
// ids in as many bits as the greatest id needs; a Float column that is
// only counted as a one-bit null flag; a Float column whose values are all
// whole numbers of cents (money) as those cents, signed, in up to 32 bits,
// read back bit for bit, else as the float64. The first value a field
// cannot hold widens that column in its partition, about a thousandth of
// the view: a widening stalls that partition's reads and writes while it
// rewrites the partition's raw records, not the view's (0.27 ms in a view
// of a million card holders at 20 events each, where rewriting the whole
// view took 305 ms in an earlier build: BenchmarkWidenPartition). A card holder's event of the
// default repo (ts, amount, merchant) is 8 bytes. An entity's header is 32
// bytes; a view with tiled aggregations adds 24 for the tiles' (tileHdr).
// Each entity also keeps, for tiled aggregations, one record per non-empty
// tile (count, compensated sum, Welford mean and M2, min, max, last value
// and ts, and the exact distinct set as a roaring bitmap of dictionary ids,
// keeping only what the view's aggregations need). Events older than newest - horizon are dropped.
// Once an entity holds more than a few raw events, the raw events that no
// exact window can still need (ts <= newest - (longest exact window +
// Lateness)) and whose tile ends at or before newest - Lateness are folded
// into tiles: a hot entity's memory is bounded by its tiles, a quiet one's by
// its few events. From then on the entity's tiles also summarize its raw
// events (each is added to its tile as it arrives), so that a read at or after
// its newest event answers tiled aggregations from tiles alone, in time
// linear in the tiles of the window, not in the events; a read at an earlier
// time reads the raw events. Raw events are kept in time order, so an exact
// count is two binary searches (when the raw events hold no null field).
//
// A read's cost is bounded by buckets and tiles, not by the entity's events.
// Once a read of an entity would scan hotMin (256) raw events, the entity
// gets time buckets over its raw events (see hot.go): 2048 fine buckets over
// the view's longest exact window plus lateness, grouped 8 to a middle bucket
// and 8 middles to a top one, each holding the moments of the Float columns
// (while its values are whole cents, their exact count, sum, sum of squares,
// min and max; else count, compensated sum, Welford mean and M2, min, max)
// read by exact sum,
// mean, min, max, stddev and variance, and, for each column of an exact
// distinct_count, how many values were seen last in it (with each value's
// newest time). Every later raw event updates its three buckets. An exact
// sum, mean, min, max, stddev or variance at or after the entity's newest
// event merges at most 14 fine, 14 middle and the ~32 top buckets of its
// window and scans the raw events of the one partial fine bucket at the
// window's tail (1/2048 of the window span); its result equals a scan's
// (exactly for whole cents, else up to floating-point rounding). A distinct_count sums the last-seen counts the
// same way. When the window reaches past the entity's oldest raw event, the
// oldest raw event's bucket is read whole if no event added to it has left
// the ring (its count of added events equals the raw events before its end,
// one binary search), so a burst of any size is not scanned either. last
// walks back from the newest raw event to the first non-null value, last_n
// and last_distinct_n to their N values (last_distinct_n further past
// repeated values). The buckets cost about 130 KB per column of a hot entity;
// they are derived state, not in snapshots (rebuilt at the first hot read).
// Reads before the entity's newest event (as_of) scan the partial bucket at
// the head edge too, and a count over raw events holding a null field scans.
//
// An entity whose newest event is at or before watermark - horizon is idle:
// it can count in no read at t >= watermark - Lateness, and it is dropped
// (Stats.Expired) by a sweep that inspects two entity slots per Add, on average.
// String dictionaries only grow: they hold every distinct value the view has
// accepted.
//
// # Snapshots
//
// WritePartition and ReadPartition save and restore one partition: its
// entities, raw events, tiles, the string values they use (by value: a
// section is self-contained and can be read by another process or replica
// with the same Spec) and its expiry state, so that a restored view answers
// every Read bit for bit as the original did and, fed the same further
// events, keeps doing so. A hot entity's bucket moments (hot.go) are
// derived from its raw events in time order, so that they are the same
// however late events arrived and whenever the buckets were built. WriteMeta and ReadMeta hold the rest (watermark,
// refused count); WriteMeta documents the order that makes a snapshot taken
// while ingest continues replay exactly. A Merge moves views fed the same
// events alone into one view of their columns and aggregations, as if it
// had been fed them (exact aggregations only). Sections are versioned,
// length-prefixed and checked on read: a bad one is refused with
// ErrSnapshot and changes nothing.
//
// # Concurrency and cost
//
// AddBatch places a run of events as the same Adds would, overlapping the
// cache misses of consecutive events (index slot, entity header, key, raw
// ring): a random entity among a million costs a few misses per event.
// Reads have no such stage: a lookup reads one group per entity (its views
// over a source held together), and prefetching the groups of a lookup's
// few entities cost more in partition locks than it saved in overlapped
// misses (measured when it was removed: 0.85x-0.94x the CPU per lookup
// without it).
//
// Entities are spread over ring.Partitions partitions by ring.Partition of
// ring.Hash(key), each with its own lock, open-addressing hash index and
// pointer-free arenas, so Reads of different partitions do not contend, nor
// do Reads with an Add of another partition, and the garbage collector has
// nothing per entity to scan. Writers of one view (Add, AddBatch) take
// turns: under the view's writer lock AddBatch's prefetch stages read the
// partitions without their locks, and the store writes each view from one
// goroutine at a time anyway. Keys are
// stored and compared, so a 64-bit hash collision never merges two
// entities. In steady state Add allocates nothing (a new entity, a new
// string value, arena growth and a tile's second distinct value do) and Read
// allocates nothing except the lists of last_n and last_distinct_n.
package windows
