package cluster

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

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
	ID int `json:"id"`
	// Replicas are the member ids holding the group; the first is its
	// preferred leader (leaderships are handed back to it).
	Replicas []string `json:"replicas"`
	// Changed is set once the group's replicas were ever changed: only the
	// replicas of a group never changed bootstrap its Raft (with the same
	// configuration, as raft requires); a replica added later starts empty
	// and is caught up by the leader.
	Changed bool `json:"changed,omitempty"`
}

// Map is the cluster map: the state of the metadata group, cached by every
// node. Version only grows: a change to the map is a new version.
type Map struct {
	Version  uint64      `json:"version"`
	ID       string      `json:"clusterId"`
	Replicas int         `json:"replicas"` // R
	Members  []Member    `json:"members"`  // sorted by id
	Groups   []GroupInfo `json:"groups"`   // G, by id 0..G-1
	// Schema is the feature repo's schema fingerprint (store.SchemaOf) the
	// cluster was created with: every node must run that repo, or replicas
	// of a group would apply the same records to different views.
	Schema json.RawMessage `json:"schema,omitempty"`
	// Removed lists the nodes removed from the cluster (remove-member)
	// and not added again since: such a node must not start again over
	// its old data dir (removed.go).
	Removed []string `json:"removed,omitempty"`
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

// clone is a deep copy of m, for building the next version.
func (m *Map) clone() *Map {
	n := *m
	n.Members = slices.Clone(m.Members)
	n.Removed = slices.Clone(m.Removed)
	n.Groups = slices.Clone(m.Groups)
	for i := range n.Groups {
		n.Groups[i].Replicas = slices.Clone(m.Groups[i].Replicas)
	}
	return &n
}

// load is how many replicas member id holds, and how many groups prefer
// it as leader.
func (m *Map) load(id string) (replicas, preferred int) {
	for _, g := range m.Groups {
		if i := slices.Index(g.Replicas, id); i >= 0 {
			replicas++
			if i == 0 {
				preferred++
			}
		}
	}
	return replicas, preferred
}

// Move is one replica of a group moving from a node to another; in a
// Plan's Adds, a replica added on node To (From is empty).
type Move struct {
	Group int    `json:"group"`
	From  string `json:"from,omitempty"`
	To    string `json:"to"`
}

// Plan is what rebalance does: replicas added to the groups holding fewer
// than R, replica moves, then the groups whose replicas are reordered so
// that preferred leaders spread.
type Plan struct {
	// Adds are the replicas added (From empty): each a move's steps 1 to
	// 3 without the removal (membership.go).
	Adds  []Move `json:"adds,omitempty"`
	Moves []Move `json:"moves"`
	// Leaders are the groups' new replica orders (first = preferred
	// leader), for the groups whose order changes.
	Leaders []GroupInfo `json:"leaders"`
	// Down are the members that did not answer when the plan was made:
	// none of the plan's replicas goes to them, and the load is evened
	// out over the others (theirs is left as it is).
	Down []string `json:"down,omitempty"`
}

// planAdditions places the replicas that bring every group of m to R:
// each on the node holding the fewest replicas among the members up (per
// up) that hold none of the group's. It returns them, the map with them,
// and the groups left under R (too few members up that hold none of
// theirs). Deterministic, as planRebalance.
func planAdditions(m *Map, up func(id string) bool) (adds []Move, next *Map, short []int) {
	next = m.clone()
	for gi := range next.Groups {
		g := &next.Groups[gi]
		for len(g.Replicas) < m.Replicas {
			best, bestN := "", 0
			for _, mb := range next.Members {
				if !up(mb.ID) || slices.Contains(g.Replicas, mb.ID) {
					continue
				}
				if n, _ := next.load(mb.ID); best == "" || n < bestN {
					best, bestN = mb.ID, n
				}
			}
			if best == "" {
				short = append(short, g.ID)
				break
			}
			g.Replicas = append(g.Replicas, best)
			adds = append(adds, Move{Group: g.ID, To: best})
		}
	}
	return adds, next, short
}

// planRebalance evens out m over the members that answer (per up): each
// ends with floor or ceil of the replicas they hold between them (a move
// takes a group from the most loaded member up that holds it to the least
// loaded one up that does not), and then each member is the preferred
// leader of floor or ceil of G/N groups; only members up are named
// preferred leaders (a member down may lose preferences to its groups'
// members up, never gain one). A member down gets no replica
// and keeps its own (it may be down for a restart); a replica placed on it
// would never catch up, and its move would wait until the change timed
// out. Members in drain get no replica and lose all theirs, each to the
// least loaded member up holding none of its group's; a group with no
// such member is refused (errNoTarget), before anything is planned.
// Deterministic: every node plans the same from the same map and answers.
func planRebalance(m *Map, drain map[string]bool, up func(id string) bool) (Plan, error) {
	var p Plan
	next := m.clone()
	var live, targets []string
	for _, mb := range next.Members {
		switch {
		case drain[mb.ID]:
		case up(mb.ID):
			live = append(live, mb.ID)
			targets = append(targets, mb.ID)
		default:
			live = append(live, mb.ID)
			p.Down = append(p.Down, mb.ID)
		}
	}
	if len(live) == 0 {
		return p, errors.New("no node would be left")
	}
	for _, g := range next.Groups {
		if len(g.Replicas) > len(live) {
			return p, fmt.Errorf("group %d has %d replicas and only %d nodes would be left: add a node first", g.ID, len(g.Replicas), len(live))
		}
	}
	count := func(id string) int { r, _ := next.load(id); return r }
	leastLoaded := func(g GroupInfo) string {
		best, bestN := "", 0
		for _, id := range targets {
			if slices.Contains(g.Replicas, id) {
				continue
			}
			if n := count(id); best == "" || n < bestN {
				best, bestN = id, n
			}
		}
		return best
	}
	// Drained members first: every replica they hold moves.
	var stuck []GroupInfo
	for gi, g := range next.Groups {
		for _, r := range slices.Clone(g.Replicas) {
			if !drain[r] {
				continue
			}
			to := leastLoaded(next.Groups[gi])
			if to == "" {
				stuck = append(stuck, m.Groups[gi])
				continue
			}
			next.Groups[gi].Replicas[slices.Index(g.Replicas, r)] = to
			p.Moves = append(p.Moves, Move{Group: g.ID, From: r, To: to})
		}
	}
	if len(stuck) > 0 {
		return p, &errNoTarget{Groups: stuck, Down: p.Down}
	}
	// Then from the most to the least loaded member up until they differ
	// by <= 1.
	for range len(next.Groups) * len(targets) {
		if len(targets) < 2 {
			break
		}
		slices.SortStableFunc(targets, func(a, b string) int { return cmp.Compare(count(b), count(a)) })
		hi, lo := targets[0], targets[len(targets)-1]
		if count(hi)-count(lo) <= 1 {
			break
		}
		moved := false
		for gi, g := range next.Groups {
			if slices.Contains(g.Replicas, hi) && !slices.Contains(g.Replicas, lo) {
				g := &next.Groups[gi]
				g.Replicas[slices.Index(g.Replicas, hi)] = lo
				p.Moves = append(p.Moves, Move{Group: g.ID, From: hi, To: lo})
				moved = true
				break
			}
		}
		if !moved {
			break
		}
	}
	// Preferred leaders: give a group to the member up preferring the
	// fewest, among its replicas, while some member prefers 2+ more than
	// another. A member down is never named: the leadership handed to it
	// would fail, and the group's hand-back would aim at it.
	pref := func(id string) int { _, n := next.load(id); return n }
	for range len(next.Groups) * len(live) {
		improved := false
		for gi, g := range next.Groups {
			cur := g.Replicas[0]
			best := cur
			for _, r := range g.Replicas[1:] {
				if up(r) && pref(r) < pref(best) {
					best = r
				}
			}
			if pref(cur)-pref(best) >= 2 {
				g := &next.Groups[gi]
				i := slices.Index(g.Replicas, best)
				g.Replicas[0], g.Replicas[i] = g.Replicas[i], g.Replicas[0]
				improved = true
			}
		}
		if !improved {
			break
		}
	}
	for gi, g := range next.Groups {
		after := slices.Clone(g.Replicas)
		// Compare as a move-applied order: a changed first replica (not
		// caused by a move) is a leader change.
		before := slices.Clone(m.Groups[gi].Replicas)
		for _, mv := range p.Moves {
			if mv.Group == g.ID {
				before[slices.Index(before, mv.From)] = mv.To
			}
		}
		if !slices.Equal(before, after) {
			p.Leaders = append(p.Leaders, GroupInfo{ID: g.ID, Replicas: after})
		}
	}
	return p, nil
}

// errNoTarget is planRebalance's refusal of a drain: the replicas of
// Groups have no member to go to that answers and holds none of the
// group's (Down: the members that do not answer).
type errNoTarget struct {
	Groups []GroupInfo
	Down   []string
}

func (e *errNoTarget) Error() string {
	gs := make([]string, len(e.Groups))
	for i, g := range e.Groups {
		gs[i] = fmt.Sprintf("%d (%s)", g.ID, strings.Join(g.Replicas, ", "))
	}
	down := "none"
	if len(e.Down) > 0 {
		down = strings.Join(e.Down, ", ")
	}
	return fmt.Sprintf("no node that answers and holds none of the group's replicas is left to take the replica of group(s) %s (nodes down: %s)", strings.Join(gs, ", "), down)
}
