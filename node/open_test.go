package node

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/snapshot"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/wal"
	"github.com/tally-ml/tally/wal/walfs"
)

// openCfg is a config for a node opened on dir: snapshots only when the
// test takes them (and at Close when final), retention of nothing.
func openCfg(dir, fsync string, final bool) Config {
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.Durability.Fsync = fsync
	cfg.Durability.SegmentSize = 1 << 16
	cfg.Durability.Retention = 0
	cfg.Durability.SnapshotEvery = 0
	if final {
		cfg.Durability.SnapshotEvery = 1 << 40 // never ticks; Close writes the final one
	}
	return cfg
}

func mustOpenNode(t testing.TB, cfg Config, fsys walfs.FS) *Instance {
	t.Helper()
	return mustOpenNodeLog(t, cfg, fsys, nil)
}

// mustOpenNodeLog opens a node whose log lines go to logw (if not nil).
func mustOpenNodeLog(t testing.TB, cfg Config, fsys walfs.FS, logw io.Writer) *Instance {
	t.Helper()
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	clk := &testClock{}
	clk.set(t0)
	var logger *slog.Logger
	if logw != nil {
		logger = slog.New(slog.NewTextHandler(logw, nil))
	}
	in, err := Open(cfg, repo, OpenOptions{Node: Options{Clock: clk.now, RepoFS: features.DefaultFS()}, FS: fsys, Logger: logger})
	if err != nil {
		t.Fatalf("open %s: %v", cfg.DataDir, err)
	}
	return in
}

// userTxn ingests one request: a transaction of amount amt by user u.
func userTxn(t testing.TB, n *Node, u string, amt float64) {
	t.Helper()
	if _, err := n.IngestJSON(ingestBody(txn(u, "m1", "FR", amt, t0-1000))); err != nil {
		t.Fatalf("ingest %s: %v", u, err)
	}
}

// sum1h reads user u's amt_sum_1h.
func sum1h(t testing.TB, n *Node, u string) float64 {
	t.Helper()
	out, aerr := n.GetFeatures(nil, lookupBody(u, "m1", "FR", 1, 0, 0))
	if aerr != nil {
		t.Fatalf("get-features: %v", aerr)
	}
	v := decodeVector(t, out)["user_transaction_amounts.amt_sum_1h"]
	f, _ := v.v.(float64)
	return f
}

// TestOpenIngestCloseReopen: a node opened on a data dir, fed and closed,
// reopens to the same answers, from its final snapshot and from its log.
func TestOpenIngestCloseReopen(t *testing.T) {
	for _, final := range []bool{true, false} {
		t.Run(fmt.Sprintf("final_snapshot=%v", final), func(t *testing.T) {
			cfg := openCfg(t.TempDir(), "always", final)
			in := mustOpenNode(t, cfg, nil)
			for i := 0; i < 20; i++ {
				userTxn(t, in.Node, "u"+strconv.Itoa(i%5), float64(i+1))
			}
			if _, aerr := in.UploadTable("user_profile", CSV, []byte("user_id,home_lat,home_long\nu1,48.8,2.3\n"), false); aerr != nil {
				t.Fatal(aerr)
			}
			body := lookupBody("u1", "m1", "FR", 10, 1, 2)
			want, aerr := in.GetFeatures(nil, body)
			if aerr != nil {
				t.Fatal(aerr)
			}
			if err := in.Close(); err != nil {
				t.Fatal(err)
			}
			in = mustOpenNode(t, cfg, nil)
			defer in.Close()
			if rec := in.Recovery(); final != (rec.Snapshot != "") || final == (rec.Replayed > 0) {
				t.Errorf("recovery %+v: want from the final snapshot %v, else the log", rec, final)
			}
			got, aerr := in.GetFeatures(nil, body)
			if aerr != nil {
				t.Fatal(aerr)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("after reopen:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// TestOpenLocksDataDir: a second Open of a data dir in use fails at once,
// naming the dir and the holder's pid, and so does a repair's lock; once
// the first closes, the dir opens again.
func TestOpenLocksDataDir(t *testing.T) {
	cfg := openCfg(t.TempDir(), "always", false)
	in := mustOpenNode(t, cfg, nil)
	repo, _ := features.Default()
	_, err := Open(cfg, repo, OpenOptions{Node: Options{RepoFS: features.DefaultFS()}})
	if !errors.Is(err, store.ErrDataDirInUse) {
		t.Fatalf("second open: %v, want store.ErrDataDirInUse", err)
	}
	for _, want := range []string{cfg.DataDir, "pid " + strconv.Itoa(os.Getpid()), "stop it first"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := store.LockDataDir(cfg.DataDir); !errors.Is(err, store.ErrDataDirInUse) {
		t.Fatalf("lock while open: %v", err)
	}
	userTxn(t, in.Node, "a", 1)
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	in = mustOpenNode(t, cfg, nil)
	defer in.Close()
	if got := sum1h(t, in.Node, "a"); got != 1 {
		t.Fatalf("after reopen sum = %v", got)
	}
}

// TestLogCutBehindSnapshotByRepair is issue 10's first repro: 50 requests,
// a clean stop (snapshot at 50), the log repaired back to 19 records, a
// restart, 10 more acknowledged requests and a clean stop: after a restart
// all 10 are there (they used to get indexes 20..29, which the snapshot at
// 50 was taken to cover).
func TestLogCutBehindSnapshotByRepair(t *testing.T) {
	cfg := openCfg(t.TempDir(), "always", true)
	in := mustOpenNode(t, cfg, nil)
	for i := 0; i < 50; i++ {
		userTxn(t, in.Node, "old"+strconv.Itoa(i), 1)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	cutLog(t, cfg.DataDir, 19) // what `tally admin wal repair` keeps of a log corrupt at record 20
	var logs bytes.Buffer
	in = mustOpenNodeLog(t, cfg, nil, &logs)
	if got := in.Recovery().SnapshotIndex; got != 50 {
		t.Fatalf("recovered from snapshot index %d, want 50", got)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"the log ends behind the newest snapshot") ||
		!strings.Contains(logs.String(), "lost_from=20 lost_through=50") {
		t.Errorf("no warning naming records 20..50:\n%s", logs.String())
	}
	for i := 0; i < 10; i++ {
		userTxn(t, in.Node, "new"+strconv.Itoa(i), 7)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	in = mustOpenNode(t, cfg, nil)
	defer in.Close()
	for i := 0; i < 10; i++ {
		if got := sum1h(t, in.Node, "new"+strconv.Itoa(i)); got != 7 {
			t.Errorf("acknowledged after the repair: new%d sum = %v, want 7", i, got)
		}
	}
	for i := 0; i < 50; i++ {
		if got := sum1h(t, in.Node, "old"+strconv.Itoa(i)); got != 1 {
			t.Errorf("old%d sum = %v, want 1 (the snapshot holds it)", i, got)
		}
	}
	// The log is the archive: a replay of it from the start meets the
	// indexes only the snapshot held and says so.
	fresh, _ := newTestNode(t, DefaultConfig())
	err := in.WAL().Replay(in.WAL().FirstIndex(), func(i uint64, rec []byte) error { return fresh.Apply(i, rec) })
	if !errors.Is(err, store.ErrLostRecords) {
		t.Fatalf("replay across the lost records: %v, want store.ErrLostRecords", err)
	}
}

// TestLogTailLostBehindSnapshot is issue 10's second repro: fsync interval,
// a snapshot at 50 made durable while the log's last records were lost by a
// power loss, then 3 acknowledged requests and a kill -9 (no final
// snapshot): after a restart all 3 are there.
func TestLogTailLostBehindSnapshot(t *testing.T) {
	cfg := openCfg(t.TempDir(), "interval", false)
	in := mustOpenNode(t, cfg, nil)
	for i := 0; i < 50; i++ {
		userTxn(t, in.Node, "old"+strconv.Itoa(i), 1)
	}
	if s, err := in.Snapshot(); err != nil || s != 50 {
		t.Fatalf("snapshot at %d: %v", s, err)
	}
	in.Close() // no final snapshot: as far as the disk goes, a kill -9
	cutLog(t, cfg.DataDir, 47)
	in = mustOpenNode(t, cfg, nil)
	for i := 0; i < 3; i++ {
		userTxn(t, in.Node, "new"+strconv.Itoa(i), 7)
	}
	in.Close()
	in = mustOpenNode(t, cfg, nil)
	defer in.Close()
	for i := 0; i < 3; i++ {
		if got := sum1h(t, in.Node, "new"+strconv.Itoa(i)); got != 7 {
			t.Errorf("new%d sum = %v, want 7", i, got)
		}
	}
	if got := sum1h(t, in.Node, "old49"); got != 1 {
		t.Errorf("old49 sum = %v, want 1 (the snapshot holds it)", got)
	}
}

// cutLog makes the data dir's log end at last, as a repair or a lost tail
// leaves it.
func cutLog(t *testing.T, dataDir string, last uint64) {
	t.Helper()
	l, err := wal.Open(filepath.Join(dataDir, "wal"), wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.TruncateBack(last); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptSnapshotsAreSetAsideNotCounted: a snapshot that fails
// verification is moved to corrupt-<name> and does not count toward the two
// kept, so the verified older one and the log it needs stay; when the
// newest then fails too, the node still starts with every change.
func TestCorruptSnapshotsAreSetAsideNotCounted(t *testing.T) {
	cfg := openCfg(t.TempDir(), "always", false)
	in := mustOpenNode(t, cfg, nil)
	users := 0
	ingest := func(k int) {
		for i := 0; i < k; i++ {
			// Big requests, so that the log rolls segments retention can drop.
			var recs []string
			for j := 0; j < 40; j++ {
				recs = append(recs, txn("u"+strconv.Itoa(users), "m1", "FR", 1, t0-1000))
			}
			users++
			if _, err := in.IngestJSON(ingestBody(recs...)); err != nil {
				t.Fatal(err)
			}
		}
	}
	snap := func() uint64 {
		s, err := in.Snapshot()
		if err != nil || s == 0 {
			t.Fatalf("snapshot: %d %v", s, err)
		}
		return s
	}
	ingest(100)
	s1 := snap()
	ingest(100)
	s2 := snap()
	in.Close()
	snapDir := filepath.Join(cfg.DataDir, "snapshots")
	corrupt := func(s uint64) {
		p := filepath.Join(snapDir, snapshot.Name(s))
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 0xff
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	corrupt(s2)
	var logs bytes.Buffer
	in = mustOpenNodeLog(t, cfg, nil, &logs)
	if got := in.Recovery().SnapshotIndex; got != s1 {
		t.Fatalf("recovered from %d, want the verified %d", got, s1)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"snapshot fails verification: moved aside") || !strings.Contains(logs.String(), "corrupt-"+snapshot.Name(s2)) {
		t.Errorf("no warning naming the snapshot set aside:\n%s", logs.String())
	}
	ingest(100)
	s3 := snap()
	ingest(100)
	in.Close()
	for _, name := range []string{snapshot.Name(s1), snapshot.Name(s3), "corrupt-" + snapshot.Name(s2)} {
		if _, err := os.Stat(filepath.Join(snapDir, name)); err != nil {
			t.Errorf("want %s kept: %v", name, err)
		}
	}
	corrupt(s3)
	in = mustOpenNode(t, cfg, nil)
	defer in.Close()
	if got := in.Recovery().SnapshotIndex; got != s1 {
		t.Fatalf("recovered from %d, want %d", got, s1)
	}
	for u := 0; u < users; u++ {
		if got := sum1h(t, in.Node, "u"+strconv.Itoa(u)); got != 40 {
			t.Fatalf("u%d sum = %v, want 40", u, got)
		}
	}
}

// TestSnapshotReadErrorFailsTheStart: the newest snapshot is good but
// cannot be read (no file descriptor left at its open; a disk error in its
// middle). The start fails with an error naming the file and the OS error,
// sets nothing aside and falls back to nothing; once reads succeed, the
// next start restores that snapshot.
func TestSnapshotReadErrorFailsTheStart(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(m *walfs.Mem, path string, size int)
		want error
	}{
		{"open-EMFILE", func(m *walfs.Mem, path string, _ int) { m.FailOpen, m.FailOnly = syscall.EMFILE, path }, syscall.EMFILE},
		{"read-EIO-mid-file", func(m *walfs.Mem, path string, size int) {
			m.FailRead, m.FailReadAt, m.FailOnly = syscall.EIO, int64(size/2), path
		}, syscall.EIO},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := walfs.NewMem()
			cfg := openCfg("/data", "always", false)
			in := mustOpenNode(t, cfg, fsys)
			for u := 0; u < 50; u++ {
				userTxn(t, in.Node, "u"+strconv.Itoa(u), 1)
			}
			if _, err := in.Snapshot(); err != nil {
				t.Fatal(err)
			}
			for u := 50; u < 100; u++ {
				userTxn(t, in.Node, "u"+strconv.Itoa(u), 1)
			}
			s2, err := in.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			in.Close()
			p := "/data/snapshots/" + snapshot.Name(s2)
			size := len(fsys.ReadFile(p))
			fsys.Set(func(m *walfs.Mem) { tc.set(m, p, size) })
			repo, _ := features.Default()
			var logs bytes.Buffer
			in, err = Open(cfg, repo, OpenOptions{Node: Options{RepoFS: features.DefaultFS()}, FS: fsys, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err == nil {
				t.Errorf("started from snapshot %d although %s could not be read:\n%s", in.Recovery().SnapshotIndex, p, logs.String())
				in.Close()
			} else if errors.Is(err, snapshot.ErrCorrupt) || !errors.Is(err, tc.want) || !strings.Contains(err.Error(), p) {
				t.Errorf("start: %v; want an error naming %s and %v", err, p, tc.want)
			}
			ents, _ := fsys.ReadDir("/data/snapshots")
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), "corrupt-") {
					t.Errorf("%s set aside although only its reads failed", e.Name())
				}
			}
			fsys.Set(func(m *walfs.Mem) { m.FailOpen, m.FailRead, m.FailReadAt, m.FailOnly = nil, nil, 0, "" })
			in = mustOpenNode(t, cfg, fsys)
			defer in.Close()
			if got := in.Recovery().SnapshotIndex; got != s2 {
				t.Fatalf("once reads succeed, recovered from %d, want the newest, %d", got, s2)
			}
			for u := 0; u < 100; u++ {
				if got := sum1h(t, in.Node, "u"+strconv.Itoa(u)); got != 1 {
					t.Fatalf("u%d sum = %v, want 1", u, got)
				}
			}
		})
	}
}
