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
