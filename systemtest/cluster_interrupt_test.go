package systemtest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/systemtest/harness"
)

// Membership changes interrupted by a crash (SIGKILL) of the node running
// them, under a write load (each request with an id, retried with it
// until acknowledged): the change run again must finish, or be refused
// naming the command that finishes or undoes it; afterwards every
// acknowledged event is counted exactly once on every replica.

// groupsOf is the cluster map's groups (replicas, the first preferred)
// as node i's overview reports them, with the metadata leader.
func (c *testCluster) groupsOf(i int) (groups [][]string, metaLeader string, err error) {
	var o struct {
		MetaLeader string `json:"metaLeader"`
		Map        struct {
			Groups []struct {
				Replicas []string `json:"replicas"`
			} `json:"groups"`
		} `json:"map"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.nodes[i].Client.Admin(ctx, http.MethodGet, "/api/v1/cluster/overview", nil, &o); err != nil {
		return nil, "", err
	}
	for _, g := range o.Map.Groups {
		groups = append(groups, g.Replicas)
	}
	return groups, o.MetaLeader, nil
}

// startCtl runs `tally cluster args...` against node i in the background;
// its exit code and stderr arrive on the channel.
func (c *testCluster) startCtl(i int, args ...string) <-chan string {
	args = append([]string{"cluster", "--addr", c.nodes[i].URL, "--timeout", "2m"}, args...)
	cmd := exec.Command(harness.Binary(c.t), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan string, 1)
	go func() {
		code := exitOf(cmd)
		done <- fmt.Sprintf("exit %d: %s%s", code, out.String(), errb.String())
	}()
	return done
}

// waitMoved waits up to 10 s until node i's map lists group g's replicas
// as 3 with to and without from; else it fails, what first.
func (c *testCluster) waitMoved(i, g int, from, to, what string) {
	c.t.Helper()
	var got []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		gs, _, err := c.groupsOf(i)
		if err != nil {
			c.t.Fatal(err)
		}
		if got = gs[g]; len(got) == 3 && slices.Contains(got, to) && !slices.Contains(got, from) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s it lists %v", what, got)
		}
	}
}

// nodeIndex is the index of node id ("n3": 3).
func nodeIndex(t *testing.T, id string) int {
	t.Helper()
	var i int
	if _, err := fmt.Sscanf(id, "n%d", &i); err != nil {
		t.Fatalf("node id %q: %v", id, err)
	}
	return i
}

// TestMoveReplicaMetaLeaderKilled: on 4 nodes (4 groups, 3 replicas),
// writers ingest through every node while a move-replica is sent to the
// metadata leader, which runs it, and the leader is killed -9 some time
// into the move (the delays sweep its steps); where the leader is the
// move's old replica, its new one, or neither varies with the round. It
// is restarted and the same command is run again through it: it must
// finish the move, or be refused naming the move-replica that finishes
// or undoes it (which is then run). After every round the group lists
// 3 replicas, the new one among them and not the old.
func TestMoveReplicaMetaLeaderKilled(t *testing.T) {
	const groups = 4
	c := startCluster(t, 4, groups, 3)
	l := startLoad(t, c, "mk-", 3, 0, 1, 2, 3)
	l.waitAcked(30, time.Minute)
	// after is how long after the map lists the new replica (step 1) the
	// leader is killed; a negative one pauses the new replica first, so
	// that the move waits in its catch-up when the leader dies.
	for round, after := range []time.Duration{0, 30 * time.Millisecond, 60 * time.Millisecond, 100 * time.Millisecond,
		150 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond, -1} {
		gs, metaLeader, err := c.groupsOf(round % 4)
		if err != nil {
			t.Fatal(err)
		}
		victim := nodeIndex(t, metaLeader)
		g := round % groups
		reps := gs[g]
		var from, to string
		for _, id := range []string{"n0", "n1", "n2", "n3"} {
			if !slices.Contains(reps, id) {
				to = id
			}
		}
		// Rounds alternate: the victim is the old replica, the new one, or
		// neither.
		switch {
		case round%3 == 0 && slices.Contains(reps, metaLeader):
			from = metaLeader
		default:
			from = reps[len(reps)-1]
			if from == metaLeader {
				from = reps[0]
			}
		}
		args := []string{"move-replica", "--group", fmt.Sprint(g), "--from", from, "--to", to}
		done := c.startCtl(victim, args...)
		watcher := others(4, victim)[0]
		var seenG []string
		for deadline := time.Now().Add(30 * time.Second); len(seenG) <= 3; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the map never listed %s in group %d", round, to, g)
			}
			if gs, _, err := c.groupsOf(watcher); err == nil {
				seenG = gs[g]
			}
		}
		paused := -1
		if after < 0 && to != metaLeader {
			paused = nodeIndex(t, to)
			c.nodes[paused].Pause()
		} else {
			time.Sleep(after)
		}
		if gs, _, err := c.groupsOf(watcher); err == nil {
			seenG = gs[g]
		}
		c.nodes[victim].Kill()
		var first string
		select {
		case first = <-done:
		case <-time.After(time.Minute):
			t.Fatal("the CLI did not end after its node was killed")
		}
		t.Logf("round %d: group %d %s -> %s on %s (metadata leader) killed %s after step 1, the map then listing %v; the CLI: %s",
			round, g, from, to, metaLeader, after, seenG, strings.TrimSpace(first))
		if paused >= 0 {
			c.nodes[paused].Resume()
		}
		l.setNodes(others(4, victim)...)
		l.waitAcked(10, time.Minute)
		// The killed node may not be ready until the move is finished: a
		// move's old replica removed from its group's Raft configuration
		// while the node was down finds no leader of that group, and the
		// map still lists it until the move's last step. So the command
		// is run again through another node as soon as it is up.
		// While the killed node starts, the move (which needs it when it
		// is the target) is refused saying so: run it again, as an
		// operator would.
		c.nodes[victim].Relaunch()
		out, code := c.tallyCluster(watcher, args...)
		for deadline := time.Now().Add(time.Minute); code != 0 && time.Now().Before(deadline) &&
			strings.Contains(out+c.lastErr, "does not answer"); {
			time.Sleep(time.Second)
			out, code = c.tallyCluster(watcher, args...)
		}
		if code != 0 {
			msg := out + c.lastErr
			if !strings.Contains(msg, "tally cluster move-replica --group "+fmt.Sprint(g)) {
				t.Fatalf("round %d: the move run again: exit %d, and no command to finish or undo it: %s", round, code, msg)
			}
			t.Fatalf("round %d: the move run again was refused: %s", round, msg)
		}
		c.nodes[victim].WaitReady()
		l.setNodes(0, 1, 2, 3)
		// The killed node's map may lag a moment.
		c.waitMoved(victim, g, from, to, fmt.Sprintf("round %d: after the move of group %d from %s to %s, run again,", round, g, from, to))
		l.waitAcked(10, time.Minute)
	}
	l.halt()
	c.waitConverged(2 * time.Minute)
	l.check()
	if out, code := c.tallyCluster(0, "check"); code != 0 {
		t.Errorf("tally cluster check: exit %d\n%s", code, out)
	}
	if out, code := c.tallyCluster(1, "rebalance", "--dry-run"); code != 0 {
		t.Errorf("rebalance --dry-run after the moves: exit %d\n%s%s", code, out, c.lastErr)
	}
}

// TestMoveReplicaTargetKilledMidCatchUp: on 4 nodes (4 groups, 3
// replicas) under a write load, the new replica's node of a move is
// killed -9 some time after the map lists it (while Raft sends it the
// group's snapshot and log), and restarted: the move, still running,
// must finish (or, run again, finish), and every acknowledged event be
// counted once.
func TestMoveReplicaTargetKilledMidCatchUp(t *testing.T) {
	const groups = 4
	c := startCluster(t, 4, groups, 3)
	l := startLoad(t, c, "tk-", 3, 0, 1, 2, 3)
	l.waitAcked(30, time.Minute)
	for round, after := range []time.Duration{0, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond} {
		gs, metaLeader, err := c.groupsOf(0)
		if err != nil {
			t.Fatal(err)
		}
		g := round % groups
		reps := gs[g]
		var to string
		for _, id := range []string{"n0", "n1", "n2", "n3"} {
			if !slices.Contains(reps, id) {
				to = id
			}
		}
		from := reps[round%3]
		victim := nodeIndex(t, to)
		via := nodeIndex(t, metaLeader)
		if via == victim {
			via = nodeIndex(t, from)
		}
		args := []string{"move-replica", "--group", fmt.Sprint(g), "--from", from, "--to", to}
		done := c.startCtl(via, args...)
		watcher := others(4, victim)[0]
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(2 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the map never listed %s in group %d", round, to, g)
			}
			if gs, _, err := c.groupsOf(watcher); err == nil && slices.Contains(gs[g], to) {
				break
			}
		}
		time.Sleep(after)
		l.setNodes(others(4, victim)...)
		c.nodes[victim].Kill()
		t.Logf("round %d: group %d %s -> %s (through %s, metadata leader %s): %s killed %s after step 1", round, g, from, to, c.nodes[via].Name, metaLeader, to, after)
		l.waitAcked(10, time.Minute)
		c.nodes[victim].Restart()
		l.setNodes(0, 1, 2, 3)
		var first string
		select {
		case first = <-done:
		case <-time.After(2 * time.Minute):
			t.Fatal("the move did not end")
		}
		t.Logf("round %d: the move: %s", round, strings.TrimSpace(first))
		if !strings.HasPrefix(first, "exit 0") {
			if out, code := c.tallyCluster(via, args...); code != 0 {
				t.Fatalf("round %d: the move run again: exit %d: %s%s", round, code, out, c.lastErr)
			}
		}
		c.waitMoved(victim, g, from, to, fmt.Sprintf("round %d: after the move of group %d from %s to %s", round, g, from, to))
		l.waitAcked(10, time.Minute)
	}
	l.halt()
	c.waitConverged(2 * time.Minute)
	l.check()
	if out, code := c.tallyCluster(0, "check"); code != 0 {
		t.Errorf("tally cluster check: exit %d\n%s", code, out)
	}
}

// TestRebalanceAndRemoveInterrupted: on 3 nodes (6 groups, 3 replicas)
// under a write load, n3 joins and a rebalance is sent to a node that is
// not the metadata leader, which is killed -9 once a move has begun; it is
// restarted and the rebalance run again (after the move a refusal names,
// if refused). Then remove-node of a node runs while another node, a
// replica of groups it changes, is paused for 2 s mid-removal. Every
// acknowledged event is counted once on every replica afterwards.
func TestRebalanceAndRemoveInterrupted(t *testing.T) {
	const groups = 6
	c := startCluster(t, 3, groups, 3)
	l := startLoad(t, c, "rr-", 3, 0, 1, 2)
	l.waitAcked(30, time.Minute)
	n3 := c.join("n3", 0)
	_, metaLeader, err := c.groupsOf(0)
	if err != nil {
		t.Fatal(err)
	}
	via := (nodeIndex(t, metaLeader) + 1) % 3 // not the metadata leader
	watcher := nodeIndex(t, metaLeader)
	done := c.startCtl(via, "rebalance")
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the rebalance listed no replica on n3")
		}
		gs, _, err := c.groupsOf(watcher)
		if err == nil && slices.ContainsFunc(gs, func(r []string) bool { return slices.Contains(r, "n3") }) {
			break
		}
	}
	l.setNodes(others(4, via)...)
	c.nodes[via].Kill()
	t.Logf("rebalance through %s (metadata leader %s) killed once a move began: %s", c.nodes[via].Name, metaLeader, strings.TrimSpace(<-done))
	l.waitAcked(10, time.Minute)
	c.nodes[via].Restart()
	l.setNodes(0, 1, 2, n3)
	for attempt := 0; ; attempt++ {
		out, code := c.tallyCluster(via, "rebalance")
		if code == 0 {
			t.Logf("rebalance run again: %s", out)
			break
		}
		msg := out + c.lastErr
		i := strings.Index(msg, "tally cluster move-replica --group ")
		if i < 0 || attempt > 2 {
			t.Fatalf("rebalance run again: exit %d, with no move to finish or undo: %s", code, msg)
		}
		var g int
		var from, to string
		if _, err := fmt.Sscanf(msg[i:], "tally cluster move-replica --group %d --from %s --to %s", &g, &from, &to); err != nil {
			t.Fatalf("the move named in %q: %v", msg, err)
		}
		to = strings.TrimRight(to, ".,;:)")
		t.Logf("rebalance run again refused; running the move it names: --group %d --from %s --to %s", g, from, to)
		if out, code := c.tallyCluster(via, "move-replica", "--group", fmt.Sprint(g), "--from", from, "--to", to); code != 0 {
			t.Fatalf("the move the refusal names: exit %d: %s%s", code, out, c.lastErr)
		}
	}
	l.waitAcked(20, time.Minute)

	// remove-node with a replica paused mid-removal.
	gs, metaLeader, err := c.groupsOf(0)
	if err != nil {
		t.Fatal(err)
	}
	gone := (nodeIndex(t, metaLeader) + 1) % 4
	lag := -1
	for _, r := range gs {
		if !slices.Contains(r, fmt.Sprintf("n%d", gone)) {
			continue
		}
		for _, id := range r {
			if i := nodeIndex(t, id); i != gone && id != metaLeader && lag < 0 {
				lag = i
			}
		}
	}
	if lag < 0 {
		t.Fatalf("no group of n%d has a replica off the metadata leader: %v", gone, gs)
	}
	var rest []int
	for i := range 4 {
		if i != gone && i != lag {
			rest = append(rest, i)
		}
	}
	l.setNodes(rest...)
	done = c.startCtl(nodeIndex(t, metaLeader), "remove-node", fmt.Sprintf("n%d", gone))
	time.Sleep(300 * time.Millisecond)
	c.nodes[lag].Pause()
	time.Sleep(2 * time.Second)
	c.nodes[lag].Resume()
	res := <-done
	t.Logf("remove-node n%d, n%d paused 2 s from 300 ms in: %s", gone, lag, strings.TrimSpace(res))
	if !strings.HasPrefix(res, "exit 0") {
		t.Fatalf("remove-node n%d: %s", gone, res)
	}
	rest = others(4, gone)
	l.setNodes(rest...)
	l.waitAcked(20, time.Minute)
	l.halt()
	if err := c.nodes[gone].Stop(); err != nil {
		t.Fatal(err)
	}
	c.nodes = slices.Delete(c.nodes, gone, gone+1)
	c.caddr = slices.Delete(c.caddr, gone, gone+1)
	c.waitConverged(2 * time.Minute)
	l.check()
	if out, code := c.tallyCluster(0, "check"); code != 0 {
		t.Errorf("tally cluster check: exit %d\n%s", code, out)
	}
}
