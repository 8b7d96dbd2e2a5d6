package cluster

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc64"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/wal"
)

// Repairing a replica's Raft log offline (`tally admin wal repair
// --group`). A replica whose log holds a corrupt entry refuses the node's
// start (errUnreadable), and the way back is to replace the node. Two
// repairs keep what that would lose:
//
//   - Corruption the replica's newest snapshot covers: the snapshot holds
//     those entries, and the log keeps every entry after it (wal.Repair
//     moves the log's front aside). The replica forgets nothing it
//     acknowledged, so this is safe whatever the replication factor.
//   - Corruption after the snapshot: the log is cut there. A replica of a
//     group with other replicas would then vote having forgotten entries
//     it counted in a quorum, so that is refused; with one replica (the
//     group's only copy) it is done only when the operator accepts the
//     loss, and keeps every entry before the corruption instead of losing
//     the whole group.

// ReplicaRepair is what RepairReplica did to a replica's log.
type ReplicaRepair struct {
	Group string
	// Log is the replica's log directory.
	Log string
	// Snapshot and SnapshotIndex are the newest snapshot Raft restores
	// ("" and 0: none), which holds every entry up to its index.
	Snapshot      string
	SnapshotIndex uint64
	// Replicas is the group's number of replicas as the data dir tells it
	// (0: it could not tell), read only when the repair cuts.
	Replicas int
	wal.Repaired
}

// RepairReplica repairs the Raft log of the replica of group ("meta" or
// "g<N>") in the data dir of a stopped node: the caller holds the data
// dir's lock (store.LockDataDir). It changes nothing unless the repair
// keeps every entry after the replica's newest snapshot, or the group's
// only replica is being repaired and acceptDataLoss is set (see above);
// a refusal says why and what to do instead. Nothing is deleted: what
// the log no longer holds is in its corrupt-<time>/ directory.
func RepairReplica(dataDir, group string, acceptDataLoss bool) (ReplicaRepair, error) {
	dir := groupDir(dataDir, group)
	rr := ReplicaRepair{Group: group, Log: filepath.Join(dir, "log")}
	if st, err := os.Stat(rr.Log); err != nil || !st.IsDir() {
		return rr, fmt.Errorf("repair: %s holds no replica of group %s (no %s); the groups there: %s", dataDir, group, rr.Log, strings.Join(LocalGroups(dataDir), ", "))
	}
	snap, err := restoredSnapshot(filepath.Join(dir, "snapshots"))
	if err != nil {
		return rr, fmt.Errorf("repair: group %s: find the newest snapshot (nothing changed): %w", group, err)
	}
	if snap != nil {
		rr.Snapshot, rr.SnapshotIndex = snap.ID, snap.Index
	}
	plan, err := wal.PlanRepair(rr.Log, rr.SnapshotIndex, wal.Options{})
	if err != nil {
		return rr, fmt.Errorf("repair: group %s (nothing changed): %w", group, err)
	}
	if plan.Cut != 0 {
		if err := allowCut(dataDir, group, &rr, plan, acceptDataLoss); err != nil {
			return rr, err
		}
		// The cut replica holds less than its peers remember it applied
		// (restored.go), on purpose: it starts as a new incarnation, which
		// they remember nothing of. Renewed before the cut, so a repair cut
		// short leaves either the whole log under the new incarnation
		// (repair again) or the cut log under it, never the cut log under
		// the old one, which would be refused as a restored backup.
		if err := renewIncarnation(dir); err != nil {
			return rr, fmt.Errorf("repair: group %s (nothing cut): %w", group, err)
		}
	}
	rr.Repaired, err = wal.Repair(rr.Log, rr.SnapshotIndex, wal.Options{})
	if err != nil {
		return rr, fmt.Errorf("repair: group %s: %w", group, err)
	}
	return rr, nil
}

// allowCut refuses plan's cut of group's replica unless it is the group's
// only copy and the operator accepts the loss.
func allowCut(dataDir, group string, rr *ReplicaRepair, plan wal.Repaired, acceptDataLoss bool) error {
	self := "<this node's id>"
	if id, err := readIdentity(dataDir); err == nil {
		self = id.Node
	}
	var why string
	var voters int
	rr.Replicas, voters, why = groupCopies(dataDir, group, self)
	snapshot := fmt.Sprintf("its newest snapshot (%s, at entry %d)", rr.Snapshot, rr.SnapshotIndex)
	if rr.Snapshot == "" {
		snapshot = "its newest snapshot (it has none)"
	}
	cut := fmt.Sprintf("corrupt entry %d is after %s: a repair cuts the log there, and entry %d and every later one would be lost", plan.Cut, snapshot, plan.Cut)
	if plan.Missing != 0 {
		cut = fmt.Sprintf("corrupt entry %d is held by %s, but entry %d, the first after the snapshot, is not intact after it: a repair cuts the log at %d, "+
			"and the entries after the snapshot would be lost", plan.Cut, snapshot, plan.Missing, plan.Cut)
	}
	what := fmt.Sprintf("repair: group %s: this node's replica in %s: %s (moved to %s, not deleted)",
		group, filepath.Dir(rr.Log), cut, filepath.Join(rr.Log, "corrupt-<time>"))
	switch {
	case voters == 0:
		return fmt.Errorf("%s. The entries it would keep hold no Raft configuration of the group (%s): cut, the replica could never elect a leader, "+
			"so nothing was changed. With other replicas of the group: %s. With none, `tally cluster recover` is the way back", what, why, replaceSteps(self))
	case rr.Replicas > 1:
		return fmt.Errorf("%s. The group has %d replicas (%s): cut, this one would vote having forgotten entries it acknowledged, "+
			"and the group could lose acknowledged writes, so nothing was changed (--accept-data-loss is only for a group's only replica). "+
			"The other replicas hold every acknowledged write. %s", what, rr.Replicas, why, replaceSteps(self))
	case !acceptDataLoss && rr.Replicas == 1:
		return fmt.Errorf("%s. The group has one replica (%s): this is its only copy, and the cut keeps the snapshot and every entry before %d, "+
			"where replacing the node would lose the whole group. Nothing was changed; to cut, run again with --accept-data-loss", what, why, plan.Cut)
	case !acceptDataLoss:
		return fmt.Errorf("%s. How many replicas the group has could not be read from the data dir (%s). Nothing was changed. "+
			"With one replica (this is its only copy), run again with --accept-data-loss to keep every entry before %d; "+
			"with more, do not (the replica would vote having forgotten entries it acknowledged): %s", what, why, plan.Cut, replaceSteps(self))
	}
	return nil
}

// groupCopies is how many replicas group has as dataDir tells it, offline,
// and where that was read; 0 when it cannot tell. voters is the number of
// voters of the configuration the replica keeps before its corruption (0:
// none, which a cut must not leave). A data group has the
// cluster map's replicas per group (fixed when the cluster was created;
// storedMap); every group, the voters of the newest Raft configuration
// its replica holds (before the corruption: a change after it is not
// seen). One replica is answered only when both agree that this node
// (self) is the only voter.
func groupCopies(dataDir, group, self string) (n, voters int, why string) {
	var whys []string
	mapR := 0
	if group != "meta" {
		if m := storedMap(dataDir); m != nil {
			mapR = m.Replicas
			whys = append(whys, fmt.Sprintf("the cluster map: %d per group", m.Replicas))
		} else {
			whys = append(whys, "the cluster map in the metadata replica could not be read")
		}
	}
	conf, _, _ := readGroup(groupDir(dataDir, group), nil)
	var ids []string
	for _, s := range conf.Servers {
		if s.Suffrage == raft.Voter {
			ids = append(ids, string(s.ID))
		}
	}
	if len(ids) > 0 {
		whys = append(whys, "its Raft configuration: voters "+strings.Join(ids, ", "))
	} else {
		whys = append(whys, "no snapshot, and no configuration entry before the corruption")
	}
	why = strings.Join(whys, "; ")
	switch {
	case max(mapR, len(ids)) > 1:
		return max(mapR, len(ids)), len(ids), why
	case (group == "meta" || mapR == 1) && len(ids) == 1 && ids[0] == self:
		return 1, 1, why
	}
	return 0, len(ids), why
}

// restoredSnapshot is the snapshot in dir (a raft.FileSnapshotStore's)
// that Raft restores at start: the newest (by term, index, id) whose state
// matches its checksum; nil when there is none.
func restoredSnapshot(dir string) (*raft.SnapshotMeta, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	type fileMeta struct {
		raft.SnapshotMeta
		CRC []byte
	}
	var metas []fileMeta
	for _, e := range ents {
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "meta.json"))
		var m fileMeta
		if err != nil || json.Unmarshal(b, &m) != nil {
			continue // as Raft: an unreadable snapshot is skipped
		}
		metas = append(metas, m)
	}
	slices.SortFunc(metas, func(a, b fileMeta) int {
		return -cmp.Or(cmp.Compare(a.Term, b.Term), cmp.Compare(a.Index, b.Index), strings.Compare(a.ID, b.ID))
	})
	for _, m := range metas {
		f, err := os.Open(filepath.Join(dir, m.ID, "state.bin"))
		if err != nil {
			continue
		}
		h := crc64.New(crc64.MakeTable(crc64.ECMA))
		_, err = io.Copy(h, f)
		f.Close()
		if err == nil && bytes.Equal(h.Sum(nil), m.CRC) {
			return &m.SnapshotMeta, nil
		}
	}
	return nil, nil
}

// LocalGroups lists the groups whose replicas dataDir holds: meta, then
// g0, g1, ... by number.
func LocalGroups(dataDir string) []string {
	ents, _ := os.ReadDir(filepath.Join(dataDir, "cluster"))
	var out []string
	for _, e := range ents {
		if e.IsDir() && (e.Name() == "meta" || strings.HasPrefix(e.Name(), "g")) {
			out = append(out, e.Name())
		}
	}
	order := func(name string) int {
		n, err := strconv.Atoi(strings.TrimPrefix(name, "g"))
		if err != nil {
			return -1
		}
		return n
	}
	slices.SortFunc(out, func(a, b string) int { return cmp.Compare(order(a), order(b)) })
	return out
}
