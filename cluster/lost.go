package cluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"time"

	"github.com/tally-ml/tally/wal"
)

// A replica's directory (cluster/meta, cluster/g<N>) holds what the node
// promised its group: its term, its vote and the entries it acknowledged.
// A data dir that lost one of them (deleted by hand, not restored with the
// rest) but kept the node's identity was not new, so its peers were not
// asked (newdir.go): the missing replica opened empty, bootstrapped its
// group again when the group never changed, and voted as a voter that
// forgot what it counted in a quorum. An entry committed on two of three
// replicas was lost once one of the two lost its group directory and the
// other was down (cluster/TestLostGroupDirIsRefused). Open now refuses
// such a start before it creates anything for the replica; the way back is
// a replacement under a new node id, as for an unreadable replica.
//
// Emptying the directory (rm -rf cluster/g0/*) loses the same: a
// replica's directory that holds no Raft term is taken as missing
// (cluster/TestEmptiedGroupDirIsRefused). A replica that ever counted in
// a quorum has a term: the replicas that create a group record term 1
// when they bootstrap it, and a replica placed later is added as a
// non-voter and records its leader's term at its first contact, before
// it is made a voter. So a directory without a term whose group counts
// this node as a voter lost its state; one the group does not count (an
// open that failed part way, a move or an addition stopped before the
// replica was contacted) opens as usual. The metadata group's rule is
// checkMetaKept's. A term without the log (the log deleted, the stable
// file kept) is not caught here.

// lostState reports whether the replica directory dir is missing or holds
// no Raft term, and which of the two ("" when neither). A stable file
// that cannot be read (one that does not validate) is not lost state:
// openReplica refuses it as unreadable.
func lostState(dir string) string {
	term, err := wal.RaftTerm(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return lostMissing
	case err != nil:
		return "" // openReplica reads it again, and refuses it as unreadable
	case term == 0:
		return "holds no Raft state (no term: it was emptied, or its stable file removed)"
	}
	return ""
}

// lostMissing is lostState's answer for a missing directory.
const lostMissing = "is missing"

// errLostReplica refuses node self's start over a data dir whose replica
// of group name (in dir) is gone (lost says how: lostState); why says how
// the replica is known to have held state.
func errLostReplica(name, dir, lost, self, why string) error {
	return fmt.Errorf("cluster: group %s: this node's replica in %s %s (%s), though the data dir holds the node's other cluster state: "+
		"started empty it would vote as a replica that forgot the entries it acknowledged, and acknowledged writes could be lost. "+
		"The node does not start and nothing is created for it. If the directory (or what it held) was moved or left out of a restore, put it back; otherwise %s",
		name, dir, lost, why, replaceSteps(self))
}

// checkReplicaKept refuses to open this node's replica of group g, placed
// here by map m, when its directory is missing or holds no Raft term
// (lostState) and the group counts this node as a voter: a group never
// changed was bootstrapped with this node as a voter; a changed one is
// asked (its leader, until deadline). A replica the group does not count
// as a voter (one a move or an addition placed here and stopped before
// it opened or was contacted) opens empty as usual. It writes nothing.
func (c *Cluster) checkReplicaKept(m *Map, g int, deadline time.Time) error {
	name := "g" + strconv.Itoa(g)
	dir := groupDir(c.cfg.DataDir, name)
	lost := lostState(dir)
	if lost == "" {
		return nil
	}
	if !m.Groups[g].Changed {
		return errLostReplica(name, dir, lost, c.cfg.NodeID, "the group was created with this node as one of its voters")
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	voters, err := c.groupVoters(ctx, g)
	if err != nil {
		return errLostReplica(name, dir, lost, c.cfg.NodeID, fmt.Sprintf("the group's leader could not be asked whether this node is one of its voters: %v", err))
	}
	if slices.Contains(voters, c.cfg.NodeID) {
		return errLostReplica(name, dir, lost, c.cfg.NodeID, fmt.Sprintf("the group's voters are %v", voters))
	}
	return nil
}

// freshMapWait bounds freshMap's wait for the metadata replica to catch up.
const freshMapWait = 15 * time.Second

// freshMap returns the map a restarting node's replica checks and opens
// go by: m (what its metadata replica holds once open) unless a peer
// answered the start's round (startAnswers) with a newer version, in
// which case it waits (up to freshMapWait, within deadline) for the
// metadata replica to apply it. A
// restarted replica holds its newest snapshot and applies the entries
// after it only once a leader tells it they are committed, so m may
// predate a move of a group away from this node: the moved-away group's
// directory was deleted, and m, placing the group here still, had it
// refused as a lost replica (systemtest/TestMoveReplicaMetaLeaderKilled:
// `group g0: this node's replica ... is missing (the group was created with
// this node as one of its voters)`) or, before that check, bootstrapped
// again with its old voters. Peers that do not answer leave m as it is.
func (c *Cluster) freshMap(m *Map, deadline time.Time) *Map {
	var peers []Member
	for _, mb := range m.Members {
		if mb.ID != c.cfg.NodeID {
			peers = append(peers, mb)
		}
	}
	newest := m.Version
	for _, p := range c.startAnswers(peers) {
		if p.err == nil && p.hi.Node == p.id {
			newest = max(newest, p.hi.MapVersion)
		}
	}
	if newest == m.Version {
		return m
	}
	until := time.Now().Add(freshMapWait)
	if deadline.Before(until) {
		until = deadline
	}
	for time.Now().Before(until) {
		if cur, _ := c.metaSM.current(); cur != nil && cur.Version >= newest {
			c.m.Store(cur)
			return cur
		}
		time.Sleep(50 * time.Millisecond)
	}
	cur, _ := c.metaSM.current()
	c.logger.Warn("cluster: the metadata replica did not catch up with the peers' map before the replica checks; going by the one it holds",
		"holds", cur.Version, "peers", newest)
	c.m.Store(cur)
	return cur
}
