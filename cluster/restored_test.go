package cluster

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/wal"
)

// Every test of the package runs with progress reports flowing, so that
// the restarts, moves, removals and recoveries they make are checked
// against them: a false refusal of a legitimate start fails them.
func init() { defaultProgressEvery = 100 * time.Millisecond }

// waitReported waits until every other running node of w remembers that
// node i's replica of group reported at least the index the most advanced
// replica of the group has applied now (node i catches up first: a write
// is acknowledged once a quorum has it, maybe without node i).
func (w *wipedCluster) waitReported(i int, group string) {
	w.t.Helper()
	replicaOf := func(c *Cluster) *replica {
		if group == "meta" {
			return c.meta
		}
		var g int
		fmt.Sscanf(group, "g%d", &g)
		if dg := c.group(g); dg != nil {
			return dg.rep
		}
		return nil
	}
	var want uint64
	for _, c := range w.cs {
		if c != nil && replicaOf(c) != nil {
			want = max(want, replicaOf(c).raft.AppliedIndex())
		}
	}
	rep := replicaOf(w.cs[i])
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		short := ""
		for j, c := range w.cs {
			if c == nil || j == i {
				continue
			}
			if got := remembered(c, w.cfgs[i].NodeID, group, rep.incarnation); got < want {
				short = fmt.Sprintf("n%d remembers index %d", j, got)
			}
		}
		if short == "" {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("n%d's replica of %s applied index %d, but after 10s %s", i, group, want, short)
		}
	}
}

// remembered is what c remembers of node's replica of group in
// incarnation inc.
func remembered(c *Cluster, node, group, inc string) uint64 {
	for _, mk := range c.book.of(node) {
		if mk.Group == group && mk.Incarnation == inc {
			return mk.Index
		}
	}
	return 0
}

// backupThenWrite writes to group 0 of w (nodes 0-2 running), stops node
// 1, copies its data dir (the backup), starts it again and writes five
// more: it returns the backup and the index its replica of g0 keeps.
func (w *wipedCluster) backupThenWrite() (backup string, kept uint64) {
	w.t.Helper()
	w.write(0, "before")
	w.stop(1)
	backup = w.t.TempDir()
	if err := os.CopyFS(backup, os.DirFS(w.cfgs[1].DataDir)); err != nil {
		w.t.Fatal(err)
	}
	kept, err := keptIndex(groupDir(backup, "g0"))
	if err != nil {
		w.t.Fatal(err)
	}
	w.start(1)
	for i := range 5 {
		w.write(0, fmt.Sprintf("after%d", i))
	}
	return backup, kept
}

// TestRestoredBackupIsRefused: n1's data dir restored from a backup taken
// before writes it acknowledged started as a node that was merely down:
// its replica of g0 lacked entries that counted in commit quorums
// (before the fix: "its g0 holds entries up to index 4, and it had
// applied (and acknowledged) up to 9 before it stopped"). Its start is now
// refused, naming the group, both indexes and the peer that remembers the
// higher one, and changes nothing; the data dir it ran with, put back,
// starts.
func TestRestoredBackupIsRefused(t *testing.T) {
	w := newWipedCluster(t, 3, 1, 3)
	w.start(0, 1, 2)
	backup, kept := w.backupThenWrite()
	w.waitReported(1, "g0")
	inc := w.cs[1].group(0).rep.incarnation
	w.stop(1)
	most := max(remembered(w.cs[0], "n1", "g0", inc), remembered(w.cs[2], "n1", "g0", inc))
	if most <= kept {
		t.Fatalf("the peers remember n1's g0 at index %d, not past the backup's %d: the test wrote nothing since", most, kept)
	}
	newer := t.TempDir() + "/newer"
	if err := os.Rename(w.cfgs[1].DataDir, newer); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(w.cfgs[1].DataDir, os.DirFS(backup)); err != nil {
		t.Fatal(err)
	}
	tree := treeOf(t, w.cfgs[1].DataDir)

	var err error
	done := make(chan error, 1)
	go func() {
		c, err := Open(w.cfgs[1], w.repo)
		if err == nil {
			w.cs[1] = c
		}
		done <- err
	}()
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("n1 over a restored data dir neither started nor was refused in 20s")
	}
	if err == nil {
		t.Fatalf("n1 started over a data dir restored from a backup: its g0 holds entries up to index %d, and the peers remember it applied up to %d", kept, most)
	}
	for _, want := range []string{"restored", "remove-node n1"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("refusal %q does not say %q", err, want)
		}
	}
	// A report in flight as n1 stopped may have raised what a peer remembers.
	var said, peer string
	var saidKept, saidMost uint64
	for part := range strings.SplitSeq(err.Error(), "; ") {
		if _, ok := strings.CutPrefix(part, "cluster: "); ok {
			part = strings.TrimPrefix(part, "cluster: ")
		}
		if n, _ := fmt.Sscanf(part, "group g0: this node's replica in %s holds entries up to index %d, but node %s remembers it applied up to index %d",
			&said, &saidKept, &peer, &saidMost); n == 4 {
			break
		}
	}
	if said != groupDir(w.cfgs[1].DataDir, "g0") || saidKept != kept || saidMost < most || (peer != "n0" && peer != "n2") {
		t.Fatalf("refusal %q does not say that group g0's replica in %s holds entries up to index %d, and that n0 or n2 remembers it applied up to index %d",
			err, groupDir(w.cfgs[1].DataDir, "g0"), kept, most)
	}
	t.Log(err)
	if got := treeOf(t, w.cfgs[1].DataDir); got != tree {
		t.Errorf("the refused start changed the data dir:\nbefore:\n%s\nafter:\n%s", tree, got)
	}

	if err := os.RemoveAll(w.cfgs[1].DataDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(newer, w.cfgs[1].DataDir); err != nil {
		t.Fatal(err)
	}
	w.start(1)
	w.stop(0)
	if got := w.count(1, "after4"); got != 1 {
		t.Fatalf("after4 reads as count %v on n1 over the data dir it ran with; want 1", got)
	}
}

// TestRestartAfterReportsIsNotRefused: the normal paths still start once
// the peers remember every replica's progress: a node restarted after
// writes, the whole cluster restarted at once (the peers answer from the
// progress they kept, before their own replicas open), and a node
// restarted while the group's leadership moved. Under the interval fsync
// policy too, where the log is synced before each report.
func TestRestartAfterReportsIsNotRefused(t *testing.T) {
	for _, sync := range []wal.SyncPolicy{wal.SyncAlways, wal.SyncInterval} {
		t.Run(fmt.Sprintf("sync%d", sync), func(t *testing.T) { restartAfterReports(t, sync) })
	}
}

func restartAfterReports(t *testing.T, sync wal.SyncPolicy) {
	w := newWipedCluster(t, 3, 1, 3)
	for i := range w.cfgs {
		w.cfgs[i].Sync = sync
	}
	w.start(0, 1, 2)
	for i := range 5 {
		w.write(0, fmt.Sprintf("a%d", i))
	}
	for i := range 3 {
		w.waitReported(i, "g0")
		w.waitReported(i, "meta")
	}
	w.stop(1)
	w.write(0, "b")
	w.start(1)
	w.write(1, "c")
	w.waitReported(1, "g0")

	w.stop(0)
	w.stop(1)
	w.stop(2)
	w.start(0, 1, 2)
	w.write(2, "d")
	if got := w.count(1, "a4"); got != 1 {
		t.Fatalf("a4 reads as count %v on n1 after the restarts; want 1", got)
	}
	if got := w.count(0, "d"); got != 1 {
		t.Fatalf("d reads as count %v on n0 after the restarts; want 1", got)
	}
}

// TestReplicaMovedAwayAndBackIsNotRefused: a replica moved away (its
// directory deleted) and placed back later starts under a new
// incarnation, so what the peers remember of the old one (reported before
// the move) does not refuse the node's restart.
func TestReplicaMovedAwayAndBackIsNotRefused(t *testing.T) {
	w := newWipedCluster(t, 4, 1, 3)
	w.start(0, 1, 2, 3)
	if rs := w.cs[0].Map().Groups[0].Replicas; !slices.Contains(rs, "n1") || slices.Contains(rs, "n3") {
		t.Fatalf("g0's replicas are %v; the test moves n1's to n3 and back", rs)
	}
	for i := range 5 {
		w.write(0, fmt.Sprintf("a%d", i))
	}
	w.waitReported(1, "g0")
	old := w.cs[1].group(0).rep.incarnation
	move := func(from, to string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := w.cs[0].MoveReplica(ctx, Move{Group: 0, From: from, To: to}); err != nil {
			t.Fatalf("move g0 from %s to %s: %v", from, to, err)
		}
	}
	move("n1", "n3")
	w.write(0, "b")
	move("n3", "n1")
	for deadline := time.Now().Add(10 * time.Second); w.cs[1].group(0) == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("g0 not placed back on n1 in 10s")
		}
	}
	if inc := w.cs[1].group(0).rep.incarnation; inc == old {
		t.Fatalf("g0's replica placed back on n1 kept its incarnation %s", inc)
	}
	w.write(0, "c")
	w.waitReported(1, "g0")
	w.stop(1)
	w.start(1)
	w.stop(0)
	if got := w.count(1, "c"); got != 1 {
		t.Fatalf("c reads as count %v on n1; want 1", got)
	}
}

// TestStopReportsItsFinalProgress: a node that stops reports its
// replicas' progress once more, after its replicas stopped applying, so a
// backup taken since its last periodic report and restored after a
// planned stop is refused too. With reports an hour apart, only the stop's
// report tells the peers: before, the restored n1 started (its g0 held
// entries up to the backup's index, fewer than it applied and
// acknowledged before it stopped).
func TestStopReportsItsFinalProgress(t *testing.T) {
	w := newWipedCluster(t, 3, 1, 3)
	for i := range w.cfgs {
		w.cfgs[i].ProgressEvery = time.Hour
	}
	w.start(0, 1, 2)
	backup, kept := w.backupThenWrite()
	// n1 applies what the group committed before it stops: wait for it.
	for deadline := time.Now().Add(10 * time.Second); w.cs[1].group(0).rep.raft.AppliedIndex() < w.cs[0].group(0).rep.raft.AppliedIndex(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("n1 did not apply g0's writes in 10s")
		}
	}
	inc := w.cs[1].group(0).rep.incarnation
	w.stop(1)
	most := max(remembered(w.cs[0], "n1", "g0", inc), remembered(w.cs[2], "n1", "g0", inc))
	if most <= kept {
		t.Fatalf("after n1's stop, its peers remember its g0 at index %d, not past the backup's %d: the stop reported nothing", most, kept)
	}
	if err := os.RemoveAll(w.cfgs[1].DataDir); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(w.cfgs[1].DataDir, os.DirFS(backup)); err != nil {
		t.Fatal(err)
	}
	c, err := Open(w.cfgs[1], w.repo)
	if err == nil {
		w.cs[1] = c
		t.Fatalf("n1 started over a backup taken after its last periodic report: its g0 holds entries up to index %d, and it applied up to %d before its stop", kept, most)
	}
	if !strings.Contains(err.Error(), "restored") {
		t.Fatalf("refusal %q does not say the data dir was restored", err)
	}
}
