package node

import (
	"fmt"
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

// TestRefusedTableUploadsLogNothing: an upload refused for a bad row in
// the middle, a wrong type, an out-of-range integer, a value or key over
// its limit, too many rows, an empty replace or an as_of in the future
// changes neither the table (its rows and their values) nor the log, on
// the node and after a restart from that log.
func TestRefusedTableUploadsLogNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := openCfg(dir, "always", false)
	cfg.Limits.MaxTableRows = 3
	cfg.Limits.MaxKeyBytes = 8
	in := mustOpenNode(t, cfg, nil)
	if _, aerr := in.UploadTable("user_profile", CSV, []byte("user_id,home_lat,home_long\nu1,1,2\nu2,3,4\n"), false); aerr != nil {
		t.Fatal(aerr)
	}
	last := in.WAL().LastIndex()
	for _, c := range []struct {
		f       TableFormat
		body    string
		replace bool
	}{
		{CSV, "user_id,home_lat\nu1,9\nu3,north\nu2,9\n", false},
		{CSV, "user_id,home_lat\nu1,9\nu3,NaN\n", true},
		{CSV, "user_id,home_lat\nu1,9\nu2,9\nu3,9\nu4,9\n", true},
		{CSV, "user_id,home_lat\nu1,9\nu123456789,9\n", false},
		{CSV, "user_id,home_lat\nu1,9\nu2\n", false},
		{CSV, "user_id,home_lat\n", true},
		{NDJSON, "{\"user_id\":\"u1\",\"home_lat\":9}\n{\"user_id\":\"u2\",\"home_lat\":\"9\"}\n", false},
		{NDJSON, "{\"user_id\":\"u1\",\"home_lat\":9}\n{\"user_id\":\"u2\",\"home_lat\":1e999}\n", true},
		{NDJSON, "{\"user_id\":\"u1\",\"home_lat\":9}\n{\"home_lat\":9}\n", false},
		{NDJSON, "{\"user_id\":\"u1\",\"home_lat\":9}\n{\"user_id\":\"u2\",\"home_lat\":9,\"home_lat\":8}\n", false},
		{NDJSON, "{\"user_id\":\"u1\",\"home_lat\":9}\n{\"user_id\":\"u2\",\"nope\":9}\n", false},
		{NDJSON, "{\"user_id\":\"u1\",\"home_lat\":9}\n{\"user_id\":2.5,\"home_lat\":9}\n", false},
		{NDJSON, "{\"user_id\":\"u1\",\"home_lat\":9}\nnot json\n", false},
	} {
		if _, aerr := in.UploadTable("user_profile", c.f, []byte(c.body), c.replace); aerr == nil || aerr.Status != 400 {
			t.Errorf("upload %q (replace %v): %v, want a 400", c.body, c.replace, aerr)
		}
	}
	if _, aerr := in.UploadTableAt("user_profile", CSV, []byte("user_id,home_lat\nu1,9\n"), false, t0+1); aerr == nil || aerr.Status != 400 {
		t.Errorf("upload as of the future: %v, want a 400", aerr)
	}
	check := func(what string, n *Node) {
		t.Helper()
		if got := n.TableNamed("user_profile").Len(); got != 2 {
			t.Errorf("%s: %d rows, want 2", what, got)
		}
		for u, want := range map[string]float64{"u1": 1, "u2": 3} {
			if v, s := profileAt(t, n, u, 0); v != want || s != "PRESENT" {
				t.Errorf("%s: %s's home_lat %v %s, want %v", what, u, v, s, want)
			}
		}
	}
	check("after the refusals", in.Node)
	if got := in.WAL().LastIndex(); got != last {
		t.Errorf("refused uploads logged %d records", got-last)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	in = mustOpenNode(t, cfg, nil)
	defer in.Close()
	check("after a restart", in.Node)
}

// TestRefusedImportLogsNothing: an import (a backfill) with a bad record
// in the middle, or one older than its body's events allow, changes
// neither the windows nor the log; an accepted one under a request id,
// retried after a restart from a snapshot and the log, counts once.
func TestRefusedImportLogsNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := openCfg(dir, "always", false)
	in := mustOpenNode(t, cfg, nil)
	ev := func(u string, amt float64, ts int64) string {
		return fmt.Sprintf(`{"user_id":%q,"merchant":"m1","category":"x","country":"FR","amt":%v,"lat":1,"long":2,"is_fraud":0,"timestamp":%d}`+"\n", u, amt, ts)
	}
	good := ev("u1", 5, t0-3000) + ev("u1", 7, t0-2000)
	if _, err := in.ImportNDJSONAs("imp-1", "transactions", []byte(good), false); err != nil {
		t.Fatal(err)
	}
	last := in.WAL().LastIndex()
	for _, body := range []string{
		ev("u1", 100, t0-1500) + `{"user_id":"u1","amt":"lots","timestamp":1}` + "\n" + ev("u1", 100, t0-1000),
		ev("u1", 100, t0-1500) + ev("u1", 100, t0-400*86_400_000),
		ev("u1", 100, t0-1500) + ev("u1", 100, t0+86_400_000),
	} {
		if _, err := in.ImportNDJSONAs("imp-bad", "transactions", []byte(body), false); err == nil {
			t.Errorf("import %q accepted", body)
		}
	}
	if got := in.WAL().LastIndex(); got != last {
		t.Errorf("refused imports logged %d records", got-last)
	}
	if got := sum1h(t, in.Node, "u1"); got != 12 {
		t.Fatalf("u1's 1h sum %v after the refused imports, want 12", got)
	}
	if _, err := in.Snapshot(); err != nil {
		t.Fatal(err)
	}
	if err := in.Close(); err != nil {
		t.Fatal(err)
	}
	in = mustOpenNode(t, cfg, nil)
	defer in.Close()
	if _, err := in.ImportNDJSONAs("imp-1", "transactions", []byte(good), false); err != nil {
		t.Fatal(err)
	}
	if got := sum1h(t, in.Node, "u1"); got != 12 {
		t.Fatalf("u1's 1h sum %v after a restart and a retry of the import, want 12", got)
	}
}
