package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLostGroupDirIsRefused: a node whose data dir lost one group's
// directory (cluster/g0 deleted, the rest kept) came back as an empty
// voter of that group: it bootstrapped the group again and voted for any
// replica. An entry committed on n0 and n1 only (n2 down) was lost once
// n1's g0 was deleted and n0 was down: n1 voted for n2, whose log lacked
// it. Open now refuses a data dir whose node identity and metadata
// replica are there but a replica the map places on the node is gone,
// naming the group and the way back, and writes nothing for it.
func TestLostGroupDirIsRefused(t *testing.T) {
	lostGroupDirRefused(t, "deleted", os.RemoveAll, func(g0 string) string {
		if _, err := os.Stat(g0); err == nil {
			return "the refused start created " + g0
		}
		return ""
	})
}

// TestEmptiedGroupDirIsRefused: as TestLostGroupDirIsRefused, but the
// operator emptied cluster/g0 (rm -rf cluster/g0/*) instead of deleting
// it. The directory being there was taken for a replica that was never
// lost: n1 opened g0 empty, as a voter that forgot its term, its vote and
// E, and E was lost the same way. A replica directory that holds no Raft
// term is now taken as missing, and nothing is written into it.
func TestEmptiedGroupDirIsRefused(t *testing.T) {
	lostGroupDirRefused(t, "emptied", func(g0 string) error {
		ents, err := os.ReadDir(g0)
		for _, e := range ents {
			if err == nil {
				err = os.RemoveAll(filepath.Join(g0, e.Name()))
			}
		}
		return err
	}, func(g0 string) string {
		if ents, _ := os.ReadDir(g0); len(ents) > 0 {
			return fmt.Sprintf("the refused start wrote %d entries into %s (%s...)", len(ents), g0, ents[0].Name())
		}
		return ""
	}, "no Raft state")
}

// lostGroupDirRefused writes E on n0 and n1 only (n2 down), stops every
// node, loses n1's cluster/g0 (lose: deleted or emptied, what), and starts
// n1 and n2 with n0 down: n1 must be refused, naming the group, the
// directory, the replacement and wants, and leave the directory as
// untouched says ("" when it is); with n0 back, n2 reads E.
func lostGroupDirRefused(t *testing.T, what string, lose func(g0 string) error, untouched func(g0 string) string, wants ...string) {
	w := newWipedCluster(t, 3, 1, 3)
	w.start(0, 1, 2)
	w.write(0, "before")

	w.stop(2)
	w.write(0, "E") // on n0 and n1 only
	w.stop(0)
	w.stop(1)
	g0 := groupDir(w.cfgs[1].DataDir, "g0")
	if err := lose(g0); err != nil {
		t.Fatal(err)
	}

	n2 := w.startAsync(2)
	n1 := w.startAsync(1)
	var err error
	select {
	case err = <-n1:
	case <-time.After(25 * time.Second):
		t.Fatal("n1 neither started nor was refused in 25s")
	}
	if err == nil {
		if e := <-n2; e != nil {
			t.Fatal(e)
		}
		got := w.count(2, "E")
		t.Fatalf("n1 started with its group 0 directory %s; E, acknowledged on n0 and n1, reads as count %v on n2 (want 1, or n1 refused)", what, got)
	}
	for _, want := range append([]string{"group g0", g0, "--node-id", "remove-node n1"}, wants...) {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("refusal %q does not say %q", err, want)
		}
	}
	t.Log(err)
	if msg := untouched(g0); msg != "" {
		t.Error(msg)
	}
	w.start(0)
	if e := <-n2; e != nil {
		t.Fatal(e)
	}
	if got := w.count(2, "E"); got != 1 {
		t.Fatalf("E reads as count %v on n2; want 1", got)
	}
}

// TestLostMetaDirIsRefused: a data dir that kept its node identity and
// its data groups but lost cluster/meta bootstrapped the metadata group
// again as an empty voter; it is refused, naming the directory.
func TestLostMetaDirIsRefused(t *testing.T) {
	w := newWipedCluster(t, 3, 1, 3)
	w.start(0, 1, 2)
	w.write(0, "before")
	w.stop(1)
	meta := groupDir(w.cfgs[1].DataDir, "meta")
	if err := os.RemoveAll(meta); err != nil {
		t.Fatal(err)
	}
	c, err := Open(w.cfgs[1], w.repo)
	if err == nil {
		c.Close()
		t.Fatal("n1 started with its metadata group's directory deleted; want it refused")
	}
	for _, want := range []string{"group meta", meta, "remove-node n1"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("refusal %q does not say %q", err, want)
		}
	}
	if _, serr := os.Stat(meta); serr == nil {
		t.Errorf("the refused start created %s", meta)
	}
}

// TestEmptiedMetaDirIsRefused: as TestLostMetaDirIsRefused, but
// cluster/meta emptied instead of deleted: n1, one of the metadata
// group's first voters, opened it empty and bootstrapped the group again.
// It is refused, naming the directory, and nothing is written into it.
func TestEmptiedMetaDirIsRefused(t *testing.T) {
	w := newWipedCluster(t, 3, 1, 3)
	w.start(0, 1, 2)
	w.write(0, "before")
	w.stop(1)
	meta := groupDir(w.cfgs[1].DataDir, "meta")
	ents, err := os.ReadDir(meta)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(meta, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	c, err := Open(w.cfgs[1], w.repo)
	if err == nil {
		c.Close()
		t.Fatal("n1 started with its metadata group's directory emptied; want it refused")
	}
	for _, want := range []string{"group meta", meta, "no Raft state", "remove-node n1"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("refusal %q does not say %q", err, want)
		}
	}
	t.Log(err)
	if ents, _ := os.ReadDir(meta); len(ents) > 0 {
		t.Errorf("the refused start wrote %d entries into %s (%s...)", len(ents), meta, ents[0].Name())
	}
}

// TestSecondProcessUnderOneIDIsRefused: a copy of a member's data dir
// started beside it under the same --node-id (another cluster address)
// passed every check (the identity is the member's) and announced its
// address into the map: two processes voting as one member can elect two
// leaders in a term. The second one's start is refused, naming the
// address where the member answers.
func TestSecondProcessUnderOneIDIsRefused(t *testing.T) {
	w := newWipedCluster(t, 3, 1, 3)
	w.start(0, 1, 2)
	w.write(0, "before")
	w.stop(1)
	cp := w.cfgs[1]
	cp.DataDir, cp.ClusterAddr = t.TempDir(), freeAddr(t)
	if err := os.CopyFS(cp.DataDir, os.DirFS(w.cfgs[1].DataDir)); err != nil {
		t.Fatal(err)
	}
	w.start(1)
	c, err := Open(cp, w.repo)
	if err == nil {
		defer c.Close()
		time.Sleep(time.Second)
		t.Fatalf("a second process under node id n1 (a copy of its data dir, at %s) started beside n1 at %s; the map lists n1 at %s",
			cp.ClusterAddr, w.cfgs[1].ClusterAddr, metaLeaderMap(t, []*Cluster{w.cs[0], w.cs[2]}).Member("n1").ClusterAddr)
	}
	for _, want := range []string{"n1", w.cfgs[1].ClusterAddr, "--node-id"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("refusal %q does not say %q", err, want)
		}
	}
	t.Log(err)
	w.write(0, "after")
	if got := w.count(1, "after"); got != 1 {
		t.Fatalf("n1 reads count %v after the refused copy; want 1", got)
	}
}
