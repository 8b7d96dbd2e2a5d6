// Package store is a node's state and the order it changes in: the
// windows views and table views of one feature repo, the log record
// format, the apply order, snapshots' content, recovery, the schema
// fingerprint, and its lifecycle on a data dir (Open). It knows nothing of HTTP or JSON: package node (the front)
// parses requests into batches and rows, commits them here, and reads the
// views and tables back for lookups. Data flows one way: node -> store.
//
// Read it top-down:
//
//   - store.go: New builds a Store from a features.Repo: a Table per table
//     view, a Source per event source (how its events reach the views).
//   - table.go: a table view's rows, as records in one pointer-free arena
//     found through an open-addressing index by key hash;
//     tableversions.go: the rows a read at a recent past time (a lookup's
//     as_of) still needs, kept for the repo's longest lateness.
//   - group.go: the feature views of one source and join key share one
//     windows.View (a group): an entity's key, header and raw events are
//     held once for all of them. View and ReadView find a view's share; a
//     snapshot records the groups and a restore takes their layout.
//   - commit.go: the seam every change goes through. A Committer commits
//     log records (the write-ahead log's: append, then apply; a Raft
//     group's: propose, and every replica applies what was committed) and
//     the StateMachine (the *Store: Apply, Snapshot, Restore) applies them
//     in log order. CommitEvents and CommitTable turn validated batches and
//     rows into records and commit them, applying the caller's decoded form
//     in process when the Committer lets it (no decoding on the hot path).
//   - apply.go, record.go: Apply of one committed record, and the record
//     format (events, table uploads, the acknowledgement clock).
//   - stream.go: records of a stream consumer (Kafka) carry the offsets of
//     their events; the state keeps each partition's next offset and skips
//     a range it holds, so a stream is applied exactly once.
//   - request.go: records of a named request (the client's
//     Idempotency-Key) carry its key; the state keeps the keys of the last
//     262,144 it applied and skips a repeat, so a retry counts once.
//   - recover.go, replay.go: RecoverFrom replays the log after the
//     restored snapshot, as a pipeline: a reader goroutine decodes records,
//     the caller sequences them, one lane per group places them (each group
//     in log order, so the state is the one a sequential replay builds).
//   - snapshot.go: the content of a snapshot (package snapshot keeps the
//     files), written while ingest goes on, one partition at a time, and
//     restored with the partitions decoded on every core.
//   - logmarks.go: a single node's snapshot ends with checksums of a few of
//     its log's records; a start refuses a snapshot whose marks differ from
//     the log (one copied from another node or data dir).
//   - schema.go: the repo's fingerprint kept beside the data, what changed,
//     and which views a changed repo rebuilds from the log.
//   - open.go: Open opens a store on its data dir (lock.go: the dir's
//     flock): the write-ahead log, the schema check, the newest verified
//     snapshot (Restore), the log after it (Apply), the snapshot loop and
//     the log's retention; Instance.Close stops it. One Instance per data
//     dir: a cluster opens one per replica group.
//
// A record the store cannot decode stops recovery with an error: serving a
// state that silently lacks acknowledged events is worse than not starting.
package store
