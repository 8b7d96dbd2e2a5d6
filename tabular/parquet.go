package tabular

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"unsafe"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress/zstd"
	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
)

const (
	// rowGroupRows is the number of rows per row group a Parquet writer
	// produces, and so the rows it holds in memory.
	rowGroupRows = 64 << 10
	// writeBatch is how many rows the Parquet writer gathers before it hands
	// them to parquet-go, whose per-call cost is high.
	writeBatch = 64
	// readBatch is how many rows the Parquet reader decodes at a time.
	readBatch = 256
	// maxDictionaryBytes makes a string column fall back from dictionary to
	// plain encoding when it has too many distinct values to gain from one.
	maxDictionaryBytes = 1 << 20
)

// indexColumnPrefix names the columns pandas writes for a DataFrame's index;
// they are not data.
const indexColumnPrefix = "__index_level_"

// ---- writing

type parquetWriter struct {
	pw    *parquet.Writer
	cols  []Column
	batch []parquet.Row
	n     int // rows in batch
	c     io.Closer
	err   error
}

func newParquetWriter(w io.Writer, cols []Column, c io.Closer) (_ *parquetWriter, err error) {
	defer recoverTo(&err, "parquet writer")
	cfg, err := parquet.NewWriterConfig(
		parquetSchema(cols),
		parquet.Compression(&zstd.Codec{Level: zstd.SpeedFastest}),
		parquet.MaxRowsPerRowGroup(rowGroupRows),
		parquet.DictionaryMaxBytes(maxDictionaryBytes),
		parquet.CreatedBy("tally", "", ""),
	)
	if err != nil {
		return nil, err
	}
	return &parquetWriter{
		pw:    parquet.NewWriter(w, cfg),
		cols:  cols,
		batch: make([]parquet.Row, writeBatch),
		c:     c,
	}, nil
}

// parquetSchema maps every column to an OPTIONAL field, in column order.
func parquetSchema(cols []Column) *parquet.Schema {
	g := parquet.Group{}
	for _, c := range cols {
		var n parquet.Node
		switch c.Type {
		case String:
			n = parquet.Encoded(parquet.String(), &parquet.RLEDictionary)
		case Float64:
			n = parquet.Leaf(parquet.DoubleType)
		case Int64:
			n = parquet.Leaf(parquet.Int64Type)
		case Bool:
			n = parquet.Leaf(parquet.BooleanType)
		case Timestamp:
			n = parquet.Timestamp(parquet.Millisecond)
		case Float64List:
			n = parquet.List(parquet.Optional(parquet.Leaf(parquet.DoubleType)))
		case StringList:
			n = parquet.List(parquet.Optional(parquet.String()))
		}
		g[c.Name] = parquet.Optional(n)
	}
	return parquet.NewSchema("schema", orderedGroup{Group: g, order: cols})
}

// orderedGroup is a parquet.Group whose fields keep the columns' order;
// parquet.Group sorts them by name.
type orderedGroup struct {
	parquet.Group
	order []Column
}

func (g orderedGroup) Fields() []parquet.Field {
	fields := g.Group.Fields()
	byName := make(map[string]parquet.Field, len(fields))
	for _, f := range fields {
		byName[f.Name()] = f
	}
	for i, c := range g.order {
		fields[i] = byName[c.Name]
	}
	return fields
}

func (w *parquetWriter) Write(row []Value) error {
	if w.err != nil {
		return w.err
	}
	if len(row) != len(w.cols) {
		return rowLenError(len(row), len(w.cols))
	}
	r := w.batch[w.n][:0]
	for i := range row {
		v := &row[i]
		switch t := w.cols[i].Type; t {
		case Float64List, StringList:
			// Levels of OPTIONAL group (LIST) > REPEATED list > OPTIONAL element:
			// definition 0 is a null list, 1 an empty list, 3 an element.
			n := len(v.Nums)
			if t == StringList {
				n = len(v.Strs)
			}
			if v.Null || n == 0 {
				r = append(r, parquet.Value{})
				p := &r[len(r)-1]
				if !v.Null {
					p.SetDefinitionLevel(1)
				}
				p.SetColumnIndex(i)
				continue
			}
			for j := 0; j < n; j++ {
				if t == Float64List {
					r = append(r, parquet.DoubleValue(v.Nums[j]))
				} else {
					r = append(r, stringValue(v.Strs[j]))
				}
				p := &r[len(r)-1]
				if j > 0 {
					p.SetRepetitionLevel(1)
				}
				p.SetDefinitionLevel(3)
				p.SetColumnIndex(i)
			}
		default:
			switch {
			case v.Null:
				r = append(r, parquet.Value{})
			case t == String:
				r = append(r, stringValue(v.Str))
			case t == Float64:
				r = append(r, parquet.DoubleValue(v.Num))
			case t == Int64 || t == Timestamp:
				r = append(r, parquet.Int64Value(v.Int))
			case t == Bool:
				r = append(r, parquet.BooleanValue(v.Bool))
			}
			p := &r[len(r)-1]
			if !v.Null {
				p.SetDefinitionLevel(1)
			}
			p.SetColumnIndex(i)
		}
	}
	w.batch[w.n] = r
	if w.n++; w.n == len(w.batch) {
		return w.flushBatch()
	}
	return nil
}

// stringValue makes a BYTE_ARRAY value that points into s without copying.
// parquet-go copies the bytes into its page buffer and never writes through
// the pointer; s outlives the batch because the batch holds the pointer.
func stringValue(s string) parquet.Value {
	return parquet.ByteArrayValue(unsafe.Slice(unsafe.StringData(s), len(s)))
}

func (w *parquetWriter) flushBatch() (err error) {
	if w.n == 0 {
		return nil
	}
	defer recoverTo(&err, "parquet writer")
	_, err = w.pw.WriteRows(w.batch[:w.n])
	w.n = 0
	if err != nil {
		w.err = fmt.Errorf("write parquet rows: %w", err)
		return w.err
	}
	return nil
}

func (w *parquetWriter) Close() (err error) {
	if w.err == ErrClosed {
		return ErrClosed
	}
	err = w.err
	if err == nil {
		err = w.flushBatch()
	}
	if err == nil {
		func() {
			defer recoverTo(&err, "parquet writer")
			if err = w.pw.Close(); err != nil {
				err = fmt.Errorf("close parquet writer: %w", err)
			}
		}()
	}
	w.err = ErrClosed
	w.batch = nil
	return closeBoth(err, w.c)
}

// ---- reading

// conversions of a parquet leaf value to a Value field
const (
	convBool = iota + 1
	convInt32
	convUint32
	convInt64
	convUint64
	convFloat
	convDouble
	convString
	convTimestamp // INT64 in units of div per millisecond
	convDate      // INT32 days since the epoch
	convInt96     // legacy Impala/Spark timestamp: nanoseconds of day, Julian day
)

type pqColumn struct {
	name       string
	typ        Type
	conv       uint8
	list       bool
	presentDef int   // definition level from which the value, or list, is not null
	elemDef    int   // lists: definition level from which there is an element
	maxDef     int   // definition level of a non-null leaf value
	div        int64 // convTimestamp: leaf units per millisecond
}

type parquetReader struct {
	cols   []Column
	pcols  []pqColumn
	byLeaf []int // leaf column index -> index in cols, or -1 to skip
	groups []parquet.RowGroup
	group  int // next row group to open
	rows   parquet.Rows
	buf    []parquet.Row
	n, i   int   // rows in buf, next row in buf
	row    int64 // rows returned so far
	c      io.Closer
	err    error
}

func newParquetReader(ra io.ReaderAt, size int64, c io.Closer, lim Limits) (_ Reader, err error) {
	defer recoverTo(&err, "parquet")
	if err := checkParquetFooter(ra, size); err != nil {
		return nil, err
	}
	f, err := parquet.OpenFile(ra, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, fmt.Errorf("parquet: %w", err)
	}
	if err := checkSize(f.Metadata(), lim); err != nil {
		return nil, err
	}
	if err := checkPages(ra, size, f.Metadata()); err != nil {
		return nil, fmt.Errorf("parquet: %w", err)
	}
	r := &parquetReader{groups: f.RowGroups(), c: c}
	r.byLeaf = make([]int, len(f.Schema().Columns()))
	for i := range r.byLeaf {
		r.byLeaf[i] = -1
	}
	for _, col := range f.Root().Columns() {
		if strings.HasPrefix(col.Name(), indexColumnPrefix) {
			continue
		}
		if err := utf8Error(col.Name(), "Parquet"); err != nil {
			return nil, fmt.Errorf("parquet column %q: name: %w", col.Name(), err)
		}
		pc, err := mapParquetColumn(col)
		if err != nil {
			return nil, fmt.Errorf("parquet column %q: %w", col.Name(), err)
		}
		leaf := leafOf(col).Index()
		if leaf < 0 || leaf >= len(r.byLeaf) {
			return nil, fmt.Errorf("parquet column %q: bad schema", col.Name())
		}
		r.byLeaf[leaf] = len(r.cols)
		r.cols = append(r.cols, Column{Name: pc.name, Type: pc.typ})
		r.pcols = append(r.pcols, pc)
	}
	if err := checkColumns(r.cols); err != nil {
		return nil, fmt.Errorf("parquet: %w", err)
	}
	return r, nil
}

// checkParquetFooter checks the trailing magic and footer length before
// parquet-go allocates a buffer of that length.
func checkParquetFooter(ra io.ReaderAt, size int64) error {
	if size < 12 {
		return fmt.Errorf("parquet: input of %d bytes is too short for a parquet file", size)
	}
	var tail [8]byte
	if _, err := ra.ReadAt(tail[:], size-8); err != nil && err != io.EOF {
		return fmt.Errorf("parquet: read footer: %w", err)
	}
	if string(tail[4:]) != "PAR1" {
		return errors.New("parquet: not a parquet file, or truncated (no PAR1 at the end)")
	}
	if n := int64(binary.LittleEndian.Uint32(tail[:4])); n > size-12 {
		return fmt.Errorf("parquet: footer length %d is larger than the file: truncated or corrupt", n)
	}
	return nil
}

// checkSize refuses, from the footer alone, a file with more rows than
// lim.MaxRows, or more cells (values of every column, list elements
// included) than lim.MaxBytes leaves room for at 8 bytes a cell: what the
// rows would decode to, before a row group is read.
func checkSize(md *format.FileMetaData, lim Limits) error {
	rows, cells := md.NumRows, int64(0)
	var groupRows int64
	for g := range md.RowGroups {
		groupRows += md.RowGroups[g].NumRows
		for c := range md.RowGroups[g].Columns {
			cells += max(md.RowGroups[g].Columns[c].MetaData.NumValues, 0)
		}
	}
	rows = max(rows, groupRows)
	if lim.MaxRows > 0 && rows > lim.MaxRows {
		return &LimitError{Rows: true, Limit: lim.MaxRows, Got: rows}
	}
	if lim.MaxBytes > 0 && cells > lim.MaxBytes/8 {
		return &LimitError{Limit: lim.MaxBytes, Got: cells * 8}
	}
	return nil
}

// Limits on what one page header may claim; far above what any writer
// produces (pyarrow writes 1 MiB pages, parquet-go 256 KiB).
const (
	maxPageBytes   = 256 << 20
	maxPageValues  = 64 << 20
	maxHeaderBytes = 16 << 20
)

// checkPages walks the page headers of every column chunk before parquet-go
// reads them. parquet-go decodes a header from a stream and allocates
// whatever length a corrupt header claims (up to 2 GiB) before it finds the
// bytes missing; here headers are decoded from bytes that were read, and a
// page must lie inside its chunk and claim a sane size. It costs one small
// read per page.
func checkPages(ra io.ReaderAt, size int64, md *format.FileMetaData) error {
	var buf []byte
	proto := &thrift.CompactProtocol{}
	for g := range md.RowGroups {
		for c := range md.RowGroups[g].Columns {
			m := &md.RowGroups[g].Columns[c].MetaData
			where := func(err error) error {
				return fmt.Errorf("row group %d, column %s: %w", g, strings.Join(m.PathInSchema, "."), err)
			}
			start := m.DataPageOffset
			if m.DictionaryPageOffset > 0 && m.DictionaryPageOffset < start {
				start = m.DictionaryPageOffset
			}
			end := start + m.TotalCompressedSize
			if start < 4 || m.TotalCompressedSize < 0 || end > size || end < start {
				return where(errors.New("column chunk lies outside the file"))
			}
			for off := start; off < end; {
				var h format.PageHeader
				var n int
				for window := int64(256); ; window *= 8 {
					window = min(window, end-off, maxHeaderBytes)
					if int64(cap(buf)) < window {
						buf = make([]byte, window)
					}
					b := buf[:window]
					if _, err := ra.ReadAt(b, off); err != nil && err != io.EOF {
						return where(err)
					}
					h = format.PageHeader{}
					r := proto.NewReaderFromBytes(b)
					err := thrift.NewDecoder(r).Decode(&h)
					if err == nil {
						n = r.BytesRead()
						break
					}
					if window == min(end-off, maxHeaderBytes) {
						return where(fmt.Errorf("page header at offset %d: %w", off, err))
					}
				}
				nv := int64(0)
				switch {
				case h.DataPageHeader.Valid:
					nv = int64(h.DataPageHeader.V.NumValues)
				case h.DataPageHeaderV2.Valid:
					nv = int64(h.DataPageHeaderV2.V.NumValues)
				case h.DictionaryPageHeader.Valid:
					nv = int64(h.DictionaryPageHeader.V.NumValues)
				}
				if h.CompressedPageSize < 0 || h.UncompressedPageSize < 0 || h.UncompressedPageSize > maxPageBytes ||
					nv < 0 || nv > maxPageValues {
					return where(fmt.Errorf("page at offset %d claims implausible sizes (%d bytes compressed, %d uncompressed, %d values)",
						off, h.CompressedPageSize, h.UncompressedPageSize, nv))
				}
				off += int64(n) + int64(h.CompressedPageSize)
				if off > end {
					return where(fmt.Errorf("page runs past the end of its column chunk"))
				}
			}
		}
	}
	return nil
}

func leafOf(c *parquet.Column) *parquet.Column {
	for !c.Leaf() {
		cs := c.Columns()
		if len(cs) == 0 {
			return c
		}
		c = cs[0]
	}
	return c
}

// mapParquetColumn maps a top-level parquet field to a column.
func mapParquetColumn(c *parquet.Column) (pqColumn, error) {
	pc := pqColumn{name: c.Name()}
	if c.Leaf() {
		var err error
		if c.Repeated() {
			// A bare repeated field: a list that is never null.
			pc.list = true
			pc.presentDef = c.MaxDefinitionLevel() - 1
			pc.elemDef, pc.maxDef = c.MaxDefinitionLevel(), c.MaxDefinitionLevel()
			pc.typ, pc.conv, err = mapListElement(c)
			return pc, err
		}
		pc.presentDef, pc.maxDef = c.MaxDefinitionLevel(), c.MaxDefinitionLevel()
		pc.typ, pc.conv, pc.div, err = mapLeaf(c)
		return pc, err
	}
	if c.Repeated() {
		return pc, errors.New("repeated groups are not supported")
	}
	lt := c.Type().LogicalType()
	if lt == nil {
		return pc, errors.New("nested (struct) columns are not supported")
	}
	switch lt.Value.(type) {
	case *format.ListType:
	case *format.MapType:
		return pc, errors.New("map columns are not supported")
	default:
		return pc, fmt.Errorf("group of logical type %s is not supported", lt)
	}
	// LIST: OPTIONAL|REQUIRED group (LIST) > REPEATED group list > element,
	// or, in old files, a repeated leaf directly under the LIST group.
	kids := c.Columns()
	if len(kids) != 1 || !kids[0].Repeated() {
		return pc, errors.New("malformed LIST: want exactly one repeated field")
	}
	rep, elem := kids[0], kids[0]
	if !rep.Leaf() {
		if len(rep.Columns()) != 1 || !rep.Columns()[0].Leaf() {
			return pc, errors.New("lists of structs or of lists are not supported")
		}
		elem = rep.Columns()[0]
	}
	pc.list = true
	pc.presentDef = c.MaxDefinitionLevel()
	pc.elemDef = rep.MaxDefinitionLevel()
	pc.maxDef = elem.MaxDefinitionLevel()
	var err error
	pc.typ, pc.conv, err = mapListElement(elem)
	return pc, err
}

func mapListElement(c *parquet.Column) (Type, uint8, error) {
	t, conv, _, err := mapLeaf(c)
	if err != nil {
		return 0, 0, fmt.Errorf("list element: %w", err)
	}
	switch t {
	case Float64:
		return Float64List, conv, nil
	case Int64:
		if conv == convInt32 || conv == convInt64 {
			return Float64List, conv, nil // integers read as doubles
		}
	case String:
		return StringList, conv, nil
	}
	return 0, 0, fmt.Errorf("lists of %s are not supported: want numbers or strings", c.Type())
}

func mapLeaf(c *parquet.Column) (Type, uint8, int64, error) {
	typ := c.Type()
	unsupported := fmt.Errorf("type %s is not supported", typ)
	lt := typ.LogicalType()
	var ltv format.LogicalTypeValue
	if lt != nil {
		ltv = lt.Value
	}
	switch typ.Kind() {
	case parquet.Boolean:
		if ltv == nil {
			return Bool, convBool, 0, nil
		}
	case parquet.Int32, parquet.Int64:
		wide := typ.Kind() == parquet.Int64
		switch l := ltv.(type) {
		case nil:
		case *format.IntType:
			if !l.IsSigned {
				if wide {
					return Int64, convUint64, 0, nil
				}
				return Int64, convUint32, 0, nil
			}
		case *format.TimestampType:
			if !wide {
				break
			}
			switch l.Unit.Value.(type) {
			case *format.MilliSeconds:
				return Timestamp, convTimestamp, 1, nil
			case *format.MicroSeconds:
				return Timestamp, convTimestamp, 1e3, nil
			case *format.NanoSeconds:
				return Timestamp, convTimestamp, 1e6, nil
			}
			return 0, 0, 0, unsupported
		case *format.DateType:
			if !wide {
				return Timestamp, convDate, 0, nil
			}
			return 0, 0, 0, unsupported
		default:
			return 0, 0, 0, unsupported
		}
		if wide {
			return Int64, convInt64, 0, nil
		}
		return Int64, convInt32, 0, nil
	case parquet.Int96:
		if ltv == nil {
			return Timestamp, convInt96, 0, nil
		}
	case parquet.Float:
		if ltv == nil {
			return Float64, convFloat, 0, nil
		}
	case parquet.Double:
		if ltv == nil {
			return Float64, convDouble, 0, nil
		}
	case parquet.ByteArray:
		switch ltv.(type) {
		case nil, *format.StringType, *format.EnumType, *format.JsonType:
			return String, convString, 0, nil
		}
	}
	return 0, 0, 0, unsupported
}

func (r *parquetReader) Columns() []Column { return r.cols }

func (r *parquetReader) Next(row []Value) error {
	if r.err != nil {
		return r.err
	}
	if len(row) != len(r.cols) {
		return rowLenError(len(row), len(r.cols))
	}
	for r.i == r.n {
		if err := r.fill(); err != nil {
			r.err = err
			return err
		}
	}
	prow := r.buf[r.i]
	r.i++
	r.row++
	for i := range row {
		row[i] = Value{Null: true}
	}
	for j := 0; j < len(prow); {
		leaf := prow[j].Column()
		end := j + 1
		for end < len(prow) && prow[end].Column() == leaf {
			end++ // only a list has more than one value per row
		}
		vals := prow[j:end]
		j = end
		if uint(leaf) >= uint(len(r.byLeaf)) || r.byLeaf[leaf] < 0 {
			continue
		}
		ci := r.byLeaf[leaf]
		pc := &r.pcols[ci]
		var err error
		switch {
		case pc.list:
			err = pc.decodeList(vals, &row[ci])
		case len(vals) != 1:
			err = errors.New("corrupt file: repeated value in a non-list column")
		case vals[0].DefinitionLevel() == pc.maxDef && !vals[0].IsNull():
			err = pc.scalar(&vals[0], &row[ci])
		}
		if err != nil {
			r.err = rowError(r.row, r.cols[ci].Name, err)
			return r.err
		}
	}
	return nil
}

// fill reads the next batch of rows, opening row groups as needed.
func (r *parquetReader) fill() (err error) {
	defer recoverTo(&err, "parquet")
	if r.rows == nil {
		if r.group == len(r.groups) {
			return io.EOF
		}
		r.rows = r.groups[r.group].Rows()
		r.group++
	}
	if r.buf == nil {
		r.buf = make([]parquet.Row, readBatch)
	}
	n, err := r.rows.ReadRows(r.buf)
	r.n, r.i = n, 0
	if err == io.EOF || (err == nil && n == 0) {
		cerr := r.rows.Close()
		r.rows = nil
		if cerr != nil && n == 0 {
			return fmt.Errorf("row %d: %w", r.row+1, cerr)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("row %d: read parquet: %w", r.row+1+int64(n), err)
	}
	return nil
}

// decodeList decodes the values of one list in one row; a null element is
// NaN or "". A string that is not UTF-8 is an error naming its element.
func (pc *pqColumn) decodeList(vals []parquet.Value, out *Value) error {
	if vals[0].DefinitionLevel() < pc.presentDef {
		return nil
	}
	n := 0
	if vals[0].DefinitionLevel() >= pc.elemDef {
		n = len(vals)
	}
	if pc.typ == StringList {
		strs := make([]string, n)
		for k := 0; k < n; k++ {
			if vals[k].DefinitionLevel() >= pc.maxDef && !vals[k].IsNull() {
				strs[k] = string(vals[k].ByteArray())
				if err := utf8Error(strs[k], "Parquet"); err != nil {
					return fmt.Errorf("element %d: %w", k, err)
				}
			}
		}
		*out = Value{Strs: strs}
		return nil
	}
	nums := make([]float64, n)
	for k := 0; k < n; k++ {
		v := vals[k]
		switch {
		case v.DefinitionLevel() < pc.maxDef || v.IsNull():
			nums[k] = math.NaN()
		case pc.conv == convDouble:
			nums[k] = v.Double()
		case pc.conv == convFloat:
			nums[k] = float64(v.Float())
		case pc.conv == convInt32:
			nums[k] = float64(v.Int32())
		default:
			nums[k] = float64(v.Int64())
		}
	}
	*out = Value{Nums: nums}
	return nil
}

func (pc *pqColumn) scalar(v *parquet.Value, out *Value) error {
	switch pc.conv {
	case convBool:
		*out = Value{Bool: v.Boolean()}
	case convInt32:
		*out = Value{Int: int64(v.Int32())}
	case convUint32:
		*out = Value{Int: int64(uint32(v.Int32()))}
	case convInt64:
		*out = Value{Int: v.Int64()}
	case convUint64:
		u := uint64(v.Int64())
		if u > math.MaxInt64 {
			return fmt.Errorf("unsigned value %d does not fit an int64", u)
		}
		*out = Value{Int: int64(u)}
	case convFloat:
		*out = Value{Num: float64(v.Float())}
	case convDouble:
		*out = Value{Num: v.Double()}
	case convString:
		s := string(v.ByteArray())
		if err := utf8Error(s, "Parquet"); err != nil {
			return err
		}
		*out = Value{Str: s}
	case convTimestamp:
		*out = Value{Int: floorDiv(v.Int64(), pc.div)}
	case convDate:
		*out = Value{Int: int64(v.Int32()) * 86_400_000}
	case convInt96:
		x := v.Int96() // little-endian words: nanoseconds of the day, then the Julian day
		nanos := int64(uint64(x[1])<<32 | uint64(x[0]))
		day := int64(x[2])
		const julianEpoch = 2_440_588 // Julian day of 1970-01-01
		*out = Value{Int: (day-julianEpoch)*86_400_000 + floorDiv(nanos, 1e6)}
	}
	return nil
}

// floorDiv divides rounding toward negative infinity, so that a time before
// the epoch truncates to the millisecond at or before it.
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func (r *parquetReader) Close() error {
	var err error
	if r.rows != nil {
		err = r.rows.Close()
		r.rows = nil
	}
	r.err = errors.New("tabular: reader is closed")
	c := r.c
	r.c = nil
	return closeBoth(err, c)
}

// recoverTo turns a panic inside parquet-go, which it raises on some
// malformed files, into an error, so that garbage input never crashes tally.
func recoverTo(err *error, what string) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("%s: corrupt or unsupported input (%v)", what, p)
	}
}
