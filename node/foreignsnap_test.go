package node

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/store"
)

// TestSnapshotOfAnotherNodeIsRefused: a snapshot copied into a node's
// snapshots directory from another node of the same repo (a backup put
// back into the wrong data dir, a directory copied between hosts) verified
// and, being the newest, was restored: the node served the other node's
// card holders, and this node's acknowledged events before the snapshot's
// index were gone, without a word (a0's amt_sum_1h read 87 instead of
// 235). Whether the other node's snapshot index is inside this node's log
// or beyond its end (then the log was continued after it with fillers),
// the start is now refused naming the snapshot; moved out, the node starts
// from its own snapshot and log with every event.
func TestSnapshotOfAnotherNodeIsRefused(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	clk := &testClock{}
	clk.set(t0)
	opts := OpenOptions{Node: Options{Clock: clk.now, RepoFS: features.DefaultFS()}}
	// fill gives a new data dir n ingests of users prefix0..prefix4 with a
	// snapshot after snapAt, and returns its config and each user's sum.
	fill := func(prefix string, n, snapAt int) (Config, map[string]float64) {
		cfg := openCfg(t.TempDir(), "always", false)
		in, err := Open(cfg, repo, opts)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			userTxn(t, in.Node, prefix+strconv.Itoa(i%5), float64(i+1))
			if i+1 == snapAt {
				if _, err := in.Snapshot(); err != nil {
					t.Fatal(err)
				}
			}
		}
		sums := userSums(t, in.Node, prefix)
		if err := in.Close(); err != nil {
			t.Fatal(err)
		}
		return cfg, sums
	}
	for _, tc := range []struct {
		name   string
		otherN int // the other node's records, and its snapshot's index
	}{
		{"inside this node's log", 40},
		{"beyond this node's log", 80},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, sums := fill("a", 50, 20)
			b, _ := fill("b", tc.otherN, tc.otherN)
			name := filepath.Join("snapshots", "000000000000000000"+strconv.Itoa(tc.otherN)+".snap")
			data, err := os.ReadFile(filepath.Join(b.DataDir, name))
			if err != nil {
				t.Fatal(err)
			}
			copied := filepath.Join(a.DataDir, name)
			if err := os.WriteFile(copied, data, 0o644); err != nil {
				t.Fatal(err)
			}
			in, err := Open(a, repo, opts)
			if err == nil {
				got := sum1h(t, in.Node, "a0")
				in.Close()
				t.Fatalf("a node with another node's snapshot copied in started (a0's amt_sum_1h %v, acknowledged %v); want it refused", got, sums["a0"])
			}
			t.Log(err)
			if !errors.Is(err, store.ErrForeignSnapshot) || !strings.Contains(err.Error(), copied) || !strings.Contains(err.Error(), "move it out") {
				t.Fatalf("refusal does not name the snapshot and what to do: %v", err)
			}
			if _, err := os.Stat(copied); err != nil {
				t.Fatalf("the refused snapshot was not left in place: %v", err)
			}
			if err := os.Rename(copied, filepath.Join(t.TempDir(), "moved.snap")); err != nil {
				t.Fatal(err)
			}
			in, err = Open(a, repo, opts)
			if err != nil {
				t.Fatalf("start with the other node's snapshot moved out: %v", err)
			}
			defer in.Close()
			checkSums(t, in.Node, sums, "")
		})
	}
}
