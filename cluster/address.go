package cluster

import (
	"fmt"
)

// checkSameAddress refuses the restart of a member whose cluster address
// (Advertise) is not the one its data dir's map gives it, unless that
// address still reaches this process. Its groups' Raft configurations hold
// the address the member had when it joined them, and the leaders send
// their heartbeats and entries there: at another address the node never
// heard from a leader, waited for a map it could not get (refused after
// the form timeout, blaming --cluster-peers), or, with a map in its
// snapshot, ran not ready for good, while its groups counted a replica
// they could not reach: one more node down and they had no quorum
// (TestRestartAtANewAddress). Raft has no way to change a server's address
// but removing and adding it, which is what a replacement under a new id
// does. An address that still answers as this process (another name of
// the same host and port) is taken. Costs one hello, only when the
// addresses differ (in the start's round: askAtStart). Runs before the
// metadata replica opens: nothing is changed.
func (c *Cluster) checkSameAddress() error {
	m := storedMap(c.cfg.DataDir)
	if m == nil {
		return nil
	}
	mb := m.Member(c.cfg.NodeID)
	if mb == nil || mb.ClusterAddr == c.cfg.Advertise {
		return nil
	}
	if p := c.startAnswers([]Member{*mb})[0]; p.err == nil && p.hi.Node == c.cfg.NodeID && p.hi.Instance == c.instance {
		return nil
	}
	return fmt.Errorf("cluster: node %s is a member at the cluster address %s (its map, and its groups' Raft configurations, which its peers dial), and this start would be reached at %s (--cluster-advertise, else --cluster-addr). "+
		"Its peers would go on sending the groups' Raft traffic to %s: this node would never hear from its groups' leaders, and the groups would count a replica they cannot reach. "+
		"A member's cluster address cannot change: start it with --cluster-advertise %s (any --cluster-addr that address reaches). To move it to the new address instead: %s",
		c.cfg.NodeID, mb.ClusterAddr, c.cfg.Advertise, mb.ClusterAddr, mb.ClusterAddr, replaceSteps(c.cfg.NodeID))
}
