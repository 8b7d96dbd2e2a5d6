// Package node is the serving node's front: it parses and validates
// requests, plans lookups, writes JSON responses and serves them over
// HTTP. The state it serves (views, tables, the apply order, snapshots,
// recovery) is package store's: a Node embeds its *store.Store, and data
// flows one way, node -> store.
//
// Read it top-down:
//
//   - node.go: New builds a Node from a features.Repo and a Config: its
//     store (store.New), the services' lookup plans and models, the keys.
//   - ingest.go: a request body becomes validated events (all or nothing)
//     in store.Batches, which the store commits and applies
//     (store.CommitEvents). An ingest is acknowledged only after it is
//     applied, so the next lookup on this node sees it (read-after-write).
//     A log that refuses writes turns ingest into 503 NOT_DURABLE and
//     /readyz into 503 with the reason, until it recovers.
//   - stream.go: a stream consumer's records (package kafkasource) become
//     events one by one (a bad record is left out, not the batch), committed
//     with their offsets (IngestStream); AddReadyCheck holds /readyz while a
//     consumer lags.
//   - tables.go: table uploads (CSV, NDJSON) become store.TableRows,
//     committed whole (store.CommitTable).
//   - plan.go: a feature service's plan: which (view, key) pairs a request
//     reads (Read; LookupReads returns them without reading: what a router
//     places), read by read, and how each output is written.
//   - lookup.go: a request is parsed, its reads read (each view once, each
//     table once), request-time features evaluated, and the Tecton-shaped
//     JSON response appended straight into the output buffer, without
//     allocating per request in steady state.
//   - predict.go: the service's model scores the vector.
//   - http.go: the fasthttp server: routes, auth, limits, errors; conns.go
//     bounds its connections below the open-file limit.
//   - open.go: Open opens a node on its data dir: its state through
//     store.Open (the lock, the log, recovery, the snapshot loop and
//     retention), and the front over it; Instance.Close stops both.
//   - state.go: the store's names a caller of node meets (Committer, Log,
//     Recovery, Durability, the data dir's lock, the errors).
//
// Bad input gets a 4xx JSON error {"error":{"code","message"}} naming the
// problem, and changes nothing. The request path never panics on input.
package node
