package node

import (
	"strings"
	"testing"
)

// TestTableCSVReadByTabular: a table's CSV is read by tabular's CSV reader:
// a byte order mark is skipped, a column named twice or a ragged row is
// refused naming it, and limits.max_table_rows is held.
func TestTableCSVReadByTabular(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Limits.MaxTableRows = 2
	n, _ := newTestNode(t, cfg)
	if rows, aerr := n.UploadTable("user_profile", CSV, []byte("\ufeffuser_id, home_lat\nu1,1\n\"u,2\",\n"), false); aerr != nil || rows != 2 {
		t.Fatalf("CSV with a byte order mark: %d %v", rows, aerr)
	}
	for body, want := range map[string]string{
		"user_id,home_lat,home_lat\nu3,1,2\n":  `"home_lat" appears twice`,
		"user_id,home_lat\nu3,1,2\n":           "row 1: has 3 fields, the header has 2",
		"user_id,home_lat\nu3,1\nu4,1\nu5,1\n": "more than 2 rows (limits.max_table_rows)",
		"user_id,home_lat\nu3,north\n":         `row 1, column "home_lat": want a number`,
		"user_id,home_lat\n,1\n":               `row 1: empty join key "user_id"`,
		"":                                     "empty input",
	} {
		_, aerr := n.UploadTable("user_profile", CSV, []byte(body), false)
		if aerr == nil || aerr.Status != 400 || !strings.Contains(aerr.Message, want) {
			t.Errorf("upload %q: %v, want 400 with %q", body, aerr, want)
		}
	}
	if got := n.TableNamed("user_profile").Len(); got != 2 {
		t.Fatalf("refused uploads changed the table: %d rows, want 2", got)
	}
}

// TestTableUploadFormat: the format is ?format= when given, else the
// Content-Type (tabular.BodyFormat); Parquet, an unknown name and a body
// that says nothing are refused with a 400 naming what to send.
func TestTableUploadFormat(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	url := serve(t, n) + "/api/v1/tables/user_profile"
	for _, c := range []struct{ query, ct, body string }{
		{"", "text/csv; charset=utf-8", "user_id,home_lat\nu1,1\n"},
		{"", "application/x-ndjson", `{"user_id":"u2","home_lat":1}`},
		{"", "application/json", `{"user_id":"u3","home_lat":1}`},
		{"?format=json", "", `{"user_id":"u4","home_lat":1}`},
		{"?format=CSV", "application/x-ndjson", "user_id,home_lat\nu5,1\n"},
	} {
		if code, body := do(t, "POST", url+c.query, "", c.ct, c.body); code != 200 || !strings.Contains(body, `"rows":1`) {
			t.Errorf("upload %q as %q: %d %s", c.query, c.ct, code, body)
		}
	}
	for _, c := range []struct{ query, ct, want string }{
		{"?format=xlsx", "text/csv", `format \"xlsx\": use csv or ndjson`},
		{"?format=parquet", "", `format \"parquet\": use csv or ndjson`},
		{"", "application/vnd.apache.parquet", "say the format"},
		{"", "", "say the format"},
		{"", "text/plain", "say the format"},
	} {
		if code, body := do(t, "POST", url+c.query, "", c.ct, "user_id,home_lat\nu9,1\n"); code != 400 || !strings.Contains(body, c.want) {
			t.Errorf("upload %q as %q: %d %s, want 400 with %s", c.query, c.ct, code, body, c.want)
		}
	}
	if got := n.TableNamed("user_profile").Len(); got != 5 {
		t.Fatalf("table has %d rows, want the 5 accepted", got)
	}
}

// TestTableKeyGivenTwiceRefused: an upload that gives one join key in two
// rows is refused with a 400 naming the key and both rows (lines of
// NDJSON), in either mode, and nothing is stored; the later row silently
// won before. An integer key is its decimal text, the same key as that
// string.
func TestTableKeyGivenTwiceRefused(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	for _, c := range []struct {
		format TableFormat
		body   string
		want   string
	}{
		{CSV, "user_id,home_lat\nu1,1\nu2,2\nu1,3\n", `join key user_id "u1" is in rows 1 and 3`},
		{CSV, "home_lat,user_id\n1,\" u1\"\n2,u1\n3, u1\n", `join key user_id " u1" is in rows 1 and 3`},
		{NDJSON, `{"user_id":"u1","home_lat":1}` + "\n\n" + `{"user_id":7}` + "\n" + `{"home_lat":2,"user_id":"7"}`, `join key user_id "7" is on lines 3 and 4`},
	} {
		for _, replace := range []bool{false, true} {
			rows, aerr := n.UploadTable("user_profile", c.format, []byte(c.body), replace)
			if aerr == nil || aerr.Status != 400 || aerr.Code != "INVALID_TABLE_ROWS" || !strings.Contains(aerr.Message, c.want) || !strings.Contains(aerr.Message, "nothing was stored") {
				t.Errorf("upload (replace %v) %q: %d rows, %v; want 400 INVALID_TABLE_ROWS with %q", replace, c.body, rows, aerr, c.want)
			}
		}
	}
	if got := n.TableNamed("user_profile").Len(); got != 0 || n.AppliedIndex() != 0 {
		t.Fatalf("refused uploads changed the table: %d rows, applied index %d", got, n.AppliedIndex())
	}
}

// TestTableCSVInvalidUTF8Refused: a CSV upload with a key, a value or a
// column name that is not UTF-8 is refused with a 400 naming the row, the
// column and the byte, and nothing is stored: tabular's CSV reader took
// such bytes as they were, so the key "u\xff" was stored (rows=1), and
// written out later as a string no Parquet, Delta or Spark reader takes.
func TestTableCSVInvalidUTF8Refused(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	url := serve(t, n) + "/api/v1/tables/user_profile"
	for body, want := range map[string]string{
		"user_id,home_lat\nu\xff,1\n":             `row 1, column "user_id", line 2: invalid UTF-8 (byte 0xff) at offset 1`,
		"user_id,home_lat\nu1,1\n\"u\n\xc3\",2\n": `row 2, column "user_id", line 4: invalid UTF-8 (byte 0xc3) at offset 2`,
		"user_id,home_lat\nu1,\xed\xa0\x80\n":     `row 1, column "home_lat", line 2: invalid UTF-8 (byte 0xed) at offset 0`,
		"user_id,home\xfe_lat\nu1,1\n":            `column 2: invalid UTF-8 (byte 0xfe) at offset 4`,
	} {
		_, aerr := n.UploadTable("user_profile", CSV, []byte(body), false)
		if aerr == nil || aerr.Status != 400 || !strings.Contains(aerr.Message, want) {
			t.Errorf("upload %q: %v, want 400 with %q", body, aerr, want)
		}
		if code, got := do(t, "POST", url, "", "text/csv", body); code != 400 || !strings.Contains(got, "invalid UTF-8") || !strings.Contains(got, "INVALID_TABLE_ROWS") {
			t.Errorf("POST %q: %d %s, want 400 INVALID_TABLE_ROWS naming invalid UTF-8", body, code, got)
		}
	}
	if got := n.TableNamed("user_profile").Len(); got != 0 || n.AppliedIndex() != 0 {
		t.Fatalf("refused uploads changed the table: %d rows, applied index %d", got, n.AppliedIndex())
	}
	if rows, aerr := n.UploadTable("user_profile", CSV, []byte("user_id,home_lat\nZürich-\xf0\x9f\x98\x80,1\n"), false); aerr != nil || rows != 1 {
		t.Fatalf("a valid multi-byte key: %d %v", rows, aerr)
	}
}
