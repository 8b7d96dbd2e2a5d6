package tabular

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// flushAt is how many bytes the CSV and NDJSON writers gather before they
// write to the underlying io.Writer.
const flushAt = 64 << 10

type csvReader struct {
	r    *csv.Reader
	cols []Column
	row  int64 // data rows returned so far
	c    io.Closer
	err  error
}

func newCSVReader(br *bufio.Reader, c io.Closer) (Reader, error) {
	r := csv.NewReader(br)
	r.FieldsPerRecord = -1 // ragged rows are reported by Next, naming the row
	r.ReuseRecord = true
	header, err := r.Read()
	if err == io.EOF {
		return nil, errors.New("csv: empty input: the first line must be a header of column names")
	}
	if err != nil {
		return nil, fmt.Errorf("csv header: %w", err)
	}
	cols := make([]Column, len(header))
	seen := make(map[string]int, len(header))
	for i, name := range header {
		if name == "" {
			return nil, fmt.Errorf("csv header: column %d has an empty name", i+1)
		}
		if j, dup := seen[name]; dup {
			return nil, fmt.Errorf("csv header: column name %q appears twice (columns %d and %d)", name, j+1, i+1)
		}
		if err := utf8Error(name, "CSV"); err != nil {
			return nil, fmt.Errorf("csv header: column %d: %w", i+1, err)
		}
		seen[name] = i
		cols[i] = Column{Name: name, Type: String}
	}
	return &csvReader{r: r, cols: cols, c: c}, nil
}

func (r *csvReader) Columns() []Column { return r.cols }

func (r *csvReader) Next(row []Value) error {
	if r.err != nil {
		return r.err
	}
	if len(row) != len(r.cols) {
		return rowLenError(len(row), len(r.cols))
	}
	rec, err := r.r.Read()
	n := r.row + 1
	switch {
	case err == io.EOF:
		r.err = io.EOF
	case err != nil:
		r.err = fmt.Errorf("row %d: %w", n, err)
	case len(rec) != len(r.cols):
		r.err = fmt.Errorf("row %d: has %d fields, the header has %d", n, len(rec), len(r.cols))
	}
	if r.err != nil {
		return r.err
	}
	for i, s := range rec {
		if err := utf8Error(s, "CSV"); err != nil {
			// The line of the byte: a quoted field may span lines.
			line, _ := r.r.FieldPos(i)
			line += strings.Count(s[:badUTF8(s)], "\n")
			r.err = fmt.Errorf("row %d, column %q, line %d: %w", n, r.cols[i].Name, line, err)
			return r.err
		}
	}
	r.row = n
	for i, s := range rec {
		row[i] = Value{Null: s == "", Str: s}
	}
	return nil
}

func (r *csvReader) Close() error { return closeBoth(nil, r.c) }

type csvWriter struct {
	textOut
	cols    []Column
	scratch []byte
}

func newCSVWriter(w io.Writer, cols []Column, c io.Closer) *csvWriter {
	cw := &csvWriter{textOut: newTextOut(w, c), cols: cols}
	for i, col := range cols {
		if i > 0 {
			cw.buf = append(cw.buf, ',')
		}
		cw.buf = appendCSVField(cw.buf, col.Name)
	}
	cw.buf = append(cw.buf, '\n')
	return cw
}

func (w *csvWriter) Write(row []Value) error {
	if w.err != nil {
		return w.err
	}
	if len(row) != len(w.cols) {
		return rowLenError(len(row), len(w.cols))
	}
	b := w.buf
	if len(row) == 1 && (row[0].Null || (w.cols[0].Type == String && row[0].Str == "")) {
		// An empty line is skipped by CSV readers, so a lone empty field
		// is written quoted. It reads back as Null like any empty field.
		b = append(b, `""`...)
	}
	for i := range row {
		if i > 0 {
			b = append(b, ',')
		}
		v := &row[i]
		if v.Null {
			continue
		}
		switch w.cols[i].Type {
		case String:
			b = appendCSVField(b, v.Str)
		case Float64:
			b = appendCSVFloat(b, v.Num)
		case Int64:
			b = strconv.AppendInt(b, v.Int, 10)
		case Bool:
			b = strconv.AppendBool(b, v.Bool)
		case Timestamp:
			b = appendTimestamp(b, v.Int)
		case Float64List, StringList:
			w.scratch = appendJSONList(w.scratch[:0], w.cols[i].Type, v)
			b = appendQuotedCSV(b, w.scratch)
		}
	}
	b = append(b, '\n')
	w.buf = b
	if len(b) >= flushAt {
		return w.flush()
	}
	return nil
}

// appendQuotedCSV writes s as a quoted CSV field, whatever it holds.
func appendQuotedCSV(b, s []byte) []byte {
	b = append(b, '"')
	for _, c := range s {
		if c == '"' {
			b = append(b, '"')
		}
		b = append(b, c)
	}
	return append(b, '"')
}

// appendJSONList writes a list Value as a JSON array (NaN and ±Inf as null).
func appendJSONList(b []byte, t Type, v *Value) []byte {
	b = append(b, '[')
	if t == Float64List {
		for j, x := range v.Nums {
			if j > 0 {
				b = append(b, ',')
			}
			b = appendJSONFloat(b, x)
		}
	} else {
		for j, s := range v.Strs {
			if j > 0 {
				b = append(b, ',')
			}
			b = AppendJSONString(b, s)
		}
	}
	return append(b, ']')
}
