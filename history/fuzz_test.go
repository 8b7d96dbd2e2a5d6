package history

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/tabular"
)

// emptyArchive is a log with no records.
type emptyArchive struct{}

func (emptyArchive) FirstIndex() uint64 { return 1 }
func (emptyArchive) Replay(uint64, func(uint64, []byte) error) error {
	return nil
}

// FuzzSpine: any CSV spine is refused with an error naming what is wrong, or
// read and joined (over an empty archive) into exactly one row per spine row;
// never a panic.
func FuzzSpine(f *testing.F) {
	repo, err := features.Default()
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("user_id,merchant,country,timestamp,amt,lat,long,label\nu1,m1,FR,2026-11-25T10:00:00Z,1,2,3,0\nu2,m2,US,1795564799000,,1e308,-4,1\n"))
	f.Add([]byte("user_id,merchant,country,timestamp,amt,lat,long\nu1,m,FR,NaN,x,1,2\n"))
	f.Add([]byte("timestamp\n1\n"))
	f.Add([]byte("user_id,merchant,country,timestamp,amt,lat,long\nu1,m1,FR,1795564799,1,2,3\nu1,m1,FR,\" 1970-01-21T18:52:44Z\",1,2,3\n"))
	f.Add([]byte("user_id,merchant,country,timestamp,amt,lat,long\nu\xc3\xa9,m1,FR,1795564799000,1,2,3\nu1,\"m\n\xff\",FR,1795564799001,1,2,3\n"))
	f.Add([]byte("user_id,merchant,country,timestamp,amt,lat,long\nu1,m,FR,1795564799000,1_000,0x1p3,.5\nu1,m,FR,1795564799001,+Inf,NaN,007\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := tabular.NewReader(tabular.CSV, bytes.NewReader(body))
		if err != nil {
			return
		}
		defer r.Close()
		j, err := New(Options{Repo: repo, Service: "fraud_detection", Archive: emptyArchive{}})
		if err != nil {
			t.Fatal(err)
		}
		s, err := j.ReadSpine(r, "timestamp", 1000)
		if err != nil {
			return
		}
		var w rowsWriter
		st, err := j.Run(context.Background(), s, &w)
		if err != nil || st.Rows != s.Len() || len(w.rows) != s.Len() {
			t.Fatalf("join of a valid spine: %d rows of %d: %v", len(w.rows), s.Len(), err)
		}
	})
}

// cutArchive is an archive whose oldest records retention removed.
type cutArchive struct{ emptyArchive }

func (cutArchive) FirstIndex() uint64 { return 5 }

// TestPartialArchiveRefused: a join over an archive that no longer starts at
// the first record refuses, naming why, unless partial history is allowed.
func TestPartialArchiveRefused(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	spine := "user_id,merchant,country,timestamp,amt,lat,long\nu1,m1,FR,1795564799000,1,2,3\n"
	for _, allow := range []bool{false, true} {
		j, err := New(Options{Repo: repo, Service: "fraud_detection", Archive: cutArchive{}, AllowPartial: allow})
		if err != nil {
			t.Fatal(err)
		}
		r, _ := tabular.NewReader(tabular.CSV, bytes.NewReader([]byte(spine)))
		s, err := j.ReadSpine(r, "timestamp", 0)
		if err != nil {
			t.Fatal(err)
		}
		var w rowsWriter
		_, err = j.Run(context.Background(), s, &w)
		if allow && (err != nil || len(w.rows) != 1) {
			t.Fatalf("allowed partial join: %v, %d rows", err, len(w.rows))
		}
		if !allow && (!errors.Is(err, ErrPartialArchive) || len(w.rows) != 0) {
			t.Fatalf("partial archive joined: %v, %d rows", err, len(w.rows))
		}
	}
}
