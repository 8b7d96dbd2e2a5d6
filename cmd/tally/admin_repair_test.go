package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/tally-ml/tally/cluster"
	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/wal"
)

// TestRepairKeepsRecordsAfterTheSnapshot: a corrupt record in an old
// segment that the newest snapshot covers (the start meets it when it
// builds a new view from the log, and advises repair) is repaired by
// moving the log's front aside, not its tail: the records after the
// snapshot, acknowledged and held only by the log, are replayed at the
// next start. Cutting at the corruption lost them (the snapshot became the
// state, with filler records after the log's new end).
// repairNode is a node whose log and snapshots a repair test damages:
// fsync never (the test stops it cleanly), no retention, and snapshots only
// when a test asks (SnapshotEvery: Close writes the final one when it is
// not 0).
type repairNode struct {
	t    *testing.T
	cfg  node.Config
	repo *features.Repo
	ts   int64
}

func newRepairNode(t *testing.T, segmentSize int64) *repairNode {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Durability.Fsync = "never"
	cfg.Durability.SegmentSize = segmentSize
	cfg.Durability.Retention = 0
	cfg.Durability.SnapshotEvery = 1 << 40 // never ticks; Close writes the final one
	return &repairNode{t: t, cfg: cfg, repo: repo, ts: time.Now().Add(-time.Minute).UnixMilli()}
}

func (r *repairNode) open() *node.Instance {
	r.t.Helper()
	in, err := node.Open(r.cfg, r.repo, node.OpenOptions{Node: node.Options{RepoFS: features.DefaultFS()}})
	if err != nil {
		r.t.Fatal(err)
	}
	return in
}

// ingest sends n requests of 100 transactions each: n log records.
func (r *repairNode) ingest(in *node.Instance, n int) {
	r.t.Helper()
	for range n {
		var recs []string
		for k := range 100 {
			recs = append(recs, fmt.Sprintf(`{"record":{"user_id":"u%d","merchant":"m1","category":"c","amt":1,"country":"FR","lat":1,"long":1,"is_fraud":0,"timestamp":%d}}`, k, r.ts))
		}
		if _, err := in.IngestJSON([]byte(`{"workspace_name":"default","records":{"transactions":[` + strings.Join(recs, ",") + `]}}`)); err != nil {
			r.t.Fatal(err)
		}
	}
}

// TestRepairKeepsRecordsAfterTheSnapshot: a corrupt record in an old
// segment that the newest snapshot covers (the start meets it when it
// builds a new view from the log, and advises repair) is repaired by
// moving the log's front aside, not its tail: the records after the
// snapshot, acknowledged and held only by the log, are replayed at the
// next start. Cutting at the corruption lost them (the snapshot became the
// state, with filler records after the log's new end).
func TestRepairKeepsRecordsAfterTheSnapshot(t *testing.T) {
	r := newRepairNode(t, 1<<16)
	cfg, dataDir, open, ingest := &r.cfg, r.cfg.DataDir, r.open, r.ingest
	in := open()
	ingest(in, 40)
	if err := in.Close(); err != nil { // the final snapshot, at 40
		t.Fatal(err)
	}
	cfg.Durability.SnapshotEvery = 0
	in = open()
	ingest(in, 10) // 41..50: only the log holds them
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}

	segs, _ := filepath.Glob(filepath.Join(dataDir, "wal", "00000000000000000001.wal*"))
	if len(segs) != 1 {
		t.Fatalf("first segment: %v", segs)
	}
	data, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff
	data[len(data)/2+1] ^= 0xff
	if err := os.WriteFile(segs[0], data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "admin", "wal", "repair", "--data-dir", dataDir)
	if err != nil {
		t.Fatalf("repair: %v %s", err, out)
	}
	in = open()
	defer in.Close()
	if rec, last := in.Recovery(), in.WAL().LastIndex(); rec.SnapshotIndex != 40 || rec.Replayed != 10 || last != 50 {
		t.Fatalf("after repair (%s): snapshot %d, %d records replayed, last index %d; want 40, 10 (41..50, acknowledged), 50",
			strings.TrimSpace(out), rec.SnapshotIndex, rec.Replayed, last)
	}
	if !strings.Contains(out, "snapshot") {
		t.Errorf("repair's answer does not say the snapshot holds what it moved: %q", out)
	}
}

// TestRepairKeepsRecordsAfterTheSnapshotInTheCorruptSegment: a corrupt
// record that the newest snapshot covers, in a segment that also holds
// records after the snapshot (it straddles the snapshot's index), is
// repaired by keeping those records: after a restart every record after
// the snapshot, in that segment and in every later one, is replayed.
// Repair cut the segment at the corruption and moved every later segment
// aside, so the next start served the snapshot without them.
func TestRepairKeepsRecordsAfterTheSnapshotInTheCorruptSegment(t *testing.T) {
	for _, tc := range []struct {
		name        string
		segmentSize int64
		last        uint64 // records ingested, 40 before the snapshot
	}{
		// One segment holds records 1..60: the log's newest, plain.
		{"newest segment", 1 << 20, 60},
		// Segment 1 holds 1..48 and is sealed; 49..70 follow in others.
		{"sealed segment", 1 << 18, 70},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRepairNode(t, tc.segmentSize)
			in := r.open()
			r.ingest(in, 40)
			if err := in.Close(); err != nil { // the final snapshot, at 40
				t.Fatal(err)
			}
			r.cfg.Durability.SnapshotEvery = 0
			in = r.open()
			r.ingest(in, int(tc.last)-40) // 41..last: only the log holds them
			if err := in.Close(); err != nil {
				t.Fatal(err)
			}
			walDir := filepath.Join(r.cfg.DataDir, "wal")
			before, err := wal.Inspect(walDir)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(before.Segments); before.Segments[0].First != 1 || (n > 1 && before.Segments[1].First <= 41) || (n == 1) != (tc.last == 60) {
				t.Fatalf("segment 1 does not straddle the snapshot at 40: %+v", before.Segments)
			}
			seg := filepath.Join(walDir, "00000000000000000001.wal")
			if zst := seg + ".zst"; before.Segments[0].Name != filepath.Base(seg) {
				// Sealed segments are compressed in the background; a crash
				// before that leaves them plain. The byte damaged below is
				// then a record's, not the compressed stream's, which after
				// a bad byte holds nothing that can be read.
				plain, err := unzstd(zst)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(seg, plain, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Remove(zst); err != nil {
					t.Fatal(err)
				}
			}
			flipByteAt(t, seg, 16+8+100) // record 1's payload
			out, err := run(t, "admin", "wal", "repair", "--data-dir", r.cfg.DataDir)
			if err != nil {
				t.Fatalf("repair: %v %s", err, out)
			}
			in = r.open()
			defer in.Close()
			if rec, last := in.Recovery(), in.WAL().LastIndex(); rec.SnapshotIndex != 40 || rec.Replayed != tc.last-40 || last != tc.last {
				t.Fatalf("after repair (%s): snapshot %d, %d records replayed, last index %d; want 40, %d (41..%d, acknowledged), %d",
					strings.TrimSpace(out), rec.SnapshotIndex, rec.Replayed, last, tc.last-40, tc.last, tc.last)
			}
			if !strings.Contains(out, "snapshot") || !strings.Contains(out, "starts at record 41") {
				t.Errorf("repair's answer does not say the snapshot holds what it moved and where the log starts: %q", out)
			}
		})
	}
}

// TestRepairKeepsRecordsAfterTheSnapshotPastABrokenCompressedStream: the
// same with the damage in the compressed bytes of a sealed segment (a bad
// byte early in its .zst), the first record after the snapshot some
// hundreds of KiB further: after a restart every record after the snapshot
// is replayed. The compressed segment was one zstd stream, unreadable after
// the bad byte, and Repair cut the log there.
func TestRepairKeepsRecordsAfterTheSnapshotPastABrokenCompressedStream(t *testing.T) {
	r := newRepairNode(t, 1<<20)
	in := r.open()
	r.ingest(in, 100)
	if err := in.Close(); err != nil { // the final snapshot, at 100
		t.Fatal(err)
	}
	r.cfg.Durability.SnapshotEvery = 0
	in = r.open()
	r.ingest(in, 140) // 101..240: only the log holds them
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	walDir := filepath.Join(r.cfg.DataDir, "wal")
	before, err := wal.Inspect(walDir)
	if err != nil {
		t.Fatal(err)
	}
	if s := before.Segments; len(s) < 2 || s[0].Name != "00000000000000000001.wal.zst" || s[1].First <= 101 {
		t.Fatalf("segment 1 is not compressed or does not straddle the snapshot at 100: %+v", s)
	}
	seg := filepath.Join(walDir, before.Segments[0].Name)
	flipByteAt(t, seg, 100)
	out, err := run(t, "admin", "wal", "repair", "--data-dir", r.cfg.DataDir)
	if err != nil {
		t.Fatalf("repair: %v %s", err, out)
	}
	in = r.open()
	defer in.Close()
	if rec, last := in.Recovery(), in.WAL().LastIndex(); rec.SnapshotIndex != 100 || rec.Replayed != 140 || last != 240 {
		t.Fatalf("after repair (%s): snapshot %d, %d records replayed, last index %d; want 100, 140 (101..240, acknowledged), 240",
			strings.TrimSpace(out), rec.SnapshotIndex, rec.Replayed, last)
	}
	if !strings.Contains(out, "starts at record 101") {
		t.Errorf("repair's answer does not say where the log starts: %q", out)
	}
}

func unzstd(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec, err := zstd.NewReader(f)
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	return io.ReadAll(dec)
}

// TestRepairNamesAClusterReplica: `admin wal repair` read only a single
// node's wal/, and answered a cluster node's data dir "no write-ahead log".
// It names the replicas to pick from (--group), repairs the one picked
// (a clean log: nothing moved), and refuses --accept-data-loss where it
// means nothing and a group the data dir does not hold, as usage errors.
func TestRepairNamesAClusterReplica(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	c, err := cluster.Open(cluster.Config{NodeID: "n0", DataDir: dataDir, ClusterAddr: addr, ClusterID: "c", Key: []byte("test-cluster-key-0123"),
		Peers: []cluster.Member{{ID: "n0", ClusterAddr: addr}}, Groups: 2, Replicas: 1, FormTimeout: 30 * time.Second}, repo)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "admin", "wal", "repair", "--data-dir", dataDir)
	if err == nil || exitCode(err) != exitUsage || !strings.Contains(err.Error(), "--group") || !strings.Contains(err.Error(), "meta, g0, g1") {
		t.Fatalf("repair of a cluster data dir without --group: %v (exit %d) %s; want a usage error naming meta, g0, g1 and --group", err, exitCode(err), out)
	}
	out, err = run(t, "admin", "wal", "repair", "--data-dir", dataDir, "--group", "1")
	if err != nil || !strings.Contains(out, "group g1") || !strings.Contains(out, "clean") {
		t.Fatalf("repair --group 1: %v %s; want g1's log clean", err, out)
	}
	for _, args := range [][]string{{"--group", "g7"}, {"--accept-data-loss"}} {
		out, err = run(t, append([]string{"admin", "wal", "repair", "--data-dir", dataDir}, args...)...)
		if err == nil || exitCode(err) != exitUsage {
			t.Errorf("repair %v: %v (exit %d) %s; want a usage error", args, err, exitCode(err), out)
		}
	}
	c, err = cluster.Open(cluster.Config{NodeID: "n0", DataDir: dataDir, ClusterAddr: addr, ClusterID: "c", Key: []byte("test-cluster-key-0123"),
		Peers: []cluster.Member{{ID: "n0", ClusterAddr: addr}}, FormTimeout: 30 * time.Second}, repo)
	if err != nil {
		t.Fatalf("start after repair of a clean log: %v", err)
	}
	c.Close()
}

// TestCorruptionTheSnapshotHoldsIsNotCutAsATornTail: a record the newest
// snapshot holds was fsynced before the snapshot was written, so a bad
// frame there is corruption, not what a power loss leaves, whatever the
// fsync policy. A start under fsync interval or never (a node written
// under always and restarted with interval, or one that always ran with
// it) took it for a torn tail and cut the live segment there: the
// acknowledged records after the snapshot, intact after the bad frame,
// were lost (the snapshot became the state, with fillers after it). The
// start refuses instead, naming repair, which keeps them.
func TestCorruptionTheSnapshotHoldsIsNotCutAsATornTail(t *testing.T) {
	for _, policy := range []string{"interval", "never"} {
		t.Run(policy, func(t *testing.T) {
			r := newRepairNode(t, 4<<20) // one live segment holds every record
			cfg, dataDir := &r.cfg, r.cfg.DataDir
			cfg.Durability.Fsync = "always"
			in := r.open()
			r.ingest(in, 40)
			if err := in.Close(); err != nil { // the final snapshot, at 40
				t.Fatal(err)
			}
			cfg.Durability.SnapshotEvery = 0
			in = r.open()
			r.ingest(in, 10) // 41..50: only the log holds them
			if err := in.Close(); err != nil {
				t.Fatal(err)
			}
			seg := filepath.Join(dataDir, "wal", "00000000000000000001.wal")
			flipByteAt(t, seg, 100) // inside record 1, which the snapshot holds

			cfg.Durability.Fsync = policy
			in, err := node.Open(r.cfg, r.repo, node.OpenOptions{Node: node.Options{RepoFS: features.DefaultFS()}})
			if err == nil {
				rec, last := in.Recovery(), in.WAL().LastIndex()
				in.Close()
				t.Fatalf("fsync %s: started over a corrupt record the snapshot holds: snapshot %d, %d records replayed, last index %d; "+
					"want a refusal naming repair (records 41..50, acknowledged, were cut)", policy, rec.SnapshotIndex, rec.Replayed, last)
			}
			if !strings.Contains(err.Error(), "tally admin wal repair") {
				t.Fatalf("fsync %s: start refused with %v, want the repair advice", policy, err)
			}
			if out, err := run(t, "admin", "wal", "repair", "--data-dir", dataDir); err != nil {
				t.Fatalf("repair: %v %s", err, out)
			}
			in = r.open()
			defer in.Close()
			if rec, last := in.Recovery(), in.WAL().LastIndex(); rec.SnapshotIndex != 40 || rec.Replayed != 10 || last != 50 {
				t.Fatalf("after repair: snapshot %d, %d records replayed, last index %d; want 40, 10, 50", rec.SnapshotIndex, rec.Replayed, last)
			}
		})
	}
}

// flipByteAt inverts the byte at off of the file at path.
func flipByteAt(t *testing.T, path string, off int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[off] ^= 0xff
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
