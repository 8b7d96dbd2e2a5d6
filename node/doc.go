// Package node is the serving node's front: it parses and validates
// requests, plans lookups, writes JSON responses and serves them over
// HTTP. The state it serves (views, tables, the apply order, snapshots,
// recovery) is package store's: a Node embeds its *store.Store, and data
// flows one way, node -> store. Callers that need the state's own names
// (store.Committer, store.StateMachine, store.Log, store.Recovery,
// store.LockDataDir and the store's errors) import package store.
//
// Read it top-down; every file, in the order a request meets them:
//
//   - node.go: New builds a Node from a features.Repo and a Config: its
//     store (store.New, through Options.Log or Options.Committer), the
//     services' lookup plans and models, the keys.
//   - config.go: Config, Limits, API keys and Scopes, DefaultConfig and
//     LoadConfig (YAML); Config.Durability is the store's.
//   - open.go: Open opens a node on its data dir: its state through
//     store.Open (the lock, the log, recovery, the snapshot loop and
//     retention), and the front over it; Instance.Close stops both.
//   - http.go: the fasthttp server: routes, auth, limits, errors;
//     auth.go checks API keys (constant time, by scope); conns.go bounds
//     connections below the open-file limit; metrics.go is the node's
//     Prometheus metrics.
//   - options.go: the strict reading of request options shared by every
//     JSON endpoint (typed options, a key given twice, RFC 8259 numbers);
//     every JSON body and line is parsed by tabular.ParseJSON, which
//     refuses escapes RFC 8259 does not define, \u escapes of unpaired
//     UTF-16 surrogates, raw control characters in strings and text that
//     is not UTF-8 (the lookup's quick scanner leaves any escape to it and
//     refuses the rest itself).
//   - ingest.go: a request body becomes validated events (all or nothing;
//     ParseTime reads their timestamps) in store.Batches, which the store
//     commits and applies (store.CommitEvents). An ingest is acknowledged
//     only after it is applied, so the next lookup on this node sees it
//     (read-after-write). A log that refuses writes turns ingest into 503
//     NOT_DURABLE and /readyz into 503 with the reason, until it recovers.
//   - stream.go: a stream consumer's records (package kafkasource) become
//     events one by one (a bad record is left out, not the batch), committed
//     with their offsets (IngestStream); AddReadyCheck holds /readyz while a
//     consumer lags.
//   - tables.go: table uploads become store.TableRows, committed whole
//     (store.CommitTable). CSV is read by package tabular's reader and the
//     format picked by tabular.BodyFormat; NDJSON, typed by the table's
//     schema, is parsed here (tabular/doc.go says why).
//   - plan.go: a feature service's plan: which (view, key) pairs a request
//     reads (Read; LookupReads returns them without reading: what a router
//     places), read by read, and how each output is written.
//   - lookup.go: a request is parsed, its reads read (each view once, each
//     table once), request-time features evaluated, and the Tecton-shaped
//     JSON response appended straight into the output buffer, without
//     allocating per request in steady state. APIError, the 4xx/5xx
//     answer of every endpoint, is declared here.
//   - quickparse.go, jsonfloat.go, dragonbox.go: the lookup's fast paths: a
//     scanner for the common single-row body (anything else goes to
//     fastjson, which answers as before), and floats written as strconv's
//     shortest 'g' text, byte for byte, from Dragonbox digits (tests and
//     fuzz targets hold both to fastjson and strconv).
//   - predict.go: the service's model scores the vector.
//   - history.go: PointReader, the same plan read at a past time, which
//     package history's point-in-time joins call row by row.
//   - feast.go: Feast's feature-server API (/get-online-features, /push,
//     /write-to-online-store, /health) over the same plans and ingest, with
//     Feast's shapes, statuses and errors; a write's NaN (pandas' missing
//     value) in a float or int column is null, as Feast stores it.
//
// Bad input gets a 4xx JSON error {"error":{"code","message"}} naming the
// problem, and changes nothing. The request path never panics on input.
package node
