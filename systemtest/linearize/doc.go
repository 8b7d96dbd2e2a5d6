// Package linearize checks that a concurrent history of operations on tally's
// per-key event counters is linearizable, with porcupine
// (github.com/anishathalye/porcupine).
//
// The model: each key holds a count, initially 0. Add(key, n) is an ingest of n
// events for key and adds n; Read(key) returns the count. Keys are
// independent, so the history is checked one key at a time (porcupine's
// partitioning), which keeps the NP-hard search small.
//
// Recording contract. A test's clients call Recorder.Begin just before sending
// a request and Recorder.End just after its answer, from any goroutine; the
// timestamps come from one monotonic clock in the test process, so an
// operation's interval contains the moment the cluster served it.
//   - An Add acknowledged by the cluster is ended with Ack.
//   - An Add whose outcome is unknown (timed out, connection reset, 5xx after
//     the request was sent) is ended with Unknown, or never ended: it is
//     checked as an operation that returned at +infinity, so it may take
//     effect at any moment after its call, or never (it can always be placed
//     after every other operation).
//   - An operation that certainly changed nothing (refused before anything was
//     applied, a 4xx) and a read that failed are ended with Discard: they
//     constrain nothing.
//   - A Read that answered is ended with Count.
//
// Check reports whether some order of the operations, consistent with their
// real-time intervals, explains every acknowledged read; on a violation it
// writes porcupine's HTML visualization and names the file in its error.
//
// Cost: the search is per key and grows with how many operations on a key
// overlap. BenchmarkCheck (4 clients, 8 keys, 2000 operations each taking
// effect somewhere in a 0-2ms interval, 1 in 20 Adds of unknown outcome)
// checks in about 0.6s on a loaded 2-core machine; keep a key's history to a
// few hundred operations and spread the workload over several keys.
package linearize
