package cluster

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// spoilEntryOf flips a byte of the log entry of group dir's replica that
// holds user's write (its request id and record name the user).
func spoilEntryOf(t *testing.T, dir, user string) {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dir, "log", "*.wal"))
	for _, seg := range segs {
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, []byte(user)); i >= 0 {
			b[i] ^= 0xff
			if err := os.WriteFile(seg, b, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no entry of %s in the plain segments of %s", user, dir)
}

// writeAround writes users before-0..n-1 through node i, snapshots node
// snap's replica of group 0, then writes after-0..n-1; it returns the
// snapshot's index.
func (w *wipedCluster) writeAround(i, snap, n int) uint64 {
	w.t.Helper()
	for k := range n {
		w.write(i, fmt.Sprintf("before-%d", k))
	}
	rs, err := w.cs[snap].snapshotLocal(0)
	if err != nil {
		w.t.Fatal(err)
	}
	for k := range n {
		w.write(i, fmt.Sprintf("after-%d", k))
	}
	return rs.Index
}

// wantCounts fails the test unless every user of writeAround reads 1
// through node i, but those in lost, which read 0.
func (w *wipedCluster) wantCounts(i, n int, lost ...string) {
	w.t.Helper()
	for _, kind := range []string{"before", "after"} {
		for k := range n {
			user := fmt.Sprintf("%s-%d", kind, k)
			want := 1.0
			if strings.Contains(strings.Join(lost, " ")+" ", user+" ") {
				want = 0
			}
			if got := w.count(i, user); got != want {
				w.t.Errorf("%s: count %v, want %v", user, got, want)
			}
		}
	}
}

// refusedStart fails the test unless node i's start is refused, naming
// group's corrupt log.
func (w *wipedCluster) refusedStart(i int, group string) {
	w.t.Helper()
	err := <-w.startAsync(i)
	if err == nil {
		w.t.Fatalf("n%d started over a corrupt replica", i)
	}
	if !strings.Contains(err.Error(), "group "+group) || !strings.Contains(err.Error(), "corrupt") {
		w.t.Fatalf("refusal %q does not name group %s's corrupt log", err, group)
	}
	w.t.Logf("start before the repair: %v", err)
}

// TestRepairReplicaCoveredBySnapshot: with one replica per group, a
// corrupt entry in a data group's log that the replica's newest snapshot
// holds refused the node's start, and the only way back (replacing the
// node, or recover --accept-data-loss) lost the group: `tally admin wal
// repair` read only a single node's wal/. RepairReplica moves the log's
// front aside, keeping every entry after the snapshot; the node starts
// and serves every acknowledged write.
func TestRepairReplicaCoveredBySnapshot(t *testing.T) {
	w := newWipedCluster(t, 1, 1, 1)
	w.start(0)
	snap := w.writeAround(0, 0, 5)
	w.stop(0)
	spoilEntryOf(t, groupDir(w.cfgs[0].DataDir, "g0"), "before-2")
	w.refusedStart(0, "g0")

	rr, err := RepairReplica(w.cfgs[0].DataDir, "g0", false)
	if err != nil {
		t.Fatal(err)
	}
	if rr.SnapshotIndex != snap || rr.Front != snap+1 || rr.Cut != 0 || rr.Aside == "" {
		t.Fatalf("repair: %+v; want the log's front moved aside, starting at %d, nothing cut", rr, snap+1)
	}
	w.start(0)
	if first, _ := w.cs[0].group(0).rep.logs.FirstIndex(); first != snap+1 {
		t.Errorf("raft's first log index %d, want %d (the snapshot's next)", first, snap+1)
	}
	w.wantCounts(0, 5)
	w.write(0, "later")
	if got := w.count(0, "later"); got != 1 {
		t.Errorf("a write after the repair: count %v", got)
	}
}

// TestRepairReplicaRefusesACutWithReplicas: a corrupt entry after the
// snapshot of a replica of a group with three replicas is not cut, even
// with --accept-data-loss: the replica would vote having forgotten
// entries it acknowledged. The refusal says to replace the node, and the
// replica is left as it was.
func TestRepairReplicaRefusesACutWithReplicas(t *testing.T) {
	w := newWipedCluster(t, 3, 1, 3)
	w.start(0, 1, 2)
	w.writeAround(0, 2, 3)
	caughtUp := func() {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			lead := max(w.cs[0].group(0).rep.raft.LastIndex(), w.cs[1].group(0).rep.raft.LastIndex())
			if w.cs[2].group(0).rep.raft.LastIndex() >= lead {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("n2 did not catch up with group 0")
			}
		}
	}
	// A write of n2's after the spoiled one's (a spoiled last write reads
	// as torn, and Open cuts it).
	caughtUp()
	w.write(0, "tail")
	caughtUp()
	w.stop(2)
	dir := groupDir(w.cfgs[2].DataDir, "g0")
	spoilEntryOf(t, dir, "after-1")
	before := treeOf(t, w.cfgs[2].DataDir)
	for _, accept := range []bool{false, true} {
		rr, err := RepairReplica(w.cfgs[2].DataDir, "g0", accept)
		if err == nil {
			t.Fatalf("accept %v: repaired a cut of a group with 3 replicas: %+v", accept, rr)
		}
		t.Logf("accept %v: %v", accept, err)
		for _, want := range []string{"group g0", "3 replicas", "forgotten", "nothing was changed", "remove-node n2", "--cluster-join"} {
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("refusal %q does not say %q", err, want)
			}
		}
		if after := treeOf(t, w.cfgs[2].DataDir); after != before {
			t.Fatalf("the refused repair changed the data dir:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	}
}

// TestRepairReplicaCutsTheOnlyCopyWhenAccepted: with one replica per
// group, a corrupt entry after the snapshot is cut only with
// acceptDataLoss (without, the refusal says so and nothing changes); the
// node then starts and serves every write before the corruption.
func TestRepairReplicaCutsTheOnlyCopyWhenAccepted(t *testing.T) {
	w := newWipedCluster(t, 1, 1, 1)
	w.start(0)
	snap := w.writeAround(0, 0, 5)
	w.stop(0)
	spoilEntryOf(t, groupDir(w.cfgs[0].DataDir, "g0"), "after-2")
	w.refusedStart(0, "g0")

	before := treeOf(t, w.cfgs[0].DataDir)
	_, err := RepairReplica(w.cfgs[0].DataDir, "g0", false)
	if err == nil {
		t.Fatal("cut the only copy without --accept-data-loss")
	}
	t.Logf("without the flag: %v", err)
	for _, want := range []string{"group g0", "one replica", "only copy", "--accept-data-loss", "Nothing was changed"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("refusal %q does not say %q", err, want)
		}
	}
	if after := treeOf(t, w.cfgs[0].DataDir); after != before {
		t.Fatalf("the refused repair changed the data dir:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	rr, err := RepairReplica(w.cfgs[0].DataDir, "g0", true)
	if err != nil {
		t.Fatal(err)
	}
	if rr.Cut <= snap || rr.Replicas != 1 || rr.Aside == "" {
		t.Fatalf("repair: %+v; want a cut after the snapshot (%d)", rr, snap)
	}
	w.start(0)
	w.wantCounts(0, 5, "after-2", "after-3", "after-4")
	w.write(0, "later")
	if got := w.count(0, "later"); got != 1 {
		t.Errorf("a write after the repair: count %v", got)
	}
}

// TestRepairCutOfTheOnlyCopyStartsPastPeersMemory: the peers remember how
// far each replica got (restored.go), and a replica whose log holds less
// is refused as restored from a backup. A cut the operator accepted for a
// group's only copy (--accept-data-loss) holds less on purpose, so the
// repair gives the replica a new incarnation (before it cuts): the
// repaired node starts, in a cluster whose other nodes heard its reports.
func TestRepairCutOfTheOnlyCopyStartsPastPeersMemory(t *testing.T) {
	w := newWipedCluster(t, 3, 1, 1)
	w.start(0, 1, 2)
	h := -1
	for i, c := range w.cs {
		if c.group(0) != nil {
			h = i
		}
	}
	if h < 0 {
		t.Fatal("no node holds group 0")
	}
	w.writeAround(h, h, 5)
	w.waitReported(h, "g0")
	w.stop(h)
	spoilEntryOf(t, groupDir(w.cfgs[h].DataDir, "g0"), "after-2")
	w.refusedStart(h, "g0")
	if _, err := RepairReplica(w.cfgs[h].DataDir, "g0", true); err != nil {
		t.Fatal(err)
	}
	w.start(h)
	w.wantCounts(h, 5, "after-2", "after-3", "after-4")
	w.write(h, "later")
	if got := w.count(h, "later"); got != 1 {
		t.Errorf("a write after the repair: count %v", got)
	}
}
