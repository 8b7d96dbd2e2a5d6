// Package node is the serving node: it compiles a feature repo into
// windows views, tables and lookup plans, and serves them over HTTP.
//
// Read it top-down:
//
//   - node.go: New builds a Node from a features.Repo and a Config.
//   - ingest.go: a request body becomes validated events (all or nothing),
//     which are applied to every view fed by their source. An ingest is
//     acknowledged only after it is applied, so the next lookup on this node
//     sees it (read-after-write).
//   - lookup.go: a feature service's plan reads each view once, each table
//     once, evaluates request-time features, and appends the Tecton-shaped
//     JSON response straight into the output buffer, without allocating per
//     request in steady state.
//   - http.go: the fasthttp server: routes, auth, limits, errors; conns.go
//     bounds its connections below the open-file limit.
//   - open.go: Open opens a node on its data dir (lock.go: the dir's flock),
//     checks the repo against the schema fingerprint kept there (schema.go:
//     says what changed, and applies or refuses it), restores the newest
//     verified snapshot, replays the log after it, runs the snapshot loop
//     and retention; Instance.Close stops it.
//   - snapshot.go: the snapshot format (what the node's state looks like
//     in a snapshot); the files (written, verified, set aside as corrupt-*,
//     kept) are package snapshot's.
//   - commit.go: the seam every change goes through. A request becomes
//     log records; a Committer commits them (the write-ahead log's: append,
//     then apply; a Raft group's: propose, and every replica applies what
//     was committed) and the StateMachine (the *Node) applies them in log
//     order. A log that refuses writes turns ingest into 503 NOT_DURABLE
//     and /readyz into 503 with the reason, until it recovers.
//   - apply.go, record.go, recover.go: the state machine's Apply of a log
//     record, the record format, and recovery: Restore of the newest
//     snapshot, then Apply of every record after it.
//
// Bad input gets a 4xx JSON error {"error":{"code","message"}} naming the
// problem, and changes nothing. The request path never panics on input.
package node
