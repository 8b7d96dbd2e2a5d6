package tabular

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var allCols = []Column{
	{"s", String},
	{"f", Float64},
	{"i", Int64},
	{"b", Bool},
	{"t", Timestamp},
	{"fl", Float64List},
	{"sl", StringList},
}

func ms(s string) int64 {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UnixMilli()
}

// sampleRows covers every type with nulls, NaN and infinities, unicode,
// text that needs quoting, empty strings and empty lists. The first row has
// no nulls so that NDJSON infers every type from it.
func sampleRows() [][]Value {
	null := Value{Null: true}
	return [][]Value{
		{{Str: "héllo, 世界"}, {Num: 1.5}, {Int: 42}, {Bool: true}, {Int: ms("2026-01-02T03:04:05.678Z")},
			{Nums: []float64{1, -2.5, 1e300}}, {Strs: []string{"a", "b,c", `"q"`}}},
		{{Str: ""}, {Num: math.NaN()}, {Int: -1}, {Bool: false}, {Int: ms("1969-12-31T23:59:59.999Z")},
			{Nums: []float64{}}, {Strs: []string{}}},
		{null, null, null, null, null, null, null},
		{{Str: " lead space\nnew line \"quoted\"\t\\."}, {Num: math.Inf(1)}, {Int: math.MaxInt64}, {Bool: true}, {Int: 0},
			{Nums: []float64{math.NaN(), 0.1}}, {Strs: []string{"", "ü"}}},
		{{Str: `\.`}, {Num: math.Inf(-1)}, {Int: math.MinInt64}, null, {Int: -62135596800000},
			null, {Strs: []string{"x"}}},
		{{Str: "1e3"}, {Num: 1}, {Int: 0}, {Bool: true}, {Int: ms("2000-02-29T12:00:00Z")},
			{Nums: []float64{3}}, null},
	}
}

func sameFloat(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) }

func sameValue(t Type, a, b Value) bool {
	if a.Null || b.Null {
		return a.Null == b.Null
	}
	switch t {
	case String:
		return a.Str == b.Str
	case Float64:
		return sameFloat(a.Num, b.Num)
	case Int64, Timestamp:
		return a.Int == b.Int
	case Bool:
		return a.Bool == b.Bool
	case Float64List:
		return a.Nums != nil && b.Nums != nil && slices.EqualFunc(a.Nums, b.Nums, sameFloat)
	case StringList:
		return a.Strs != nil && b.Strs != nil && slices.Equal(a.Strs, b.Strs)
	}
	return false
}

func writeFile(t testing.TB, path string, cols []Column, rows [][]Value) {
	t.Helper()
	w, err := Create(path, cols)
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
	if err := w.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: got %v, want ErrClosed", err)
	}
}

func readAll(t testing.TB, r Reader) ([]Column, [][]Value) {
	t.Helper()
	var rows [][]Value
	for {
		row := make([]Value, len(r.Columns()))
		err := r.Next(row)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, row)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	return r.Columns(), rows
}

func readFile(t testing.TB, path string) ([]Column, [][]Value) {
	t.Helper()
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return readAll(t, r)
}

func checkRows(t *testing.T, cols []Column, got, want [][]Value) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d rows, want %d", len(got), len(want))
	}
	for i := range want {
		for j, c := range cols {
			if !sameValue(c.Type, got[i][j], want[i][j]) {
				t.Errorf("row %d column %q: got %+v, want %+v", i+1, c.Name, got[i][j], want[i][j])
			}
		}
	}
}

func TestParquetRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.parquet")
	writeFile(t, path, allCols, sampleRows())
	cols, rows := readFile(t, path)
	if !slices.Equal(cols, allCols) {
		t.Fatalf("columns: got %v, want %v", cols, allCols)
	}
	checkRows(t, cols, rows, sampleRows())
}

func TestNDJSONRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.ndjson")
	writeFile(t, path, allCols, sampleRows())
	cols, rows := readFile(t, path)
	// NDJSON has no timestamp type: it comes back as Int64, same Int.
	wantCols := slices.Clone(allCols)
	wantCols[4].Type = Int64
	if !slices.Equal(cols, wantCols) {
		t.Fatalf("columns: got %v, want %v", cols, wantCols)
	}
	// Non-finite floats are written as null: Null in a column, NaN in a list.
	want := sampleRows()
	for _, r := range want {
		if f := r[1]; !f.Null && (math.IsNaN(f.Num) || math.IsInf(f.Num, 0)) {
			r[1] = Value{Null: true}
		}
	}
	checkRows(t, cols, rows, want)
}

func TestCSVRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.csv")
	writeFile(t, path, allCols, sampleRows())
	cols, rows := readFile(t, path)
	wantCols := slices.Clone(allCols)
	for i := range wantCols {
		wantCols[i].Type = String
	}
	if !slices.Equal(cols, wantCols) {
		t.Fatalf("columns: got %v, want %v", cols, wantCols)
	}
	// Every column reads back as text; empty text is Null.
	text := func(v Value, typ Type) Value {
		if v.Null {
			return v
		}
		var s string
		switch typ {
		case String:
			s = v.Str
		case Float64:
			s = strconv.FormatFloat(v.Num, 'g', -1, 64)
		case Int64:
			s = strconv.FormatInt(v.Int, 10)
		case Bool:
			s = strconv.FormatBool(v.Bool)
		case Timestamp:
			s = time.UnixMilli(v.Int).UTC().Format("2006-01-02T15:04:05.000Z07:00")
		case Float64List:
			s = string(appendJSONList(nil, typ, &v))
		case StringList:
			s = string(appendJSONList(nil, typ, &v))
		}
		return Value{Null: s == "", Str: s}
	}
	var want [][]Value
	for _, r := range sampleRows() {
		w := make([]Value, len(r))
		for j := range r {
			w[j] = text(r[j], allCols[j].Type)
		}
		want = append(want, w)
	}
	checkRows(t, cols, rows, want)
	raw, _ := os.ReadFile(path)
	for _, s := range []string{"s,f,i,b,t,fl,sl\n", ",NaN,", ",+Inf,", ",-Inf,", "2026-01-02T03:04:05.678Z", "1969-12-31T23:59:59.999Z", `"[1.0,-2.5,1e+300]"`, `"[""a"",""b,c"",""\""q\""""]"`} {
		if !strings.Contains(string(raw), s) {
			t.Errorf("CSV output lacks %q:\n%s", s, raw)
		}
	}
}

func TestZeroRows(t *testing.T) {
	dir := t.TempDir()
	for _, ext := range []string{"csv", "ndjson", "parquet"} {
		t.Run(ext, func(t *testing.T) {
			path := filepath.Join(dir, "empty."+ext)
			writeFile(t, path, allCols, nil)
			cols, rows := readFile(t, path)
			if len(rows) != 0 {
				t.Fatalf("got %d rows", len(rows))
			}
			var want []Column
			switch ext {
			case "parquet":
				want = allCols
			case "csv":
				for _, c := range allCols {
					want = append(want, Column{c.Name, String})
				}
			case "ndjson":
				want = nil // no object, no columns
			}
			if !slices.Equal(cols, want) {
				t.Fatalf("columns: got %v, want %v", cols, want)
			}
		})
	}
}

// A single-column CSV must keep rows whose only field is empty.
func TestCSVSingleColumnNulls(t *testing.T) {
	var buf bytes.Buffer
	w, _ := NewWriter(CSV, &buf, []Column{{"a", String}})
	for _, v := range []Value{{Str: "x"}, {Null: true}, {Str: ""}, {Str: "y"}} {
		if err := w.Write([]Value{v}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(CSV, &buf)
	if err != nil {
		t.Fatal(err)
	}
	_, rows := readAll(t, r)
	want := [][]Value{{{Str: "x"}}, {{Null: true}}, {{Null: true}}, {{Str: "y"}}}
	checkRows(t, []Column{{"a", String}}, rows, want)
}

func TestCSVBOMAndQuotes(t *testing.T) {
	in := "\xEF\xBB\xBFid,note\r\n1,\"a \"\"b\"\"\nc\"\r\n2,\r\n"
	r, err := NewReader(CSV, strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	cols, rows := readAll(t, r)
	if cols[0].Name != "id" {
		t.Fatalf("BOM not skipped: %q", cols[0].Name)
	}
	want := [][]Value{{{Str: "1"}, {Str: "a \"b\"\nc"}}, {{Str: "2"}, {Null: true}}}
	checkRows(t, cols, rows, want)
}

func TestNDJSONInference(t *testing.T) {
	in := `{"k":"a","n":1,"x":null,"l":[],"f":2.5,"e":1e3}

{"k":"b","n":2,"x":true,"l":["p",null],"f":3}
{"n":3,"l":null}
`
	r, err := NewReader(NDJSON, strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	// The look-ahead decides x and l from the second row, before any Next.
	wantCols := []Column{{"k", String}, {"n", Int64}, {"x", Bool}, {"l", StringList}, {"f", Float64}, {"e", Float64}}
	if got := r.Columns(); !slices.Equal(got, wantCols) {
		t.Fatalf("columns: got %v, want %v", got, wantCols)
	}
	cols, rows := readAll(t, r)
	if !slices.Equal(cols, wantCols) {
		t.Fatalf("columns changed to %v", cols)
	}
	null := Value{Null: true}
	want := [][]Value{
		{{Str: "a"}, {Int: 1}, null, {Strs: []string{}}, {Num: 2.5}, {Num: 1000}},
		{{Str: "b"}, {Int: 2}, {Bool: true}, {Strs: []string{"p", ""}}, {Num: 3}, null},
		{null, {Int: 3}, null, null, null, null},
	}
	checkRows(t, cols, rows, want)
}

// A column with no value in the look-ahead is String, and later values read
// as their JSON text; one with only empty lists is Float64List.
func TestNDJSONBeyondLookAhead(t *testing.T) {
	var b strings.Builder
	for i := range lookAheadRows + 5 {
		switch {
		case i < lookAheadRows:
			fmt.Fprintf(&b, "{\"id\":%d,\"late\":null,\"l\":[]}\n", i)
		case i%2 == 0:
			fmt.Fprintf(&b, "{\"id\":%d,\"late\":%d.5,\"l\":[1]}\n", i, i)
		default:
			fmt.Fprintf(&b, "{\"id\":%d,\"late\":\"s%d\",\"l\":[2.5,null]}\n", i, i)
		}
	}
	r, err := NewReader(NDJSON, strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	wantCols := []Column{{"id", Int64}, {"late", String}, {"l", Float64List}}
	if got := r.Columns(); !slices.Equal(got, wantCols) {
		t.Fatalf("columns: got %v, want %v", got, wantCols)
	}
	_, rows := readAll(t, r)
	if len(rows) != lookAheadRows+5 {
		t.Fatalf("got %d rows", len(rows))
	}
	got := rows[lookAheadRows:]
	want := [][]Value{
		{{Int: lookAheadRows}, {Str: "1000.5"}, {Nums: []float64{1}}},
		{{Int: lookAheadRows + 1}, {Str: "s1001"}, {Nums: []float64{2.5, math.NaN()}}},
	}
	checkRows(t, wantCols, got[:2], want)
	if !rows[0][1].Null || len(rows[0][2].Nums) != 0 || rows[0][2].Null {
		t.Errorf("row 1: %+v", rows[0])
	}
}

func TestParquetManyRowGroups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.parquet")
	cols := []Column{{"i", Int64}, {"s", String}}
	n := 2*rowGroupRows + 123
	w, err := Create(path, cols)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		row := []Value{{Int: int64(i)}, {Str: "k" + strconv.Itoa(i%1000)}}
		if i%7 == 0 {
			row[1] = Value{Null: true}
		}
		if err := w.Write(row); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if g := len(r.(*parquetReader).groups); g != 3 {
		t.Errorf("got %d row groups, want 3", g)
	}
	row := make([]Value, 2)
	for i := 0; ; i++ {
		err := r.Next(row)
		if err == io.EOF {
			if i != n {
				t.Fatalf("got %d rows, want %d", i, n)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if row[0].Int != int64(i) || row[1].Null != (i%7 == 0) || (!row[1].Null && row[1].Str != "k"+strconv.Itoa(i%1000)) {
			t.Fatalf("row %d: %+v", i+1, row)
		}
	}
	r.Close()
}

// NewReader must read Parquet from a plain io.Reader (buffered) as well as
// from an io.ReaderAt with a size.
func TestParquetNewReaderSources(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(Parquet, &buf, allCols)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range sampleRows() {
		w.Write(r)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	sources := map[string]io.Reader{
		"plain":        struct{ io.Reader }{bytes.NewReader(data)},
		"bytes.Reader": bytes.NewReader(data),
	}
	for name, src := range sources {
		r, err := NewReader(Parquet, src)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cols, rows := readAll(t, r)
		checkRows(t, cols, rows, sampleRows())
	}
	r, err := NewParquetReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	cols, rows := readAll(t, r)
	checkRows(t, cols, rows, sampleRows())
}

func TestFormats(t *testing.T) {
	for path, want := range map[string]Format{"a.csv": CSV, "A.CSV": CSV, "x/b.ndjson": NDJSON, "b.jsonl": NDJSON, "b.json": NDJSON, "c.parquet": Parquet, "c.pq": Parquet} {
		if got, err := FormatOf(path); err != nil || got != want {
			t.Errorf("FormatOf(%q) = %v, %v; want %v", path, got, err, want)
		}
	}
	for _, path := range []string{"a.txt", "noext", "a.csv.gz"} {
		if _, err := FormatOf(path); err == nil {
			t.Errorf("FormatOf(%q): want an error", path)
		}
	}
	for _, f := range []Format{CSV, NDJSON, Parquet} {
		if got, err := ParseFormat(f.String()); err != nil || got != f {
			t.Errorf("ParseFormat(%q) = %v, %v", f.String(), got, err)
		}
		if got, ok := FormatFromContentType(f.ContentType()); !ok || got != f {
			t.Errorf("FormatFromContentType(%q) = %v, %v", f.ContentType(), got, ok)
		}
	}
	if _, err := ParseFormat("xlsx"); err == nil {
		t.Error("ParseFormat(xlsx): want an error")
	}
	for ct, want := range map[string]Format{"text/csv; charset=utf-8": CSV, "application/json": NDJSON, "application/jsonl": NDJSON, "application/parquet": Parquet} {
		if got, ok := FormatFromContentType(ct); !ok || got != want {
			t.Errorf("FormatFromContentType(%q) = %v, %v; want %v", ct, got, ok, want)
		}
	}
	for _, ct := range []string{"application/octet-stream", "", "text/plain", ";;"} {
		if _, ok := FormatFromContentType(ct); ok {
			t.Errorf("FormatFromContentType(%q): want false", ct)
		}
	}
	for typ := String; typ <= StringList; typ++ {
		if s := typ.String(); strings.HasPrefix(s, "Type(") {
			t.Errorf("Type %d has no name", typ)
		}
	}
}

func TestWriterRejects(t *testing.T) {
	for _, cols := range [][]Column{{{"", String}}, {{"a", String}, {"a", Int64}}, {{"a", Type(0)}}, {{"a", Type(99)}}} {
		for _, f := range []Format{CSV, NDJSON, Parquet} {
			if _, err := NewWriter(f, io.Discard, cols); err == nil {
				t.Errorf("%v %v: want an error", f, cols)
			}
		}
	}
	for _, f := range []Format{CSV, NDJSON, Parquet} {
		if _, err := NewWriter(f, io.Discard, nil); err == nil {
			t.Errorf("%v without columns: want an error", f)
		}
	}
	path := filepath.Join(t.TempDir(), "bad.csv")
	if _, err := Create(path, []Column{{"", String}}); err == nil {
		t.Error("Create with a bad column: want an error")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Error("Create with a bad column created the file")
	}
	for _, f := range []Format{CSV, NDJSON, Parquet} {
		w, _ := NewWriter(f, io.Discard, []Column{{"a", String}})
		if err := w.Write([]Value{{Str: "x"}, {Str: "y"}}); err == nil {
			t.Errorf("%v: a row of the wrong length: want an error", f)
		}
		w.Close()
		if err := w.Write([]Value{{Str: "x"}}); !errors.Is(err, ErrClosed) {
			t.Errorf("%v: Write after Close: got %v, want ErrClosed", f, err)
		}
	}
}

func ExampleCreate() {
	dir, _ := os.MkdirTemp("", "tabular")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "spine.parquet")
	w, _ := Create(path, []Column{{"user", String}, {"ts", Timestamp}, {"label", Float64}})
	w.Write([]Value{{Str: "u1"}, {Int: 1767323045678}, {Num: 1}})
	w.Write([]Value{{Str: "u2"}, {Int: 1767323045679}, {Null: true}})
	if err := w.Close(); err != nil {
		panic(err)
	}
	r, _ := Open(path)
	defer r.Close()
	row := make([]Value, len(r.Columns()))
	for r.Next(row) == nil {
		fmt.Println(row[0].Str, time.UnixMilli(row[1].Int).UTC().Format(time.RFC3339Nano), row[2].Null, row[2].Num)
	}
	// Output:
	// u1 2026-01-02T03:04:05.678Z false 1
	// u2 2026-01-02T03:04:05.679Z true 0
}

// Floats must come back bit for bit, including ones whose shortest decimal
// form has 16 or 17 digits.
func TestFloatsExact(t *testing.T) {
	floats := []float64{0.30000000000000004, 0.12345678901234567, 9007199254740993.0, 123.45285714285714, 5e-324,
		math.MaxFloat64, -math.SmallestNonzeroFloat64, 1e21, 1e-7, 2.5, -0.0, 1 / 3.0,
		8.09001692603242e-14, 7.41287606625299e+12} // fastjson.Value.Float64 gets these two wrong
	cols := []Column{{"f", Float64}, {"l", Float64List}}
	var rows [][]Value
	for _, f := range floats {
		rows = append(rows, []Value{{Num: f}, {Nums: []float64{f, -f}}})
	}
	dir := t.TempDir()
	for _, ext := range []string{"csv", "ndjson", "parquet"} {
		path := filepath.Join(dir, "f."+ext)
		writeFile(t, path, cols, rows)
		_, got := readFile(t, path)
		for i, f := range floats {
			v := got[i][0]
			if ext == "csv" {
				var err error
				if v.Num, err = strconv.ParseFloat(v.Str, 64); err != nil {
					t.Fatal(err)
				}
			}
			if math.Float64bits(v.Num) != math.Float64bits(f) {
				t.Errorf("%s: got %v (%x), want %v (%x)", ext, v.Num, math.Float64bits(v.Num), f, math.Float64bits(f))
			}
			if ext != "csv" && (got[i][1].Nums[0] != f || got[i][1].Nums[1] != -f) {
				t.Errorf("%s list: got %v, want [%v %v]", ext, got[i][1].Nums, f, -f)
			}
		}
	}
}

// TestBodyFormat: ?format wins over the Content-Type; either alone names
// the format; neither, or a name that is no format, is an error.
func TestBodyFormat(t *testing.T) {
	for _, c := range []struct {
		param, ct string
		want      Format
	}{
		{"", "text/csv; charset=utf-8", CSV},
		{"", "application/x-ndjson", NDJSON},
		{"", "application/json", NDJSON},
		{"json", "", NDJSON},
		{"NDJSON", "text/csv", NDJSON},
		{"csv", "application/x-ndjson", CSV},
		{"parquet", "", Parquet},
	} {
		if got, err := BodyFormat(c.param, c.ct); err != nil || got != c.want {
			t.Errorf("BodyFormat(%q, %q) = %v, %v; want %v", c.param, c.ct, got, err, c.want)
		}
	}
	for _, c := range [][2]string{{"", ""}, {"", "application/octet-stream"}, {"xlsx", "text/csv"}, {"", "text/plain"}} {
		if f, err := BodyFormat(c[0], c[1]); err == nil {
			t.Errorf("BodyFormat(%q, %q) = %v, want an error", c[0], c[1], f)
		}
	}
}
