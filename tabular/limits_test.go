package tabular

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// parquetOf writes n copies of row as Parquet.
func parquetOf(t *testing.T, cols []Column, row []Value, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(Parquet, &buf, cols)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		if err := w.Write(row); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// A Parquet file of many identical rows is small on disk; its footer says
// how many rows it holds, and a limited reader refuses it from that alone,
// before it decodes a row.
func TestParquetRowBombRefusedFromFooter(t *testing.T) {
	cols := []Column{{"user_id", String}, {"timestamp", Int64}}
	const rows = 300_000
	bomb := parquetOf(t, cols, []Value{{Str: "u1"}, {Int: 1_700_000_000_000}}, rows)
	if len(bomb) > rows/10 {
		t.Fatalf("the bomb is %d bytes; want it far smaller than its rows", len(bomb))
	}
	_, err := NewLimitedReader(Parquet, bytes.NewReader(bomb), Limits{MaxRows: 1000})
	var le *LimitError
	if !errors.As(err, &le) || !le.Rows || le.Got != rows || le.Limit != 1000 {
		t.Fatalf("NewLimitedReader: %v, want a row LimitError claiming %d rows", err, rows)
	}
	// Cells: 2 columns x 300k rows at 8 bytes a cell passes 1 MiB.
	_, err = NewLimitedReader(Parquet, bytes.NewReader(bomb), Limits{MaxBytes: 1 << 20})
	if !errors.As(err, &le) || le.Rows {
		t.Fatalf("NewLimitedReader: %v, want a byte LimitError from the footer", err)
	}
	// Unlimited, it reads.
	if err := readErr(Parquet, bomb); err != nil {
		t.Fatal(err)
	}
}

// A long string repeated compresses to one dictionary entry; decoding
// stops at the byte limit, long before the rows are all materialised.
func TestParquetStringBombStopsAtByteLimit(t *testing.T) {
	cols := []Column{{"s", String}}
	long := strings.Repeat("x", 64<<10)
	bomb := parquetOf(t, cols, []Value{{Str: long}}, 2000) // 128 MiB decoded
	if len(bomb) > 1<<20 {
		t.Fatalf("the bomb is %d bytes", len(bomb))
	}
	const limit = 4 << 20
	r, err := NewLimitedReader(Parquet, bytes.NewReader(bomb), Limits{MaxBytes: limit})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	row := make([]Value, 1)
	n := 0
	for ; n < 2000; n++ {
		if err = r.Next(row); err != nil {
			break
		}
	}
	var le *LimitError
	if !errors.As(err, &le) || le.Rows || le.Limit != limit {
		t.Fatalf("after %d rows: %v, want a byte LimitError", n, err)
	}
	if n > limit/len(long) {
		t.Fatalf("returned %d rows of %d bytes past a %d-byte limit", n, len(long), limit)
	}
	if err := r.Next(row); !errors.As(err, &le) {
		t.Fatalf("Next after the limit: %v", err)
	}
}

func TestLimitedStreamReaders(t *testing.T) {
	csv := "a\n1\n2\n3\n"
	r, err := NewLimitedReader(CSV, strings.NewReader(csv), Limits{MaxRows: 2})
	if err != nil {
		t.Fatal(err)
	}
	row := make([]Value, 1)
	var le *LimitError
	for i := 0; ; i++ {
		err = r.Next(row)
		if err != nil {
			break
		}
	}
	if !errors.As(err, &le) || !le.Rows || le.Limit != 2 {
		t.Fatalf("%v, want a row LimitError", err)
	}
	r, _ = NewLimitedReader(NDJSON, strings.NewReader(`{"a":"xxxxxxxxxxxxxxxxxxxx"}`+"\n"), Limits{MaxBytes: 16})
	if err := r.Next(row); !errors.As(err, &le) || le.Rows {
		t.Fatalf("%v, want a byte LimitError", err)
	}
	r, _ = NewLimitedReader(NDJSON, strings.NewReader(`{"a":"x"}`+"\n"), Limits{MaxBytes: 16, MaxRows: 1})
	if err := r.Next(row); err != nil {
		t.Fatal(err)
	}
	if err := r.Next(row); err != io.EOF {
		t.Fatalf("%v, want EOF", err)
	}
}
