package faultproxy

import (
	"fmt"
	"slices"
)

// Net is one Proxy in front of each node's port, and the source IP each node
// dials from: node i's peers reach it at Proxies[i].Addr(), and node i dials
// from IPs[i].
type Net struct {
	Proxies []*Proxy
	IPs     []string
}

// NodeIP is the loopback source IP of node i: 127.0.0.11, 127.0.0.12, ...
func NodeIP(i int) string { return fmt.Sprintf("127.0.0.%d", 11+i) }

// NewNet starts one proxy (on 127.0.0.1, a free port) in front of each of
// targets, node i dialing from NodeIP(i).
func NewNet(targets []string) (*Net, error) {
	n := &Net{}
	for i, t := range targets {
		p, err := New("127.0.0.1:0", t)
		if err != nil {
			n.Close()
			return nil, err
		}
		n.Proxies = append(n.Proxies, p)
		n.IPs = append(n.IPs, NodeIP(i))
	}
	return n, nil
}

// Partition heals everything, then blackholes traffic between nodes of
// different sides. Each side is a list of node indexes; a node in no side is
// cut off from every other node.
func (n *Net) Partition(sides ...[]int) {
	n.Heal()
	side := func(i int) int {
		for s, nodes := range sides {
			if slices.Contains(nodes, i) {
				return s
			}
		}
		return -1 - i // alone
	}
	for j, p := range n.Proxies {
		for i, ip := range n.IPs {
			if i != j && side(i) != side(j) {
				p.Blackhole(ip)
			}
		}
	}
}

// Isolate blackholes node i from every other node (both directions).
func (n *Net) Isolate(i int) {
	n.Proxies[i].Blackhole("")
	for j, p := range n.Proxies {
		if j != i {
			p.Blackhole(n.IPs[i])
		}
	}
}

// Heal removes every rule on every proxy.
func (n *Net) Heal() {
	for _, p := range n.Proxies {
		p.Heal("")
	}
}

// Close closes every proxy.
func (n *Net) Close() error {
	var first error
	for _, p := range n.Proxies {
		if err := p.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
