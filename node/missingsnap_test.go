package node

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/wal"
)

// TestMissingSnapshotRefusalSaysWhatToDo: a data dir whose snapshots were
// deleted after the log's front was dropped is refused at start (the log
// alone cannot rebuild the state); the refusal said only "a snapshot is
// missing". It now names the snapshots directory and what works: put the
// snapshot back, or start over with the data dir moved aside.
func TestMissingSnapshotRefusalSaysWhatToDo(t *testing.T) {
	in, cfg, repo, opts := rollingNode(t, 4)
	dir := cfg.DataDir
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	snaps := filepath.Join(dir, "snapshots")
	if err := os.RemoveAll(snaps); err != nil {
		t.Fatal(err)
	}
	in, err := Open(cfg, repo, opts)
	if err == nil {
		in.Close()
		t.Fatal("a data dir whose log's front was dropped and whose snapshots were deleted was opened; want it refused")
	}
	for _, want := range []string{"a snapshot is missing", snaps, "put", "move " + dir + " aside"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("refusal %q does not say %q", err, want)
		}
	}
	t.Log(err)
}

// rollingNode opens a node on a new data dir whose log rolls every few
// records and gives it 160 ingests of users u0..u4 in rounds of 40,
// snapshotting after each of the first snaps rounds (records 40, 80, ...).
func rollingNode(t *testing.T, snaps int) (*Instance, Config, *features.Repo, OpenOptions) {
	t.Helper()
	cfg := openCfg(t.TempDir(), "always", false)
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	clk := &testClock{}
	clk.set(t0)
	opts := OpenOptions{Node: Options{Clock: clk.now, RepoFS: features.DefaultFS()},
		WAL: func(o *wal.Options) { o.SegmentSize = 4096 }} // roll often: the front has segments to drop
	in, err := Open(cfg, repo, opts)
	if err != nil {
		t.Fatal(err)
	}
	for round := range 4 {
		for i := range 40 {
			userTxn(t, in.Node, "u"+strconv.Itoa(i%5), float64(round*40+i+1))
		}
		if round < snaps {
			if _, err := in.Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return in, cfg, repo, opts
}

// userSums is the amt_sum_1h on n of each of the users prefix0..prefix4.
func userSums(t testing.TB, n *Node, prefix string) map[string]float64 {
	t.Helper()
	sums := map[string]float64{}
	for i := range 5 {
		u := prefix + strconv.Itoa(i)
		sums[u] = sum1h(t, n, u)
	}
	return sums
}

// checkSums fails t for each user of want whose amt_sum_1h on n differs
// (when says after what).
func checkSums(t testing.TB, n *Node, want map[string]float64, when string) {
	t.Helper()
	for u, w := range want {
		if got := sum1h(t, n, u); got != w {
			t.Errorf("%s amt_sum_1h = %v%s, want %v", u, got, when, w)
		}
	}
}

// segmentsAfterASnapshot fills a node whose log rolls every few records
// with 160 ingests of 5 users, snapshotting after 40 and 80 (records 40 and
// 80), closes it, and returns its config, repo, options, the log's files
// in order and each user's amt_sum_1h.
func segmentsAfterASnapshot(t *testing.T) (Config, *features.Repo, OpenOptions, []string, map[string]float64) {
	t.Helper()
	in, cfg, repo, opts := rollingNode(t, 2)
	sums := userSums(t, in.Node, "u")
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(filepath.Join(cfg.DataDir, "wal"))
	if err != nil {
		t.Fatal(err)
	}
	var segs []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".wal") || strings.HasSuffix(e.Name(), ".wal.zst") {
			segs = append(segs, e.Name())
		}
	}
	return cfg, repo, opts, segs, sums
}

// segmentFirst is the first record of the log segment file name.
func segmentFirst(t *testing.T, name string) uint64 {
	t.Helper()
	first, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSuffix(name, ".zst"), ".wal"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return first
}

// TestRemovedSegmentsAreNamedNotASnapshot: the log's segments holding the
// records after the newest snapshot (81 on), removed by hand with every
// segment before them, while both snapshots stay. The start refused, but
// said "a snapshot is missing" and told the operator to put back a
// snapshot 00000000000000000100.snap that never existed; it now names the
// records and the log's directory, and putting the segments back starts.
func TestRemovedSegmentsAreNamedNotASnapshot(t *testing.T) {
	cfg, repo, opts, segs, sums := segmentsAfterASnapshot(t)
	walDir := filepath.Join(cfg.DataDir, "wal")
	aside := t.TempDir()
	var moved []string
	for _, name := range segs {
		if segmentFirst(t, name) > 81 {
			break
		}
		if err := os.Rename(filepath.Join(walDir, name), filepath.Join(aside, name)); err != nil {
			t.Fatal(err)
		}
		moved = append(moved, name)
	}
	first := segmentFirst(t, segs[len(moved)])
	in, err := Open(cfg, repo, opts)
	if err == nil {
		in.Close()
		t.Fatalf("a log whose records 81 to %d were removed was opened; want it refused", first-1)
	}
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{fmt.Sprintf("records 81 to %d", first-1), "00000000000000000080.snap", "segments", walDir} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal does not say %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "a snapshot is missing") {
		t.Errorf("refusal blames a missing snapshot, while both are in place and the log's segments were removed: %s", msg)
	}
	for _, name := range moved {
		if err := os.Rename(filepath.Join(aside, name), filepath.Join(walDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	in, err = Open(cfg, repo, opts)
	if err != nil {
		t.Fatalf("start with the segments put back: %v", err)
	}
	defer in.Close()
	checkSums(t, in.Node, sums, " after the segments were put back")
}

// TestRemovedMiddleSegmentIsNamed: one sealed segment after the newest
// snapshot removed by hand. The start refused with "corrupt record at
// <the segment before> ... segment ends before index N" and the repair
// advice, and the repair moves every record after the gap aside; it now
// names the records and the file that held them, to put back first, and
// putting it back starts with every record.
func TestRemovedMiddleSegmentIsNamed(t *testing.T) {
	cfg, repo, opts, segs, sums := segmentsAfterASnapshot(t)
	walDir := filepath.Join(cfg.DataDir, "wal")
	i := 0
	for i+1 < len(segs) && segmentFirst(t, segs[i+1]) <= 81 {
		i++
	}
	if i == 0 || i+2 >= len(segs) {
		t.Fatalf("want a sealed segment holding record 81 between two others: %v", segs)
	}
	name := segs[i] // holds record 81: the replay reads it
	next := segmentFirst(t, segs[i+1])
	aside := filepath.Join(t.TempDir(), name)
	if err := os.Rename(filepath.Join(walDir, name), aside); err != nil {
		t.Fatal(err)
	}
	in, err := Open(cfg, repo, opts)
	if err == nil {
		in.Close()
		t.Fatalf("a log without %s was opened; want it refused", name)
	}
	msg := err.Error()
	t.Log(msg)
	for _, want := range []string{fmt.Sprintf("records %d to %d are in no segment", segmentFirst(t, name), next-1),
		"put the segment file " + name + " back into " + walDir, "wal repair"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal does not say %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "corrupt record") {
		t.Errorf("refusal calls a removed segment a corrupt record: %s", msg)
	}
	if err := os.Rename(aside, filepath.Join(walDir, name)); err != nil {
		t.Fatal(err)
	}
	in, err = Open(cfg, repo, opts)
	if err != nil {
		t.Fatalf("start with %s put back: %v", name, err)
	}
	defer in.Close()
	checkSums(t, in.Node, sums, " after "+name+" was put back")
}
