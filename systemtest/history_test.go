package systemtest

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/systemtest/harness"
	"github.com/tally-ml/tally/tabular"
)

// TestImportThenHistoricalFeatures drives the real binary: `tally import`
// backfills a CSV of events into a running node (twice: the second run's
// chunks are repeats the node skips); historical features come
// back over HTTP and from `tally export` (reading the running node's log
// beside it), equal to each other and to counts worked out here.
func TestImportThenHistoricalFeatures(t *testing.T) {
	p := harness.Start(t, harness.Options{})
	data := p.DataDir
	dir := t.TempDir()
	now := time.Now().UnixMilli()
	start := now - 2*3_600_000
	rng := rand.New(rand.NewPCG(3, 4))
	type ev struct {
		user string
		ts   int64
	}
	var evs []ev
	var b strings.Builder
	b.WriteString("timestamp,user_id,merchant,category,amt,country,lat,long,is_fraud\n")
	for ts := start; ts < now-60_000; ts += 1 + rng.Int64N(20_000) {
		e := ev{user: fmt.Sprintf("u%d", rng.IntN(5)), ts: ts}
		evs = append(evs, e)
		fmt.Fprintf(&b, "%d,%s,m%d,food,%.2f,FR,48.8,2.3,0\n", e.ts, e.user, rng.IntN(3), 1+rng.Float64()*50)
	}
	events := filepath.Join(dir, "events.csv")
	os.WriteFile(events, []byte(b.String()), 0o644)
	// Imported twice, as after a failed run: the chunks' request ids make
	// the second a no-op, and every count below holds each event once.
	for range 2 {
		out, err := exec.Command(harness.Binary(t), "import", events, "--source", "transactions", "--url", p.URL, "--quiet", "--chunk", "100").CombinedOutput()
		if err != nil || !strings.Contains(string(out), fmt.Sprintf("imported %d events", len(evs))) {
			t.Fatalf("import: %v\n%s", err, out)
		}
	}
	if m, err := p.Client.Metrics(context.Background()); err != nil || !strings.Contains(string(m), fmt.Sprintf("tally_requests_repeated_total %d\n", (len(evs)+99)/100)) {
		t.Fatalf("the second import's %d chunks were not all repeats: %v\n%s", (len(evs)+99)/100, err, m)
	}

	// The spine: rows at random times, some exactly at an event's time.
	var sp strings.Builder
	sp.WriteString("user_id,merchant,country,timestamp,amt,lat,long,label\n")
	type row struct {
		user string
		ts   int64
	}
	var rows []row
	for i := 0; i < 300; i++ {
		r := row{user: fmt.Sprintf("u%d", rng.IntN(5)), ts: start + rng.Int64N(now-start)}
		if i%3 == 0 {
			r.ts = evs[rng.IntN(len(evs))].ts
		}
		rows = append(rows, r)
		fmt.Fprintf(&sp, "%s,m0,FR,%d,10,48.8,2.3,%d\n", r.user, r.ts, i)
	}
	spine := filepath.Join(dir, "spine.csv")
	os.WriteFile(spine, []byte(sp.String()), 0o644)
	want := func(user string, t int64) int {
		n := 0
		for _, e := range evs {
			if e.user == user && e.ts > t-3_600_000 && e.ts < t { // an event at t is not yet visible at t
				n++
			}
		}
		return n
	}

	// Over HTTP, as CSV.
	ctx := context.Background()
	answer, err := p.Client.HistoricalFeatures(ctx, client.HistoricalRequest{Service: "fraud_detection",
		Spine: []byte(sp.String()), SpineFormat: client.CSV, Format: client.CSV})
	if err != nil {
		t.Fatalf("historical features: %v", err)
	}
	body, err := io.ReadAll(answer)
	answer.Close()
	if err != nil {
		t.Fatalf("historical features: %v", err)
	}
	recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil || len(recs) != len(rows)+1 {
		t.Fatalf("historical features CSV: %v, %d lines", err, len(recs))
	}
	header := recs[0]
	col := func(name string) int {
		for i, h := range header {
			if h == name {
				return i
			}
		}
		t.Fatalf("no column %q in %v", name, header)
		return -1
	}
	cLabel, cCount := col("label"), col("user_transaction_counts.amt_count_1h")
	httpCount := map[string]string{}
	for _, r := range recs[1:] {
		i, _ := strconv.Atoi(r[cLabel])
		if got, w := r[cCount], strconv.Itoa(want(rows[i].user, rows[i].ts)); got != w {
			t.Errorf("row %d (%s at %d): count_1h %s, want %s", i, rows[i].user, rows[i].ts, got, w)
		}
		httpCount[r[cLabel]] = r[cCount]
	}

	// With the CLI, beside the running node, to Parquet.
	train := filepath.Join(dir, "train.parquet")
	out, err := exec.Command(harness.Binary(t), "export", "--data-dir", data, "--service", "fraud_detection", "--spine", spine, "--out", train, "--quiet").CombinedOutput()
	if err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	r, err := tabular.Open(train)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cols := r.Columns()
	vals := make([]tabular.Value, len(cols))
	n := 0
	for ; r.Next(vals) == nil; n++ {
		var label, count string
		for i, c := range cols {
			switch c.Name {
			case "label":
				label = vals[i].Str
			case "user_transaction_counts.amt_count_1h":
				count = strconv.FormatInt(vals[i].Int, 10)
			}
		}
		if httpCount[label] != count {
			t.Errorf("spine row %s: export says count_1h %s, HTTP said %s", label, count, httpCount[label])
		}
	}
	if n != len(rows) {
		t.Fatalf("export wrote %d rows of %d", n, len(rows))
	}

	// Refusals name the problem and stream nothing.
	code, msg := postSpine(t, p, "fraud_detection", "user_id,timestamp\nu1,2026-01-01T00:00:00Z\n")
	if code != 400 || !strings.Contains(msg, "INVALID_SPINE") || !strings.Contains(msg, "merchant") {
		t.Fatalf("spine without join keys: %d %s", code, msg)
	}
	code, msg = postSpine(t, p, "fraud_detection", "user_id,merchant,country,timestamp,amt,lat,long\nu1,m,FR,yesterday,1,2,3\n")
	if code != 400 || !strings.Contains(msg, "row 1") {
		t.Fatalf("spine with a bad time: %d %s", code, msg)
	}
	code, msg = postSpine(t, p, "nope", "a\n1\n")
	if code != 404 || !strings.Contains(msg, "UNKNOWN_FEATURE_SERVICE") {
		t.Fatalf("unknown service: %d %s", code, msg)
	}
}

// postSpine asks for the historical features of a CSV spine that the node
// is expected to refuse, and returns the refusal's status and text (code
// and message).
func postSpine(t *testing.T, p *harness.Node, service, spine string) (int, string) {
	t.Helper()
	answer, err := p.Client.HistoricalFeatures(context.Background(), client.HistoricalRequest{Service: service,
		Spine: []byte(spine), SpineFormat: client.CSV})
	if err == nil {
		b, _ := io.ReadAll(answer)
		answer.Close()
		return 200, string(b)
	}
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatal(err)
	}
	return e.Status, e.Code + ": " + e.Message
}
