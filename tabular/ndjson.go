package tabular

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"unsafe"

	"github.com/valyala/fastjson"
)

// maxLine bounds one NDJSON line, so that garbage without newlines cannot
// take all memory.
const maxLine = 64 << 20

// JSONSpace is JSON's whitespace (RFC 8259: space, tab, line feed,
// carriage return), what an NDJSON line may carry around its value: a
// line's other white space (form feed, vertical tab, U+00A0, which
// bytes.TrimSpace would cut) makes it no JSON text.
const JSONSpace = " \t\n\r"

// The look-ahead: while some column has had only nulls (or only empty
// lists), NewReader reads on, up to this many rows or bytes, to find its
// type; those rows are kept and returned by Next.
const (
	lookAheadRows  = 1000
	lookAheadBytes = 8 << 20
)

// column type states of the NDJSON reader
const (
	typeUnknown     = iota // only nulls so far
	typeUnknownList        // only nulls and empty lists so far
	typeKnown
	typeText // String because the look-ahead saw only nulls: values read as their JSON text
)

type ndjsonReader struct {
	br      *bufio.Reader
	p       fastjson.Parser
	cols    []Column
	state   []uint8
	index   map[string]int
	seen    []int64  // the row in which each column was last set, to catch a key given twice
	row     int64    // data rows returned (or failed) so far
	long    []byte   // a line longer than br's buffer
	pending [][]byte // rows read by the look-ahead, not yet returned
	num     []byte   // scratch for number text
	c       io.Closer
	err     error
}

func newNDJSONReader(br *bufio.Reader, c io.Closer) (Reader, error) {
	r := &ndjsonReader{br: br, c: c, index: map[string]int{}}
	if err := r.discover(); err == io.EOF {
		r.err = io.EOF // no rows, no columns
	} else if err != nil {
		return nil, err
	}
	return r, nil
}

// discover reads the first object, whose keys are the columns, and looks
// ahead until every column's type is known or the look-ahead is spent. An
// empty input has no columns.
func (r *ndjsonReader) discover() error {
	line, err := r.readLine()
	if err != nil {
		return err
	}
	o, err := r.parse(line, 1)
	if err != nil {
		return err
	}
	o.Visit(func(key []byte, _ *fastjson.Value) {
		if _, dup := r.index[string(key)]; dup {
			if err == nil {
				err = rowError(1, string(key), errors.New("key appears twice in the object"))
			}
			return
		}
		r.index[string(key)] = len(r.cols)
		r.cols = append(r.cols, Column{Name: string(key), Type: String})
	})
	if err != nil {
		return err
	}
	r.state = make([]uint8, len(r.cols))
	r.seen = make([]int64, len(r.cols))
	r.pending = append(r.pending, bytes.Clone(line))
	size := len(line)
	r.inferFrom(o)
	for r.undecided() && len(r.pending) < lookAheadRows && size < lookAheadBytes {
		line, err := r.readLine()
		if err == io.EOF {
			break
		}
		if err != nil {
			r.pending = append(r.pending, nil) // Next reports err at its row
			r.err = err
			break
		}
		r.pending = append(r.pending, bytes.Clone(line))
		size += len(line)
		if o, err := r.parse(line, 0); err == nil {
			r.inferFrom(o)
		}
	}
	for i, st := range r.state {
		switch st {
		case typeUnknown:
			r.state[i] = typeText
		case typeUnknownList:
			r.state[i] = typeKnown // Float64List
		}
	}
	return nil
}

// inferFrom sets the types of undecided columns from o's values. Bad values
// are skipped here; Next reports them at their row.
func (r *ndjsonReader) inferFrom(o *fastjson.Object) {
	o.Visit(func(key []byte, v *fastjson.Value) {
		if i, ok := r.index[string(key)]; ok && r.state[i] != typeKnown && v.Type() != fastjson.TypeNull {
			r.infer(i, v)
		}
	})
}

func (r *ndjsonReader) undecided() bool {
	for _, st := range r.state {
		if st != typeKnown {
			return true
		}
	}
	return false
}

func (r *ndjsonReader) Columns() []Column { return r.cols }

func (r *ndjsonReader) Next(row []Value) error {
	if len(r.pending) == 0 && r.err != nil {
		return r.err
	}
	if len(row) != len(r.cols) {
		return rowLenError(len(row), len(r.cols))
	}
	var line []byte
	var err error
	if len(r.pending) > 0 {
		line = r.pending[0]
		r.pending[0] = nil
		r.pending = r.pending[1:]
		if line == nil {
			return r.err // the look-ahead's read error, at this row
		}
	} else if line, err = r.readLine(); err != nil {
		r.err = err
		return err
	}
	r.row++
	o, err := r.parse(line, r.row)
	if err == nil {
		err = r.decodeObject(o, row)
	}
	if err != nil {
		r.pending = nil
		r.err = err
	}
	return err
}

// readLine returns the next non-blank line, without its line ending.
func (r *ndjsonReader) readLine() ([]byte, error) {
	for {
		r.long = r.long[:0]
		line, err := r.br.ReadSlice('\n')
		for err == bufio.ErrBufferFull {
			r.long = append(r.long, line...)
			if len(r.long) > maxLine {
				return nil, fmt.Errorf("row %d: line longer than %d bytes", r.row+int64(len(r.pending))+1, maxLine)
			}
			line, err = r.br.ReadSlice('\n')
		}
		if len(r.long) > 0 {
			r.long = append(r.long, line...)
			line = r.long
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		line = bytes.Trim(line, JSONSpace) // JSON's whitespace only: not \f, \v or U+00A0
		if len(line) > 0 {
			return line, nil
		}
		if err == io.EOF {
			return nil, io.EOF
		}
	}
}

// parse parses line, which is data row n, as an object.
func (r *ndjsonReader) parse(line []byte, n int64) (*fastjson.Object, error) {
	v, err := ParseJSON(&r.p, line)
	if err != nil {
		return nil, fmt.Errorf("row %d: %w", n, err)
	}
	o, err := v.Object()
	if err != nil {
		return nil, fmt.Errorf("row %d: want a JSON object, got %s", n, v.Type())
	}
	return o, nil
}

func (r *ndjsonReader) decodeObject(o *fastjson.Object, row []Value) error {
	for i := range row {
		row[i] = Value{Null: true}
	}
	var err error
	k := 0 // position in the object: usually the key of column k
	o.Visit(func(key []byte, v *fastjson.Value) {
		if err != nil {
			return
		}
		i, ok := k, k < len(r.cols) && string(key) == r.cols[k].Name
		k++
		if !ok {
			i, ok = r.index[string(key)]
		}
		if !ok {
			err = fmt.Errorf("row %d: key %q is not a column (the columns are the keys of the first object)", r.row, key)
			return
		}
		if r.seen[i] == r.row {
			err = rowError(r.row, r.cols[i].Name, errors.New("key appears twice in the object"))
			return
		}
		r.seen[i] = r.row
		if e := r.decode(i, v, &row[i]); e != nil {
			err = rowError(r.row, r.cols[i].Name, e)
		}
	})
	return err
}

func (r *ndjsonReader) decode(i int, v *fastjson.Value, out *Value) error {
	t := v.Type()
	switch {
	case t == fastjson.TypeNull:
		return nil // out is already Null
	case t == fastjson.TypeObject:
		return errors.New("unsupported JSON object: values must be strings, numbers, booleans or lists of numbers or strings")
	case r.state[i] == typeText:
		if t == fastjson.TypeString {
			*out = Value{Str: string(v.GetStringBytes())}
		} else {
			r.num = v.MarshalTo(r.num[:0])
			if t == fastjson.TypeNumber && !IsJSONNumber(r.num) {
				return notJSONNumber(r.num)
			}
			*out = Value{Str: string(r.num)}
		}
		return nil
	}
	col := &r.cols[i]
	switch col.Type {
	case String:
		if t != fastjson.TypeString {
			return mismatch(t, col.Type)
		}
		*out = Value{Str: string(v.GetStringBytes())}
	case Float64:
		if t != fastjson.TypeNumber {
			return mismatch(t, col.Type)
		}
		f, err := r.float(v)
		if err != nil {
			return err
		}
		*out = Value{Num: f}
	case Int64:
		if t != fastjson.TypeNumber {
			return mismatch(t, col.Type)
		}
		r.num = v.MarshalTo(r.num[:0])
		if !IsJSONNumber(r.num) {
			return notJSONNumber(r.num)
		}
		n, err := v.Int64()
		if err != nil {
			return fmt.Errorf("%s is not an int64: the column is int64 because its first number was an integer; write that one with a decimal point (3.0) to make the column float64", v)
		}
		*out = Value{Int: n}
	case Bool:
		if t != fastjson.TypeTrue && t != fastjson.TypeFalse {
			return mismatch(t, col.Type)
		}
		*out = Value{Bool: t == fastjson.TypeTrue}
	case Float64List, StringList:
		return r.decodeList(i, v, out)
	}
	return nil
}

// infer sets the type of column i from v, a non-null value, where v decides
// it. An empty list, or one of nulls only, says it is a list but not of what.
// Values that fit no type decide nothing here; Next reports them at their row.
func (r *ndjsonReader) infer(i int, v *fastjson.Value) {
	col := &r.cols[i]
	if v.Type() == fastjson.TypeArray {
		for _, e := range v.GetArray() {
			switch e.Type() {
			case fastjson.TypeNumber:
				col.Type, r.state[i] = Float64List, typeKnown
				return
			case fastjson.TypeString:
				col.Type, r.state[i] = StringList, typeKnown
				return
			case fastjson.TypeNull:
				continue
			}
			break
		}
		col.Type, r.state[i] = Float64List, typeUnknownList
		return
	}
	if r.state[i] == typeUnknownList {
		return
	}
	switch v.Type() {
	case fastjson.TypeString:
		col.Type = String
	case fastjson.TypeNumber:
		if _, err := v.Int64(); err == nil {
			col.Type = Int64
		} else {
			col.Type = Float64
		}
	case fastjson.TypeTrue, fastjson.TypeFalse:
		col.Type = Bool
	default:
		return
	}
	r.state[i] = typeKnown
}

// decodeList decodes a list. A null element is NaN in a Float64List and ""
// in a StringList.
func (r *ndjsonReader) decodeList(i int, v *fastjson.Value, out *Value) error {
	col := &r.cols[i]
	if v.Type() != fastjson.TypeArray {
		return mismatch(v.Type(), col.Type)
	}
	a := v.GetArray()
	if col.Type == Float64List {
		nums := make([]float64, len(a))
		for j, e := range a {
			switch e.Type() {
			case fastjson.TypeNumber:
				f, err := r.float(e)
				if err != nil {
					return err
				}
				nums[j] = f
			case fastjson.TypeNull:
				nums[j] = math.NaN()
			default:
				return fmt.Errorf("list element %d: got %s, want a number", j, e.Type())
			}
		}
		*out = Value{Nums: nums}
		return nil
	}
	strs := make([]string, len(a))
	for j, e := range a {
		switch e.Type() {
		case fastjson.TypeString:
			strs[j] = string(e.GetStringBytes())
		case fastjson.TypeNull:
		default:
			return fmt.Errorf("list element %d: got %s, want a string", j, e.Type())
		}
	}
	*out = Value{Strs: strs}
	return nil
}

// float parses a JSON number with strconv, which rounds correctly;
// fastjson's own parser can be one ulp off for 16-digit mantissas, which
// would break round trips. Numbers beyond the float64 range become ±Inf.
func (r *ndjsonReader) float(v *fastjson.Value) (float64, error) {
	r.num = v.MarshalTo(r.num[:0])
	if !IsJSONNumber(r.num) {
		return 0, notJSONNumber(r.num)
	}
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(r.num), len(r.num)), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("invalid number %q", string(r.num))
	}
	return f, nil
}

func notJSONNumber(b []byte) error {
	return fmt.Errorf("%s is not a JSON number (RFC 8259: no leading zeros or +, digits on both sides of a point)", b)
}

func mismatch(got fastjson.Type, want Type) error {
	return fmt.Errorf("got JSON %s, want %v (a column's type comes from its first non-null value)", got, want)
}

func (r *ndjsonReader) Close() error { return closeBoth(nil, r.c) }

type ndjsonWriter struct {
	textOut
	cols []Column
	keys [][]byte // `{"name":` for the first column, `,"name":` for the others
}

func newNDJSONWriter(w io.Writer, cols []Column, c io.Closer) *ndjsonWriter {
	nw := &ndjsonWriter{textOut: newTextOut(w, c), cols: cols}
	for i, col := range cols {
		sep := byte(',')
		if i == 0 {
			sep = '{'
		}
		k := AppendJSONString([]byte{sep}, col.Name)
		nw.keys = append(nw.keys, append(k, ':'))
	}
	return nw
}

func (w *ndjsonWriter) Write(row []Value) error {
	if w.err != nil {
		return w.err
	}
	if len(row) != len(w.cols) {
		return rowLenError(len(row), len(w.cols))
	}
	b := w.buf
	if len(row) == 0 {
		b = append(b, '{')
	}
	for i := range row {
		b = append(b, w.keys[i]...)
		v := &row[i]
		if v.Null {
			b = append(b, "null"...)
			continue
		}
		switch w.cols[i].Type {
		case String:
			b = AppendJSONString(b, v.Str)
		case Float64:
			b = appendJSONFloat(b, v.Num)
		case Int64, Timestamp:
			b = strconv.AppendInt(b, v.Int, 10)
		case Bool:
			b = strconv.AppendBool(b, v.Bool)
		case Float64List, StringList:
			b = appendJSONList(b, w.cols[i].Type, v)
		}
	}
	b = append(b, '}', '\n')
	w.buf = b
	if len(b) >= flushAt {
		return w.flush()
	}
	return nil
}
