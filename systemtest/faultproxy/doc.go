// Package faultproxy injects network faults between real processes on
// loopback, without root or iptables (the style of etcd's robustness tests):
// a Proxy is a TCP proxy placed in front of one node's port, and rules select
// connections by the IP they come from. Nodes dial from distinct loopback
// addresses (127.0.0.11, 127.0.0.12, ...: Linux routes all of 127/8 to lo), so
// the proxy in front of node j can cut node i off from j and nobody else.
//
// Rules, per source IP ("" = every source; a connection obeys the rule of its
// IP and the "" rule together: the stronger of each field wins):
//   - Blackhole: connections are accepted but no byte passes either way, and
//     no close either; bytes already sent wait in the proxy (as TCP would
//     retransmit them) and flow again after Heal, unless the peer gave up and
//     closed meanwhile. New connections are accepted and stall the same way.
//   - Refuse: existing connections are reset at once, new ones are reset
//     right after accept.
//   - Delay(d, jitter): every chunk is delivered d plus a uniform [0, jitter]
//     after the proxy read it, in order (a latency, not a bandwidth limit).
//   - DropRate(p): before delivering each chunk, the connection is reset with
//     probability p (a lossy path that breaks streams).
//   - Heal: the rule of that IP is removed; Heal("") removes every rule.
//
// Net groups one Proxy per node with the nodes' source IPs and cuts the
// cluster into sides with Partition. The proxy is for tests: it copies every
// chunk and is not built for speed.
package faultproxy
