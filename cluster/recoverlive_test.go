package cluster

import (
	"strings"
	"testing"
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
