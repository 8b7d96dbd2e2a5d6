package tabular

import (
	"encoding/json"
	"testing"
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
