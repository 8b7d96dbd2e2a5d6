// Package kafkasource consumes the Kafka topics of a repo's sources (a
// source's `kafka:` block, features.Kafka) into a node, exactly once.
//
// One consumer per source: a franz-go group client reads the topic, and
// for each fetched batch of each partition the valid records become one
// store.Batch committed with the batch's offsets [first, next) in the same
// log record (Sink.IngestStream, store.CommitStream). The node's state
// keeps the next offset of every partition, in its snapshots too, so a
// restart resumes from what tally itself logged: a partition is sought to
// the state's offset whenever the group assigns it, and the group's
// committed offsets are written only afterwards, for monitoring tools. A
// partition the state holds no offset of starts at the source's start
// position (earliest: a backfill of what the topic retains; latest).
//
// Bad records (not JSON, a missing join key, a bad timestamp, too late or
// too far ahead, a field of the wrong type) are left out of their batch,
// never stop the partition, and are counted in
// tally_kafka_records_rejected_total{source,reason}, logged (at most one
// line a second per source, with topic, partition and offset) and, with
// dead_letter_topic, produced there as they were with headers saying why
// (before the batch commits, so none is lost).
//
// Backpressure: the loop is synchronous, poll -> decode -> commit (durable
// and applied) -> poll, over a bounded fetch buffer, so fetching stops
// while the log or the apply is behind; a log that refuses writes is
// retried with backoff, holding the batch. A broker outage is retried by
// the client with backoff; fetch errors are counted
// (tally_kafka_fetch_errors_total) and logged. Lag per partition (the high
// watermark minus the next offset) is tally_kafka_lag{source,topic,partition};
// a source's max_lag makes /readyz answer 503 while any partition exceeds it.
//
// Topologies. A single node consumes with its own group: one node per
// group. Two single nodes in one group split the partitions, each counting
// only its own, and a rebalance moves a partition to a node whose state
// never saw its earlier records: that node starts it at its own offset
// (with start: earliest, from the beginning of what the topic retains, so
// its state, once caught up, counts every record of the partition exactly
// once; with latest, it misses what came before). Lookups then depend on
// which node answers: not a supported way to scale a single node. A
// cluster (issue #12) routes through Sink instead: every node's consumer
// commits through the replicated log with the batch's offsets as its
// request id, and the apply skips a range the state holds, so a rebalance
// or a node failure never counts a record twice.
//
// A topic deleted and recreated under the same name restarts at offset 0,
// below the offsets the state holds: its records are skipped as counted
// until they pass them, and the consumer logs an error and counts
// tally_kafka_offset_regressions_total when it sees a high watermark below
// the state's offset. Consume a recreated topic under a new topic name.
package kafkasource
