package delta

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/tally-ml/tally/tabular"
)

var testCols = []tabular.Column{{Name: "user_id", Type: tabular.String}, {Name: "timestamp", Type: tabular.Timestamp},
	{Name: "amt", Type: tabular.Float64}, {Name: "n", Type: tabular.Int64}, {Name: "ok", Type: tabular.Bool},
	{Name: "last", Type: tabular.Float64List}, {Name: "merchants", Type: tabular.StringList}}

func testRows(first, n int) [][]tabular.Value {
	var rows [][]tabular.Value
	for i := first; i < first+n; i++ {
		rows = append(rows, []tabular.Value{{Str: fmt.Sprintf("u%d", i)}, {Int: 1_700_000_000_000 + int64(i)}, {Num: float64(i) / 4},
			{Int: int64(i)}, {Bool: i%2 == 0}, {Nums: []float64{float64(i), 1}}, {Strs: []string{"m", fmt.Sprint(i)}}})
		if i%3 == 0 {
			rows[len(rows)-1][2] = tabular.Value{Null: true}
		}
	}
	return rows
}

func appendRows(t *testing.T, dir string, rows [][]tabular.Value) int64 {
	t.Helper()
	w, err := Create(dir, testCols)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.Version()
}

// readTable reads every data file the log adds, in commit order.
func readTable(t *testing.T, dir string) (versions int, rows [][]tabular.Value) {
	t.Helper()
	for v := 0; ; v++ {
		b, err := os.ReadFile(filepath.Join(dir, LogDir, commitName(int64(v))))
		if os.IsNotExist(err) {
			return v, rows
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var a struct {
				Add *struct {
					Path  string `json:"path"`
					Size  int64  `json:"size"`
					Stats string `json:"stats"`
				} `json:"add"`
			}
			if err := json.Unmarshal([]byte(line), &a); err != nil {
				t.Fatalf("version %d: %v: %s", v, err, line)
			}
			if a.Add == nil {
				continue
			}
			st, err := os.Stat(filepath.Join(dir, a.Add.Path))
			if err != nil || st.Size() != a.Add.Size {
				t.Fatalf("add %s: size %d in the log, file %v %v", a.Add.Path, a.Add.Size, st, err)
			}
			r, err := tabular.Open(filepath.Join(dir, a.Add.Path))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(r.Columns(), testCols) {
				t.Fatalf("columns %v", r.Columns())
			}
			n := 0
			for {
				row := make([]tabular.Value, len(testCols))
				if err := r.Next(row); err == io.EOF {
					break
				} else if err != nil {
					t.Fatal(err)
				}
				rows = append(rows, row)
				n++
			}
			r.Close()
			if want := fmt.Sprintf(`{"numRecords":%d}`, n); a.Add.Stats != want {
				t.Fatalf("stats %s, want %s", a.Add.Stats, want)
			}
		}
	}
}

func TestAppendsAreCommits(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "table")
	if v := appendRows(t, dir, testRows(0, 10)); v != 0 {
		t.Fatalf("first append committed version %d", v)
	}
	if v := appendRows(t, dir, testRows(10, 5)); v != 1 {
		t.Fatalf("second append committed version %d", v)
	}
	versions, rows := readTable(t, dir)
	if versions != 2 || !reflect.DeepEqual(rows, testRows(0, 15)) {
		t.Fatalf("%d versions, rows %v", versions, rows)
	}
	first, _ := os.ReadFile(filepath.Join(dir, LogDir, commitName(0)))
	second, _ := os.ReadFile(filepath.Join(dir, LogDir, commitName(1)))
	if !strings.Contains(string(first), `"protocol":{"minReaderVersion":1,"minWriterVersion":2}`) || !strings.Contains(string(first), `"metaData"`) {
		t.Fatalf("version 0 lacks protocol or metaData:\n%s", first)
	}
	if strings.Contains(string(second), `"metaData"`) || strings.Contains(string(second), `"protocol"`) || !strings.Contains(string(second), `"readVersion":0`) {
		t.Fatalf("version 1 is not a blind append:\n%s", second)
	}
}

func TestSchemaMismatchRefusedBeforeWriting(t *testing.T) {
	dir := t.TempDir()
	appendRows(t, dir, testRows(0, 3))
	before, _ := os.ReadDir(dir)
	other := append([]tabular.Column(nil), testCols...)
	other[2].Type = tabular.Int64
	if _, err := Create(dir, other); err == nil || !strings.Contains(err.Error(), "new table") {
		t.Fatalf("another schema: %v", err)
	}
	if _, err := Create(dir, testCols[:3]); err == nil {
		t.Fatal("fewer columns accepted")
	}
	after, _ := os.ReadDir(dir)
	if len(before) != len(after) {
		t.Fatalf("a refused append left files: %v -> %v", before, after)
	}
}

func TestDiscardLeavesTheTableAsItWas(t *testing.T) {
	dir := t.TempDir()
	appendRows(t, dir, testRows(0, 3))
	w, err := Create(dir, testCols)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(testRows(3, 1)[0])
	if err := w.Discard(); err != nil {
		t.Fatal(err)
	}
	versions, rows := readTable(t, dir)
	ents, _ := os.ReadDir(dir)
	if versions != 1 || len(rows) != 3 || len(ents) != 2 { // one data file and _delta_log
		t.Fatalf("after a discard: %d versions, %d rows, %d entries", versions, len(rows), len(ents))
	}
}

// TestConcurrentAppendsEachCommitOnce: writers racing for the same next
// version all commit, each exactly once, at distinct versions.
func TestConcurrentAppendsEachCommitOnce(t *testing.T) {
	dir := t.TempDir()
	appendRows(t, dir, testRows(0, 1))
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	ws := make([]*Writer, writers)
	for i := range ws { // all open before any commits: they all read version 0
		w, err := Create(dir, testCols)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(testRows(1+i, 1)[0])
		ws[i] = w
	}
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- w.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := map[int64]bool{}
	for _, w := range ws {
		seen[w.Version()] = true
	}
	versions, rows := readTable(t, dir)
	if len(seen) != writers || versions != writers+1 || len(rows) != writers+1 {
		t.Fatalf("versions %v, %d in the log, %d rows", seen, versions, len(rows))
	}
}

func TestRefusesTablesItCannotAppendTo(t *testing.T) {
	dir := t.TempDir()
	appendRows(t, dir, testRows(0, 1))
	appendRows(t, dir, testRows(1, 1))
	if err := os.Remove(filepath.Join(dir, LogDir, commitName(0))); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(dir, testCols); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("a log without version 0: %v", err)
	}
	dir = t.TempDir()
	os.MkdirAll(filepath.Join(dir, LogDir), 0o755)
	os.WriteFile(filepath.Join(dir, LogDir, commitName(0)), []byte(`{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"writerFeatures":["deletionVectors"]}}`+"\n"), 0o644)
	if _, err := Create(dir, testCols); err == nil || !strings.Contains(err.Error(), "writer version 7") {
		t.Fatalf("protocol 3/7: %v", err)
	}
}

// TestRefusedRowIsNotCounted: a row the data file refuses (wrong width) is
// not in the file, so the commit's stats must not count it: Delta readers
// answer count(*) from numRecords.
func TestRefusedRowIsNotCounted(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, testCols)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write([]tabular.Value{{Str: "short"}}); err == nil {
		t.Fatal("a row of 1 value for 7 columns was accepted")
	}
	if err := w.Write(testRows(0, 1)[0]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w.Rows() != 1 {
		t.Errorf("Rows() = %d, want 1", w.Rows())
	}
	b, err := os.ReadFile(filepath.Join(dir, LogDir, commitName(0)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `\"numRecords\":1}`) {
		t.Errorf("commit's stats do not say numRecords 1:\n%s", b)
	}
}

// sparkSchema is testCols' schema as Spark (and delta-rs) serialize a
// StructType: "type" before "fields".
const sparkSchema = `{"type":"struct","fields":[{"name":"user_id","type":"string","nullable":true,"metadata":{}},` +
	`{"name":"timestamp","type":"timestamp","nullable":true,"metadata":{}},{"name":"amt","type":"double","nullable":true,"metadata":{}},` +
	`{"name":"n","type":"long","nullable":true,"metadata":{}},{"name":"ok","type":"boolean","nullable":true,"metadata":{}},` +
	`{"name":"last","type":{"type":"array","elementType":"double","containsNull":true},"nullable":true,"metadata":{}},` +
	`{"name":"merchants","type":{"type":"array","elementType":"string","containsNull":true},"nullable":true,"metadata":{}}]}`

// TestAppendsAfterSparkRewroteTheMetadata: a table whose metaData Spark
// wrote (ALTER TABLE ... SET TBLPROPERTIES on a tally table, or a table
// Spark created with the same columns) has the same schema, serialized
// with another key order: tally appends to it. (The schemas were compared
// as text: such a table was refused as "another schema", quoting two equal
// schemas.)
func TestAppendsAfterSparkRewroteTheMetadata(t *testing.T) {
	meta := func(config string) string {
		b, _ := json.Marshal(map[string]any{"metaData": map[string]any{"id": "5f0c5c8e-7d43-4c1f-9a0e-2b0c1f6f1a11",
			"format": map[string]any{"provider": "parquet", "options": map[string]string{}}, "schemaString": sparkSchema,
			"partitionColumns": []string{}, "configuration": json.RawMessage(config), "createdTime": 1700000000000}})
		return string(b)
	}
	// A tally table, then Spark's SET TBLPROPERTIES.
	dir := t.TempDir()
	appendRows(t, dir, testRows(0, 2))
	alter := `{"commitInfo":{"timestamp":1700000000001,"operation":"SET TBLPROPERTIES","operationParameters":{"properties":"{\"delta.logRetentionDuration\":\"interval 90 days\"}"},"readVersion":0,"isolationLevel":"Serializable","isBlindAppend":true,"engineInfo":"Apache-Spark/4.1.0 Delta-Lake/4.0.0"}}` +
		"\n" + meta(`{"delta.logRetentionDuration":"interval 90 days"}`) + "\n"
	if err := os.WriteFile(filepath.Join(dir, LogDir, commitName(1)), []byte(alter), 0o644); err != nil {
		t.Fatal(err)
	}
	if v := appendRows(t, dir, testRows(2, 3)); v != 2 {
		t.Fatalf("append after SET TBLPROPERTIES committed version %d, want 2", v)
	}
	if _, rows := readTable(t, dir); !reflect.DeepEqual(rows, testRows(0, 5)) {
		t.Fatalf("rows %v", rows)
	}
	// A table Spark created (CREATE TABLE ... USING delta) with these columns.
	dir = t.TempDir()
	os.MkdirAll(filepath.Join(dir, LogDir), 0o755)
	create := `{"commitInfo":{"timestamp":1700000000000,"operation":"CREATE TABLE","isBlindAppend":true,"engineInfo":"Apache-Spark/4.1.0 Delta-Lake/4.0.0"}}` +
		"\n" + `{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}` + "\n" + meta(`{}`) + "\n"
	if err := os.WriteFile(filepath.Join(dir, LogDir, commitName(0)), []byte(create), 0o644); err != nil {
		t.Fatal(err)
	}
	if v := appendRows(t, dir, testRows(0, 2)); v != 1 {
		t.Fatalf("append to a table Spark created committed version %d, want 1", v)
	}
}
