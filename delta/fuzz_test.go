package delta

import (
	"os"
	"path/filepath"
	"testing"
)

// go test -run '^$' -fuzz FuzzSnapshot -fuzztime 10s ./delta/
// A log tally did not write (a hand-edited or foreign commit) is refused or
// read, never a panic; a table it reads has metaData.
func FuzzSnapshot(f *testing.F) {
	f.Add([]byte(`{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}` + "\n" + `{"metaData":{"id":"x","format":{"provider":"parquet","options":{}},"schemaString":"{}","partitionColumns":[],"configuration":{},"createdTime":1}}` + "\n"))
	f.Add([]byte(`{"metaData":{"partitionColumns":["a"]}}`))
	f.Add([]byte("{\n"))
	dir := f.TempDir()
	os.MkdirAll(filepath.Join(dir, LogDir), 0o755)
	f.Fuzz(func(t *testing.T, commit []byte) {
		if err := os.WriteFile(filepath.Join(dir, LogDir, commitName(0)), commit, 0o644); err != nil {
			t.Fatal(err)
		}
		v, meta, err := snapshot(dir)
		if err == nil && (v != 0 || meta == nil || len(meta.PartitionColumns) > 0) {
			t.Fatalf("read version %d, metaData %+v", v, meta)
		}
	})
}
