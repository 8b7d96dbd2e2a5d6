package tabular

import (
	"bytes"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/valyala/fastjson"
)

// readErr reads everything and returns the first error other than io.EOF,
// from NewReader or from Next.
func readErr(f Format, data []byte) error {
	r, err := NewReader(f, bytes.NewReader(data))
	if err != nil {
		return err
	}
	defer r.Close()
	row := make([]Value, len(r.Columns()))
	for i := 0; i < 1_000_000; i++ {
		if err := r.Next(row); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
	return nil
}

func TestReadErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    Format
		in   string
		want []string // substrings of the error
	}{
		{"ragged short", CSV, "a,b\n1,2\n3\n", []string{"row 2", "1 fields", "header has 2"}},
		{"ragged long", CSV, "a,b\n1,2,3\n", []string{"row 1", "3 fields"}},
		{"duplicate header", CSV, "a,b,a\n1,2,3\n", []string{`"a"`, "twice"}},
		{"empty header name", CSV, "a,,c\n", []string{"column 2", "empty name"}},
		{"no header", CSV, "", []string{"header"}},
		{"bad quote", CSV, "a\n\"x\"y\n", []string{"row 1"}},
		{"unknown key later", NDJSON, "{\"a\":1}\n{\"a\":2}\n{\"a\":3,\"b\":4}\n", []string{"row 3", `"b"`, "not a column"}},
		{"string in int column", NDJSON, "{\"a\":1}\n{\"a\":\"x\"}\n", []string{`row 2, column "a"`, "string", "int64"}},
		{"float in int column", NDJSON, "{\"a\":1}\n{\"a\":1.5}\n", []string{`row 2, column "a"`, "1.5", "not an int64"}},
		{"number in string list", NDJSON, "{\"a\":[\"x\"]}\n{\"a\":[1]}\n", []string{`row 2, column "a"`, "element 0"}},
		{"object value", NDJSON, "{\"a\":{\"b\":1}}\n", []string{`row 1, column "a"`, "unsupported"}},
		{"not an object", NDJSON, "[1,2]\n", []string{"row 1", "object"}},
		{"bad json", NDJSON, "{\"a\":1}\n{\"a\":\n", []string{"row 2"}},
		{"bad json in the look-ahead", NDJSON, "{\"a\":null}\n{\"a\":\n{\"a\":1}\n", []string{"row 2"}},
		{"scalar in a list column", NDJSON, "{\"a\":[]}\n{\"a\":1}\n", []string{`row 2, column "a"`, "float64_list"}},
		{"duplicate key", NDJSON, "{\"a\":1,\"a\":2}\n", []string{`"a"`, "twice"}},
		{"invalid escape", NDJSON, `{"a":"x\q"}`, []string{"row 1", `invalid escape "\\q"`}},
		{"short \\u escape", NDJSON, "{\"a\":\"x\"}\n" + `{"a":"\u12"}`, []string{"row 2", `invalid escape "\\u12"`, "four hex digits"}},
		{"invalid escape in a key", NDJSON, `{"a\_b":1}`, []string{"row 1", `invalid escape "\\_"`}},
		{"garbage parquet", Parquet, "this is not a parquet file at all", []string{"parquet"}},
		{"empty parquet", Parquet, "", []string{"parquet"}},
		{"bad footer", Parquet, "PAR1\x00\x01\x02\x03\x04\x05\x06\x07\xff\xff\xff\x7fPAR1", []string{"footer"}},
		{"garbage footer", Parquet, "PAR1" + strings.Repeat("\xab", 64) + "\x20\x00\x00\x00PAR1", []string{"parquet"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := readErr(tc.f, []byte(tc.in))
			if err == nil {
				t.Fatal("want an error")
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}

func validParquet(t testing.TB) []byte {
	var buf bytes.Buffer
	w, err := NewWriter(Parquet, &buf, allCols)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		for _, r := range sampleRows() {
			if err := w.Write(r); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Every prefix of a Parquet file lacks its footer and must be refused.
func TestTruncatedParquet(t *testing.T) {
	data := validParquet(t)
	for n := 0; n < len(data); n += 1 + n/16 {
		if err := readErr(Parquet, data[:n]); err == nil {
			t.Fatalf("truncated to %d of %d bytes: want an error", n, len(data))
		}
	}
}

// Flipped bytes in the pages or footer must give an error or wrong values,
// never a panic or a hang.
func TestCorruptParquet(t *testing.T) {
	data := validParquet(t)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		b := bytes.Clone(data)
		for range 1 + rng.IntN(4) {
			b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
		}
		readErr(Parquet, b)
	}
}

func TestParquetUnsupportedTypes(t *testing.T) {
	for _, tc := range []struct {
		name string
		node parquet.Node
		want string
	}{
		{"struct", parquet.Group{"x": parquet.Leaf(parquet.Int64Type)}, "nested"},
		{"map", parquet.Map(parquet.String(), parquet.Int(64)), "map"},
		{"decimal", parquet.Decimal(2, 9, parquet.Int32Type), "DECIMAL"},
		{"uuid", parquet.UUID(), "UUID"},
		{"list of bool", parquet.List(parquet.Leaf(parquet.BooleanType)), "BOOLEAN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			schema := parquet.NewSchema("s", parquet.Group{"ok": parquet.Leaf(parquet.Int64Type), "bad": parquet.Optional(tc.node)})
			w := parquet.NewWriter(&buf, schema)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			err := readErr(Parquet, buf.Bytes())
			if err == nil {
				t.Fatal("want an error")
			}
			for _, s := range []string{`column "bad"`, tc.want} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}

func TestNextWrongLength(t *testing.T) {
	r, err := NewReader(CSV, strings.NewReader("a,b\n1,2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Next(make([]Value, 1)); err == nil {
		t.Error("Next with a short row: want an error")
	}
}

// ParseJSON reads every escape RFC 8259 defines, and a backslash escaped
// before a letter is no escape of the letter.
func TestParseJSONEscapes(t *testing.T) {
	var p fastjson.Parser
	v, err := ParseJSON(&p, []byte(`["\"\\\/\b\f\n\r\t\u00e9\uD83D\uDE00", "a\\q", "\\\\"]`))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"\"\\/\b\f\n\r\t\u00e9\U0001F600", `a\q`, `\\`}
	for i, w := range want {
		if got := string(v.GetStringBytes(strconv.Itoa(i))); got != w {
			t.Errorf("string %d = %q, want %q", i, got, w)
		}
	}
	for _, bad := range []string{`"\q"`, `"\\\q"`, `"\u"`, `"\u123"`, `"\u12g4"`, `"\U0041"`, `"\x41"`, `"\'"`, `"\0"`} {
		if _, err := ParseJSON(&p, []byte(bad)); err == nil || !strings.Contains(err.Error(), "invalid escape") {
			t.Errorf("%s: %v, want an invalid escape", bad, err)
		}
	}
}

// ParseJSON refuses a raw control character in a string (RFC 8259 has
// them escaped), and takes tab, newline and carriage return between
// tokens.
func TestParseJSONControlCharacters(t *testing.T) {
	var p fastjson.Parser
	for _, bad := range []string{"\"a\tb\"", "{\"a\x00\":1}", "[1, \"\x1f\"]", "\"\\\"\t\"", "{\n\t\"a\":\"x\ny\"}", "\"\x7f\x01\""} {
		if _, err := ParseJSON(&p, []byte(bad)); err == nil || !strings.Contains(err.Error(), "raw control character") {
			t.Errorf("%q: %v, want a raw control character", bad, err)
		}
	}
	for _, ok := range []string{"{\n\t\"a\" :\r\n[1,\t\"b\"]\n}\n", `"\t\n\u0000"`, "[\"a\\\\\",\t\"b\"]", "\"\x7f\xc3\xa9\""} {
		if _, err := ParseJSON(&p, []byte(ok)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// ParseJSON refuses text that is not UTF-8 (RFC 8259 section 8.1), naming
// the offset of the first bad byte, and takes every valid encoding,
// compact or pretty-printed, in strings and around them.
func TestParseJSONInvalidUTF8(t *testing.T) {
	var p fastjson.Parser
	for _, c := range []struct {
		text string
		at   int
	}{
		{"\"\xff\"", 1},
		{"{\"user_id\":\"u\xc3\"}", 13},                         // a sequence cut short
		{"{\"user_id\":\"abcdefgh\xc0\xaf\"}", 20},              // overlong '/'
		{"[\"\xed\xa0\x80\"]", 2},                               // a UTF-16 surrogate
		{"[\"\xf4\x90\x80\x80\"]", 2},                           // beyond U+10FFFF
		{"{\"k\xfe\":1}", 3},                                    // in a member name
		{"{\n\t\"a\": \"\xc3\xa9\",\n\t\"b\": \"\x80\"\n}", 21}, // pretty-printed, after a valid é
		{"\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9 \xe2\x82\"", 12},
	} {
		_, err := ParseJSON(&p, []byte(c.text))
		if err == nil || !strings.Contains(err.Error(), "invalid UTF-8") || !strings.Contains(err.Error(), "offset "+strconv.Itoa(c.at)) {
			t.Errorf("%q: %v, want invalid UTF-8 at offset %d", c.text, err, c.at)
		}
	}
	for _, ok := range []string{"\"\xc3\xa9\"", "{\"\xe2\x9c\x93\":\"\xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"}", "{\n\t\"a\": \"\xc3\xa9\"\n}", "\"\xef\xbf\xbd\"", "[\"ascii only, longer than eight bytes\"]"} {
		if _, err := ParseJSON(&p, []byte(ok)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// writeParquet writes rows of cols as Parquet with the package's writer,
// which takes any bytes in a string.
func writeParquet(t *testing.T, cols []Column, rows ...[]Value) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(Parquet, &buf, cols)
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
	return buf.Bytes()
}

// A CSV or Parquet string that is not UTF-8 (a header name, a field, a
// Parquet string or list element, a Parquet column name) is an error
// naming the row, the column and the byte's offset: such a string was
// read as it was, applied (a table upload's key "u\xff"), and broke the
// Parquet, Delta and Spark readers of what tally wrote with it later.
// Valid multi-byte text reads as before.
func TestReadInvalidUTF8(t *testing.T) {
	strCols := []Column{{"k", String}, {"tags", StringList}}
	for _, tc := range []struct {
		name string
		f    Format
		in   []byte
		want []string
	}{
		{"csv field", CSV, []byte("k,v\nu1,1\nu\xff,2\n"), []string{`row 2, column "k"`, "invalid UTF-8 (byte 0xff) at offset 1", "line 3"}},
		{"csv field cut short", CSV, []byte("k,v\nu1,\xc3\xa9\xc3\n"), []string{`row 1, column "v"`, "(byte 0xc3) at offset 2"}},
		{"csv quoted field over lines", CSV, []byte("k,v\n\"a\nb\",1\nx,\"y\n\xed\xa0\x80\"\n"), []string{`row 2, column "v"`, "(byte 0xed) at offset 2", "line 5"}},
		{"csv header", CSV, []byte("k,v\xfe\nu1,1\n"), []string{"header", "column 2", "(byte 0xfe) at offset 1"}},
		{"parquet string", Parquet, writeParquet(t, strCols, []Value{{Str: "ok"}, {Null: true}}, []Value{{Str: "u\xff"}, {Null: true}}), []string{`row 2, column "k"`, "invalid UTF-8 (byte 0xff) at offset 1"}},
		{"parquet list element", Parquet, writeParquet(t, strCols, []Value{{Str: "ok"}, {Strs: []string{"a", "\xc0\xaf"}}}), []string{`row 1, column "tags"`, "element 1", "(byte 0xc0) at offset 0"}},
		{"parquet column name", Parquet, writeParquet(t, []Column{{"k\xff", String}}), []string{"column", "(byte 0xff) at offset 1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := readErr(tc.f, tc.in)
			if err == nil {
				t.Fatal("want an error")
			}
			for _, s := range append(tc.want, "UTF-8") {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
	ok := "Zürich-😀-✓-longer than eight bytes"
	if err := readErr(CSV, []byte("k,\xc3\xa9\n\""+ok+"\",\xef\xbf\xbd\n")); err != nil {
		t.Errorf("valid CSV: %v", err)
	}
	if err := readErr(Parquet, writeParquet(t, strCols, []Value{{Str: ok}, {Strs: []string{"é", ok}}})); err != nil {
		t.Errorf("valid Parquet: %v", err)
	}
}

// ParseJSON refuses a \u escape of a UTF-16 surrogate that is not half of
// a pair (a high one, \uD800-\uDBFF, then a low one, \uDC00-\uDFFF): it is
// no Unicode character, and fastjson read a lone "\ud800" as its six bytes
// of text and "\ud800\u0041" as U+FFFD, the A lost. A pair reads as the
// character it encodes.
func TestParseJSONUnpairedSurrogates(t *testing.T) {
	var p fastjson.Parser
	for _, c := range []struct {
		text string
		at   int
	}{
		{`"\ud800"`, 1},
		{`"\ud800\u0041"`, 1},
		{`["ok", "x\uDBFF"]`, 9},
		{`"\udc00"`, 1},
		{`"\ude00\ud83d"`, 1},         // a pair in the wrong order
		{`"\ud83d\ud83d\ude00"`, 1},   // two highs, then a low
		{`"\ud83d\\ude00"`, 1},        // the low half's backslash is escaped
		{`"\ud83d\ude00 \udfff"`, 14}, // after a valid pair
		{`{"k\uD800":1}`, 3},          // in a member name
		{`"\ud800\u12"`, 1},           // a short escape after a high half
	} {
		_, err := ParseJSON(&p, []byte(c.text))
		if err == nil || !strings.Contains(err.Error(), "surrogate") || !strings.Contains(err.Error(), "offset "+strconv.Itoa(c.at)) {
			t.Errorf("%s: %v, want an unpaired surrogate at offset %d", c.text, err, c.at)
		}
	}
	for text, want := range map[string]string{
		`"\ud83d\ude00"`:             "\U0001F600",
		`"\uD83D\uDE00\uDBFF\uDFFF"`: "\U0001F600\U0010FFFF",
		`"\ud7ff\ue000\uffff"`:       "\ud7ff\ue000\uffff",
		`"\\ud800"`:                  `\ud800`,
		`"\\\ud83d\ude00"`:           `\` + "\U0001F600",
	} {
		v, err := ParseJSON(&p, []byte(text))
		if err != nil {
			t.Errorf("%s: %v", text, err)
			continue
		}
		if got := string(v.GetStringBytes()); got != want {
			t.Errorf("%s read as %q, want %q", text, got, want)
		}
	}
}
