package tabular

import (
	"bytes"
	"testing"
	"unicode/utf8"
)

// fuzzRead reads data in format f and checks that garbage gives an error,
// not a panic, and that a reader stays failed once it failed.
func fuzzRead(t *testing.T, f Format, data []byte) {
	r, err := NewReader(f, bytes.NewReader(data))
	if err != nil {
		if r != nil {
			t.Fatal("NewReader returned a Reader and an error")
		}
		return
	}
	defer r.Close()
	row := make([]Value, len(r.Columns()))
	for i := 0; i < 10_000; i++ {
		err := r.Next(row)
		if err == nil {
			if n := len(r.Columns()); n != len(row) {
				t.Fatalf("columns changed from %d to %d", len(row), n)
			}
			checkUTF8Row(t, r.Columns(), row)
			continue
		}
		if err.Error() == "" {
			t.Fatal("error with empty text")
		}
		if err2 := r.Next(row); err2 == nil {
			t.Fatalf("Next after %v succeeded", err)
		}
		return
	}
}

// checkUTF8Row fails t if a column name or a string of row is not UTF-8,
// which every reader refuses.
func checkUTF8Row(t *testing.T, cols []Column, row []Value) {
	for i, v := range row {
		ok := utf8.ValidString(cols[i].Name) && utf8.ValidString(v.Str)
		for _, s := range v.Strs {
			ok = ok && utf8.ValidString(s)
		}
		if !ok {
			t.Fatalf("column %q: read %q %q, not UTF-8", cols[i].Name, v.Str, v.Strs)
		}
	}
}

func seedWith(f *testing.F, format Format) {
	for _, cols := range [][]Column{allCols, {{"a", String}}, {{"x", Float64}, {"y", Int64}}} {
		var buf bytes.Buffer
		w, err := NewWriter(format, &buf, cols)
		if err != nil {
			f.Fatal(err)
		}
		for _, r := range sampleRows() {
			if len(cols) == len(allCols) {
				w.Write(r)
			} else {
				w.Write(make([]Value, len(cols)))
			}
		}
		if err := w.Close(); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
}

func FuzzCSVReader(f *testing.F) {
	seedWith(f, CSV)
	f.Add([]byte("\xEF\xBB\xBFa,b\r\n\"x\"\"\",\n"))
	f.Add([]byte("a,b\n1\n"))
	f.Add([]byte("n,s\n1_000,0x1p3\n+Inf,.5\n"))
	f.Add([]byte("k,v\nu\xc3\xa9,\"a\nb\"\nu\xff,\"\xed\xa0\x80\"\n"))
	f.Add([]byte("k,v\xfe\nu1,1\n"))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzRead(t, CSV, data) })
}

func FuzzNDJSONReader(f *testing.F) {
	seedWith(f, NDJSON)
	f.Add([]byte("{\"a\":null,\"b\":[]}\n\n{\"a\":1,\"b\":[\"x\",null]}\n{\"b\":[]}"))
	f.Add([]byte("{\"a\":1}\n{\"a\":1.5}\n"))
	f.Add([]byte("{\"a\":01,\"b\":[+1,.5]}\n{\"a\":inf}\n"))
	f.Add([]byte("{\"a\":\"\xc3\xa9\",\"b\":[\"x\"]}\n{\"a\":\"\xff\",\"b\":[\"\xc3\"]}\n"))
	f.Add([]byte(`{"a":"\ud83d\ude00","b":["\uDBFF\uDFFF"]}` + "\n" + `{"a":"\ud800\u0041","b":["\\udc00","\udc00"]}`))
	f.Fuzz(func(t *testing.T, data []byte) { fuzzRead(t, NDJSON, data) })
}

func FuzzParquetReader(f *testing.F) {
	seedWith(f, Parquet)
	for _, rows := range [][]Value{{{Str: "u\xff"}, {Strs: []string{"ok"}}}, {{Str: "é"}, {Strs: []string{"\xc3", "x"}}}} {
		var buf bytes.Buffer
		w, err := NewWriter(Parquet, &buf, []Column{{"k", String}, {"tags", StringList}})
		if err != nil {
			f.Fatal(err)
		}
		w.Write(rows)
		if err := w.Close(); err != nil {
			f.Fatal(err)
		}
		f.Add(buf.Bytes())
	}
	f.Fuzz(func(t *testing.T, data []byte) { fuzzRead(t, Parquet, data) })
}
