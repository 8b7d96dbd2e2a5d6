package tabular

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// The one JSON string writer (node's responses use it too) escapes what
// encoding/json does, and U+2028/U+2029 so the output is also JavaScript.
func TestAppendJSONString(t *testing.T) {
	for in, want := range map[string]string{
		"plain":            `"plain"`,
		"q\"b\\":           `"q\"b\\"`,
		"nl\n\r\t\x01":     `"nl\n\r\t\u0001"`,
		"bad\xffutf8":      `"bad\ufffdutf8"`,
		"ls\u2028ps\u2029": `"ls\u2028ps\u2029"`,
		"héllo":            `"héllo"`,
	} {
		got := string(AppendJSONString(nil, in))
		if got != want {
			t.Errorf("AppendJSONString(%q) = %s, want %s", in, got, want)
		}
		var back string
		if err := json.Unmarshal([]byte(got), &back); err != nil {
			t.Errorf("AppendJSONString(%q) = %s: not JSON: %v", in, got, err)
		}
	}
}

// FuzzAppendJSONString: the output is valid UTF-8 JSON without a raw
// U+2028 or U+2029, and reads back as what encoding/json writes for the same
// input reads back as (invalid UTF-8 as U+FFFD, byte by byte): the
// eight-byte fast path changes nothing.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "user_transaction_counts.amt_count_1m", "12345678\"", "1234567\\8", "abcdefgh\x00", "abcdefg\x7f\x80", "héllo wörld 😀", "ls\u2028ps\u2029 long enough", "bad\xffutf8 and more bytes"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := AppendJSONString(nil, s)
		if !utf8.Valid(got) || bytes.ContainsRune(got, '\u2028') || bytes.ContainsRune(got, '\u2029') {
			t.Fatalf("AppendJSONString(%q) = %q: invalid UTF-8 or a raw line separator", s, got)
		}
		var back, want string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("AppendJSONString(%q) = %s: not JSON: %v", s, got, err)
		}
		enc, _ := json.Marshal(s)
		if err := json.Unmarshal(enc, &want); err != nil || back != want {
			t.Fatalf("AppendJSONString(%q) = %s reads back as %q; encoding/json's %s as %q", s, got, back, enc, want)
		}
	})
}
