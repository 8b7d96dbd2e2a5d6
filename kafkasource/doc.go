// Package kafkasource consumes the Kafka topics of a repo's sources (a
// source's `kafka:` block, features.Kafka) into a node, exactly once.
//
// One consumer per source: a franz-go client lists the topic's partitions
// and reads every one of them directly (no group membership), each from
// the state's next offset, or from the source's start position (earliest:
// a backfill of what the topic retains; latest) for a partition the state
// holds none of, resolved to a number and committed as an empty range
// first, so that a restart resumes there (an offset below the log start
// resumes at the log start). For each fetched batch of each partition, the valid
// records become one store.Batch committed with the batch's offsets
// [first, next) in the same log record (Sink.IngestStream,
// store.CommitStream), and the state keeps the next offset of every
// partition, in its snapshots too: a restart, even after kill -9, resumes
// from what tally itself logged, at once (no group session to wait out).
// The state's offsets are committed to the source's group each second,
// for monitoring tools only; tally never reads them back. Partitions added
// to the topic later are found within a second (the topic is listed each
// second) and read from their first record, whatever the start position:
// every record in them came after the node started consuming; the same
// for a partition added while the node was down, at its next start.
//
// Bad records (not JSON, a missing join key, a bad timestamp, too late or
// too far ahead, a field of the wrong type) are left out of their batch,
// never stop the partition, and are counted in
// tally_kafka_records_rejected_total{source,reason}, logged (at most one
// line a second per source, with topic, partition and offset) and, with
// dead_letter_topic, produced there as they were with headers saying why
// (before the batch commits, so none is lost). A dead-letter produce that
// fails (the topic deleted, a broker refusing or not answering; each
// attempt bounded to 10 s) holds its batch, and so its partition,
// uncommitted: each failed attempt is counted in
// tally_kafka_dead_letter_errors_total, logged (rate-limited) and retried
// with backoff (up to 5 s) until one succeeds, while the partition's lag
// grows; a consumer stopped meanwhile leaves the batch to its next start.
// A rejected record the dead-letter topic refuses for good (larger than its
// max.message.bytes, or refused by the broker's validation: MESSAGE_TOO_LARGE,
// RECORD_LIST_TOO_LARGE, INVALID_RECORD, CORRUPT_MESSAGE, once produced
// alone) does not hold its partition: a stand-in takes its place there (its
// key if short, an empty value, tally's headers, tally-value-bytes and
// tally-dead-letter-error), counted in
// tally_kafka_dead_letter_stand_ins_total and logged; the record itself
// stays in its topic until retention deletes it. A stand-in refused too
// holds the batch like any failure.
// A record whose attempt was cut short may reach the dead-letter topic
// twice, never zero times; a dead-letter topic deleted and created again
// is produced to once it exists. A source whose topic or dead_letter_topic
// the brokers do not know consumes nothing (a cluster's member does not
// join the group) and logs why, retrying with backoff, until both exist.
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
// Topologies. A single node reads every partition itself: one node per
// group. Two single nodes configured with the same group each read every
// partition into their own state, each exactly once (replicas, not a
// split: there is no rebalance between single nodes). In a cluster
// (StartAllRouted) every node runs a member of the source's consumer
// group, so the group spreads the partitions over the nodes and moves them
// on a rebalance; a member resumes a partition it is assigned at the
// cluster's offsets, never the group's commits, and commits each batch
// through a Router (the cluster), which gives every replica group its
// share of the batch from the group's own next offset, so a rebalance, a
// node failure or a retry never counts a record twice or skips one
// (cluster/DESIGN.md, "Kafka").
//
// A topic deleted and created again under the same name (a new topic id,
// offsets from 0 again) is a new log, read from its first record whatever
// the start position, each record once: the state keys a topic's offsets
// by its name for the first topic id it consumes and by name@id for a
// later one (Consumer.incarnation), so the old offsets neither skip nor
// re-read the new topic. A consumer notices the new id within a second
// (the topic is listed each second; franz-go refuses a recreated topic's
// id, so a new client reads it; a cluster's member leaves the group and
// joins it again), at its first fetch of the new topic (a topic recreated
// after the consumer listed its id, before its client first read the
// topic's metadata: every fetch under an id other than the one keyed is
// dropped, none of its records counted, in both topologies), or at its
// next start, and counts it in
// tally_kafka_topic_recreations_total and logs a warning naming the topic
// and its ids (the old one when seen while running). In a cluster, the
// offsets and the markers saying which id owns which key live in the
// replica groups' states, like every routed offset, so the members agree
// on the key from what the brokers list and what the groups hold; each
// member counts the recreations it notices (the counter is the process's
// own, as every metric here: one recreation adds 1 to N over N members,
// so an alert is on any member's increase, not on the sum). Records of
// the old topic not read before its deletion are gone with it. A high
// watermark below the state's offset under the same topic id (a truncated
// log) is logged as an error and counted in
// tally_kafka_offset_regressions_total; its records are skipped until
// they pass the held offset.
package kafkasource
