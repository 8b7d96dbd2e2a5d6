package tabular

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"
	"strings"
)

// Type is a column's type.
type Type uint8

// The column types. The zero Type is invalid.
const (
	String      Type = iota + 1
	Float64          // IEEE 754 double; NaN and ±Inf are values, not Null
	Int64            // signed 64-bit integer
	Bool             // true or false
	Timestamp        // epoch milliseconds UTC in Value.Int
	Float64List      // a list of doubles in Value.Nums
	StringList       // a list of strings in Value.Strs
)

var typeNames = [...]string{
	String:      "string",
	Float64:     "float64",
	Int64:       "int64",
	Bool:        "bool",
	Timestamp:   "timestamp",
	Float64List: "float64_list",
	StringList:  "string_list",
}

// String returns the type's lower-case name, e.g. "float64" or "string_list".
func (t Type) String() string {
	if t >= String && int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

func (t Type) valid() bool { return t >= String && t <= StringList }

// Column names and types one column of a table.
type Column struct {
	Name string
	Type Type
}

// Value is one cell. Null says it is missing; otherwise the field for the
// column's Type holds it (Str for String, Num for Float64, Int for Int64 and
// Timestamp, Bool for Bool, Nums / Strs for the lists). The other fields are
// ignored by writers and zero in what readers return.
//
// An empty list is not Null: it is a non-Null Value whose Nums or Strs has
// length zero.
type Value struct {
	Null bool
	Bool bool
	Int  int64
	Num  float64
	Str  string
	Nums []float64
	Strs []string
}

// Format of a file or stream.
type Format uint8

// The supported formats.
const (
	CSV Format = iota + 1
	NDJSON
	Parquet
)

// String returns the format's name as ParseFormat accepts it.
func (f Format) String() string {
	switch f {
	case CSV:
		return "csv"
	case NDJSON:
		return "ndjson"
	case Parquet:
		return "parquet"
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// ContentType returns the HTTP media type of f: text/csv,
// application/x-ndjson or application/vnd.apache.parquet.
func (f Format) ContentType() string {
	switch f {
	case CSV:
		return "text/csv"
	case NDJSON:
		return "application/x-ndjson"
	case Parquet:
		return "application/vnd.apache.parquet"
	}
	return "application/octet-stream"
}

// FormatOf returns the format named by path's extension (case-insensitive):
// .csv; .ndjson, .jsonl or .json; .parquet or .pq.
func FormatOf(path string) (Format, error) {
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".csv":
		return CSV, nil
	case ".ndjson", ".jsonl", ".json":
		return NDJSON, nil
	case ".parquet", ".pq":
		return Parquet, nil
	case "":
		return 0, fmt.Errorf("%s: no file extension: name the file .csv, .ndjson (.jsonl, .json) or .parquet (.pq)", path)
	default:
		return 0, fmt.Errorf("%s: unknown file extension %q: use .csv, .ndjson (.jsonl, .json) or .parquet (.pq)", path, ext)
	}
}

// ParseFormat parses a format name: "csv", "ndjson" or "parquet"
// (case-insensitive; "jsonl" and "json" are accepted for "ndjson", as
// FormatOf accepts their extensions).
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "csv":
		return CSV, nil
	case "ndjson", "jsonl", "json":
		return NDJSON, nil
	case "parquet":
		return Parquet, nil
	}
	return 0, fmt.Errorf("unknown format %q: use csv, ndjson or parquet", s)
}

// FormatFromContentType returns the format of an HTTP Content-Type (parameters
// such as charset are ignored). It reports false for anything it does not
// know, including application/octet-stream, which says nothing about the body.
func FormatFromContentType(ct string) (Format, bool) {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return 0, false
	}
	switch mt {
	case "text/csv":
		return CSV, true
	case "application/x-ndjson", "application/ndjson", "application/jsonl",
		"application/x-jsonl", "application/jsonlines", "application/json":
		return NDJSON, true
	case "application/vnd.apache.parquet", "application/parquet", "application/x-parquet":
		return Parquet, true
	}
	return 0, false
}

// BodyFormat returns the format of a request body: the one param names
// (ParseFormat) when param is not empty, else the one of its Content-Type
// (FormatFromContentType). It is an error when param names no format, or
// when param is empty and contentType says nothing known.
func BodyFormat(param, contentType string) (Format, error) {
	if param != "" {
		return ParseFormat(param)
	}
	if f, ok := FormatFromContentType(contentType); ok {
		return f, nil
	}
	return 0, fmt.Errorf("Content-Type %q names no format: send text/csv, application/x-ndjson or application/vnd.apache.parquet, or say ?format=csv|ndjson|parquet", contentType)
}

// Reader streams rows of the Columns it reports, which are fixed once it is
// made.
//
// A Reader is not safe for concurrent use.
type Reader interface {
	// Columns returns the table's columns in file order. The caller must not
	// modify the slice.
	Columns() []Column
	// Next fills row, which must have len(Columns()) elements, with the next
	// row and returns io.EOF after the last one. Every element is
	// overwritten. Strings and slices put in row are new and belong to the
	// caller. Errors name the 1-based data row and the column, e.g.
	// `row 17, column "amt": ...`; after an error other than io.EOF the
	// Reader is unusable.
	Next(row []Value) error
	// Close releases the Reader. It closes the file if Open opened it, and
	// never closes a caller's io.Reader.
	Close() error
}

// Writer writes rows of the columns it was created with.
//
// A Writer is not safe for concurrent use.
type Writer interface {
	// Write writes one row; len(row) must equal the number of columns and
	// each non-Null value must be in the field of its column's type. Write
	// does not keep row or its slices after it returns. It may buffer: a
	// Parquet writer holds up to one row group in memory.
	Write(row []Value) error
	// Close flushes buffered rows and, for Parquet, the last row group and
	// the footer; a file is incomplete until Close returns nil, so Close
	// must be called and its error checked. It closes the file if Create
	// made it, never a caller's io.Writer. Calling Close again returns
	// ErrClosed.
	Close() error
}

// ErrClosed is returned by Write and Close on a Writer that was closed.
var ErrClosed = errors.New("tabular: writer is closed")

// Open opens the file at path in the format of its extension (FormatOf).
func Open(path string) (Reader, error) {
	f, err := FormatOf(path)
	if err != nil {
		return nil, err
	}
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	var r Reader
	if f == Parquet {
		var st os.FileInfo
		if st, err = file.Stat(); err == nil {
			r, err = newParquetReader(file, st.Size(), file, Limits{})
		}
	} else {
		r, err = newStreamReader(f, file, file)
	}
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return r, nil
}

// NewReader returns a Reader of r in format f. Closing the Reader does not
// close r.
//
// Parquet needs random access (its footer is at the end). If r is an
// io.ReaderAt with a Size() int64 method (bytes.Reader, strings.Reader,
// io.SectionReader) or a Stat method (os.File), it is read in place;
// otherwise NewReader reads all of r into memory first, so an HTTP body of N
// bytes costs N bytes of memory for the Reader's lifetime.
func NewReader(f Format, r io.Reader) (Reader, error) {
	return NewLimitedReader(f, r, Limits{})
}

// Limits bound what a Reader decodes, for input from someone untrusted: a
// few hundred KB of Parquet can hold ten million identical rows, which
// decode to gigabytes. A zero field is no limit.
type Limits struct {
	// MaxRows is the most rows the input may have.
	MaxRows int64
	// MaxBytes bounds the decoded size of the rows, counted as 8 bytes a
	// cell plus the bytes of its text and lists.
	MaxBytes int64
}

// LimitError is input refused for exceeding Limits. A Parquet input whose
// footer claims too many rows or cells is refused by NewLimitedReader,
// before a row is decoded; otherwise Next refuses the row that passes a
// limit.
type LimitError struct {
	Rows  bool  // the row limit was passed (else the byte limit)
	Limit int64 // the limit
	Got   int64 // rows or bytes the input has or reached, at least Limit+1 for rows
}

func (e *LimitError) Error() string {
	if e.Rows {
		return fmt.Sprintf("%d rows, more than the limit of %d", e.Got, e.Limit)
	}
	return fmt.Sprintf("decodes to more than %d bytes (at least %d)", e.Limit, e.Got)
}

// NewLimitedReader is NewReader for input bounded by lim.
func NewLimitedReader(f Format, r io.Reader, lim Limits) (Reader, error) {
	var rd Reader
	var err error
	switch f {
	case CSV, NDJSON:
		rd, err = newStreamReader(f, r, nil)
	case Parquet:
		rd, err = newParquetInput(r, lim)
	default:
		return nil, fmt.Errorf("unknown format %v", f)
	}
	if err != nil || lim == (Limits{}) {
		return rd, err
	}
	return &limitedReader{Reader: rd, lim: lim}, nil
}

func newParquetInput(r io.Reader, lim Limits) (Reader, error) {
	if ra, ok := r.(io.ReaderAt); ok {
		switch s := r.(type) {
		case interface{ Size() int64 }:
			return newParquetReader(ra, s.Size(), nil, lim)
		case interface{ Stat() (os.FileInfo, error) }:
			if st, err := s.Stat(); err == nil && st.Mode().IsRegular() {
				return newParquetReader(ra, st.Size(), nil, lim)
			}
		}
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read parquet input: %w", err)
	}
	return newParquetReader(bytesReaderAt(b), int64(len(b)), nil, lim)
}

// limitedReader counts the rows and decoded bytes Next returns.
type limitedReader struct {
	Reader
	lim         Limits
	rows, bytes int64
	err         error
}

func (l *limitedReader) Next(row []Value) error {
	if l.err != nil {
		return l.err
	}
	if err := l.Reader.Next(row); err != nil {
		return err
	}
	l.rows++
	if l.lim.MaxRows > 0 && l.rows > l.lim.MaxRows {
		l.err = &LimitError{Rows: true, Limit: l.lim.MaxRows, Got: l.rows}
		return l.err
	}
	for i := range row {
		v := &row[i]
		l.bytes += 8 + int64(len(v.Str)) + 8*int64(len(v.Nums)) + 16*int64(len(v.Strs))
		for _, s := range v.Strs {
			l.bytes += int64(len(s))
		}
	}
	if l.lim.MaxBytes > 0 && l.bytes > l.lim.MaxBytes {
		l.err = &LimitError{Limit: l.lim.MaxBytes, Got: l.bytes}
		return l.err
	}
	return nil
}

// NewParquetReader returns a Reader of the size bytes of Parquet in r.
// Only the footer is read up front; row groups are read as Next needs them.
func NewParquetReader(r io.ReaderAt, size int64) (Reader, error) {
	return newParquetReader(r, size, nil, Limits{})
}

func newStreamReader(f Format, r io.Reader, c io.Closer) (Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	skipBOM(br)
	if f == CSV {
		return newCSVReader(br, c)
	}
	return newNDJSONReader(br, c)
}

// skipBOM drops a leading UTF-8 byte order mark, which spreadsheet programs
// put at the start of CSV exports.
func skipBOM(br *bufio.Reader) {
	if b, err := br.Peek(3); err == nil && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
		br.Discard(3)
	}
}

// Create creates (or truncates) the file at path and returns a Writer in the
// format of its extension (FormatOf). The columns are checked before the file
// is touched. Close also closes the file.
func Create(path string, cols []Column) (Writer, error) {
	f, err := FormatOf(path)
	if err != nil {
		return nil, err
	}
	if err := checkWriterColumns(cols); err != nil {
		return nil, err
	}
	file, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	w, err := newWriter(f, file, cols, file)
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return w, nil
}

// NewWriter returns a Writer of cols in format f to w. There must be at
// least one column, and column names must be non-empty and distinct. CSV and
// NDJSON writers buffer 64 KiB; Parquet writers one row group. Close does
// not close w.
func NewWriter(f Format, w io.Writer, cols []Column) (Writer, error) {
	if err := checkWriterColumns(cols); err != nil {
		return nil, err
	}
	return newWriter(f, w, cols, nil)
}

func newWriter(f Format, w io.Writer, cols []Column, c io.Closer) (Writer, error) {
	cols = append([]Column(nil), cols...)
	switch f {
	case CSV:
		return newCSVWriter(w, cols, c), nil
	case NDJSON:
		return newNDJSONWriter(w, cols, c), nil
	case Parquet:
		return newParquetWriter(w, cols, c)
	}
	return nil, fmt.Errorf("unknown format %v", f)
}

func checkWriterColumns(cols []Column) error {
	if len(cols) == 0 {
		return errors.New("a table needs at least one column")
	}
	return checkColumns(cols)
}

// checkColumns checks that names are non-empty and distinct and types valid.
func checkColumns(cols []Column) error {
	seen := make(map[string]struct{}, len(cols))
	for i, c := range cols {
		if c.Name == "" {
			return fmt.Errorf("column %d has an empty name", i+1)
		}
		if !c.Type.valid() {
			return fmt.Errorf("column %q: invalid type %v", c.Name, c.Type)
		}
		if _, dup := seen[c.Name]; dup {
			return fmt.Errorf("column %q appears twice", c.Name)
		}
		seen[c.Name] = struct{}{}
	}
	return nil
}

// rowError names a 1-based data row and a column in an error.
func rowError(row int64, col string, err error) error {
	return fmt.Errorf("row %d, column %q: %w", row, col, err)
}

func rowLenError(got, want int) error {
	return fmt.Errorf("row has %d values, want %d (one per column)", got, want)
}

// closeBoth closes c (if any) after a flush, keeping the first error.
func closeBoth(err error, c io.Closer) error {
	if c != nil {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
