package cluster

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"time"
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
// A directory missing is the signal (openReplica creates it before
// anything else): a replica that holds no state in a directory that
// exists (an open that failed part way) is not told apart from a new one.

// missingDir reports whether dir does not exist.
func missingDir(dir string) (bool, error) {
	_, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("cluster: data dir: %w", err)
	}
	return false, nil
}

// errLostReplica refuses node self's start over a data dir whose replica
// of group name (in dir) is gone; why says how that is known.
func errLostReplica(name, dir, self, why string) error {
	return fmt.Errorf("cluster: group %s: this node's replica in %s is missing (%s), though the data dir holds the node's other cluster state: "+
		"started empty it would vote as a replica that forgot the entries it acknowledged, and acknowledged writes could be lost. "+
		"The node does not start and nothing is created for it. If the directory was moved or left out of a restore, put it back; otherwise %s",
		name, dir, why, replaceSteps(self))
}

// checkReplicaKept refuses to open this node's replica of group g, placed
// here by map m, when its directory is missing and the group counts this
// node as a voter: a group never changed was bootstrapped with this node
// as a voter; a changed one is asked (its leader, until deadline). A
// replica the group does not count as a voter (one a move or an addition
// placed here and stopped before it opened) opens empty as usual.
func (c *Cluster) checkReplicaKept(m *Map, g int, deadline time.Time) error {
	name := "g" + strconv.Itoa(g)
	dir := groupDir(c.cfg.DataDir, name)
	missing, err := missingDir(dir)
	if err != nil || !missing {
		return err
	}
	if !m.Groups[g].Changed {
		return errLostReplica(name, dir, c.cfg.NodeID, "the group was created with this node as one of its voters")
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	voters, err := c.groupVoters(ctx, g)
	if err != nil {
		return errLostReplica(name, dir, c.cfg.NodeID, fmt.Sprintf("the group's leader could not be asked whether this node is one of its voters: %v", err))
	}
	if slices.Contains(voters, c.cfg.NodeID) {
		return errLostReplica(name, dir, c.cfg.NodeID, fmt.Sprintf("the group's voters are %v", voters))
	}
	return nil
}
