package delta

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tally-ml/tally/tabular"
	"github.com/tally-ml/tally/wal/walfs"
)

// LogDir is the table's commit log directory, inside the table directory.
const LogDir = "_delta_log"

// maxCommitAttempts bounds the retries of a commit that loses races.
const maxCommitAttempts = 100

// Writer appends rows to a Delta table: Write buffers them into the new
// data file, Close commits it. It implements tabular.Writer.
type Writer struct {
	dir     string
	cols    []tabular.Column
	schema  string
	file    *os.File
	name    string // data file name in dir
	counter *countingWriter
	buf     *bufio.Writer
	pw      tabular.Writer
	rows    int64
	done    bool
	version int64
	// made are the directories this append created (innermost first):
	// an append that does not commit removes them if they are empty.
	made []string
	// Now is the commit's clock (time.Now).
	Now func() time.Time
}

// Create opens the Delta table in dir for an append of rows with cols,
// creating the directory and the table when they do not exist. An existing
// table must have exactly these columns and types (in this order);
// otherwise Create refuses, writing nothing. Column names Delta cannot
// hold without column mapping are refused the same way (see CheckNames).
// The table's _delta_log is made by the first commit: until then, and
// after a first append that fails or is discarded, there is no table, and
// the directories Create made are removed.
func Create(dir string, cols []tabular.Column) (*Writer, error) {
	schema, err := SchemaString(cols)
	if err != nil {
		return nil, fmt.Errorf("delta table %s: %w", dir, err)
	}
	if _, meta, err := snapshot(dir); err != nil {
		return nil, err
	} else if meta != nil && !sameSchema(meta.SchemaString, schema) {
		return nil, fmt.Errorf("delta table %s has the schema %s; this export's is %s: write to a new table (another --out directory)", dir, meta.SchemaString, schema)
	}
	w := &Writer{dir: dir, cols: cols, schema: schema, name: "part-00000-" + uuid() + "-c000.zstd.parquet", Now: time.Now}
	var f *os.File
	// A first append of another writer that failed removes the directory
	// when it is empty: it may vanish between mkdirAll and the open.
	for attempt := 0; ; attempt++ {
		made := missingDirs(dir)
		// New directories are made durable (their parents synced): a
		// commit synced into a directory whose entry a power loss took
		// would be lost.
		if err := mkdirAll(dir, 0o755); err != nil {
			w.removeMade()
			return nil, fmt.Errorf("delta table %s: %w", dir, err)
		}
		w.made = append(w.made, made...)
		f, err = os.OpenFile(filepath.Join(dir, w.name), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt == 2 {
			w.removeMade()
			return nil, fmt.Errorf("delta table %s: %w", dir, err)
		}
	}
	w.file, w.buf = f, bufio.NewWriterSize(f, 1<<20)
	w.counter = &countingWriter{w: w.buf}
	if w.pw, err = tabular.NewWriter(tabular.Parquet, w.counter, cols); err != nil {
		f.Close()
		os.Remove(f.Name())
		w.removeMade()
		return nil, err
	}
	return w, nil
}

// missingDirs lists dir and its parents that do not exist, innermost
// first.
func missingDirs(dir string) []string {
	var out []string
	for d := filepath.Clean(dir); d != filepath.Dir(d); d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		out = append(out, d)
	}
	return out
}

// removeMade removes the directories the append made, innermost first,
// each only if it is empty: a directory another writer put a data file or
// a commit into stays, and so do its parents.
func (w *Writer) removeMade() {
	for _, d := range w.made {
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return
		}
	}
}

// Write adds a row to the data file (see tabular.Writer).
func (w *Writer) Write(row []tabular.Value) error {
	if w.done {
		return tabular.ErrClosed
	}
	if err := w.pw.Write(row); err != nil {
		return err
	}
	w.rows++ // only rows the data file took: the commit's numRecords counts them
	return nil
}

// Close finishes the data file and commits it as the table's next
// version; on an error the data file is removed and the table is as it
// was. Version then reports the version committed.
func (w *Writer) Close() error {
	if w.done {
		return tabular.ErrClosed
	}
	w.done = true
	err := w.pw.Close()
	if err == nil {
		err = w.buf.Flush()
	}
	if err == nil {
		err = w.file.Sync()
	}
	if cerr := w.file.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		// The data file's directory entry is made durable before a commit
		// names it: else a power loss could leave a commit (synced) that
		// points at a file the table no longer has, which readers refuse.
		err = syncDir(w.dir)
	}
	if err == nil {
		w.version, err = w.commit()
	}
	if err != nil {
		os.Remove(filepath.Join(w.dir, w.name))
		w.removeMade()
		return fmt.Errorf("delta table %s: %w", w.dir, err)
	}
	return nil
}

// Discard abandons the append: the data file is removed, nothing is
// committed; directories Create made are removed when empty (a first
// append leaves no table). It does nothing after Close.
func (w *Writer) Discard() error {
	if w.done {
		return nil
	}
	w.done = true
	w.file.Close()
	err := os.Remove(filepath.Join(w.dir, w.name))
	w.removeMade()
	return err
}

// Version is the version Close committed.
func (w *Writer) Version() int64 { return w.version }

// Rows is the number of rows written.
func (w *Writer) Rows() int64 { return w.rows }

func (w *Writer) commit() (int64, error) {
	now := w.Now().UnixMilli()
	stats, _ := json.Marshal(map[string]int64{"numRecords": w.rows})
	add := map[string]any{"add": map[string]any{
		"path": w.name, "partitionValues": map[string]string{}, "size": w.counter.n,
		"modificationTime": now, "dataChange": true, "stats": string(stats)}}
	logDir := filepath.Join(w.dir, LogDir)
	for attempt := 0; attempt < maxCommitAttempts; attempt++ {
		if made := missingDirs(logDir); len(made) > 0 {
			if err := mkdirAll(logDir, 0o755); err != nil {
				return 0, err
			}
			// Only the log directory can be new here: the table directory
			// holds this append's data file.
			w.made = append(made[:1:1], w.made...)
		}
		latest, meta, err := snapshot(w.dir)
		if err != nil {
			return 0, err
		}
		if meta != nil && !sameSchema(meta.SchemaString, w.schema) {
			return 0, fmt.Errorf("another writer changed the table's schema to %s: write to a new table", meta.SchemaString)
		}
		version := latest + 1
		info := map[string]any{"commitInfo": map[string]any{"timestamp": now, "operation": "WRITE",
			"operationParameters": map[string]string{"mode": "Append"}, "isBlindAppend": true,
			"engineInfo": "tally", "readVersion": latest}}
		if latest < 0 {
			delete(info["commitInfo"].(map[string]any), "readVersion")
		}
		actions := []any{info}
		if meta == nil {
			actions = append(actions,
				map[string]any{"protocol": map[string]int{"minReaderVersion": 1, "minWriterVersion": 2}},
				map[string]any{"metaData": metaData{ID: uuid(), Format: format{Provider: "parquet", Options: map[string]string{}},
					SchemaString: w.schema, PartitionColumns: []string{}, Configuration: map[string]string{}, CreatedTime: now}})
		}
		actions = append(actions, add)
		var body []byte
		for _, a := range actions {
			b, err := json.Marshal(a)
			if err != nil {
				return 0, err
			}
			body = append(append(body, b...), '\n')
		}
		switch err := createExclusive(filepath.Join(logDir, commitName(version)), body); {
		case err == nil:
			return version, nil
		case errors.Is(err, fs.ErrExist):
			continue // another writer committed this version: read it, try the next
		case errors.Is(err, fs.ErrNotExist) && latest < 0:
			// Another writer's first append failed and removed the empty
			// log directory: make it again, unless the data file is gone.
			if _, serr := os.Stat(filepath.Join(w.dir, w.name)); serr != nil {
				return 0, fmt.Errorf("commit version %d: %w", version, serr)
			}
			continue
		default:
			return 0, fmt.Errorf("commit version %d: %w", version, err)
		}
	}
	return 0, fmt.Errorf("commit: lost the race to other writers %d times in a row", maxCommitAttempts)
}

// createExclusive writes body to a temporary file, syncs it and links it
// to name, failing with fs.ErrExist if name exists: the commit appears
// whole or not at all.
func createExclusive(name string, body []byte) error {
	tmp := filepath.Join(filepath.Dir(name), "."+filepath.Base(name)+"."+uuid()+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	_, err = f.Write(body)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Link(tmp, name); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(name)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// mkdirAll and syncDir are the file system's (walfs.OS: a new directory's
// entry and a directory's entries made durable); tests count their calls.
var (
	mkdirAll = walfs.OS.MkdirAll
	syncDir  = walfs.OS.SyncDir
)

func commitName(v int64) string { return fmt.Sprintf("%020d.json", v) }

type format struct {
	Provider string            `json:"provider"`
	Options  map[string]string `json:"options"`
}

type metaData struct {
	ID               string            `json:"id"`
	Format           format            `json:"format"`
	SchemaString     string            `json:"schemaString"`
	PartitionColumns []string          `json:"partitionColumns"`
	Configuration    map[string]string `json:"configuration"`
	CreatedTime      int64             `json:"createdTime"`
}

// snapshot reads the log: the newest version (-1 for no table) and the
// table's newest metaData (nil for none). A protocol this writer does not
// satisfy is an error.
func snapshot(dir string) (int64, *metaData, error) {
	ents, err := os.ReadDir(filepath.Join(dir, LogDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, nil, fmt.Errorf("delta table %s: %w", dir, err)
	}
	var versions []int64
	for _, e := range ents {
		n := e.Name()
		if base, ok := strings.CutSuffix(n, ".json"); ok && len(base) == 20 {
			if v, err := strconv.ParseInt(base, 10, 64); err == nil {
				versions = append(versions, v)
			}
		}
		if strings.HasSuffix(n, ".checkpoint.parquet") || n == "_last_checkpoint" {
			// A checkpoint may stand for commits that were since removed;
			// reading it is beyond this writer.
			return 0, nil, fmt.Errorf("delta table %s has checkpoints (written by another engine): tally appends only to tables it created and that no other engine has checkpointed", dir)
		}
	}
	if len(versions) == 0 {
		return -1, nil, nil
	}
	sort.Slice(versions, func(i, j int) bool { return versions[i] < versions[j] })
	for i, v := range versions {
		if v != int64(i) {
			return 0, nil, fmt.Errorf("delta table %s: commit %d is missing from %s (log cleaned up by another engine?): tally appends only to tables with a complete log", dir, i, LogDir)
		}
	}
	var meta *metaData
	for _, v := range versions {
		b, err := os.ReadFile(filepath.Join(dir, LogDir, commitName(v)))
		if err != nil {
			return 0, nil, fmt.Errorf("delta table %s: %w", dir, err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if strings.TrimSpace(line) == "" {
				continue
			}
			var a struct {
				MetaData *metaData `json:"metaData"`
				Protocol *struct {
					MinReaderVersion int      `json:"minReaderVersion"`
					MinWriterVersion int      `json:"minWriterVersion"`
					WriterFeatures   []string `json:"writerFeatures"`
				} `json:"protocol"`
			}
			if err := json.Unmarshal([]byte(line), &a); err != nil {
				return 0, nil, fmt.Errorf("delta table %s: %s line %d: %w", dir, commitName(v), i+1, err)
			}
			if a.MetaData != nil {
				meta = a.MetaData
			}
			if p := a.Protocol; p != nil && (p.MinWriterVersion > 2 || p.MinReaderVersion > 1) {
				return 0, nil, fmt.Errorf("delta table %s needs writer version %d (features %v): tally writes protocol 1/2 only; write to a new table", dir, p.MinWriterVersion, p.WriterFeatures)
			}
		}
	}
	if meta == nil {
		return 0, nil, fmt.Errorf("delta table %s: the log has no metaData", dir)
	}
	if len(meta.PartitionColumns) > 0 {
		return 0, nil, fmt.Errorf("delta table %s is partitioned by %v: tally appends to unpartitioned tables only", dir, meta.PartitionColumns)
	}
	return versions[len(versions)-1], meta, nil
}

// sameSchema reports whether two schemaStrings describe the same schema:
// equal as JSON values, whatever the key order and spacing (Spark and
// delta-rs write "type" before "fields", tally's encoder the reverse).
func sameSchema(a, b string) bool {
	if a == b {
		return true
	}
	var va, vb any
	if json.Unmarshal([]byte(a), &va) != nil || json.Unmarshal([]byte(b), &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// invalidNameChars are the characters a column name may not hold in a
// Delta table without column mapping (delta-io/delta's
// SchemaUtils.checkFieldNames; tally writes protocol 1/2, which has no
// column mapping). Spark refuses to create such a table
// (DELTA_INVALID_CHARACTERS_IN_COLUMN_NAMES), so tally does not either.
const invalidNameChars = " ,;{}()\n\t="

// CheckNames refuses column names a Delta table without column mapping
// cannot hold: ones holding any of " ,;{}()\n\t=", and two names that
// differ only in case (Spark resolves columns ignoring case, and refuses
// to read such a table: COLUMN_ALREADY_EXISTS). The error names the
// column and says what to change.
func CheckNames(cols []tabular.Column) error {
	for i, c := range cols {
		if j := strings.IndexAny(c.Name, invalidNameChars); j >= 0 {
			r, _ := utf8.DecodeRuneInString(c.Name[j:])
			return fmt.Errorf("column %q holds %q: a Delta table without column mapping cannot name a column with any of %q (Spark refuses to create one): rename the column", c.Name, r, invalidNameChars)
		}
		for _, d := range cols[:i] {
			if strings.EqualFold(d.Name, c.Name) {
				return fmt.Errorf("columns %q and %q differ only in case: Spark reads a Delta table's columns ignoring case and refuses to read such a table: rename one", d.Name, c.Name)
			}
		}
	}
	return nil
}

// SchemaString is the Spark StructType JSON of cols, as a Delta table's
// metaData holds it. Names CheckNames refuses are an error.
func SchemaString(cols []tabular.Column) (string, error) {
	if err := CheckNames(cols); err != nil {
		return "", err
	}
	type field struct {
		Name     string            `json:"name"`
		Type     any               `json:"type"`
		Nullable bool              `json:"nullable"`
		Metadata map[string]string `json:"metadata"`
	}
	type array struct {
		Type         string `json:"type"`
		ElementType  string `json:"elementType"`
		ContainsNull bool   `json:"containsNull"`
	}
	fields := make([]field, len(cols))
	for i, c := range cols {
		var t any
		switch c.Type {
		case tabular.String:
			t = "string"
		case tabular.Float64:
			t = "double"
		case tabular.Int64:
			t = "long"
		case tabular.Bool:
			t = "boolean"
		case tabular.Timestamp:
			t = "timestamp"
		case tabular.Float64List:
			t = array{Type: "array", ElementType: "double", ContainsNull: true}
		case tabular.StringList:
			t = array{Type: "array", ElementType: "string", ContainsNull: true}
		default:
			return "", fmt.Errorf("column %q: type %v has no Delta type", c.Name, c.Type)
		}
		fields[i] = field{Name: c.Name, Type: t, Nullable: true, Metadata: map[string]string{}}
	}
	b, err := json.Marshal(map[string]any{"type": "struct", "fields": fields})
	return string(b), err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// uuid is a random (version 4) UUID.
func uuid() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
