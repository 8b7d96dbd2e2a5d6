package cluster

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/tally-ml/tally/ring"
)

// Member is a node of the cluster as the map knows it.
type Member struct {
	ID          string `json:"id"`
	HTTPAddr    string `json:"httpAddr"`    // the client API
	ClusterAddr string `json:"clusterAddr"` // Raft and internal RPCs (transport)
}

// GroupInfo is a replica group: the nodes holding its replicas.
type GroupInfo struct {
	ID       int      `json:"id"`
	Replicas []string `json:"replicas"` // member ids
}

// Map is the cluster map: the state of the metadata group, cached by every
// node. Version only grows: a change to the map is a new version.
type Map struct {
	Version  uint64      `json:"version"`
	ID       string      `json:"clusterId"`
	Replicas int         `json:"replicas"` // R
	Members  []Member    `json:"members"`  // sorted by id
	Groups   []GroupInfo `json:"groups"`   // G, by id 0..G-1
}

// NewMap places G groups of R replicas over members: group g's replicas
// are the members g, g+1, ..., g+R-1 (mod N) in id order, so each member
// holds G*R/N replicas and the groups' first leaders spread.
func NewMap(id string, members []Member, groups, replicas int) (*Map, error) {
	if groups < 1 || groups > ring.Partitions {
		return nil, fmt.Errorf("groups %d: use 1 to %d", groups, ring.Partitions)
	}
	if replicas < 1 || replicas > len(members) {
		return nil, fmt.Errorf("replicas %d: use 1 to the number of nodes (%d)", replicas, len(members))
	}
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	for i := 1; i < len(ms); i++ {
		if ms[i].ID == ms[i-1].ID {
			return nil, fmt.Errorf("node id %q appears twice", ms[i].ID)
		}
	}
	m := &Map{Version: 1, ID: id, Replicas: replicas, Members: ms}
	for g := range groups {
		gi := GroupInfo{ID: g}
		for r := range replicas {
			gi.Replicas = append(gi.Replicas, ms[(g+r)%len(ms)].ID)
		}
		m.Groups = append(m.Groups, gi)
	}
	return m, nil
}

// GroupOf is the group holding partition p.
func (m *Map) GroupOf(p int) int { return p % len(m.Groups) }

// GroupOfKey is the group holding key.
func (m *Map) GroupOfKey(key []byte) int { return m.GroupOf(int(ring.Partition(ring.Hash(key)))) }

// Owns is the set of partitions of group g.
func (m *Map) Owns(g int) *[ring.Partitions]bool {
	var o [ring.Partitions]bool
	for p := range o {
		o[p] = m.GroupOf(p) == g
	}
	return &o
}

// Member returns the member called id, or nil.
func (m *Map) Member(id string) *Member {
	for i := range m.Members {
		if m.Members[i].ID == id {
			return &m.Members[i]
		}
	}
	return nil
}

// GroupsOf lists the groups member id holds a replica of.
func (m *Map) GroupsOf(id string) []int {
	var gs []int
	for _, g := range m.Groups {
		if slices.Contains(g.Replicas, id) {
			gs = append(gs, g.ID)
		}
	}
	return gs
}

// Encode is the map's JSON.
func (m *Map) Encode() []byte {
	b, _ := json.Marshal(m)
	return b
}

// DecodeMap parses and checks a map's JSON.
func DecodeMap(b []byte) (*Map, error) {
	var m Map
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("cluster map: %w", err)
	}
	if len(m.Groups) == 0 || len(m.Groups) > ring.Partitions {
		return nil, errors.New("cluster map: no groups, or more than partitions")
	}
	for i, g := range m.Groups {
		if g.ID != i || len(g.Replicas) == 0 {
			return nil, fmt.Errorf("cluster map: group %d is malformed", i)
		}
		for _, r := range g.Replicas {
			if m.Member(r) == nil {
				return nil, fmt.Errorf("cluster map: group %d names unknown node %q", i, r)
			}
		}
	}
	return &m, nil
}
