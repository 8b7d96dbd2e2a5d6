package cluster

import (
	"fmt"
	"os"
	"path/filepath"
)

// A node removed from the cluster while it was down (or stopped after its
// removal) still finds itself a member in the state its data dir holds: it
// left the metadata group before the map that drops it was committed, so
// it never learned of its removal. Started again over that data dir, it
// would open replicas no group counts, answer `local` reads from data
// nobody updates, and wait for a map nobody sends it. Two checks refuse
// such a start:
//
//   - at start, before waiting for its map, a node asks the nodes it knows
//     of (its --cluster-peers and its metadata Raft configuration) whether
//     their maps list it as removed (GET /v1/hello?id=, from Map.Removed);
//   - a node so refused leaves a tombstone (removedFile) in its data dir,
//     so that the next start is refused even when no peer answers.
//
// A node added again after its removal (add-node, over a wiped data dir)
// is taken off Map.Removed.

// removedFile is the tombstone of a node removed from its cluster, in the
// data dir's cluster directory.
const removedFile = "REMOVED"

func tombstonePath(dataDir string) string { return filepath.Join(dataDir, "cluster", removedFile) }

// errRemovedStart is the refusal of a removed node's start.
func errRemovedStart(id, dataDir, why string) error {
	return fmt.Errorf("cluster: this node (%s) was removed from the cluster (%s); the data in %s is stale and no longer used. To bring the machine back, wipe that data dir (or use a new one), start with --cluster-join and run `tally cluster add-node`", id, why, dataDir)
}

// checkTombstone refuses to start over the data dir of a removed node.
func checkTombstone(cfg Config) error {
	b, err := os.ReadFile(tombstonePath(cfg.DataDir))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cluster: read %s: %w", tombstonePath(cfg.DataDir), err)
	}
	return errRemovedStart(cfg.NodeID, cfg.DataDir, fmt.Sprintf("its tombstone %s says: %s", tombstonePath(cfg.DataDir), b))
}

// checkNotRemoved asks the nodes this one knows of whether it was
// removed from the cluster (the start's round: startAnswers); if one says so
// it writes the tombstone and refuses. Nodes that do not answer are
// skipped: with none answering, the start goes on (a whole cluster may be
// restarting).
func (c *Cluster) checkNotRemoved() error {
	addrs := map[string]string{} // cluster address -> node id
	for _, p := range c.cfg.Peers {
		addrs[p.ClusterAddr] = p.ID
	}
	if cf := c.meta.raft.GetConfiguration(); cf.Error() == nil {
		for _, s := range cf.Configuration().Servers {
			addrs[string(s.Address)] = string(s.ID)
		}
	}
	var ask []Member
	for addr, id := range addrs {
		if id != c.cfg.NodeID {
			ask = append(ask, Member{ID: id, ClusterAddr: addr})
		}
	}
	var said string
	for _, p := range c.startAnswers(ask) {
		if p.err == nil && p.hi.Removed {
			said = fmt.Sprintf("node %s's cluster map, version %d, lists it as removed", p.hi.Node, p.hi.MapVersion)
		}
	}
	if said == "" {
		return nil
	}
	if err := os.WriteFile(tombstonePath(c.cfg.DataDir), []byte(said), 0o644); err != nil {
		c.logger.Warn("cluster: writing the removed node's tombstone", "err", err)
	}
	return errRemovedStart(c.cfg.NodeID, c.cfg.DataDir, said)
}
