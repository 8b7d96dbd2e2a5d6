// Package cluster is tally's cluster mode: a node's part of a set of
// nodes that shard entities over Raft-replicated groups. It holds the
// metadata group, this node's replicas of the data groups, the routing of
// writes and reads to them, and the operations that change the cluster. A
// node without --cluster-* flags never opens it; package node calls it
// through node.Cluster, so data flows one way: node -> cluster -> store.
// DESIGN.md beside this file records every decision and why.
//
// What it guarantees:
//
//   - Placement: a key's partition is ring.Partition(xxhash(key)) of 1024,
//     as on a single node; partition p belongs to group p mod G; group g's
//     R replicas are named by the map (the metadata group's state), which
//     every node caches. G and R are fixed when the cluster is created.
//   - Writes: a request is validated whole by the front, split by group,
//     and acknowledged only when every group it touches has committed and
//     applied its share. Every write carries a request id; a group applies
//     an id once (within its window of the last 262,144), so a client's
//     retry after 503 UNAVAILABLE completes the write exactly once, and a
//     retry some groups applied and others did not is 409 PARTLY_APPLIED,
//     never silently half done.
//   - Replicas are identical bit for bit: a group's FSM applies log
//     records with the clock they carry, never the wall clock. A replica
//     that cannot be read (a record or stable file that does not validate,
//     no snapshot that restores) refuses the start, naming the group and
//     file, and changes nothing: a voter never forgets what it counted in
//     a quorum.
//   - Reads: at the default level each group's leader answers, so an
//     acknowledged ingest is visible to the next lookup; linearizable
//     reads confirm leadership with a quorum first; local reads answer
//     from this node's replica and report their staleness.
//   - Membership changes (add, remove, move, rebalance) run one at a time
//     on the metadata group's leader, in steps each safe to stop after: a
//     moved replica is added as a non-voter, caught up, promoted, and only
//     then is the old one removed, so acknowledged writes stay on a quorum
//     of the old and of the new voters; a move stopped half way refuses
//     every other change of its group until it is finished or undone.
//     Recovery from a lost quorum is offline and explicit (Recover).
//   - Kafka: a routed source's offsets live in the groups' states with the
//     events they counted, so each record is counted once across member
//     restarts, rebalances and recreated topics.
//
// Read it top-down:
//
//   - cluster.go: Config and Open (the cluster port, the metadata replica,
//     this node's data-group replicas) and the Cluster a node serves from.
//   - shape.go, identity.go, newdir.go, removed.go, lost.go: what a data dir records
//     (cluster and node ids, G and R) and the starts it refuses.
//   - map.go, meta.go: the cluster map and the metadata group's FSM.
//   - group.go, fsm.go: one data group's replica: its Raft over the WAL
//     (wal.RaftStore), its FSM over a store.Store, request ids, snapshots.
//   - rpc.go, wire.go, and the transport subpackage: the internal RPCs and
//     their wire format over the authenticated cluster port.
//   - write.go, read.go: WriteEvents, WriteTable, RequestApplied; Read at
//     each read level, and Status.
//   - kafka.go: a routed Kafka source's commits and resume points.
//   - archive.go: each group's log as an archive for historical features.
//   - membership.go, transfer.go, snapshot.go, check.go, recover.go: the
//     operator's changes, leadership transfers, snapshots on demand,
//     replica checks at checkpoints, and recovery from a lost quorum.
//   - ops.go: the overview, readiness and Prometheus metrics.
package cluster
