package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/node"
)

// transferTimeout bounds TransferLeader: the map change, the handover and
// the wait for the new leader.
const transferTimeout = 15 * time.Second

// restoreTimeout is the budget of restoring a group's preferred leader
// after a transfer failed: its own, since the failed transfer may have
// spent all of transferTimeout.
const restoreTimeout = 10 * time.Second

// TransferResult is the answer of TransferLeader.
type TransferResult struct {
	Group int    `json:"group"`
	From  string `json:"from"` // the leader before
	To    string `json:"to"`   // the leader now
	// Replicas is the group's replica order in the map now: the first is
	// the preferred leader, which the cluster hands leadership back to.
	Replicas []string `json:"replicas"`
}

// TransferLeader hands the leadership of group g to node to (when empty:
// the follower Raft finds most up to date) and waits until it leads. The
// new leader also becomes the group's preferred leader (first in the map's
// replica list), so the cluster's periodic hand-back (spreadLeaders) keeps
// it there instead of undoing the transfer. A transfer that fails changes
// nothing: the preferred leader is restored.
func (c *Cluster) TransferLeader(g int, to string) (TransferResult, error) {
	res := TransferResult{Group: g, To: to}
	m := c.Map()
	if g < 0 || g >= len(m.Groups) {
		return res, &node.APIError{Status: 400, Code: "BAD_REQUEST", Message: fmt.Sprintf("no group %d: the cluster has groups 0 to %d", g, len(m.Groups)-1)}
	}
	reps := slices.Clone(m.Groups[g].Replicas)
	if to != "" && !slices.Contains(reps, to) {
		return res, &node.APIError{Status: 400, Code: "NOT_A_REPLICA", Message: fmt.Sprintf("%s is not a replica of group %d (its replicas are %s): choose one of them, or move a replica there first (tally cluster move-replica)", to, g, strings.Join(reps, ", "))}
	}
	deadline := time.Now().Add(transferTimeout)
	from, err := c.findLeader(g, reps, deadline, func(string) bool { return true })
	if err != nil {
		return res, &node.APIError{Status: 503, Code: "UNAVAILABLE", Message: fmt.Sprintf("group %d has no leader to hand over from: %v; check the group's nodes (tally cluster status)", g, err)}
	}
	res.From = from
	if to == from {
		res.Replicas = reps
		if reps[0] != to {
			if err := c.setPreferred(g, preferredFirst(reps, to), deadline); err != nil {
				return res, err
			}
			res.Replicas = preferredFirst(reps, to)
		}
		return res, nil
	}
	if to != "" {
		// Down or unreachable: refuse before changing anything.
		if _, err := c.leaderInfo(to, g, time.Now().Add(2*time.Second)); err != nil {
			return res, &node.APIError{Status: 503, Code: "NODE_DOWN", Message: fmt.Sprintf("%s does not answer (%v): start it, or choose another replica of group %d (%s)", to, err, g, strings.Join(reps, ", "))}
		}
		// Preferred first, so that the hand-back does not undo the transfer.
		if err := c.setPreferred(g, preferredFirst(reps, to), deadline); err != nil {
			return res, err
		}
	}
	q := "&to=" + to
	if _, err := c.onLeader(g, "/v1/transfer", q, deadline); err != nil {
		c.setPreferred(g, reps, time.Now().Add(restoreTimeout))
		behind := ""
		if li, e := c.leaderInfo(to, g, time.Now().Add(2*time.Second)); e == nil && to != "" {
			behind = fmt.Sprintf(" (%s has applied index %d)", to, li.Applied)
		}
		return res, &node.APIError{Status: 409, Code: "TRANSFER_FAILED", Message: fmt.Sprintf("group %d: the leadership did not move from %s: %v%s; a target that is behind the leader's log or cut off from it cannot take over: wait until it caught up (tally cluster status) and try again; nothing was changed", g, from, err, behind)}
	}
	now, err := c.findLeader(g, reps, deadline, func(id string) bool { return id != from && (to == "" || id == to) })
	if err != nil {
		c.setPreferred(g, reps, time.Now().Add(restoreTimeout))
		return res, &node.APIError{Status: 409, Code: "TRANSFER_FAILED", Message: fmt.Sprintf("group %d: %s handed over but no new leader took over in time: %v; the preferred leader was restored, try again", g, from, err)}
	}
	res.To = now
	res.Replicas = preferredFirst(reps, now)
	if to == "" && reps[0] != now {
		if err := c.setPreferred(g, res.Replicas, deadline); err != nil {
			return res, err
		}
	}
	return res, nil
}

// preferredFirst is reps with id moved to the front.
func preferredFirst(reps []string, id string) []string {
	out := []string{id}
	for _, r := range reps {
		if r != id {
			out = append(out, r)
		}
	}
	return out
}

// leaderInfo is one replica's view of its group (GET /v1/leader).
type leaderInfo struct {
	State   string `json:"state"`
	Leader  string `json:"leader"`
	Applied uint64 `json:"applied"`
}

func (dg *dataGroup) leaderInfo() leaderInfo {
	_, id := dg.rep.raft.LeaderWithID()
	return leaderInfo{State: dg.rep.raft.State().String(), Leader: string(id), Applied: dg.rep.raft.AppliedIndex()}
}

// leaderInfo asks node id about its replica of g.
func (c *Cluster) leaderInfo(id string, g int, deadline time.Time) (leaderInfo, error) {
	var li leaderInfo
	if id == c.cfg.NodeID {
		dg := c.group(g)
		if dg == nil {
			return li, fmt.Errorf("this node holds no replica of group %d", g)
		}
		return dg.leaderInfo(), nil
	}
	mb := c.Map().Member(id)
	if mb == nil {
		return li, fmt.Errorf("%s is not in the cluster map", id)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+mb.ClusterAddr+"/v1/leader?group="+strconv.Itoa(g), nil)
	resp, err := c.rpc.Do(req)
	if err != nil {
		return li, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return li, errors.New(string(bytes.TrimSpace(body)))
	}
	return li, json.Unmarshal(body, &li)
}

// findLeader polls the replicas of g until one leads and accept takes it.
func (c *Cluster) findLeader(g int, reps []string, deadline time.Time, accept func(string) bool) (string, error) {
	var last error = errors.New("no replica reports itself leader")
	for {
		for _, id := range reps {
			li, err := c.leaderInfo(id, g, time.Now().Add(time.Second))
			if err != nil {
				last = fmt.Errorf("%s: %v", id, err)
				continue
			}
			if li.State == raft.Leader.String() && accept(id) {
				return id, nil
			}
		}
		if time.Now().After(deadline) {
			return "", last
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// preferredCommand is the metadata command "set-preferred": group's
// replicas in a new order (the same set), the first being the leader the
// cluster hands leadership back to.
type preferredCommand struct {
	Op       string   `json:"op"`
	Group    int      `json:"group"`
	Replicas []string `json:"replicas"`
}

// applyPreferred is the metadata FSM's apply of "set-preferred" (under
// f.mu). A list that is not the group's replica set (the map changed
// meanwhile) is refused.
func (f *metaFSM) applyPreferred(data []byte) error {
	var cmd preferredCommand
	if err := json.Unmarshal(data, &cmd); err != nil {
		return err
	}
	if f.m == nil || cmd.Group < 0 || cmd.Group >= len(f.m.Groups) {
		return fmt.Errorf("set-preferred: no group %d", cmd.Group)
	}
	cur := f.m.Groups[cmd.Group].Replicas
	a, b := slices.Clone(cur), slices.Clone(cmd.Replicas)
	slices.Sort(a)
	slices.Sort(b)
	if !slices.Equal(a, b) {
		return fmt.Errorf("set-preferred: group %d's replicas are %v, not %v (the map changed): try again", cmd.Group, cur, cmd.Replicas)
	}
	if slices.Equal(cur, cmd.Replicas) {
		return nil
	}
	var m Map
	if err := json.Unmarshal(f.m.Encode(), &m); err != nil {
		return err
	}
	m.Version++
	m.Groups[cmd.Group].Replicas = slices.Clone(cmd.Replicas)
	f.set(&m)
	return nil
}

// setPreferred commits a new replica order of group g through the
// metadata group's leader (proposeMeta: forwarded when this node does
// not lead it).
func (c *Cluster) setPreferred(g int, reps []string, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := c.proposeMeta(ctx, metaCommand{Op: "set-preferred", Group: g, Replicas: reps}); err != nil {
		return &node.APIError{Status: 503, Code: "UNAVAILABLE", Message: fmt.Sprintf("the cluster map could not be changed (group %d's preferred leader): %v; check the metadata group (tally cluster status) and try again", g, err)}
	}
	return nil
}

func (c *Cluster) transferRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/leader", func(w http.ResponseWriter, r *http.Request) {
		g, _ := strconv.Atoi(r.URL.Query().Get("group"))
		dg := c.group(g)
		if dg == nil {
			http.Error(w, fmt.Sprintf("holds no replica of group %d", g), http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(dg.leaderInfo())
	})
}
