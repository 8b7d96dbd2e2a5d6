package cluster

import (
	"cmp"
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// A Raft voter must never lose what it wrote to stable storage: its term,
// its vote and the entries it acknowledged. A member restarted under its
// old --node-id over an empty data dir (a wiped or replaced disk, a new
// volume) broke that: it came back as a voter with an empty log, bootstrapped
// again the groups that never changed, and the leaders of the others counted
// it in their quorums. With an entry committed on two of three replicas, one
// of the two wiped and the other down, the empty one voted for the third,
// whose log lacked the entry (longer than the empty one's is enough), and the
// acknowledged entry was gone; the metadata group alike.
//
// So before Open creates anything in a new data dir (checkIdentity: no node
// identity and no cluster state) it learns from its peers whether the
// cluster already counts cfg.NodeID as a member (GET /v1/hello?id=, which a
// node answers from the moment its cluster port listens, before its
// metadata group opens, so that peers all in this check answer each other):
//
//   - a map that lists the node as a member refuses the start (wipedMember):
//     such a node must come back under a new id, joined and added, and the
//     old id removed;
//   - bootstrap mode (--cluster-peers): the start goes on only once every
//     other listed peer has answered that it is new too (its own data dir
//     held nothing when it started, and it has no map yet): the cluster is
//     being created. A map that does not list the node refuses it (the
//     cluster exists without it: it joins with --cluster-join). A peer that
//     does not answer, or restarts over its data and has no map yet, is
//     waited for, up to the form timeout, then the start fails naming it:
//     never a start on silence, as the silent peer may be the only one up
//     that holds the map (and the entries the empty node helped commit).
//   - join mode (--cluster-join): its peers are optional. The start goes on
//     once a peer's map does not list the node, or once the metadata leader
//     admits it (add-node's hello says whether its map counts the node:
//     "new" clears the start, "member" refuses it, and add-node is refused
//     too). Until then the node opens no replica, so no leader can count
//     an empty replica of it in a quorum; with nothing said by the form
//     timeout it is "not admitted", as before.
//
// A consequence: a node of --cluster-peers whose first start comes after the
// others formed the cluster without it (they need only a majority) is
// refused as if wiped: its peers cannot tell the two apart, so it is
// replaced the same way.

// newNodeRound bounds one round of asking the peers; newNodeEvery spaces
// the rounds.
const (
	newNodeRound = 2 * time.Second
	newNodeEvery = 250 * time.Millisecond
	newNodeLog   = 10 * time.Second // how often the wait is logged
)

// peerSaid is what one peer answered a new node (err: no answer).
type peerSaid struct {
	id, addr string
	hi       hello
	err      error
}

// hasMap reports whether the peer answered from a cluster map that says
// who its members are (a build before this check sends a map version
// without them, which says nothing about the asking node).
func (p peerSaid) hasMap() bool { return p.err == nil && p.hi.MapVersion > 0 && len(p.hi.Members) > 0 }

// status is the peer's answer in a few words, for the start's errors.
func (p peerSaid) status() string {
	switch {
	case p.err != nil:
		return "no answer (" + p.err.Error() + ")"
	case p.hasMap():
		return fmt.Sprintf("cluster map version %d", p.hi.MapVersion)
	case p.hi.MapVersion > 0:
		return "an older build, which does not say whether it counts this node"
	case p.hi.New:
		return "new too"
	default:
		return "restarting over its data, its map not known yet (no quorum?)"
	}
}

// checkNewNode runs for a new data dir before Open creates anything in it:
// it returns nil once the start may go on, or why it may not (see above).
func (c *Cluster) checkNewNode(deadline time.Time) error {
	var peers []Member
	for _, p := range c.cfg.Peers {
		if p.ID != c.cfg.NodeID && p.ClusterAddr != c.cfg.Advertise {
			peers = append(peers, p)
		}
	}
	if !c.cfg.Join && len(peers) == 0 {
		return nil // a cluster of this node alone: nobody else can count it
	}
	c.logger.Info("cluster: the data dir is new: asking the peers whether the cluster counts this node already", "peers", len(peers), "join", c.cfg.Join)
	defer c.waiting.Store(false)
	logged := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), newNodeRound)
		said := c.askPeers(ctx, peers)
		cancel()
		if ok, err := c.judgeNew(said); ok || err != nil {
			return err
		}
		if time.Since(logged) > newNodeLog {
			logged = time.Now()
			c.logger.Warn("cluster: the data dir is new: waiting for the peers to say whether the cluster counts this node already", "peers", peerStatus(said), "join", c.cfg.Join)
		}
		select {
		case verdict := <-c.admitted:
			if verdict == "member" {
				return wipedMember(c.cfg.NodeID, c.cfg.DataDir, nil, "the metadata leader's map, as add-node ran")
			}
			if c.cfg.Join {
				return nil
			}
		case <-time.After(min(newNodeEvery, time.Until(deadline))):
		}
		if time.Now().After(deadline) {
			return c.newNodeTimedOut(said)
		}
	}
}

// askPeers asks every peer (its ID may be ""), all at once, who it is and
// what its map says of this node (a hello with ?id=), until ctx is done:
// one answer per peer, in order, err set for one that did not answer in
// time. Every start check that asks its peers goes through it:
// checkNewNode (a round bounded by newNodeRound) directly, the restart
// checks through the start's round (askAtStart, startAnswers).
func (c *Cluster) askPeers(ctx context.Context, peers []Member) []peerSaid {
	said := make([]peerSaid, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			said[i] = peerSaid{id: p.ID, addr: p.ClusterAddr}
			said[i].err = c.post(ctx, p.ClusterAddr, "/v1/hello?id="+url.QueryEscape(c.cfg.NodeID), nil, &said[i].hi)
		}()
	}
	wg.Wait()
	return said
}

// peerCheckTimeout bounds a round of the restart checks' hellos (the
// start's round, askAtStart, and any address a check asks beyond it).
const peerCheckTimeout = 3 * time.Second

// A restarting node's checks that ask its peers (checkRecoveryPeers,
// checkSameAddress, checkNotRestored, checkNotRemoved, checkSingleProcess,
// freshMap) each sent a round of hellos of their own: four or five to
// every peer, and as many waits, up to peerCheckTimeout each, for a peer
// that does not answer (a host down answers no dial). The start now asks
// once (askAtStart), before the first check, every address those checks
// ask first: its --cluster-peers, the members of the map its data dir
// holds, and its own address in that map when it restarts at another.
// Each check reads that round's answers (startAnswers); an address the
// round did not ask (one its metadata configuration names once the
// replica opens, or one a peer's map gives this node) is asked then, and
// its answer kept for the checks after. A peer that did not answer is not
// asked again: every check takes it as silent, as each did when it was
// silent in the check's own round. A peer that answered without a map
// (starting too: a whole cluster restarting) is asked again by each check
// that runs once the metadata replica is open, as those checks asked then
// and may find its map by that time.

// askAtStart asks the peers the restart checks ask, once, within
// peerCheckTimeout, and keeps their answers by address for startAnswers.
// With a pending recovery, the round is checkRecoveryPeers': a member of
// the stored map that does not answer within newNodeRound is asked again
// until peerCheckTimeout passed (survivors started together see each
// other).
func (c *Cluster) askAtStart(recovering bool) {
	peers := c.knownPeers()
	again := map[string]bool{} // the addresses asked again while silent
	if m := storedMap(c.cfg.DataDir); m != nil {
		if mb := m.Member(c.cfg.NodeID); mb != nil && mb.ClusterAddr != c.cfg.Advertise {
			peers = append(peers, *mb) // checkSameAddress's
		}
		for _, mb := range m.Members {
			again[mb.ClusterAddr] = recovering && mb.ID != c.cfg.NodeID
		}
	}
	c.round = map[string]peerSaid{}
	ctx, cancel := context.WithTimeout(context.Background(), peerCheckTimeout)
	defer cancel()
	for ctx.Err() == nil && len(peers) > 0 {
		round, stop := ctx, context.CancelFunc(func() {})
		if recovering {
			round, stop = context.WithTimeout(ctx, newNodeRound)
		}
		said := c.askPeers(round, peers)
		stop()
		peers = peers[:0]
		for _, p := range said {
			c.round[p.addr] = p
			if p.err != nil && again[p.addr] {
				peers = append(peers, Member{ID: p.id, ClusterAddr: p.addr})
			}
		}
		if len(peers) == 0 {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(newNodeEvery):
		}
	}
}

// startAnswers is what peers answered the start's round (askAtStart),
// one per peer, in order, each under the id the caller gives it; it asks
// the addresses the round did not (within peerCheckTimeout) and, once the
// metadata replica is open, those that answered without a map, and keeps
// their answers. Without a round (none was asked, or Open finished), it
// asks every peer.
func (c *Cluster) startAnswers(peers []Member) []peerSaid {
	var ask []Member
	for _, p := range peers {
		a, ok := c.round[p.ClusterAddr]
		if !ok || c.meta != nil && a.err == nil && a.hi.MapVersion == 0 {
			ask = append(ask, p)
		}
	}
	if len(ask) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), peerCheckTimeout)
		said := c.askPeers(ctx, ask)
		cancel()
		if c.round == nil {
			return said
		}
		for _, p := range said {
			c.round[p.addr] = p
		}
	}
	said := make([]peerSaid, len(peers))
	for i, p := range peers {
		said[i] = c.round[p.ClusterAddr]
		said[i].id = p.ID
	}
	return said
}

// judgeNew decides a new node's start from one round of its peers'
// answers: go on (true), refuse (an error), or ask again (false, nil).
func (c *Cluster) judgeNew(said []peerSaid) (bool, error) {
	for _, p := range said {
		if p.hasMap() && slices.Contains(p.hi.Members, c.cfg.NodeID) {
			return false, wipedMember(c.cfg.NodeID, c.cfg.DataDir, p.hi.Groups, fmt.Sprintf("node %s's cluster map, version %d", p.hi.Node, p.hi.MapVersion))
		}
	}
	for _, p := range said {
		if !p.hasMap() {
			continue
		}
		if c.cfg.Join {
			return true, nil // a running cluster that does not count it: add-node admits it
		}
		if p.hi.Removed {
			return false, errRemovedStart(c.cfg.NodeID, c.cfg.DataDir, fmt.Sprintf("node %s's cluster map, version %d, lists it as removed", p.hi.Node, p.hi.MapVersion))
		}
		return false, fmt.Errorf("cluster: the cluster already exists (node %s's map, version %d) and node %s is not a member of it: a node joins a running cluster with --cluster-join (no --cluster-peers needed) and `tally cluster add-node --id %s --cluster-addr %s`",
			p.hi.Node, p.hi.MapVersion, c.cfg.NodeID, c.cfg.NodeID, c.cfg.Advertise)
	}
	if c.cfg.Join {
		return false, nil
	}
	mine := creation(c.cfg)
	for _, p := range said {
		if p.err == nil && p.hi.New && p.hi.Creation != "" && p.hi.Creation != mine {
			return false, fmt.Errorf("cluster: node %s, new too, was started to create the cluster with %s, and this node with %s: "+
				"every initial node of a new cluster needs the same --cluster-peers (ids and addresses), --cluster-groups and --cluster-replicas, "+
				"or the cluster forms with a member that cannot start; nothing was written: start every node again with the same values",
				p.id, p.hi.Creation, mine)
		}
	}
	for _, p := range said {
		if p.err != nil || !p.hi.New {
			return false, nil
		}
	}
	return true, nil
}

// creation is what node cfg would create its cluster with: its peers
// (sorted), groups and replicas per group, as the flags that give them.
func creation(cfg Config) string {
	var peers []string
	for _, p := range cfg.Peers {
		peers = append(peers, p.ID+"="+p.ClusterAddr)
	}
	slices.Sort(peers)
	return fmt.Sprintf("--cluster-peers %s --cluster-groups %d --cluster-replicas %d",
		strings.Join(peers, ","), cmp.Or(cfg.Groups, 8), cmp.Or(cfg.Replicas, min(3, len(cfg.Peers))))
}

// newNodeTimedOut is the error of a new node whose peers did not settle
// its start by the form timeout, naming what each said last.
func (c *Cluster) newNodeTimedOut(said []peerSaid) error {
	quiet := peerStatus(said)
	if c.cfg.Join {
		err := fmt.Errorf("cluster: not admitted after %s: run `tally cluster add-node --id %s --cluster-addr %s` against a node of the cluster", c.cfg.FormTimeout, c.cfg.NodeID, c.cfg.Advertise)
		if quiet != "" {
			err = fmt.Errorf("%w (its --cluster-peers did not say whether the cluster counts it: %s)", err, quiet)
		}
		return err
	}
	return fmt.Errorf("cluster: the data dir %s is new, and after %s not every node of --cluster-peers has said whether the cluster counts node %s as a member already: %s. "+
		"A node over a new data dir starts only once every peer answers (a member that lost its data must not come back as a voter while the nodes that know cannot be asked): "+
		"start those nodes; if this node was a member whose data dir was lost, replace it (see `tally cluster add-node` and `remove-node`)",
		c.cfg.DataDir, c.cfg.FormTimeout, c.cfg.NodeID, quiet)
}

// peerStatus lists the peers that have not said they are new, with what
// they said.
func peerStatus(said []peerSaid) string {
	var quiet []string
	for _, p := range said {
		if p.err != nil || !p.hi.New {
			quiet = append(quiet, fmt.Sprintf("%s at %s: %s", p.id, p.addr, p.status()))
		}
	}
	return strings.Join(quiet, "; ")
}

// wipedMember is the refusal of member id over a data dir that holds
// nothing: this node's own (dir), or, with dir "", a node add-node asked;
// source is whose map counts it, groups what that map gives it (nil when
// not known).
func wipedMember(id, dir string, groups []int, source string) error {
	what := fmt.Sprintf("cluster: the data dir %s is empty (never started)", dir)
	if dir == "" {
		what = fmt.Sprintf("node %s runs over an empty data dir (never started)", id)
	}
	holds := ""
	if len(groups) > 0 {
		holds = fmt.Sprintf(" holding replicas of groups %v", groups)
	}
	return fmt.Errorf("%s, but the cluster counts node %s as a member%s (%s). "+
		"A member that lost its data must not come back under its id: as an empty voter it can elect a replica that lacks acknowledged writes. "+
		"If the data dir was moved or not mounted, restore it. Otherwise replace the node: start it under a new --node-id (and a cluster address not in use) with --cluster-join, "+
		"run `tally cluster add-node --id <new id> --cluster-addr <its address>`, then `tally cluster remove-node %s` (its replicas move to the other nodes, which hold its data)",
		what, id, holds, source, id)
}

// noteAdmission passes add-node's verdict on this node (the hello's
// "admit": "new" once the leader admits it, "member" when the leader's map
// counts it already; "check" passes nothing) to checkNewNode while it
// waits. A hello without "admit" or "id" is add-node's from a build before
// the verdict, which admitted any node: taken as "new".
func (c *Cluster) noteAdmission(q url.Values) {
	if !c.waiting.Load() {
		return
	}
	v := q.Get("admit")
	if v == "" && q.Get("id") == "" {
		v = "new"
	}
	if v != "new" && v != "member" {
		return
	}
	if v == "member" {
		select { // a refusal outweighs an admission not yet read
		case <-c.admitted:
		default:
		}
	}
	select {
	case c.admitted <- v:
	default:
	}
}
