package node

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/wal"
)

// profileAt looks up fraud_detection for user at as_of (0: no as_of) and
// returns user_profile.home_lat's value and status.
func profileAt(t *testing.T, n *Node, user string, asOf int64) (any, string) {
	t.Helper()
	body := lookupBody(user, "m1", "FR", 10, 48.85, 2.35)
	if asOf != 0 {
		body = []byte(fmt.Sprintf(`{"params":{"feature_service_name":"fraud_detection","as_of":%d,"join_key_map":{"user_id":%q,"merchant":"m1","country":"FR"},"request_context_map":{"amt":10,"lat":48.85,"long":2.35}}}`, asOf, user))
	}
	out, aerr := n.GetFeatures(nil, body)
	if aerr != nil {
		t.Fatalf("lookup of %s at %d: %v", user, asOf, aerr)
	}
	f := decodeVector(t, out)["user_profile.home_lat"]
	return f.v, f.status
}

// TestTableAsOfReadsTheRowValidThen: a lookup at a past as_of reads a
// table's row valid then (as historical features do), not a row uploaded
// after it; before a key's first upload it has no row, as an unknown key.
func TestTableAsOfReadsTheRowValidThen(t *testing.T) {
	n, clk := newTestNode(t, DefaultConfig())
	t1 := clk.now()
	if _, aerr := n.UploadTable("user_profile", CSV, []byte("user_id,home_lat,home_long\nu1,10,20\n"), false); aerr != nil {
		t.Fatal(aerr)
	}
	clk.advance(60_000)
	t2 := clk.now()
	if _, aerr := n.UploadTable("user_profile", CSV, []byte("user_id,home_lat,home_long\nu1,11,21\n"), false); aerr != nil {
		t.Fatal(aerr)
	}
	clk.advance(1000)
	missV, missS := profileAt(t, n, "nobody", 0)
	for _, c := range []struct {
		name   string
		asOf   int64
		v      any
		status string
	}{
		{"no as_of", 0, 11.0, "PRESENT"},
		{"as_of after t2", t2 + 500, 11.0, "PRESENT"},
		{"as_of at t2", t2, 11.0, "PRESENT"},
		{"as_of between t1 and t2", t1 + 30_000, 10.0, "PRESENT"},
		{"as_of at t1", t1, 10.0, "PRESENT"},
		{"as_of before t1", t1 - 30_000, missV, missS},
	} {
		if v, s := profileAt(t, n, "u1", c.asOf); v != c.v || s != c.status {
			t.Errorf("%s: home_lat %v %s, want %v %s", c.name, v, s, c.v, c.status)
		}
	}
}

// TestTableAsOfAfterReplaceAndBackfill: a key a replace left out has its
// row before the replace and none after; a backfill (rows valid from an
// earlier time) answers from that time on.
func TestTableAsOfAfterReplaceAndBackfill(t *testing.T) {
	n, clk := newTestNode(t, DefaultConfig())
	t1 := clk.now()
	if _, aerr := n.UploadTable("user_profile", CSV, []byte("user_id,home_lat\nu1,10\nu2,30\n"), false); aerr != nil {
		t.Fatal(aerr)
	}
	clk.advance(60_000)
	t2 := clk.now()
	if _, aerr := n.UploadTable("user_profile", CSV, []byte("user_id,home_lat\nu1,11\n"), true); aerr != nil {
		t.Fatal(aerr)
	}
	clk.advance(1000)
	if _, aerr := n.UploadTableAt("user_profile", CSV, []byte("user_id,home_lat\nu3,50\n"), false, t1-10_000); aerr != nil {
		t.Fatal(aerr)
	}
	missV, missS := profileAt(t, n, "nobody", 0)
	for _, c := range []struct {
		user   string
		asOf   int64
		v      any
		status string
	}{
		{"u2", t1 + 1000, 30.0, "PRESENT"},
		{"u2", t2 - 1, 30.0, "PRESENT"},
		{"u2", t2, missV, missS},
		{"u2", 0, missV, missS},
		{"u1", t2 - 1, 10.0, "PRESENT"},
		{"u1", t2, 11.0, "PRESENT"},
		{"u3", t1 - 10_001, missV, missS},
		{"u3", t1 - 10_000, 50.0, "PRESENT"},
		{"u3", t2 + 500, 50.0, "PRESENT"},
		{"u3", 0, 50.0, "PRESENT"},
	} {
		if v, s := profileAt(t, n, c.user, c.asOf); v != c.v || s != c.status {
			t.Errorf("%s at %d: home_lat %v %s, want %v %s", c.user, c.asOf, v, s, c.v, c.status)
		}
	}
}

// TestTableAsOfAfterRestart: a node recovered from a snapshot and the log
// after it, within the lateness of the uploads, answers a past as_of with
// the rows valid then, as the node that took them did.
func TestTableAsOfAfterRestart(t *testing.T) {
	dataDir := t.TempDir()
	walDir := filepath.Join(dataDir, "wal")
	l, err := wal.Open(walDir, wal.Options{Sync: wal.SyncNever})
	if err != nil {
		t.Fatal(err)
	}
	repo, _ := features.Default()
	clk := &testClock{}
	clk.set(t0)
	a, err := New(repo, DefaultConfig(), Options{Clock: clk.now, Log: l, RepoFS: features.DefaultFS()})
	if err != nil {
		t.Fatal(err)
	}
	upload := func(body string, replace bool) {
		t.Helper()
		if _, aerr := a.UploadTable("user_profile", CSV, []byte("user_id,home_lat\n"+body), replace); aerr != nil {
			t.Fatal(aerr)
		}
		clk.advance(60_000)
	}
	t1 := clk.now()
	upload("u1,10\nu2,30\n", false)
	t2 := clk.now()
	upload("u1,11\n", true)
	if _, _, err := a.SnapshotInto(dataDir); err != nil {
		t.Fatal(err)
	}
	t3 := clk.now()
	upload("u1,12\nu2,31\n", false)
	l.Close()

	l, err = wal.Open(walDir, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	b, err := New(repo, DefaultConfig(), Options{Clock: clk.now, RepoFS: features.DefaultFS()})
	if err != nil {
		t.Fatal(err)
	}
	if used, err := b.RestoreLatestSnapshot(dataDir, nil); err != nil || used == "" {
		t.Fatalf("restore: %q %v", used, err)
	}
	if _, err := b.RecoverFrom(l); err != nil {
		t.Fatal(err)
	}
	missV, missS := profileAt(t, b, "nobody", 0)
	for _, c := range []struct {
		user   string
		asOf   int64
		v      any
		status string
	}{
		{"u1", t1 - 1, missV, missS},
		{"u1", t1, 10.0, "PRESENT"},
		{"u1", t2, 11.0, "PRESENT"},
		{"u1", t3, 12.0, "PRESENT"},
		{"u1", 0, 12.0, "PRESENT"},
		{"u2", t1, 30.0, "PRESENT"},
		{"u2", t2, missV, missS},
		{"u2", t3, 31.0, "PRESENT"},
	} {
		for name, n := range map[string]*Node{"the node": a, "the recovered node": b} {
			if v, s := profileAt(t, n, c.user, c.asOf); v != c.v || s != c.status {
				t.Errorf("%s: %s at %d: home_lat %v %s, want %v %s", name, c.user, c.asOf, v, s, c.v, c.status)
			}
		}
	}
}

// TestTableUploadReplacesTheWholeRow: an upload replaces its keys' whole
// rows: a column the upload does not give (not in the CSV header, an empty
// field, a field an NDJSON object leaves out) becomes null.
func TestTableUploadReplacesTheWholeRow(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	for _, c := range []struct {
		f    TableFormat
		body string
	}{
		{CSV, "user_id,home_lat\nu1,11\n"},
		{CSV, "user_id,home_lat,home_long\nu1,11,\n"},
		{NDJSON, `{"user_id":"u1","home_lat":11}`},
	} {
		if _, aerr := n.UploadTable("user_profile", CSV, []byte("user_id,home_lat,home_long\nu1,10,20\n"), false); aerr != nil {
			t.Fatal(aerr)
		}
		if _, aerr := n.UploadTable("user_profile", c.f, []byte(c.body), false); aerr != nil {
			t.Fatal(aerr)
		}
		out, aerr := n.GetFeatures(nil, lookupBody("u1", "m1", "FR", 10, 48.85, 2.35))
		if aerr != nil {
			t.Fatal(aerr)
		}
		v := decodeVector(t, out)
		if lat, long := v["user_profile.home_lat"], v["user_profile.home_long"]; lat.v != 11.0 || long.v != nil || long.status != "MISSING_DATA" {
			t.Errorf("after %q: home_lat %v, home_long %v %s; want 11 and null", c.body, lat.v, long.v, long.status)
		}
	}
}
