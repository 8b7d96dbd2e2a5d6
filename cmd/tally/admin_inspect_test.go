package main

import (
	"bytes"
	"fmt"
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

// TestInspectLiveSegmentCorruption: a single node's log whose newest
// segment has a bad record with later acknowledged records after it is
// reported as corrupt, naming the segment and byte offset, with the advice
// the node's own refusal to start gives (tally admin wal repair), and
// inspect exits 1. It used to be described as a clean log ending before
// the bad record, as if only an unacknowledged write had been torn.
func TestInspectLiveSegmentCorruption(t *testing.T) {
	dataDir := t.TempDir()
	dir := filepath.Join(dataDir, "wal")
	l, err := wal.Open(dir, wal.Options{SegmentSize: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 20; i++ {
		if _, err := l.Append(bytes.Repeat([]byte{byte(i)}, 100)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	seg := filepath.Join(dir, "00000000000000000001.wal")
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	// Frames of 100 bytes take 8+104; the 6th (index 6) starts at 16+5*112.
	const off = 16 + 5*112
	b[off+8+3] ^= 0x40
	if err := os.WriteFile(seg, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{}, {"--json"}} {
		out, err := run(t, append([]string{"admin", "inspect", "--data-dir", dataDir}, args...)...)
		if err == nil || exitCode(err) != 1 {
			t.Fatalf("inspect %v of a corrupt log: %v (exit %d), want exit 1\n%s", args, err, exitCode(err), out)
		}
		for _, want := range []string{"00000000000000000001.wal", fmt.Sprintf("offset %d", off), "index 6", "corrupt",
			"tally admin wal repair --data-dir " + dataDir} {
			if !strings.Contains(out, want) {
				t.Errorf("inspect %v of a corrupt log does not say %q:\n%s", args, want, out)
			}
		}
		if !strings.Contains(out, `"last": 5`) && !strings.Contains(out, "records 1..5") {
			t.Errorf("inspect %v does not count the 5 records before the corruption:\n%s", args, out)
		}
	}
}
