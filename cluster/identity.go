package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/tally-ml/tally/wal/walfs"
)

// A cluster node's data dir holds its replicas' Raft logs, terms and
// votes: they belong to the node id (and the cluster) that wrote them.
// Raft itself does not record which server of its configuration it is,
// so a data dir started under another --node-id (a typo, two nodes' data
// dirs swapped) was taken for that node's: it waited for a map it could
// not get, or answered for another member with this one's log and votes
// (two servers voting under one id can elect two leaders in a term).
// The data dir therefore records its node and cluster ids (identityFile,
// written on the first start, before any replica opens) and Open refuses
// a start under other ids before it opens anything.

// identityFile records the node and cluster ids of a data dir, in its
// cluster directory.
const identityFile = "NODE"

type identity struct {
	Node    string `json:"node"`
	Cluster string `json:"cluster"`
}

func identityPath(dataDir string) string { return filepath.Join(dataDir, "cluster", identityFile) }

// checkIdentity refuses to start node cfg.NodeID of cluster cfg.ClusterID
// over a data dir another node (or another cluster's) wrote, and records
// the ids in a data dir that has cluster state but no ids yet (one written
// before the ids were recorded, whose ids are then taken on trust). It
// reports whether the data dir is new: no ids and no cluster state, never
// started as a cluster node (or wiped since). It records nothing in a new
// data dir: Open records the ids there (recordIdentity) only once the
// peers said the cluster does not count this node already (newdir.go), so
// that a start refused for that leaves the data dir new. It changes
// nothing in a data dir it refuses.
func checkIdentity(cfg Config) (isNew bool, err error) {
	path := identityPath(cfg.DataDir)
	b, err := os.ReadFile(path)
	if err == nil {
		var id identity
		if err := json.Unmarshal(b, &id); err != nil || id.Node == "" {
			return false, fmt.Errorf("cluster: %s is not a node identity (%q): it records which node the data dir belongs to; restore it, or move the data dir aside", path, b)
		}
		if id.Node != cfg.NodeID || id.Cluster != cfg.ClusterID {
			return false, fmt.Errorf("cluster: the data dir %s belongs to node %q of cluster %q (%s), not to --node-id %s of --cluster-id %s: "+
				"start it with --node-id %s --cluster-id %s, or give this node a data dir of its own (its replicas' logs and votes are that node's)",
				cfg.DataDir, id.Node, id.Cluster, path, cfg.NodeID, cfg.ClusterID, id.Node, id.Cluster)
		}
		return checkMetaKept(cfg)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("cluster: read the data dir's node identity: %w", err)
	}
	held, err := hasClusterState(cfg.DataDir)
	if err != nil || !held {
		return err == nil, err
	}
	return false, recordIdentity(cfg)
}

// checkMetaKept refuses a data dir that records the node's identity but
// lost its metadata replica while keeping other cluster state (lost.go):
// its directory is missing, or, on one of the metadata group's first
// voters (metaBootstrapper), it holds no Raft term. One holding the
// identity alone (and that lost replica) is a first start stopped before
// its metadata replica was created or bootstrapped: new, so that its
// peers are asked as for any new data dir. On the other nodes, a
// metadata replica without a term is not refused: add-node makes a
// joining node a voter of the metadata group before it has heard from
// the group, so no term there does not show a loss.
func checkMetaKept(cfg Config) (isNew bool, err error) {
	dir := groupDir(cfg.DataDir, "meta")
	lost := lostState(dir)
	if lost == "" || (lost != lostMissing && !metaBootstrapper(cfg)) {
		return false, nil
	}
	ents, err := os.ReadDir(filepath.Join(cfg.DataDir, "cluster"))
	if err != nil {
		return false, fmt.Errorf("cluster: data dir: %w", err)
	}
	ents = slices.DeleteFunc(ents, func(e fs.DirEntry) bool { return e.Name() == identityFile || e.Name() == "meta" })
	if len(ents) == 0 {
		return true, nil
	}
	why := "the metadata group's directory"
	if lost != lostMissing {
		why = "this node is one of the metadata group's first voters, which record a term when they bootstrap it"
	}
	return false, errLostReplica("meta", dir, lost, cfg.NodeID, why)
}

// hasClusterState reports whether dataDir's cluster directory holds
// anything (replicas, a tombstone): an empty or missing one is a new data
// dir's.
func hasClusterState(dataDir string) (bool, error) {
	ents, err := os.ReadDir(filepath.Join(dataDir, "cluster"))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cluster: data dir: %w", err)
	}
	return len(ents) > 0, nil
}

// recordIdentity writes the data dir's node and cluster ids, atomically.
func recordIdentity(cfg Config) error {
	path := identityPath(cfg.DataDir)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("cluster: data dir: %w", err)
	}
	b, _ := json.Marshal(identity{Node: cfg.NodeID, Cluster: cfg.ClusterID})
	if err := walfs.WriteFile(walfs.OS, path, append(b, '\n')); err != nil {
		return fmt.Errorf("cluster: record the data dir's node identity: %w", err)
	}
	return nil
}

// checkNotSingleDir refuses a data dir that holds a single node's state
// (its write-ahead log): a cluster node started there would start empty
// beside it and serve none of what the single node acknowledged.
func checkNotSingleDir(dataDir string) error {
	dir := filepath.Join(dataDir, "wal")
	if st, err := os.Stat(dir); err == nil && st.IsDir() {
		return fmt.Errorf("cluster: the data dir %s holds a single node's state (%s), which a cluster node does not read: "+
			"start it as that single node (without --node-id and the --cluster-* flags), or give the cluster node a data dir of its own", dataDir, dir)
	}
	return nil
}

// checkSingleProcess refuses this start when another process answers
// under this node's id at another cluster address: a copy of a member's
// data dir started beside it (or the member started twice) passes
// checkIdentity, and two processes voting under one id can elect two
// leaders in a term. The addresses asked are this node's in its metadata
// configuration (before the metadata replica opens, as checkNotRestored
// asks: in the map its data dir holds) and in its peers' maps (the start's
// round, startAnswers); an address that does not answer is no other process.
// Not caught: a second process at the same address on another host.
func (c *Cluster) checkSingleProcess() error {
	self := c.cfg.NodeID
	others := map[string]string{} // cluster address -> node id
	for _, p := range c.cfg.Peers {
		others[p.ClusterAddr] = p.ID
	}
	if c.meta == nil { // before it opens (checkNotRestored): the map the data dir holds
		if m := storedMap(c.cfg.DataDir); m != nil {
			for _, mb := range m.Members {
				others[mb.ClusterAddr] = mb.ID
			}
		}
	} else if cf := c.meta.raft.GetConfiguration(); cf.Error() == nil {
		for _, s := range cf.Configuration().Servers {
			others[string(s.Address)] = string(s.ID)
		}
	}
	var ask []Member
	for addr, id := range others {
		if addr != c.cfg.Advertise && addr != c.cfg.ClusterAddr {
			ask = append(ask, Member{ID: id, ClusterAddr: addr})
		}
	}
	// another: the answer is another process's under this node's id.
	another := func(p peerSaid) bool {
		return p.err == nil && p.hi.Node == self && p.hi.Instance != "" && p.hi.Instance != c.instance
	}
	var found string
	mine := map[string]bool{} // where the peers' maps say this node is
	for _, p := range c.startAnswers(ask) {
		switch {
		case another(p):
			found = p.addr
		case p.err == nil && p.id != self && p.hi.Addr != "" && p.hi.Addr != c.cfg.Advertise && p.hi.Addr != c.cfg.ClusterAddr:
			mine[p.hi.Addr] = true
		}
	}
	ask = ask[:0]
	for addr := range mine {
		if _, asked := others[addr]; !asked && found == "" {
			ask = append(ask, Member{ClusterAddr: addr})
		}
	}
	for _, p := range c.startAnswers(ask) {
		if another(p) {
			found = p.addr
		}
	}
	if found == "" {
		return nil
	}
	return fmt.Errorf("cluster: another process runs as node %s: its cluster port at %s answers under that id, and this one would listen at %s. "+
		"Two processes under one node id can vote twice in a term and elect two leaders, so this one does not start. "+
		"If this data dir is a copy of that node's (copied or restored beside it), do not start it: a new node starts over an empty data dir under a new --node-id with --cluster-join and `tally cluster add-node`; "+
		"if that node moved here, stop the old process first",
		self, found, c.cfg.Advertise)
}
