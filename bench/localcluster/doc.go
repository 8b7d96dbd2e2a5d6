// Package localcluster starts tally processes on loopback: a cluster of N
// nodes (child processes of one tally binary, each with its own ports and
// data dir under one directory, sharing a generated cluster key), or a
// single node beside it. `tally demo --nodes 3` and `tally bench --cluster`
// use it; it talks to the nodes only over HTTP and signals, as an operator
// would, and imports nothing of the node.
//
// Contract: Start returns once every node answers /readyz; Kill is kill -9
// (no shutdown); Restart relaunches a node with its arguments, ports and
// data dir and waits until it is ready; Stop sends SIGTERM to every node
// and waits for them (SIGKILL after a timeout). Each node's output goes to
// <Dir>/<id>.log (appended across restarts). On Linux a child is killed
// when the process that started it dies, so no node outlives a crashed
// demo or bench.
package localcluster
