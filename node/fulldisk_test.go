package node

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/internal/smallfs"
	"github.com/tally-ml/tally/wal"
)

// TestFullDiskIsRetriedWithoutARestart: the node's disk (a real, small
// tmpfs) fills up. Ingest gets 503 NOT_DURABLE naming the full disk and
// /readyz answers 503; once space is freed, the next ingest is
// acknowledged without a restart, and the log holds every acknowledged
// ingest once. Before, the segment made ahead on the full disk was sparse,
// the roll took it, and the writes into it failed: the log stayed broken
// ("a failed write or fsync needs a restart") after the disk had room.
func TestFullDiskIsRetriedWithoutARestart(t *testing.T) {
	root := smallfs.Mount(t, 1<<20)
	dir := filepath.Join(root, "wal")
	l, err := wal.Open(dir, wal.Options{SegmentSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { l.Close() }()
	filler := filepath.Join(root, "filler")
	smallfs.Fill(t, filler, 16<<10)
	repo, _ := features.Default()
	clk := &testClock{}
	clk.set(t0)
	n, err := New(repo, DefaultConfig(), Options{Clock: clk.now, Log: l, RepoFS: features.DefaultFS()})
	if err != nil {
		t.Fatal(err)
	}
	n.SetReady(true)
	base := serve(t, n)
	ingest := func(i int) (int, string) {
		return do(t, "POST", base+"/api/v1/ingest", "", "", string(ingestBody(txn(fmt.Sprintf("u%d", i), "m1", "FR", 1, t0-1))))
	}
	acked, failed := 0, 0
	for i := 0; failed < 3; i++ {
		if i == 5000 {
			t.Fatalf("no ingest failed in 5,000 requests with %d bytes free", smallfs.Free(t, root))
		}
		code, body := ingest(i)
		switch {
		case code == 200:
			acked++
		case code == 503 && strings.Contains(body, "NOT_DURABLE") && strings.Contains(body, "no space left on device"):
			failed++
		default:
			t.Fatalf("ingest %d: %d %s", i, code, body)
		}
	}
	if code, body := do(t, "GET", base+"/readyz", "", "", ""); code != 503 || !strings.Contains(body, "no space left on device") {
		t.Fatalf("/readyz on a full disk: %d %s", code, body)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if code, body := ingest(99999); code != 200 {
		t.Fatalf("ingest once the disk has room again: %d %s (want 200, without a restart)", code, body)
	}
	if code, body := do(t, "GET", base+"/readyz", "", "", ""); code != 200 {
		t.Fatalf("/readyz once the disk has room again: %d %s", code, body)
	}
	if got := n.AppliedIndex(); got != uint64(acked+1) || l.LastIndex() != got {
		t.Fatalf("applied %d, log at %d; %d ingests acknowledged", got, l.LastIndex(), acked+1)
	}
	l.Close()
	if l, err = wal.Open(dir, wal.Options{SegmentSize: 64 << 10}); err != nil {
		t.Fatalf("reopen: %v", err)
	}
	if got := l.LastIndex(); got != uint64(acked+1) {
		t.Fatalf("reopened log ends at %d; %d ingests acknowledged", got, acked+1)
	}
}
