package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
)

// TestRepairKeepsRecordsAfterTheSnapshot: a corrupt record in an old
// segment that the newest snapshot covers (the start meets it when it
// builds a new view from the log, and advises repair) is repaired by
// moving the log's front aside, not its tail: the records after the
// snapshot, acknowledged and held only by the log, are replayed at the
// next start. Cutting at the corruption lost them (the snapshot became the
// state, with filler records after the log's new end).
func TestRepairKeepsRecordsAfterTheSnapshot(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	cfg := node.DefaultConfig()
	cfg.DataDir = dataDir
	cfg.Durability.Fsync = "never"
	cfg.Durability.SegmentSize = 1 << 16
	cfg.Durability.Retention = 0
	cfg.Durability.SnapshotEvery = 1 << 40 // never ticks; Close writes the final one
	open := func() *node.Instance {
		t.Helper()
		in, err := node.Open(cfg, repo, node.OpenOptions{Node: node.Options{RepoFS: features.DefaultFS()}})
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	ts := time.Now().Add(-time.Minute).UnixMilli()
	ingest := func(in *node.Instance, n int) {
		t.Helper()
		for range n {
			var recs []string
			for k := range 100 {
				recs = append(recs, fmt.Sprintf(`{"record":{"user_id":"u%d","merchant":"m1","category":"c","amt":1,"country":"FR","lat":1,"long":1,"is_fraud":0,"timestamp":%d}}`, k, ts))
			}
			if _, err := in.IngestJSON([]byte(`{"workspace_name":"default","records":{"transactions":[` + strings.Join(recs, ",") + `]}}`)); err != nil {
				t.Fatal(err)
			}
		}
	}
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
