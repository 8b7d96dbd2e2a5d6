package cluster

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/tally-ml/tally/wal"
)

// TestOpenNamesACorruptReplica: a replica whose Raft state on disk cannot
// be read (a garbled or truncated stable file, a garbled log record)
// failed the start with the store's low-level error, whose advice was
// wrong for a cluster node ("tally admin wal repair", which reads only a
// single node's log; "restore it from a backup", which brings back an old
// vote). The start is refused naming the group and the file, saying what
// is wrong and how to replace the node; the replica's files are left as
// they were (the whole data dir, when it is the metadata replica's, which
// opens first).
func TestOpenNamesACorruptReplica(t *testing.T) {
	for _, tc := range []struct {
		name, group, file string
		spoil             func(t *testing.T, path string)
		want              []string
	}{
		{"garbled stable file", "meta", "stable", flipByte(20), []string{"stable", "term and vote"}},
		{"truncated stable file", "meta", "stable", truncateTo(10), []string{"stable", "term and vote"}},
		{"garbled log record", "meta", "log/00000000000000000001.wal", flipByte(16 + 8 + 4), []string{"00000000000000000001.wal", "corrupt"}},
		{"garbled stable file of a data group", "g1", "stable", flipByte(20), []string{"stable", "term and vote"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, repo := soloConfig(t, 30*time.Second)
			c, err := Open(cfg, repo)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			dir := groupDir(cfg.DataDir, tc.group)
			tc.spoil(t, filepath.Join(dir, tc.file))
			watched := dir
			if tc.group == "meta" {
				watched = cfg.DataDir
			}
			before := treeOf(t, watched)
			cfg.FormTimeout = 5 * time.Second
			c, err = Open(cfg, repo)
			if err == nil {
				c.Close()
				t.Fatal("started over a corrupt replica")
			}
			t.Logf("%v", err)
			for _, w := range append(tc.want, "group "+tc.group, dir, "new --node-id", "--cluster-join", "tally cluster add-node", "tally cluster remove-node n0") {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("refusal %q does not say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "backup") || strings.Contains(err.Error(), "wal repair --data-dir "+dir) {
				t.Fatalf("refusal %q gives a single node's advice", err)
			}
			// A corrupt log entry may be held by the replica's snapshot:
			// repair --group moves such entries aside (and refuses a cut);
			// a stable file is never repaired.
			if repair := "wal repair --data-dir " + cfg.DataDir + " --group " + tc.group; strings.Contains(err.Error(), repair) != (tc.file != "stable") {
				t.Fatalf("refusal %q: says %q: %v, want it for a log only", err, repair, !(tc.file != "stable"))
			}
			if after := treeOf(t, watched); after != before {
				t.Fatalf("the refused start changed %s:\nbefore:\n%s\nafter:\n%s", watched, before, after)
			}
		})
	}
}

// flipByte inverts the byte at off of a file.
func flipByte(off int64) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if off >= int64(len(b)) {
			t.Fatalf("%s has %d bytes, none at %d", path, len(b), off)
		}
		b[off] ^= 0xff
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// truncateTo cuts a file to n bytes.
func truncateTo(n int64) func(*testing.T, string) {
	return func(t *testing.T, path string) {
		t.Helper()
		if err := os.Truncate(path, n); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOpenReplicaNamesACorruptSealedSegment: a record that does not
// validate in a sealed log segment (read only when an entry is asked for)
// made the start panic inside raft.NewRaft, which reads every entry after
// the newest snapshot. The open is refused naming the segment, and the
// replica's files are left as they were.
func TestOpenReplicaNamesACorruptSealedSegment(t *testing.T) {
	dir := t.TempDir()
	logs, err := wal.OpenRaftStore(dir, wal.Options{SegmentSize: 4096, Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	entries := make([]*raft.Log, 200)
	for i := range entries {
		entries[i] = &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{'x'}, 100)}
	}
	if err := logs.StoreLogs(entries); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries { // one segment of many
		if err := logs.StoreLog(&raft.Log{Index: e.Index + 200, Term: 1, Type: raft.LogCommand, Data: e.Data}); err != nil {
			t.Fatal(err)
		}
	}
	if err := logs.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		t.Fatal(err)
	}
	if err := logs.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "log", "*.wal.zst"))
	if len(segs) < 3 {
		t.Fatalf("compressed segments %v; want sealed ones", segs)
	}
	flipByte(100)(t, segs[1])
	before := treeOf(t, dir)

	trans, err := raft.NewTCPTransport("127.0.0.1:0", nil, 3, time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := openReplica("g0", dir, "n0", nil, newMetaFSM(), trans, withDefaults(raftTiming{}), wal.SyncAlways, io.Discard)
	if err == nil {
		rep.close()
		t.Fatal("opened a replica whose log is corrupt")
	}
	trans.Close()
	t.Logf("%v", err)
	for _, w := range []string{"group g0", filepath.Base(segs[1]), "corrupt", "new --node-id", "remove-node n0"} {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("refusal %q does not say %q", err, w)
		}
	}
	if after := treeOf(t, dir); after != before {
		t.Fatalf("the refused open changed the replica:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}
