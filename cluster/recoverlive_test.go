package cluster

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRecoveredNodeRefusesWhileDroppedNodesAnswer: `tally cluster recover
// --keep n0` run on n0 while n1 and n2 were still up (the wrong ids: they
// were not lost) rewrote n0's groups to n0 alone; started again, n0 formed
// a cluster of its own beside n1 and n2, and n1 applied n0's recovery (its
// map then listed n0 alone, n1 and n2 as removed) and deleted its replica
// of the group, while n2 still led the group as n1, n2 and n0. A recovered node now asks the members its recovery
// drops before it opens anything, and refuses to start while one of them
// answers under its id.
func TestRecoveredNodeRefusesWhileDroppedNodesAnswer(t *testing.T) {
	w := newWipedCluster(t, 3, 1, 3)
	w.start(0, 1, 2)
	w.write(0, "before")
	w.stop(0)
	if _, err := Recover(RecoverOptions{DataDir: w.cfgs[0].DataDir, Keep: []string{"n0"}, Repo: w.repo}); err != nil {
		t.Fatal(err)
	}
	c, err := Open(w.cfgs[0], w.repo)
	if err == nil {
		w.cs[0] = c
		w.write(0, "split")
		t.Fatalf("n0, recovered as if n1 and n2 were lost, started while they run; a write acknowledged through n0 reads as count %v through n1 (want 1)", w.count(1, "split"))
	}
	for _, want := range []string{"n1", "not lost", "--node-id"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("refusal %q does not say %q", err, want)
		}
	}
	t.Log(err)
	if got := w.count(1, "before"); got != 1 {
		t.Fatalf("count %v through n1; want 1", got)
	}
}

// recoverAll stops every running node of w, then recovers node i's data
// dir to keep[i] (none for a node without an entry).
func (w *wipedCluster) recoverAll(keep map[int][]string) {
	w.t.Helper()
	for i, c := range w.cs {
		if c != nil {
			w.stop(i)
		}
	}
	for i, k := range keep {
		if _, err := Recover(RecoverOptions{DataDir: w.cfgs[i].DataDir, Keep: k, Repo: w.repo}); err != nil {
			w.t.Fatal(err)
		}
	}
}

// TestRecoveredNodesRefuseDifferentKeepSets: the survivors of a lost
// quorum recovered with different --keep sets (n2 lost; n0 recovered with
// --keep n0, n1 with --keep n0,n1), started together. Before, either both
// started (n0 asked n1 before n1's port listened: n0, a quorum alone, led
// and acknowledged writes alone and its recovery listed n1 as removed,
// while n1 waited over a configuration of n0 and n1 that n0 never joins),
// or n0 was refused as if n1 were a live member to stop for good, which
// loses every write only n1 held. A recovered node now asks the other
// members for their recovery, in rounds for a few seconds, and refuses
// while one answers with another keep set, naming both; nothing is
// written.
func TestRecoveredNodesRefuseDifferentKeepSets(t *testing.T) {
	w := newWipedCluster(t, 3, 1, 3)
	w.start(0, 1, 2)
	w.write(0, "before")
	w.stop(2) // lost for good
	w.recoverAll(map[int][]string{0: {"n0"}, 1: {"n0", "n1"}})
	version := storedMap(w.cfgs[0].DataDir).Version
	errs := w.startAsync(1, 0)
	got := map[string]string{}
	for range 2 {
		if err := <-errs; err != nil {
			got[err.Error()[:2]] = err.Error()
			t.Log(err)
		}
	}
	for i, c := range w.cs[:2] {
		if c != nil {
			w.write(i, "split")
			t.Fatalf("n%d, recovered with another --keep than its peer, started (its map: version %d, removed %v)", i, c.Map().Version, c.Map().Removed)
		}
	}
	for id, want := range map[string][]string{
		"n0": {"with --keep n0, but n1 was recovered with --keep n0,n1 (pending)", "tally cluster recover --data-dir"},
		"n1": {"with --keep n0,n1, but n0 was recovered with --keep n0 (pending)", "tally cluster recover --data-dir"},
	} {
		for _, w := range want {
			if !strings.Contains(got[id], w) {
				t.Errorf("%s's refusal %q does not say %q", id, got[id], w)
			}
		}
	}
	for i := range 2 {
		if in, err := readRecoveryIntent(w.cfgs[i].DataDir); in == nil || err != nil {
			t.Errorf("n%d's pending recovery: %v, %v", i, in, err)
		}
		if v := storedMap(w.cfgs[i].DataDir).Version; v != version {
			t.Errorf("n%d's map went from version %d to %d", i, version, v)
		}
	}
}

// TestRecoveredNodeRefusesAKeptNodeNotRecovered: n0 recovered with --keep
// n0,n1 but n1 not recovered (it still counts n2 as a voter of every
// group, and its log is not taken as committed): n0 refuses to start while
// n1 answers without a recovery, naming n1 and the command to run on it.
// Before, n0 started beside n1 and they formed the group.
func TestRecoveredNodeRefusesAKeptNodeNotRecovered(t *testing.T) {
	w := newWipedCluster(t, 3, 1, 3)
	w.start(0, 1, 2)
	w.write(0, "before")
	w.stop(2)
	w.recoverAll(map[int][]string{0: {"n0", "n1"}})
	w.cfgs[1].FormTimeout = 6 * time.Second // alone, n1 finds no quorum
	n1 := w.startAsync(1)
	c, err := Open(w.cfgs[0], w.repo)
	<-n1
	if err == nil {
		w.cs[0] = c
		t.Fatal("n0, recovered to n0,n1, started beside n1, not recovered")
	}
	for _, want := range []string{"without a recovery: n1", "recover --data-dir <its data dir> --keep n0,n1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	t.Log(err)
}

// TestRecoveredNodesWithOneKeepSetRecover: the same --keep on both
// survivors, started one after the other (n0 first, alone: it cannot
// elect before n1 comes): they agree, the map changes once, each records
// its finished recovery (which its hellos answer), and writes go on.
func TestRecoveredNodesWithOneKeepSetRecover(t *testing.T) {
	w := newWipedCluster(t, 3, 1, 3)
	w.start(0, 1, 2)
	w.write(0, "before")
	w.stop(2)
	w.recoverAll(map[int][]string{0: {"n0", "n1"}, 1: {"n0", "n1"}})
	w.start(0)
	w.start(1)
	w.write(1, "after")
	if got := w.count(0, "after"); got != 1 {
		t.Fatalf("after reads as count %v through n0; want 1", got)
	}
	if got := w.count(1, "before"); got != 1 {
		t.Fatalf("before reads as count %v through n1; want 1", got)
	}
	for i := range 2 {
		deadline := time.Now().Add(10 * time.Second)
		for r := w.cs[i].recovery.Load(); !r.Finished; r = w.cs[i].recovery.Load() {
			if time.Now().After(deadline) {
				t.Fatalf("n%d's recovery not finished in 10s", i)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if done := readFinishedRecovery(w.cfgs[i].DataDir); done == nil || !slices.Equal(done.Keep, []string{"n0", "n1"}) {
			t.Errorf("n%d's finished recovery: %+v", i, done)
		}
	}
}
