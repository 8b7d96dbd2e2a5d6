package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// snapshotTimeout bounds one replica's snapshot (its state written to disk).
const snapshotTimeout = 2 * time.Minute

// ReplicaSnapshot is one replica's answer to SnapshotNow.
type ReplicaSnapshot struct {
	Group int    `json:"group"`
	Node  string `json:"node"`
	// Index is the Raft index of the replica's newest snapshot (the one
	// just taken, or the one there was when there was nothing new).
	Index uint64 `json:"index"`
	// Note says why no snapshot was taken although nothing failed
	// ("nothing new to snapshot": none applied since the last one).
	Note  string `json:"note,omitempty"`
	Error string `json:"error,omitempty"`
}

// SnapshotResult is the answer of SnapshotNow.
type SnapshotResult struct {
	OK        bool              `json:"ok"` // no replica failed
	Snapshots []ReplicaSnapshot `json:"snapshots"`
}

// SnapshotNow makes every replica of groups (all when empty) take a Raft
// snapshot now, which also lets Raft compact its view of the log (the
// segments stay on disk as the archive). A replica with nothing applied
// since its last snapshot answers a note, not an error.
func (c *Cluster) SnapshotNow(groups []int) (SnapshotResult, error) {
	m := c.Map()
	if len(groups) == 0 {
		for g := range m.Groups {
			groups = append(groups, g)
		}
	}
	type job struct {
		g  int
		id string
	}
	var jobs []job
	for _, g := range groups {
		if g < 0 || g >= len(m.Groups) {
			return SnapshotResult{}, fmt.Errorf("no group %d: the cluster has groups 0 to %d", g, len(m.Groups)-1)
		}
		for _, id := range m.Groups[g].Replicas {
			jobs = append(jobs, job{g, id})
		}
	}
	res := SnapshotResult{OK: true, Snapshots: make([]ReplicaSnapshot, len(jobs))}
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rs := ReplicaSnapshot{Group: j.g, Node: j.id}
			var err error
			if j.id == c.cfg.NodeID {
				rs, err = c.snapshotLocal(j.g)
			} else {
				rs, err = c.snapshotRemote(m, j.id, j.g)
			}
			if err != nil {
				rs.Error = err.Error()
			}
			rs.Group, rs.Node = j.g, j.id
			res.Snapshots[i] = rs
		}()
	}
	wg.Wait()
	for _, s := range res.Snapshots {
		if s.Error != "" {
			res.OK = false
		}
	}
	return res, nil
}

// snapshotLocal snapshots this node's replica of g.
func (c *Cluster) snapshotLocal(g int) (ReplicaSnapshot, error) {
	rs := ReplicaSnapshot{Group: g, Node: c.cfg.NodeID}
	dg := c.group(g)
	if dg == nil {
		return rs, fmt.Errorf("this node holds no replica of group %d", g)
	}
	// Raft itself refuses only a replica that never applied anything, and
	// otherwise writes the same snapshot again.
	var err error
	rs.Index, _ = strconv.ParseUint(dg.rep.raft.Stats()["last_snapshot_index"], 10, 64)
	if rs.Index == 0 || rs.Index < dg.rep.raft.AppliedIndex() {
		err = dg.rep.raft.Snapshot().Error()
		rs.Index, _ = strconv.ParseUint(dg.rep.raft.Stats()["last_snapshot_index"], 10, 64)
	} else {
		err = raft.ErrNothingNewToSnapshot
	}
	switch {
	case errors.Is(err, raft.ErrNothingNewToSnapshot):
		rs.Note = "nothing new to snapshot: no entry applied since the last snapshot"
	case err != nil:
		return rs, fmt.Errorf("snapshot: %w", err)
	}
	return rs, nil
}

func (c *Cluster) snapshotRemote(m *Map, id string, g int) (ReplicaSnapshot, error) {
	var rs ReplicaSnapshot
	mb := m.Member(id)
	if mb == nil {
		return rs, fmt.Errorf("node %s is not in the cluster map", id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), snapshotTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+mb.ClusterAddr+"/v1/snapshot?group="+strconv.Itoa(g), nil)
	resp, err := c.rpc.Do(req)
	if err != nil {
		return rs, fmt.Errorf("unreachable: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return rs, errors.New(string(bytes.TrimSpace(body)))
	}
	return rs, json.Unmarshal(body, &rs)
}

func (c *Cluster) snapshotRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/snapshot", func(w http.ResponseWriter, r *http.Request) {
		g, err := strconv.Atoi(r.URL.Query().Get("group"))
		if err != nil {
			http.Error(w, "group: "+err.Error(), http.StatusBadRequest)
			return
		}
		rs, err := c.snapshotLocal(g)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(rs)
	})
}
