package store

import (
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/ring"
	"github.com/tally-ml/tally/windows"
)

// The feature views of one source and one join key share their state: a
// group is one windows.View whose spec holds the columns and aggregations
// of all of them, so that an entity has one index slot, one key, one
// header and one ring of raw events (its timestamp and every column any of
// the views reads) instead of one of each per view. The default repo's
// three card-holder views take 428 B per user instead of 737 B this way,
// a lookup finds the card holder once, and an event is placed three times
// fewer.
//
// Merging changes no answer: the views of a source see the same events,
// so a group's watermark is each member's; a member's reads at or after
// watermark - Lateness count exactly the events within its own windows
// (the group holds events as old as its longest window, which no shorter
// window counts), up to floating-point rounding of sums and moments where
// the group keeps events raw that a tiled member alone would have folded
// (windows' TestReadRangeMatchesViewAlone). What differs is bookkeeping: an event is refused as too
// late only when no member could count it (ErrTooLate, Stats.TooLate), and
// a member's Stats are its group's.
//
// A snapshot records its groups (snapshot.go), and a restore takes the
// snapshot's layout for the state it holds, except that views it holds
// alone which the repo groups (every view of a snapshot written before
// groups) are merged into their group (regroup) when that can be done
// exactly; views added later form groups of their own. A group whose
// member changed or left the repo (applied with
// --accept-schema-change) keeps that member's aggregations, unread, so
// that the other members keep their state: nothing a served view holds is
// dropped for another view's change.

// group is one windows view holding the state of one or more feature views
// of a source, keyed by one of its columns.
type group struct {
	spec    windows.Spec
	source  int   // repo source index
	keyCol  int   // source column of the join key
	cols    []int // source column of each spec column; -1: the source no longer has it (null)
	members []member
}

// member is a feature view's share of a group: the aggregations
// [first, first+n) of its spec.
type member struct {
	name  string
	view  int // repo view index; -1: the repo no longer has it, or changed it (unread)
	first int
	n     int
}

// viewRef locates a repo view's state: its group and aggregations.
type viewRef struct{ group, first, n int }

// groupViews groups the repo views views (indices, in repo order) by
// source, join key and lateness, in order of first appearance. A group of
// one view has that view's spec (add builds it so), and so its snapshot
// sections.
func groupViews(repo *features.Repo, views []int) []group {
	var out []group
	at := map[[3]int64]int{}
	for _, vi := range views {
		v := repo.Views[vi]
		si := sourceIndex(repo, v.Source)
		k := [3]int64{int64(si), int64(v.KeyColumn), v.Spec.Lateness}
		gi, ok := at[k]
		if !ok {
			gi = len(out)
			at[k] = gi
			out = append(out, group{source: si, keyCol: v.KeyColumn})
		}
		out[gi].add(v, vi)
	}
	return out
}

// sourceIndex is s's index in repo.Sources.
func sourceIndex(repo *features.Repo, s *features.Source) int {
	for i, x := range repo.Sources {
		if x == s {
			return i
		}
	}
	return -1
}

// add makes v (repo view vi) a member of g.
func (g *group) add(v *features.View, vi int) {
	names := make([]string, 0, len(g.members)+1)
	for _, m := range g.members {
		names = append(names, m.name)
	}
	g.spec.Name = strings.Join(append(names, v.Name), "+")
	g.spec.Lateness = v.Spec.Lateness
	colOf := make([]int, len(v.Spec.Columns)) // v's spec column -> g's
	for c, sc := range v.SourceColumns {
		colOf[c] = -1
		for gc, have := range g.cols {
			if have == sc {
				colOf[c] = gc
			}
		}
		if colOf[c] < 0 {
			colOf[c] = len(g.cols)
			g.cols = append(g.cols, sc)
			g.spec.Columns = append(g.spec.Columns, v.Spec.Columns[c])
		}
	}
	g.members = append(g.members, member{name: v.Name, view: vi, first: len(g.spec.Aggregations), n: len(v.Spec.Aggregations)})
	for _, a := range v.Spec.Aggregations {
		a.Column = colOf[a.Column]
		g.spec.Aggregations = append(g.spec.Aggregations, a)
	}
}

// groupLayout is how a snapshot records a group (JSON, in its header).
type groupLayout struct {
	Source  string         `json:"source"`
	Key     string         `json:"key"`
	Members []memberLayout `json:"members"`
	Spec    windows.Spec   `json:"spec"` // its column names are the source's
}

type memberLayout struct {
	Name         string `json:"name"`
	Aggregations int    `json:"aggregations"`
	// Unread: a member the repo no longer had, or had changed, when the
	// snapshot was written (its name may be a new view's since).
	Unread bool `json:"unread,omitempty"`
}

func (n *Store) layoutOf(g *group) groupLayout {
	src := n.repo.Sources[g.source]
	l := groupLayout{Source: src.Name, Key: src.Columns[g.keyCol].Name, Spec: g.spec}
	for _, m := range g.members {
		l.Members = append(l.Members, memberLayout{m.name, m.n, m.view < 0})
	}
	return l
}

// groupOf rebuilds a group a snapshot recorded, for the current repo: live
// says, per member, which repo view it still is (-1: none; the caller
// decided that with the schemas). A live member's aggregations must be the
// recorded ones.
func (n *Store) groupOf(l groupLayout, live []int) (group, error) {
	g := group{spec: l.Spec, source: -1}
	for i, s := range n.repo.Sources {
		if s.Name == l.Source {
			g.source = i
		}
	}
	if g.source < 0 {
		return g, fmt.Errorf("snapshot group %s: the repo has no source %s", l.Spec.Name, l.Source)
	}
	src := n.repo.Sources[g.source]
	colIndex := func(name string) int {
		for i, c := range src.Columns {
			if c.Name == name {
				return i
			}
		}
		return -1
	}
	if g.keyCol = colIndex(l.Key); g.keyCol < 0 {
		return g, fmt.Errorf("snapshot group %s: source %s has no column %s", l.Spec.Name, l.Source, l.Key)
	}
	for _, c := range l.Spec.Columns {
		g.cols = append(g.cols, colIndex(c.Name))
	}
	first := 0
	for i, ml := range l.Members {
		m := member{name: ml.Name, view: live[i], first: first, n: ml.Aggregations}
		first += ml.Aggregations
		if first > len(l.Spec.Aggregations) || ml.Aggregations < 0 {
			return g, fmt.Errorf("snapshot group %s: members hold %d aggregations, the spec %d", l.Spec.Name, first, len(l.Spec.Aggregations))
		}
		if m.view >= 0 {
			v := n.repo.Views[m.view]
			if err := sameAggregations(v, g.cols, l.Spec, m); err != nil {
				return g, fmt.Errorf("snapshot group %s, view %s: %w", l.Spec.Name, v.Name, err)
			}
			if sourceIndex(n.repo, v.Source) != g.source || v.KeyColumn != g.keyCol {
				return g, fmt.Errorf("snapshot group %s, view %s: another source or join key", l.Spec.Name, v.Name)
			}
		}
		g.members = append(g.members, m)
	}
	if first != len(l.Spec.Aggregations) {
		return g, fmt.Errorf("snapshot group %s: members hold %d aggregations, the spec %d", l.Spec.Name, first, len(l.Spec.Aggregations))
	}
	return g, nil
}

// sameAggregations checks that m's aggregations in spec (whose columns are
// the source columns cols) are view v's.
func sameAggregations(v *features.View, cols []int, spec windows.Spec, m member) error {
	if m.n != len(v.Spec.Aggregations) {
		return fmt.Errorf("%d aggregations recorded, the view has %d", m.n, len(v.Spec.Aggregations))
	}
	for i, a := range v.Spec.Aggregations {
		b := spec.Aggregations[m.first+i]
		if b.Column < 0 || b.Column >= len(cols) || cols[b.Column] != v.SourceColumns[a.Column] ||
			a.Func != b.Func || a.Window != b.Window || a.Interval != b.Interval || a.N != b.N {
			return fmt.Errorf("aggregation %d differs from the recorded one", i)
		}
	}
	return nil
}

func encodeLayout(l groupLayout) []byte {
	b, _ := json.Marshal(l)
	return b
}

func decodeLayout(b []byte) (groupLayout, error) {
	var l groupLayout
	if err := json.Unmarshal(b, &l); err != nil {
		return l, fmt.Errorf("snapshot group layout: %w", err)
	}
	return l, nil
}

// setLayout makes groups the store's state, empty: the views, where each
// repo view's state is, and what each source's events are placed in. Only
// before anything is applied (New, Restore).
func (n *Store) setLayout(groups []group) error {
	views := make([]*windows.View, len(groups))
	refs := make([]viewRef, len(n.repo.Views))
	for i := range refs {
		refs[i].group = -1
	}
	for gi := range groups {
		g := &groups[gi]
		w, err := windows.New(g.spec)
		if err != nil {
			return fmt.Errorf("feature view %s: %w", g.spec.Name, err)
		}
		views[gi] = w
		for _, m := range g.members {
			if m.view >= 0 {
				refs[m.view] = viewRef{gi, m.first, m.n}
			}
		}
	}
	for i, r := range refs {
		if r.group < 0 {
			return fmt.Errorf("feature view %s has no state", n.repo.Views[i].Name)
		}
	}
	for _, s := range n.sources {
		s.targets = s.targets[:0]
	}
	for gi := range groups {
		g := &groups[gi]
		n.sources[g.source].targets = append(n.sources[g.source].targets, groupTarget{group: gi, keyCol: g.keyCol, cols: g.cols})
	}
	n.groups, n.views, n.refs = groups, views, refs
	return nil
}

// View is the windows view holding the state of the repo's feature view i,
// and which of its aggregations are view i's: [from, to), in view i's
// order. Read them with windows.View.ReadRange, or ReadView.
func (n *Store) View(i int) (v *windows.View, from, to int) {
	r := n.refs[i]
	return n.views[r.group], r.first, r.first + r.n
}

// ReadView appends the values of the repo's feature view i for key as of
// t (windows.View.Read of its aggregations only).
func (n *Store) ReadView(i int, key []byte, t int64, dst []windows.Value) []windows.Value {
	r := n.refs[i]
	return n.views[r.group].ReadRange(ring.Hash(key), key, t, r.first, r.first+r.n, dst)
}

// ViewStats are the windows statistics of the state holding the repo's
// feature view i: its group's, shared with the group's other members.
func (n *Store) ViewStats(i int) windows.Stats { return n.views[n.refs[i].group].Stats() }

// Layout names how the store holds its views: "" when every view is
// alone (as every build before groups held them, and as a store restored
// from such a build's snapshot keeps those regroup cannot merge), else
// each group of more than one view, its members joined by "+", the groups
// joined by ", ". The
// state of stores that applied the same records is the same only when
// their layouts are (Checksums hashes each group's state): a cluster's
// check compares only replicas of one layout.
func (n *Store) Layout() string {
	n.seq.mu.Lock()
	defer n.seq.mu.Unlock()
	var names []string
	for i := range n.groups {
		if len(n.groups[i].members) > 1 {
			names = append(names, n.groups[i].spec.Name)
		}
	}
	return strings.Join(names, ", ")
}

// StateOf names the state holding the repo's feature view i: its group's
// spec name, the members' names joined by "+".
func (n *Store) StateOf(i int) string { return n.views[n.refs[i].group].Spec().Name }

// regroup merges the restored views that are alone but that the repo
// groups (a snapshot written before groups holds every view alone, and so
// does every snapshot of a store restored from one), so that they take the
// memory of a group and the next snapshot holds the group: each such set
// of views becomes the group New would build, holding exactly the state it
// would hold had it applied the same records (windows.Merge). Views that
// cannot be merged exactly (tiled aggregations, or no view alone keeps
// every column over the group's horizon) stay alone, as they read
// correctly: a warning and the tally_views_left_apart gauge say which.
// Only during Restore, after the partitions are read.
func (n *Store) regroup(f *replayFilter) error {
	var alone []int // repo views restored alone
	at := map[int]int{}
	for gi := range n.groups {
		g := &n.groups[gi]
		if f.fresh[gi] || len(g.members) != 1 || g.members[0].view < 0 {
			continue
		}
		alone = append(alone, g.members[0].view)
		at[g.members[0].view] = gi
	}
	merged := map[int]group{} // by the store group of its first member
	drop := map[int]bool{}
	views := map[int]*windows.View{}
	left := 0
	for _, g := range groupViews(n.repo, alone) {
		if len(g.members) < 2 {
			continue
		}
		w, err := n.mergeViews(g, at)
		if err != nil {
			left += len(g.members)
			n.logger.Warn("feature views restored alone stay alone: they read correctly, in more memory than a group; a snapshot restored by a later build, or a state rebuilt from the whole log, may group them",
				"views", g.spec.Name, "err", err)
			continue
		}
		first := at[g.members[0].view]
		merged[first], views[first] = g, w
		for _, m := range g.members[1:] {
			drop[at[m.view]] = true
		}
		n.logger.Info("feature views restored alone are grouped", "group", g.spec.Name)
	}
	n.metrics.set.GetOrCreateGauge("tally_views_left_apart", nil).Set(float64(left))
	if len(merged) == 0 {
		return nil
	}
	var groups []group
	var keep []*windows.View
	var fresh []bool
	for gi := range n.groups {
		switch {
		case drop[gi]:
			continue
		case views[gi] != nil:
			groups, keep = append(groups, merged[gi]), append(keep, views[gi])
		default:
			groups, keep = append(groups, n.groups[gi]), append(keep, n.views[gi])
		}
		fresh = append(fresh, f.fresh[gi])
	}
	if err := n.setLayout(groups); err != nil {
		return err
	}
	copy(n.views, keep)
	f.fresh = fresh
	return nil
}

// mergeViews builds g's view from the views alone of its members (at: the
// store group of each repo view).
func (n *Store) mergeViews(g group, at map[int]int) (*windows.View, error) {
	w, err := windows.New(g.spec)
	if err != nil {
		return nil, err
	}
	members := make([]*windows.View, len(g.members))
	cols := make([][]int, len(g.members))
	for i, m := range g.members {
		members[i] = n.views[at[m.view]]
		for _, sc := range n.repo.Views[m.view].SourceColumns {
			gc := slices.Index(g.cols, sc)
			if gc < 0 {
				return nil, fmt.Errorf("group %s lacks a column of %s", g.spec.Name, m.name)
			}
			cols[i] = append(cols[i], gc)
		}
	}
	mg, err := windows.NewMerge(w, members, cols)
	if err != nil {
		return nil, err
	}
	errs := make([]error, ring.Partitions)
	var wg sync.WaitGroup
	next := make(chan uint32)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range next {
				errs[p] = mg.Partition(p)
			}
		}()
	}
	for p := range uint32(ring.Partitions) {
		next <- p
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err // the lowest partition's
		}
	}
	return w, nil
}
