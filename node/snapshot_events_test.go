package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// snapshotFiles lists the snapshots of a data dir.
func snapshotFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "snapshots"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".snap") {
			names = append(names, e.Name())
		}
	}
	return names
}

// TestSnapshotEveryEvents: with durability.snapshot_every_events set, a
// burst of ingest is snapshotted once that many events were applied, long
// before snapshot_every, and not before.
func TestSnapshotEveryEvents(t *testing.T) {
	dir := t.TempDir()
	cfg := openCfg(dir, "always", false)
	cfg.Durability.SnapshotEvery = time.Hour
	cfg.Durability.SnapshotEveryEvents = 2000
	in := mustOpenNode(t, cfg, nil)
	bodies := bulkBodies(3, 1000, 3, 500)
	if _, err := in.IngestNDJSON("transactions", bodies[0], false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the loop checks every 250 ms
	if got := snapshotFiles(t, dir); len(got) != 0 {
		t.Fatalf("snapshots %v after 1000 of 2000 events", got)
	}
	for _, body := range bodies[1:] {
		if _, err := in.IngestNDJSON("transactions", body, false); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(snapshotFiles(t, dir)) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := snapshotFiles(t, dir); len(got) != 1 {
		t.Fatalf("snapshots %v after 3000 events with snapshot_every_events 2000: want one", got)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
}
