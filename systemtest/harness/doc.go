// Package harness runs real tally processes for whole-process tests, in the
// manner of VictoriaMetrics' apptest and rqlite's system_test: the tests
// talk to the binary users run, over loopback HTTP, through package client.
//
// Binary builds ./cmd/tally once per test process (call Main from
// TestMain to remove it afterwards). Start launches `tally serve` on a free
// 127.0.0.1 port with its own data directory (or a given one), waits until
// /readyz answers 200, and returns a *Node holding a client.Client for it;
// StartN starts several; Launch starts one without waiting (for a node
// expected to refuse to start). A Node can be killed (SIGKILL: a crash), stopped
// (SIGTERM: a graceful shutdown), paused and resumed (SIGSTOP/SIGCONT: a
// node that hangs without closing its connections), and restarted on the
// same port and data directory.
//
// Everything a node writes to stdout and stderr is kept, run by run: Output
// is the current run's, and when a test fails every run's output is written
// to the test log. Nodes still running when the test ends are killed.
//
// Ports are picked free just before a node starts; another process could
// take one in between, and then the node fails to start with "address
// already in use" in its output. Restart binds the same port again.
package harness
