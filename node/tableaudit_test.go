package node

import (
	"strings"
	"testing"
)

// TestTableCSVColumnNamedTwiceAfterTrimming: a CSV header's names are
// matched to the table's columns with surrounding spaces trimmed, so a
// column (or the join key) named twice that way is refused as one named
// twice verbatim is, not read as the last of the two.
func TestTableCSVColumnNamedTwiceAfterTrimming(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	if _, aerr := n.UploadTable("user_profile", CSV, []byte("user_id,home_lat\nu1,1\n"), false); aerr != nil {
		t.Fatal(aerr)
	}
	for body, want := range map[string]string{
		"user_id,home_lat, home_lat\nu1,2,3\n": `"home_lat" appears twice`,
		"user_id,home_lat,user_id \nu1,2,u2\n": `"user_id" appears twice`,
	} {
		_, aerr := n.UploadTable("user_profile", CSV, []byte(body), false)
		if aerr == nil || aerr.Status != 400 || !strings.Contains(aerr.Message, want) {
			t.Errorf("upload %q: %v, want 400 with %q", body, aerr, want)
		}
	}
	if v, s := profileAt(t, n, "u1", 0); v != 1.0 || s != "PRESENT" {
		t.Errorf("u1's home_lat %v %s after the refused uploads, want 1", v, s)
	}
	if got := n.TableNamed("user_profile").Len(); got != 1 {
		t.Errorf("refused uploads changed the table: %d rows, want 1", got)
	}
}
