// Package bench is tally's load-test harness: it measures tally and the
// systems teams build the same thing with, side by side, in one run on one
// machine, and writes what it measured.
//
// What a run does (Run):
//
//   - Starts tally with Options.Tally and talks to it only over loopback
//     HTTP, as a client would: package bench imports nothing of the node.
//     The tally command passes bench/inprocess, which runs node.New and
//     node.NewServer with the embedded default feature repo in this process
//     (the code the tally binary runs; with the write-ahead log unless
//     --in-memory). The preload goes through package client; the measured
//     loops use a fasthttp client with one request and response per worker,
//     reused, so that the client allocates nothing per request.
//   - Preloads it with a day of seeded transactions from bench/workload and
//     the user_profile table, then measures the fraud_detection lookup: open
//     loop at a fixed rate, closed loop for the maximum throughput, and a
//     rate sweep that finds where p99 crosses 1 ms. Lookup keys are drawn
//     from the workload with the same skew as the events (uniformly with
//     Options.UniformLookups, `tally bench --uniform-lookups`). A no-op
//     fasthttp server is measured first, with the same client and schedule
//     and answers of a lookup's size, so each figure can be read against
//     the client's own cost; every system then also runs open loop at half
//     the no-op server's maximum, and the table ends with each system's
//     closed-loop maximum as a fraction of the no-op server's and its p99
//     at that rate as a multiple of the no-op server's.
//   - Measures the same node's Feast API (POST /get-online-features,
//     system "tally-feast-api") with the very bodies the Feast peer gets.
//   - Measures ingest (JSON and bulk NDJSON) in events per second.
//   - Runs mixed ingest and lookup on a second node and checks, while
//     loaded, a sample of lookups against windowstest.Reference (the
//     brute-force model of the windows semantics) fed the same events; and
//     measures freshness: from an ingest's acknowledgement to the first
//     lookup response that shows it.
//   - With Options.Cluster (cluster.go): starts a single node and 3-node
//     clusters (R=3, R=1) as child processes of Options.Binary through
//     bench/localcluster, preloads each alike, and measures lookups through
//     every node at each read level (closed loop, and open loop at one rate
//     for the single node and the cluster), bulk ingest with request ids,
//     the write unavailability after kill -9 of a group's leader, and how
//     long a replica killed while its group is written takes to catch up; medians of 3 runs, and ratios.
//   - The kafka scenario ("kafka", kafka.go; needs Options.Binary): a
//     local broker (scripts/kafka.sh) with an 8-partition topic holding
//     the transactions, consumed by a `tally serve` child process from
//     the start, beside HTTP bulk of the same events into another fresh
//     process; then freshness, from the producer's acknowledgement of one
//     record to the first lookup counting it. A broker that cannot start
//     is reported as "not run: <reason>".
//   - Measures the peers named in Options.Peers: "redis" (the hand-built
//     sliding windows over sorted sets, see redis.go for what differs),
//     "feast" (Feast's Python feature server on its Redis online store,
//     serving precomputed values), "onnxruntime" (beside the scoring
//     scenario). A peer that cannot run is reported as "not run: <reason>",
//     never left out.
//   - The scoring scenario ("score", onnx.go): the parity suite's random
//     forest, imputer + scaler + logistic pipeline, 100-tree
//     IsolationForest and one-hot + GBDT pipeline, scored in process at
//     batch 1 and 100, beside onnxruntime on the same rows; report.md
//     tabulates ns per row and the ratio.
//
// With Options.TraceDir (`tally bench --trace DIR`), each lookup system's
// open-loop step at half the no-op server's maximum runs under a Go
// execution trace, written to DIR/<system>-half-noop.trace; the command
// bench/schedtrace reports from one what delayed the goroutines of client
// and server (scheduling latencies, run slices a kernel tick long).
//
// Load is open loop without coordinated omission (see package load), only
// ever to 127.0.0.1, and every phase is bounded in time and request count.
//
// Output: a table on the progress writer, and under Options.OutDir
// report.json (every figure), report.md (a summary) and PNG plots of
// latency percentiles by rate per system.
//
// Figures depend on the machine and on what else runs on it; the report
// records GOMAXPROCS, the CPU count and the Go version with them.
package bench
