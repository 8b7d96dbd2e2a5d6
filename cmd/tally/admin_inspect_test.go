package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/wal"
)

// TestInspectUnreadableReplicaAdvice: inspect's answer on a cluster node
// whose group's Raft state cannot be read gives the advice the node's own
// refusal to start gives (replace the node under a new id), naming the
// node; a replica's log and vote must not be repaired in place, as a
// single node's log is (tally admin wal repair). It used to print the
// store's error alone.
func TestInspectUnreadableReplicaAdvice(t *testing.T) {
	dataDir := t.TempDir()
	group := filepath.Join(dataDir, "cluster", "g1")
	s, err := wal.OpenRaftStore(group, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 10; i++ {
		if err := s.StoreLog(&raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, 200)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 3); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "cluster", "NODE"), []byte(`{"node":"n3","cluster":"c1"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	stable := filepath.Join(group, "stable")
	b, err := os.ReadFile(stable)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 0xff
	if err := os.WriteFile(stable, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{}, {"--json"}} {
		out, err := run(t, append([]string{"admin", "inspect", "--data-dir", dataDir}, args...)...)
		if err == nil {
			t.Fatalf("inspect %v of an unreadable replica: no error\n%s", args, out)
		}
		for _, want := range []string{"group g1", "stable", "corrupt", "do not repair", "new --node-id", "tally cluster add-node", "tally cluster remove-node n3"} {
			if !strings.Contains(out, want) {
				t.Errorf("inspect %v of an unreadable replica does not say %q:\n%s", args, want, out)
			}
		}
		if strings.Contains(out, "wal repair") {
			t.Errorf("inspect %v of an unreadable replica gives a single node's advice:\n%s", args, out)
		}
	}
}
