package cluster

import (
	"errors"
	"fmt"

	"github.com/cespare/xxhash/v2"
	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/history"
	"github.com/tally-ml/tally/wal"
)

// groupArchive is a group replica's Raft log read as a historical-features
// archive: the store records of its committed commands, each request id
// once (as the group's state machine applied them), up to upTo (the
// replica's applied index when the join began: nothing uncommitted).
type groupArchive struct {
	log  *wal.Log
	upTo uint64
}

func (a groupArchive) FirstIndex() uint64 { return a.log.FirstIndex() }

func (a groupArchive) Replay(from uint64, fn func(index uint64, rec []byte) error) error {
	seen := newDedup()
	errDone := errors.New("done")
	err := a.log.Replay(from, func(index uint64, b []byte) error {
		if index > a.upTo {
			return errDone
		}
		typ, data, err := wal.DecodeRaftEntry(b, index)
		if err != nil {
			return err
		}
		if typ != raft.LogCommand || isCheckpoint(data) {
			return nil
		}
		id, rec, err := decodeRequest(data)
		if err != nil {
			return fmt.Errorf("raft entry %d: %w", index, err)
		}
		h := xxhash.Sum64(id)
		if seen.Has(h) {
			return nil
		}
		seen.Add(h)
		return fn(index, rec)
	})
	if errors.Is(err, errDone) {
		return nil
	}
	return err
}

// Archives returns every group's archive with the partitions it owns, for
// a historical-features join on this node: it needs a replica of every
// group (with as many replicas as nodes, every node has one), each a voter
// of its group (a voter's log holds every committed entry up to what it
// applied; a replica a move is still copying here holds none or part).
func (c *Cluster) Archives() ([]history.Group, error) {
	m := c.Map()
	var out []history.Group
	for g := range m.Groups {
		dg := c.group(g)
		if dg == nil {
			return nil, fmt.Errorf("this node (%s) holds no replica of group %d: historical features are answered by a node holding every group (one of %v for group %d; with as many replicas as nodes every node does)",
				c.cfg.NodeID, g, m.Groups[g].Replicas, g)
		}
		if !c.votes(dg) {
			// Listed by a move before the group's Raft configuration holds
			// it, or a non-voter still catching up: its log is none or
			// part of the group's, and read as the group's archive it
			// would leave records out without a word.
			return nil, fmt.Errorf("this node's (%s) replica of group %d is not a voter of the group yet (a move is copying it here), so it may hold only part of the group's log: ask a node whose replicas are voters (tally cluster status)",
				c.cfg.NodeID, g)
		}
		out = append(out, history.Group{Archive: groupArchive{log: dg.rep.logs.Log(), upTo: dg.rep.raft.AppliedIndex()}, Owns: m.Owns(g)})
	}
	return out, nil
}

// votes reports whether this node is a voter of the latest Raft
// configuration dg's replica knows.
func (c *Cluster) votes(dg *dataGroup) bool {
	f := dg.rep.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == c.cfg.NodeID {
			return s.Suffrage == raft.Voter
		}
	}
	return false
}
