package systemtest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/ring"
	"github.com/tally-ml/tally/systemtest/harness"
	"github.com/tally-ml/tally/wal"
)

// tallyCtl runs the tally binary with args and returns its stdout, stderr
// and exit code.
func tallyCtl(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, harness.Binary(t), args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("tally %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

// checkResult is the JSON of `tally cluster check --json`.
type checkResult struct {
	OK     bool `json:"ok"`
	Groups []struct {
		Group    int    `json:"group"`
		Index    uint64 `json:"index"`
		OK       bool   `json:"ok"`
		Error    string `json:"error"`
		Replicas []struct {
			Node     string `json:"node"`
			Checksum string `json:"checksum"`
			Error    string `json:"error"`
		} `json:"replicas"`
		Differ []struct {
			Partition int      `json:"partition"`
			Odd       []string `json:"odd"`
			Majority  bool     `json:"majority"`
		} `json:"differ"`
	} `json:"groups"`
	Advice string `json:"advice"`
}

// groupOfKey is the group of key in a cluster of groups groups (the
// cluster map's placement: partition mod groups).
func groupOfKey(key string, groups int) (group int, partition int) {
	p := int(ring.Partition(ring.HashString(key)))
	return p % groups, p
}

// tamperAmount rewrites, in the stopped node's Raft log of one group, the
// first command entry holding the f64 from as to: the entry and every later
// one are stored again through the log's own writer, so every frame's
// checksum is right and the node starts as if nothing happened (bit rot
// under a checksum, or a bad copy). It returns the tampered entry's index.
func tamperAmount(t *testing.T, dir string, from, to float64) uint64 {
	t.Helper()
	rs, err := wal.OpenRaftStore(dir, wal.Options{SegmentSize: 16 << 20, Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	first, _ := rs.FirstIndex()
	last, _ := rs.LastIndex()
	pat := binary.LittleEndian.AppendUint64([]byte{1}, math.Float64bits(from))
	repl := binary.LittleEndian.AppendUint64([]byte{1}, math.Float64bits(to))
	var logs []*raft.Log
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := rs.GetLog(i, &l); err != nil {
			t.Fatalf("read entry %d of %s: %v", i, dir, err)
		}
		if len(logs) == 0 {
			if l.Type != raft.LogCommand || !bytes.Contains(l.Data, pat) {
				continue
			}
			l.Data = bytes.Replace(l.Data, pat, repl, 1)
		}
		logs = append(logs, &l)
	}
	if len(logs) == 0 {
		t.Fatalf("no entry of %s (%d..%d) holds the amount %g", dir, first, last, from)
	}
	if err := rs.StoreLogs(logs); err != nil {
		t.Fatalf("rewrite entries %d..%d: %v", logs[0].Index, last, err)
	}
	return logs[0].Index
}

// TestClusterCtlCheckAndSnapshot: `tally cluster check` (the real binary)
// exits 0 on a cluster taking writes and on an untouched one; after one
// replica's Raft log is tampered with (an event's amount changed, every
// checksum of the log fixed up) and its node restarted, check exits 1 and
// names that node, that group and that partition, and only that group
// fails. `tally cluster snapshot` then snapshots every replica, and
// reports a replica with nothing new as such, not as a failure.
func TestClusterCtlCheckAndSnapshot(t *testing.T) {
	const groups = 4
	c := startCluster(t, 3, groups, 3)
	addr := "--addr=" + c.nodes[2].URL

	// Check under load: the checkpoint is one index, whatever the writers do.
	l := startLoad(t, c, "ctl", 4, 0, 1, 2)
	l.waitAcked(40, time.Minute)
	t0 := time.Now()
	out, errOut, code := tallyCtl(t, "cluster", "check", addr)
	if code != 0 {
		t.Fatalf("check under load: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("check under load (4 groups, 3 replicas): %s, the process included", time.Since(t0).Round(time.Millisecond))
	if n := strings.Count(out, " ok\n"); n != groups*3 {
		t.Fatalf("check under load: %d replicas ok, want %d:\n%s", n, groups*3, out)
	}
	l.waitAcked(20, time.Minute)
	l.halt()
	c.waitConverged(time.Minute)
	l.check()

	// One event with an amount found nowhere else, for a user whose
	// group holds neither its merchant's nor its country's key.
	const amount = 777.25
	mg, _ := groupOfKey("ctl-merchant", groups)
	cg, _ := groupOfKey("FR", groups)
	var user string
	var g, part int
	for i := 0; ; i++ {
		user = fmt.Sprintf("ctl-tampered-%d", i)
		if g, part = groupOfKey(user, groups); g != mg && g != cg {
			break
		}
	}
	ev := fmt.Sprintf(`{"user_id":%q,"merchant":"ctl-merchant","category":"food","amt":%g,"country":"FR","lat":1,"long":2,"timestamp":%d}`, user, amount, time.Now().UnixMilli())
	if _, err := c.nodes[0].Client.IngestBulk(context.Background(), "transactions", []byte(ev), client.WriteOptions{RequestID: "ctl-tamper"}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = tallyCtl(t, "cluster", "check", addr, "--json")
	var res checkResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || !res.OK || len(res.Groups) != groups {
		t.Fatalf("check of an untouched cluster: exit %d\n%s%s", code, out, errOut)
	}

	// Tamper with node 1's copy of group g.
	victim := c.nodes[1]
	if err := victim.Stop(); err != nil {
		t.Fatal(err)
	}
	ix := tamperAmount(t, filepath.Join(victim.DataDir, "cluster", fmt.Sprintf("g%d", g)), amount, amount+1)
	t.Logf("tampered with entry %d of group %d on n1 (user %s, partition %d)", ix, g, user, part)
	victim.Restart()

	out, errOut, code = tallyCtl(t, "cluster", "check", addr)
	if code != 1 {
		t.Fatalf("check after tampering: exit %d, want 1\n%s%s", code, out, errOut)
	}
	t.Logf("check after tampering:\n%s%s", out, errOut)
	if want := fmt.Sprintf("group %d partition %d: n1 differs from the majority", g, part); !strings.Contains(out, want) {
		t.Fatalf("check after tampering does not say %q:\n%s", want, out)
	}
	if !strings.Contains(out, "DIFFERS in 1 partition(s)") || strings.Count(out, "DIFFERS") != 1 || !strings.Contains(errOut, "move-replica") {
		t.Fatalf("check after tampering: want exactly n1 of group %d named, and what to do:\n%s%s", g, out, errOut)
	}
	out, _, code = tallyCtl(t, "cluster", "check", addr, "--json", fmt.Sprint("--group=", g))
	res = checkResult{}
	if code != 1 || json.Unmarshal([]byte(out), &res) != nil || len(res.Groups) != 1 || len(res.Groups[0].Differ) != 1 {
		t.Fatalf("check --group %d --json: exit %d\n%s", g, code, out)
	}
	if d := res.Groups[0].Differ[0]; d.Partition != part || !d.Majority || len(d.Odd) != 1 || d.Odd[0] != "n1" {
		t.Fatalf("check --group %d --json names %+v, want partition %d, n1 the odd one", g, d, part)
	}
	if _, _, code = tallyCtl(t, "cluster", "check", addr, fmt.Sprint("--group=", (g+1)%groups)); code != 0 {
		t.Fatalf("check of an untouched group: exit %d", code)
	}
	if _, errOut, code = tallyCtl(t, "cluster", "check", addr, "--group=99"); code != 1 || !strings.Contains(errOut, "no group 99") {
		t.Fatalf("check --group 99: exit %d: %s", code, errOut)
	}
	if _, _, code = tallyCtl(t, "cluster", "check", addr, "--group=x"); code != 2 {
		t.Fatalf("check --group x: exit %d, want 2 (usage)", code)
	}

	// Snapshots: every replica takes one; at once again, nothing is new.
	type snapRes struct {
		OK        bool `json:"ok"`
		Snapshots []struct {
			Group int    `json:"group"`
			Node  string `json:"node"`
			Index uint64 `json:"index"`
			Note  string `json:"note"`
			Error string `json:"error"`
		} `json:"snapshots"`
	}
	out, errOut, code = tallyCtl(t, "cluster", "snapshot", addr, "--json")
	var sr snapRes
	if code != 0 || json.Unmarshal([]byte(out), &sr) != nil || !sr.OK || len(sr.Snapshots) != groups*3 {
		t.Fatalf("snapshot: exit %d\n%s%s", code, out, errOut)
	}
	taken := map[string]uint64{}
	for _, s := range sr.Snapshots {
		if s.Index == 0 || s.Error != "" {
			t.Fatalf("snapshot of group %d on %s: index %d, error %q", s.Group, s.Node, s.Index, s.Error)
		}
		taken[fmt.Sprint(s.Group, s.Node)] = s.Index
	}
	out, errOut, code = tallyCtl(t, "cluster", "snapshot", addr, "--group=0")
	if code != 0 || strings.Count(out, "\n0 ") != 3 {
		t.Fatalf("snapshot --group 0: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "nothing new to snapshot") {
		t.Fatalf("a second snapshot right after the first reports no replica with nothing new:\n%s", out)
	}

	// inspect, on a running node (no lock, read-only) and a stopped one:
	// every group's log reaches its snapshot, which is the one just taken.
	for _, stop := range []bool{false, true} {
		nd := c.nodes[0]
		if stop {
			if err := nd.Stop(); err != nil {
				t.Fatal(err)
			}
		}
		before := treeSizes(t, nd.DataDir)
		out, errOut, code = tallyCtl(t, "admin", "inspect", "--data-dir", nd.DataDir, "--json")
		var ir inspectJSON
		if code != 0 || json.Unmarshal([]byte(out), &ir) != nil || ir.Single != nil || len(ir.Groups) != groups+1 || ir.Groups[0].Name != "meta" {
			t.Fatalf("inspect (stopped %v): exit %d\n%s%s", stop, code, out, errOut)
		}
		for _, gl := range ir.Groups[1:] {
			want := taken[fmt.Sprint(gl.Name[1:], "n0")]
			if len(gl.Snapshots) == 0 || gl.Snapshots[0].Index < want || gl.Log.Log.Last < gl.Snapshots[0].Index || gl.Log.Log.First != 1 || gl.Log.Term == 0 {
				t.Fatalf("inspect (stopped %v) of %s: %+v, want a snapshot at %d within the log", stop, gl.Name, gl, want)
			}
		}
		if stop {
			if after := treeSizes(t, nd.DataDir); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("inspect changed the stopped node's data dir:\n%v\n%v", before, after)
			}
		}
		out, _, code = tallyCtl(t, "admin", "inspect", "--data-dir", nd.DataDir)
		if code != 0 || !strings.Contains(out, "cluster node: ") || !strings.Contains(out, "\ng3 ") {
			t.Fatalf("inspect table: exit %d\n%s", code, out)
		}
		t.Logf("inspect (stopped %v):\n%s", stop, out)
	}
}

// inspectJSON is the JSON of `tally admin inspect --json`.
type inspectJSON struct {
	Single *struct {
		WAL struct {
			First, Last uint64
			Segments    []struct{ Name string }
		} `json:"wal"`
	} `json:"single"`
	Groups []struct {
		Name string `json:"name"`
		Log  struct {
			Log struct {
				First uint64 `json:"first"`
				Last  uint64 `json:"last"`
			} `json:"log"`
			Term uint64 `json:"term"`
		} `json:"log"`
		Snapshots []struct {
			Index uint64 `json:"index"`
		} `json:"snapshots"`
	} `json:"groups"`
}

// treeSizes is every file's path and size under dir.
func treeSizes(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				out[p] = fi.Size()
			}
		}
		return nil
	})
	return out
}

// TestAdminInspectSingle: `tally admin inspect` describes a single node's
// log (running and stopped: the stopped node's log reaches at least as far
// as what the running one reported), `wal repair --json` answers in JSON
// like the rest of the tree, and inspect refuses a directory holding no
// tally data (exit 1) and bad flags (exit 2).
func TestAdminInspectSingle(t *testing.T) {
	nd := harness.Start(t, harness.Options{})
	for i := range 20 {
		if _, err := nd.Client.IngestBulk(context.Background(), "transactions", []byte(clusterEvent(fmt.Sprint("u", i), "m", "FR", 1)), client.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// tally cluster against a single node, or nothing: exit 3.
	if _, errOut, code := tallyCtl(t, "cluster", "check", "--addr="+nd.URL); code != 3 || !strings.Contains(errOut, "no cluster API") {
		t.Fatalf("check against a single node: exit %d: %s", code, errOut)
	}
	if _, errOut, code := tallyCtl(t, "cluster", "snapshot", "--addr=127.0.0.1:1", "--timeout=5s"); code != 3 || !strings.Contains(errOut, "no answer from") {
		t.Fatalf("snapshot with no node at --addr: exit %d: %s", code, errOut)
	}
	var running inspectJSON
	out, errOut, code := tallyCtl(t, "admin", "inspect", "--data-dir", nd.DataDir, "--json")
	if code != 0 || json.Unmarshal([]byte(out), &running) != nil || running.Single == nil || running.Single.WAL.Last < 20 || len(running.Single.WAL.Segments) == 0 || running.Groups != nil {
		t.Fatalf("inspect of a running single node: exit %d\n%s%s", code, out, errOut)
	}
	if err := nd.Stop(); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = tallyCtl(t, "admin", "inspect", "--data-dir", nd.DataDir)
	if code != 0 || !strings.Contains(out, "single node: wal ") || !strings.Contains(out, fmt.Sprintf("records %d..", running.Single.WAL.First)) {
		t.Fatalf("inspect of a stopped single node: exit %d\n%s%s", code, out, errOut)
	}
	var rep struct {
		Kept    uint64 `json:"kept"`
		MovedTo string `json:"movedTo"`
	}
	out, errOut, code = tallyCtl(t, "admin", "wal", "repair", "--data-dir", nd.DataDir, "--json")
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Kept < 20 || rep.MovedTo != "" {
		t.Fatalf("wal repair --json of a clean log: exit %d\n%s%s", code, out, errOut)
	}
	if _, errOut, code = tallyCtl(t, "admin", "inspect", "--data-dir", t.TempDir()); code != 1 || !strings.Contains(errOut, "holds no tally data") {
		t.Fatalf("inspect of an empty dir: exit %d: %s", code, errOut)
	}
	if _, _, code = tallyCtl(t, "admin", "inspect", "--data-dri", "x"); code != 2 {
		t.Fatalf("inspect with a misspelt flag: exit %d, want 2", code)
	}
}

// TestClusterCtlTransferLeader: `tally cluster transfer-leader` moves a
// group's leadership to the named replica while clients write, and it
// stays there past the cluster's periodic hand-back to the preferred
// leader; without --to another replica takes over; a node that is not a
// replica, or is down, is refused (exit 1) and the leader stays; no
// --group is a usage error (exit 2). No acknowledged write is lost or
// counted twice.
func TestClusterCtlTransferLeader(t *testing.T) {
	const groups = 4
	c := startCluster(t, 3, groups, 3)
	addr := "--addr=" + c.nodes[0].URL
	l := startLoad(t, c, "tl", 3, 0, 1, 2)
	l.waitAcked(20, time.Minute)

	type result struct {
		Group    int      `json:"group"`
		From     string   `json:"from"`
		To       string   `json:"to"`
		Replicas []string `json:"replicas"`
	}
	transfer := func(args ...string) (result, string, int) {
		out, errOut, code := tallyCtl(t, append([]string{"cluster", "transfer-leader", addr, "--json"}, args...)...)
		var r result
		if code == 0 {
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("transfer-leader %v: %v\n%s", args, err, out)
			}
		}
		return r, errOut, code
	}
	r, errOut, code := transfer("--group=1", "--to=n2")
	if code != 0 || r.To != "n2" || len(r.Replicas) != 3 || r.Replicas[0] != "n2" {
		t.Fatalf("transfer-leader --group 1 --to n2: exit %d, %+v: %s", code, r, errOut)
	}
	if li := c.leaderOf(1); li != 2 {
		t.Fatalf("after the transfer node %d leads group 1, want 2", li)
	}
	// The hand-back to the preferred leader runs every 5 s: n2 is now the
	// preferred one, so it keeps the group.
	time.Sleep(6 * time.Second)
	if li := c.leaderOf(1); li != 2 {
		t.Fatalf("6 s after the transfer node %d leads group 1, want 2 (the hand-back undid it)", li)
	}
	// --cluster-id naming another cluster: every node refuses, changing
	// nothing (an operator's command sent to the wrong cluster's address).
	if _, errOut, code = transfer("--group=1", "--to=n0", "--cluster-id=staging"); code != 1 || !strings.Contains(errOut, "WRONG_CLUSTER") || !strings.Contains(errOut, `belongs to cluster "systemtest", not "staging"`) {
		t.Fatalf("transfer-leader --cluster-id staging on cluster systemtest: exit %d: %s", code, errOut)
	}
	if li := c.leaderOf(1); li != 2 {
		t.Fatalf("a transfer refused for another --cluster-id moved group 1's leadership to node %d", li)
	}
	if _, errOut, code := tallyCtl(t, "cluster", "status", addr, "--cluster-id=staging"); code != 1 || !strings.Contains(errOut, "WRONG_CLUSTER") {
		t.Fatalf("status --cluster-id staging: exit %d: %s", code, errOut)
	}
	if out, errOut, code := tallyCtl(t, "cluster", "status", addr, "--cluster-id=systemtest"); code != 0 {
		t.Fatalf("status --cluster-id systemtest: exit %d: %s%s", code, out, errOut)
	}
	l.waitAcked(20, time.Minute)

	r, errOut, code = transfer("--group=1")
	if code != 0 || r.From != "n2" || r.To == "n2" || r.To == "" || r.Replicas[0] != r.To {
		t.Fatalf("transfer-leader --group 1: exit %d, %+v: %s", code, r, errOut)
	}
	if li := c.leaderOf(1); fmt.Sprintf("n%d", li) != r.To {
		t.Fatalf("after the transfer to %s node %d leads group 1", r.To, li)
	}
	lead := c.leaderOf(1)

	if _, errOut, code = transfer("--group=1", "--to=n9"); code != 1 || !strings.Contains(errOut, "not a replica of group 1") {
		t.Fatalf("transfer to a non-replica: exit %d: %s", code, errOut)
	}
	down := (lead + 1) % 3
	addr = "--addr=" + c.nodes[lead].URL
	if err := c.nodes[down].Stop(); err != nil {
		t.Fatal(err)
	}
	l.setNodes(others(3, down)...)
	if _, errOut, code = transfer("--group=1", fmt.Sprintf("--to=n%d", down)); code != 1 || !strings.Contains(errOut, "does not answer") {
		t.Fatalf("transfer to a stopped node: exit %d: %s", code, errOut)
	}
	if li := c.leaderOf(1); li != lead {
		t.Fatalf("a refused transfer moved the leadership from node %d to %d", lead, li)
	}
	// check with a node down: its replicas do not answer, which is exit 1.
	if out, errOut, code := tallyCtl(t, "cluster", "check", addr); code != 1 || !strings.Contains(errOut, "did not answer") || !strings.Contains(out, fmt.Sprintf("n%d", down)) {
		t.Fatalf("check with node %d down: exit %d\n%s%s", down, code, out, errOut)
	}
	if out, errOut, code := tallyCtl(t, "cluster", "snapshot", addr, "--group=1"); code != 1 || strings.Count(out, "FAILED") != 1 || strings.Count(out, "\n1 ") != 3 {
		t.Fatalf("snapshot with node %d down: exit %d, want 1 with one of the 3 replicas failed\n%s%s", down, code, out, errOut)
	}
	if _, errOut, code = tallyCtl(t, "cluster", "transfer-leader", addr); code != 2 || !strings.Contains(errOut, "--group is required") {
		t.Fatalf("transfer-leader without --group: exit %d: %s", code, errOut)
	}
	c.nodes[down].Restart()
	l.setNodes(0, 1, 2)
	l.waitAcked(20, time.Minute)
	l.halt()
	c.waitConverged(time.Minute)
	l.check()
}

// TestClusterCtlTransferToBehind: a transfer to a replica that cannot
// catch up with the leader's log (the leader's traffic to it is
// blackholed, so it falls behind) fails saying so, exit 1, and changes
// nothing: once the network heals, the old leader still leads past the
// cluster's hand-back to the preferred leader.
func TestClusterCtlTransferToBehind(t *testing.T) {
	c, net := startProxiedCluster(t, 3, 2, 3)
	// Group 0's preferred leader is n0: wait until it leads.
	for deadline := time.Now().Add(30 * time.Second); c.leaderOf(0) != 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("n0 does not lead group 0 within 30 s (node %d does)", c.leaderOf(0))
		}
	}
	const target = 1
	net.Proxies[target].Blackhole(net.IPs[0])
	for i := range 10 {
		body := []byte(clusterEvent(fmt.Sprint("behind-u", i), "m", "FR", 1))
		if _, err := c.nodes[2].Client.IngestBulk(context.Background(), "transactions", body, client.WriteOptions{RequestID: fmt.Sprint("behind-", i)}); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now()
	out, errOut, code := tallyCtl(t, "cluster", "transfer-leader", "--addr="+c.nodes[2].URL, "--group=0", "--to=n1")
	if code != 1 || !strings.Contains(errOut, "did not move from n0") || !strings.Contains(errOut, "behind") {
		t.Fatalf("transfer to a replica cut off from the leader: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("refused after %s: %s", time.Since(t0).Round(time.Millisecond), errOut)
	net.Heal()
	time.Sleep(6 * time.Second) // past a hand-back (every 5 s)
	if li := c.leaderOf(0); li != 0 {
		t.Fatalf("after a failed transfer and a heal node %d leads group 0, want n0 (the preference was not restored)", li)
	}
}
