package node

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/wal"
	"github.com/tally-ml/tally/wal/walfs"
	"github.com/tally-ml/tally/windows"
)

// schemaRepo is a small repo; the tests edit its text to change it.
const schemaRepo = `
sources:
  - name: clicks
    timestamp: ts
    schema: {user: string, page: string, price: string}
  - name: buys
    timestamp: ts
    schema: {user: string, amt: float}
entities:
  - {name: user, join_key: user}
  - {name: page, join_key: page}
feature_views:
  - name: user_clicks
    source: clicks
    entity: user
    aggregations:
      - {column: page, function: count, window: 1h}
  - name: user_buys
    source: buys
    entity: user
    aggregations:
      - {column: amt, function: sum, window: 1h}
table_views:
  - name: profile
    entity: user
    schema: {age: string}
feature_services:
  - name: svc
    features: [user_clicks]
`

// started is a node recovered over a data dir the way tally serve starts.
type started struct {
	n   *Node
	l   *wal.Log
	log *bytes.Buffer // the node's startup log
}

// startSchema opens dataDir's log and starts a node over it with the repo
// text: checkSchema, the newest snapshot, the log, saveSchema.
func startSchema(t *testing.T, dataDir, repoText string, accept bool) (*started, error) {
	t.Helper()
	repo, err := features.Load(fstest.MapFS{"repo.yaml": {Data: []byte(repoText)}})
	if err != nil {
		t.Fatalf("repo: %v", err)
	}
	l, err := wal.Open(filepath.Join(dataDir, "wal"), wal.Options{Sync: wal.SyncNever, SegmentSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	clk := &testClock{}
	clk.set(t0)
	n, err := New(repo, DefaultConfig(), Options{Clock: clk.now, Log: l})
	if err != nil {
		t.Fatal(err)
	}
	s := &started{n: n, l: l, log: &bytes.Buffer{}}
	err = n.CheckSchema(walfs.OS, dataDir, accept, slog.New(slog.NewTextHandler(s.log, nil)))
	if err == nil {
		_, err = n.RestoreLatestSnapshot(dataDir, nil)
	}
	if err == nil {
		_, err = n.RecoverFrom(l)
	}
	if err == nil {
		err = n.SaveSchema(walfs.OS, dataDir)
	}
	if err != nil {
		l.Close()
		return nil, err
	}
	t.Cleanup(func() { l.Close() })
	return s, nil
}

func mustStartSchema(t *testing.T, dataDir, repoText string, accept bool) *started {
	t.Helper()
	s, err := startSchema(t, dataDir, repoText, accept)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	return s
}

func (s *started) stop(t *testing.T) {
	t.Helper()
	if err := s.l.Close(); err != nil {
		t.Fatal(err)
	}
}

func (s *started) ingest(t *testing.T, source string, lines ...string) {
	t.Helper()
	if _, err := s.n.IngestNDJSON(source, []byte(strings.Join(lines, "\n")), false); err != nil {
		t.Fatalf("ingest %s: %v", source, err)
	}
}

// click is one clicks event at t0 - ago ms.
func click(user, page string, ago int64) string {
	return fmt.Sprintf(`{"user":%q,"page":%q,"price":"9.5","ts":%d}`, user, page, t0-ago)
}

// viewValue reads feature f of view (by name) for key.
func viewValue(t *testing.T, n *Node, view, key string, f int) float64 {
	t.Helper()
	for i, v := range n.Repo().Views {
		if v.Name == view {
			vals := n.ReadView(i, []byte(key), t0, nil)
			return vals[f].Num
		}
	}
	t.Fatalf("no view %s", view)
	return 0
}

// fill writes state of every kind: events in both sources and a table
// upload, a snapshot, then more of each after it, so that both the
// snapshot and the log hold some of everything.
func fill(t *testing.T, dataDir string, s *started) {
	t.Helper()
	s.ingest(t, "clicks", click("u1", "a", 3000), click("u1", "b", 2000))
	s.ingest(t, "buys", `{"user":"u1","amt":2,"ts":`+fmt.Sprint(t0-2500)+`}`)
	if _, aerr := s.n.UploadTable("profile", CSV, []byte("user,age\nu1,42\n"), false); aerr != nil {
		t.Fatal(aerr)
	}
	if _, _, err := s.n.SnapshotInto(dataDir); err != nil {
		t.Fatal(err)
	}
	s.ingest(t, "clicks", click("u1", "c", 1000))
	s.ingest(t, "buys", `{"user":"u1","amt":3,"ts":`+fmt.Sprint(t0-500)+`}`)
	if _, aerr := s.n.UploadTable("profile", CSV, []byte("user,age\nu2,7\n"), false); aerr != nil {
		t.Fatal(aerr)
	}
}

// A column whose type changed is refused at start, with or without
// --accept-schema-change, naming the change: stored values are never read
// as a silent 0.
func TestSchemaTypeChangeRefused(t *testing.T) {
	for _, c := range []struct{ from, to, want string }{
		{"price: string}", "price: float}", "source clicks column price type string -> float"},
		{"schema: {age: string}", "schema: {age: float}", "table profile column age type string -> float"},
	} {
		dataDir := t.TempDir()
		s := mustStartSchema(t, dataDir, schemaRepo, false)
		fill(t, dataDir, s)
		s.stop(t)
		changed := strings.Replace(schemaRepo, c.from, c.to, 1)
		for _, accept := range []bool{false, true} {
			_, err := startSchema(t, dataDir, changed, accept)
			if !errors.Is(err, store.ErrSchemaChanged) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "move the data directory aside") {
				t.Fatalf("%s, accept %v: start = %v, want a refusal naming %q", c.want, accept, err, c.want)
			}
		}
		// Without the fingerprint, the log's and snapshot's own value kinds
		// still refuse to read text as a number.
		os.Remove(filepath.Join(dataDir, store.SchemaFile))
		if _, err := startSchema(t, dataDir, changed, false); !errors.Is(err, store.ErrTypeChanged) {
			t.Fatalf("%s without schema.json: start = %v, want store.ErrTypeChanged", c.want, err)
		}
	}
}

// A view added over an existing data dir is built from the log the node
// still has, also what the snapshot covers, and the startup log says how
// far back it reaches; a view keyed by a column the old events lack skips
// them (counted) rather than stopping startup as corruption.
func TestSchemaViewAddedBuiltFromLog(t *testing.T) {
	dataDir := t.TempDir()
	s := mustStartSchema(t, dataDir, schemaRepo, false)
	fill(t, dataDir, s)
	s.stop(t)
	added := strings.Replace(schemaRepo, "price: string}", "price: string, device: string}", 1)
	added = strings.Replace(added, "  - {name: page, join_key: page}", "  - {name: page, join_key: page}\n  - {name: device, join_key: device}", 1)
	added = strings.Replace(added, "table_views:", `  - name: page_clicks
    source: clicks
    entity: page
    aggregations:
      - {column: user, function: count, window: 1h}
  - name: device_clicks
    source: clicks
    entity: device
    aggregations:
      - {column: page, function: count, window: 1h}
table_views:`, 1)
	added = strings.Replace(added, "schema: {age: string}", "schema: {age: string, city: string}", 1)
	s = mustStartSchema(t, dataDir, added, false) // additions need no flag
	log := s.log.String()
	for _, want := range []string{"view page_clicks added", "view device_clicks added", "source clicks column device (string) added",
		"table profile column city (string) added", "feature view built from the log", "view=page_clicks records=1..6 events_since=2026-11-24T23:59:57Z",
		"view=device_clicks records=4..6 note=\"the log before the snapshot (records 1..3) holds none of its events", "events logged before the view's key column existed were skipped"} {
		if !strings.Contains(log, want) {
			t.Errorf("startup log lacks %q:\n%s", want, log)
		}
	}
	// page_clicks counts the events before the snapshot (built from the
	// log) and after it (replayed), each once.
	for page, want := range map[string]float64{"a": 1, "b": 1, "c": 1} {
		if got := viewValue(t, s.n, "page_clicks", page, 0); got != want {
			t.Errorf("page_clicks[%s] = %v, want %v", page, got, want)
		}
	}
	if got := viewValue(t, s.n, "user_clicks", "u1", 0); got != 3 {
		t.Errorf("user_clicks[u1] = %v, want 3 (restored)", got)
	}
	nums, strs, present := make([]float64, 2), make([]string, 2), make([]bool, 2)
	if !s.n.TableNamed("profile").Get([]byte("u1"), nums, strs, present) || strs[0] != "42" || !present[0] || present[1] {
		t.Errorf("profile[u1] = %q present %v, want age 42 and no city", strs, present)
	}
	s.ingest(t, "clicks", fmt.Sprintf(`{"user":"u1","page":"d","price":"1","device":"phone","ts":%d}`, t0-100))
	if got := viewValue(t, s.n, "device_clicks", "phone", 0); got != 1 {
		t.Errorf("device_clicks[phone] = %v, want 1", got)
	}
	if _, _, err := s.n.SnapshotInto(dataDir); err != nil {
		t.Fatal(err)
	}
	s.stop(t)
	// And the same again from the new snapshot, with nothing to apply.
	s = mustStartSchema(t, dataDir, added, false)
	if got := viewValue(t, s.n, "page_clicks", "d", 0); got != 1 || strings.Contains(s.log.String(), "schema change") {
		t.Errorf("restart: page_clicks[d] = %v\n%s", got, s.log.String())
	}
}

// Removing a source and a table needs --accept-schema-change; once
// accepted, their records in the snapshot and the log are skipped and
// counted, now and at every later start.
func TestSchemaRemovedSourceAndTable(t *testing.T) {
	dataDir := t.TempDir()
	s := mustStartSchema(t, dataDir, schemaRepo, false)
	fill(t, dataDir, s)
	s.stop(t)
	removed := strings.Replace(schemaRepo, `  - name: buys
    timestamp: ts
    schema: {user: string, amt: float}
`, "", 1)
	removed = strings.Replace(removed, `  - name: user_buys
    source: buys
    entity: user
    aggregations:
      - {column: amt, function: sum, window: 1h}
`, "", 1)
	removed = strings.Replace(removed, `table_views:
  - name: profile
    entity: user
    schema: {age: string}
`, "", 1)
	_, err := startSchema(t, dataDir, removed, false)
	if !errors.Is(err, store.ErrSchemaChanged) {
		t.Fatalf("start without the flag: %v", err)
	}
	for _, want := range []string{"source buys removed", "view user_buys removed", "table profile removed", "--accept-schema-change"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal lacks %q: %v", want, err)
		}
	}
	s = mustStartSchema(t, dataDir, removed, true)
	if !strings.Contains(s.log.String(), "skipped records of sources or tables the repo no longer has") {
		t.Errorf("startup log does not count the skipped records:\n%s", s.log.String())
	}
	if got := viewValue(t, s.n, "user_clicks", "u1", 0); got != 3 {
		t.Errorf("user_clicks[u1] = %v, want 3", got)
	}
	s.stop(t)
	// Accepted once: the next start needs no flag and still skips them.
	s = mustStartSchema(t, dataDir, removed, false)
	if got := viewValue(t, s.n, "user_clicks", "u1", 0); got != 3 {
		t.Errorf("second start: user_clicks[u1] = %v, want 3", got)
	}
}

// A changed window and a renamed view are named precisely and need the
// flag; the changed view is then rebuilt from the log.
func TestSchemaViewChangedAndRenamed(t *testing.T) {
	dataDir := t.TempDir()
	s := mustStartSchema(t, dataDir, schemaRepo, false)
	fill(t, dataDir, s)
	s.stop(t)
	changed := strings.Replace(schemaRepo, "{column: page, function: count, window: 1h}", "{column: page, function: count, window: 2h}", 1)
	_, err := startSchema(t, dataDir, changed, false)
	want := "view user_clicks changed: feature page_count_1h name page_count_1h -> page_count_2h, window 1h -> 2h"
	if !errors.Is(err, store.ErrSchemaChanged) || !strings.Contains(err.Error(), want) {
		t.Fatalf("window change: %v\nwant %q", err, want)
	}
	renamed := strings.Replace(schemaRepo, "name: user_clicks", "name: user_clicks_v2", 1)
	renamed = strings.Replace(renamed, "features: [user_clicks]", "features: [user_clicks_v2]", 1)
	_, err = startSchema(t, dataDir, renamed, false)
	if !errors.Is(err, store.ErrSchemaChanged) || !strings.Contains(err.Error(), "view user_clicks removed") || !strings.Contains(err.Error(), "view user_clicks_v2 added") {
		t.Fatalf("rename: %v", err)
	}
	s = mustStartSchema(t, dataDir, changed, true)
	if got := viewValue(t, s.n, "user_clicks", "u1", 0); got != 3 {
		t.Errorf("rebuilt user_clicks[u1] = %v, want 3", got)
	}
	if !strings.Contains(s.log.String(), "view=user_clicks records=1..") {
		t.Errorf("startup log does not say how the view was built:\n%s", s.log.String())
	}
}

// A version-1 snapshot (no schema section) still restores.
func TestSnapshotVersion1StillRead(t *testing.T) {
	dataDir := t.TempDir()
	s := mustStartSchema(t, dataDir, schemaRepo, false)
	fill(t, dataDir, s)
	var buf bytes.Buffer
	if _, err := s.n.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	// Version 4 less the schema, with each group (one view each here)
	// recorded by its view's name, is version 1.
	v4 := buf.Bytes()
	schemaLen := int(binary.LittleEndian.Uint32(v4[20:]))
	v1 := append([]byte(nil), v4[:20]...)
	binary.LittleEndian.PutUint32(v1[8:], 1)
	rest := v4[24+schemaLen:]
	ngroups := binary.LittleEndian.Uint32(rest)
	v1, rest = append(v1, rest[:4]...), rest[4:]
	for range ngroups {
		size := binary.LittleEndian.Uint32(rest)
		var layout struct{ Members []struct{ Name string } }
		if err := json.Unmarshal(rest[4:4+size], &layout); err != nil || len(layout.Members) != 1 {
			t.Fatalf("group layout %s: %v", rest[4:4+size], err)
		}
		rest = rest[4+size:]
		v1 = binary.AppendUvarint(v1, uint64(len(layout.Members[0].Name)))
		v1 = append(v1, layout.Members[0].Name...)
		r := bytes.NewReader(rest)
		if err := windows.SkipSection(r); err != nil {
			t.Fatal(err)
		}
		meta := len(rest) - r.Len()
		v1, rest = append(v1, rest[:meta]...), rest[meta:]
	}
	v1 = append(v1, rest...)
	repo, _ := features.Load(fstest.MapFS{"repo.yaml": {Data: []byte(schemaRepo)}})
	fresh, err := New(repo, DefaultConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Restore(bytes.NewReader(v1)); err != nil {
		t.Fatalf("read a version-1 snapshot: %v", err)
	}
	if got := viewValue(t, fresh, "user_clicks", "u1", 0); got != 3 {
		t.Errorf("user_clicks[u1] = %v, want 3", got)
	}
}
