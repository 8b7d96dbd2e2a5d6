package cluster

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/hashicorp/raft"
)

// metaFSM is the metadata group's state machine: the cluster map, and
// the first starts of the Kafka topics the cluster consumes (starts,
// cluster/kafka.go).
type metaFSM struct {
	mu      sync.Mutex
	m       *Map
	changed chan struct{} // closed and replaced on every change of m
	starts  map[streamStartKey]map[int32]int64
}

func newMetaFSM() *metaFSM { return &metaFSM{changed: make(chan struct{})} }

// metaCommand is a change to the map.
type metaCommand struct {
	// Op is "init" (set the first map; ignored once there is one),
	// "add-member", "update-member" (a node's addresses), "remove-member"
	// (only a member holding no replica), "set-replicas" (group Group's
	// replicas become Replicas) or "recover" (every member not in Keep is
	// lost for good: recovered, recover.go).
	Op  string          `json:"op"`
	Map json.RawMessage `json:"map,omitempty"`
	// Version, when not 0, is the map version the change was planned on:
	// the change is refused if the map moved on meanwhile (another
	// operator's change), so changes never interleave unseen.
	Version  uint64   `json:"version,omitempty"`
	Member   *Member  `json:"member,omitempty"`
	ID       string   `json:"id,omitempty"`
	Group    int      `json:"group,omitempty"`
	Replicas []string `json:"replicas,omitempty"`
	// Keep and AcceptLoss are a "recover"'s surviving members and whether
	// groups none of them holds are recreated empty.
	Keep       []string `json:"keep,omitempty"`
	AcceptLoss bool     `json:"acceptLoss,omitempty"`
	// Start is a "stream-start"'s topic and, to record, its listing
	// (cluster/kafka.go); it leaves the map as it is.
	Start *streamStart `json:"start,omitempty"`
}

// errMapMoved refuses a change planned on an older map.
var errMapMoved = errors.New("the cluster map changed while the change was planned: run it again")

// current returns the map (nil before the first) and a channel closed at
// the next change.
func (f *metaFSM) current() (*Map, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.m, f.changed
}

func (f *metaFSM) set(m *Map) {
	f.m = m
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *metaFSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	var cmd metaCommand
	if err := json.Unmarshal(l.Data, &cmd); err != nil {
		return fmt.Errorf("metadata entry %d: %w", l.Index, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch cmd.Op {
	case "init":
		if f.m != nil {
			return nil
		}
		m, err := DecodeMap(cmd.Map)
		if err != nil {
			return err
		}
		f.set(m)
		return nil
	case "set-preferred": // transfer.go
		return f.applyPreferred(l.Data)
	}
	if f.m == nil {
		return fmt.Errorf("metadata entry %d: %s before the first map", l.Index, cmd.Op)
	}
	if cmd.Op == "stream-start" { // kafka.go; the map stays as it is
		return f.applyStreamStart(cmd.Start)
	}
	if cmd.Version != 0 && cmd.Version != f.m.Version {
		return errMapMoved
	}
	next, err := changeMap(f.m, cmd)
	if err != nil || next == nil {
		return err
	}
	next.Version = f.m.Version + 1
	f.set(next)
	return nil
}

// changeMap applies cmd to m: the next map (nil when nothing changes), or
// why the change is refused.
func changeMap(m *Map, cmd metaCommand) (*Map, error) {
	next := m.clone()
	switch cmd.Op {
	case "add-member", "update-member":
		if cmd.Member == nil || cmd.Member.ID == "" || cmd.Member.ClusterAddr == "" {
			return nil, errors.New("a member needs an id and a cluster address")
		}
		if cur := next.Member(cmd.Member.ID); cur != nil {
			if *cur == *cmd.Member {
				return nil, nil
			}
			if cmd.Op == "add-member" && cur.ClusterAddr != cmd.Member.ClusterAddr {
				return nil, fmt.Errorf("node %s is already a member at %s", cur.ID, cur.ClusterAddr)
			}
			if cmd.Member.HTTPAddr == "" {
				cmd.Member.HTTPAddr = cur.HTTPAddr
			}
			*cur = *cmd.Member
			return next, nil
		}
		if cmd.Op == "update-member" {
			return nil, fmt.Errorf("node %s is not a member", cmd.Member.ID)
		}
		next.Members = append(next.Members, *cmd.Member)
		next.Removed = slices.DeleteFunc(next.Removed, func(id string) bool { return id == cmd.Member.ID })
		slices.SortFunc(next.Members, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
		return next, nil
	case "remove-member":
		if next.Member(cmd.ID) == nil {
			return nil, nil
		}
		if gs := next.GroupsOf(cmd.ID); len(gs) > 0 {
			return nil, fmt.Errorf("node %s still holds replicas of groups %v: move them first", cmd.ID, gs)
		}
		next.Members = slices.DeleteFunc(next.Members, func(mb Member) bool { return mb.ID == cmd.ID })
		next.Removed = append(next.Removed, cmd.ID)
		return next, nil
	case "set-replicas":
		if cmd.Group < 0 || cmd.Group >= len(next.Groups) {
			return nil, fmt.Errorf("no group %d", cmd.Group)
		}
		if len(cmd.Replicas) == 0 {
			return nil, errors.New("a group needs a replica")
		}
		for i, r := range cmd.Replicas {
			if next.Member(r) == nil {
				return nil, fmt.Errorf("node %s is not a member", r)
			}
			if slices.Contains(cmd.Replicas[:i], r) {
				return nil, fmt.Errorf("node %s named twice", r)
			}
		}
		g := &next.Groups[cmd.Group]
		if slices.Equal(g.Replicas, cmd.Replicas) {
			return nil, nil
		}
		g.Changed = g.Changed || !sameSet(g.Replicas, cmd.Replicas)
		g.Replicas = slices.Clone(cmd.Replicas)
		return next, nil
	case "recover":
		return recovered(m, cmd.Keep, cmd.AcceptLoss)
	}
	return nil, fmt.Errorf("unknown op %q", cmd.Op)
}

// metaState is the metadata snapshot: the map's JSON, with the streams'
// first starts beside its fields (a node of an older version decodes the
// map and ignores them).
type metaState struct {
	*Map
	StreamStarts []streamStart `json:"streamStarts,omitempty"`
}

func (f *metaFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b []byte
	if f.m != nil {
		b, _ = json.Marshal(metaState{Map: f.m, StreamStarts: f.streamStarts()})
	}
	return metaSnapshot(b), nil
}

func (f *metaFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(b) == 0 {
		return nil
	}
	m, err := DecodeMap(b)
	if err != nil {
		return err
	}
	var st struct {
		StreamStarts []streamStart `json:"streamStarts"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("metadata snapshot: %w", err)
	}
	f.starts = nil // a snapshot written before the starts were recorded holds none
	for _, s := range st.StreamStarts {
		f.applyStreamStart(&s)
	}
	f.set(m)
	return nil
}

type metaSnapshot []byte

func (s metaSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (metaSnapshot) Release() {}

// sameSet reports whether a and b hold the same ids in any order.
func sameSet(a, b []string) bool {
	return len(a) == len(b) && !slices.ContainsFunc(a, func(x string) bool { return !slices.Contains(b, x) })
}
