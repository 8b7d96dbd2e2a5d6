// Package transport is the node's cluster port: one TCP listener carrying the
// streams of many Raft groups (the metadata group and every replica group),
// each group getting its own raft.StreamLayer and raft.NetworkTransport.
// hashicorp/raft has no multi-raft support and each raft.Raft needs its own
// Transport, so a Mux demultiplexes by a group name sent once per connection;
// after the handshake a connection is a plain TCP stream owned by that
// group's NetworkTransport (its pooling, pipelining and timeouts unchanged).
//
// # Contract
//
//   - Only peers with the same cluster id and the same cluster key get a
//     connection handed to a layer; each side proves it holds the key, and
//     the key never crosses the wire.
//   - A refused peer is told why in one line (wrong cluster id, bad cluster
//     key, group not open here, not a tally handshake) before the close, the
//     refusal is counted (Refused, tally_cluster_handshakes_refused_total
//     {reason}) and logged at most once a second.
//   - An unauthenticated peer costs at most one goroutine and helloMax bytes
//     for at most Config.HandshakeTimeout (5s), and at most
//     Config.MaxHandshakes (64) of them at once; beyond that new connections
//     are closed at once (reason busy).
//   - Config.Advertise (or the listener's address) is what raft reports as
//     this node's address; a wildcard IP (0.0.0.0, ::) is refused at Listen.
//   - Connections for a group not (yet) opened with Mux.Layer are refused; raft
//     retries, so groups may be opened in any order. Closing a Layer ends its
//     Accept (net.ErrClosed) and unregisters the group; the Mux keeps serving.
//   - The handshake authenticates; it does not encrypt, and it does not protect
//     the stream after it. Run the cluster port on a private network (or a
//     WireGuard/IPsec link); TLS is a separate, future layer.
//
// # Handshake (version 1)
//
// All lengths are one byte; names are 1..64 bytes; nonces are 32 random bytes
// from crypto/rand; MACs are HMAC-SHA256 (32 bytes).
//
//	dialer   -> acceptor  hello:     "TLYC" 0x01 len clusterID len group nonceD
//	acceptor -> dialer    challenge: "TLYC" 0x01 0x00 nonceA
//	                      or refusal "TLYC" 0x01 0x01 len reason
//	dialer   -> acceptor  proofD = HMAC(key, "tally-cluster/v1 client" || hello || nonceA)
//	acceptor -> dialer    0x00 proofA = HMAC(key, "tally-cluster/v1 server" || hello || nonceA)
//	                      or refusal 0x01 len reason
//
// then the group's raft traffic. The acceptor checks the cluster id before
// the key (so a node of another cluster hears "wrong cluster id", the common
// operator mistake), then proofD, then whether the group is open; the dialer
// checks proofA and otherwise closes and counts a refusal (reason
// peer_bad_key). The whole exchange has the dial timeout on the dialer's side
// and HandshakeTimeout on the acceptor's.
//
// Why mutual challenge-response: the acceptor's fresh nonceA makes a recorded
// proofD useless for a replay, and the dialer's nonceD (inside hello) does the
// same for proofA; the two labels keep one side's proof from being reflected
// as the other's. Proving the key both ways matters because a follower must
// not accept AppendEntries from, nor send votes to, something that merely
// listens on a peer's address (a stale process, a node of another cluster
// reusing the port). A password sent in clear would hand the key to anything
// a node dials; a one-way proof would let an impostor acceptor feed a dialer.
//
// # Costs
//
// Per connection, once: three messages (1.5 round trips) and four HMACs,
// measured by BenchmarkHandshake at 0.33 to 0.87 ms per dial+handshake on
// loopback (4.9 KB, 78 allocations), on a 2-core machine at load average ~20,
// so mostly scheduling; raft pools connections (maxPool per peer), so this is
// paid on connect and reconnect only. Per RPC, nothing: after the handshake the
// NetworkTransport owns the raw *net.TCPConn, and BenchmarkAppendEntries
// shows the same bytes and allocations per AppendEntries (64 x 256-byte
// entries) over the mux as over raft's plain TCP transport:
//
//	go test -run '^$' -bench . -benchtime 2s -count 3 ./cluster/transport
//
// What a Mux does not do: batch heartbeats across groups (hashicorp/raft has no
// hook for it, hashicorp/raft#674), so each group's leader still sends its own
// heartbeats to each follower; keep the number of groups per node modest.
package transport
