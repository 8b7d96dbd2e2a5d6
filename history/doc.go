// Package history computes historical features: point-in-time joins of a
// spine (rows of join keys, a timestamp, and any other columns, such as a
// label) against the node's event archive, its write-ahead log.
//
// A join replays the archive, in log order, into a fresh node built from
// the same feature repo, so training data comes from the very aggregation
// code that serves online: there is no second implementation to drift.
// Every log record carries the node clock at which it was acknowledged (an
// import: each event its own timestamp). A spine row at time t gets exactly
// what a get-features lookup at the start of millisecond t returned: the
// state after the records acknowledged before t, read at t. So an event
// stamped after t never counts (no leakage), a late event counts only from
// when it arrived (no skew with what serving saw), and the row's own event,
// acknowledged at or after t, is not in its features.
//
// The spine is held in memory column by column (tens of bytes per row) and
// ordered by time; the archive streams, one record at a time, and the replay
// node holds only the entities alive in the longest window. Rows come out in
// time order (ties in spine order), as soon as the replay passes them.
//
// A join needs the archive from its first record: when retention has
// removed older segments, a join refuses unless told that partial history
// is acceptable (then windows reaching before the archive miss those events).
package history
