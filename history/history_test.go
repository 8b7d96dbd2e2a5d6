package history

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/tabular"
	"github.com/tally-ml/tally/wal"
)

// liveNode is a node with a real write-ahead log and a clock the test moves.
type liveNode struct {
	n     *node.Node
	log   *wal.Log
	clock int64
	repo  *features.Repo
	dir   string
}

func newLiveNode(t testing.TB, start int64) *liveNode {
	t.Helper()
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	return newLiveNodeOf(t, start, repo)
}

// newLiveNodeOf is newLiveNode serving repo (without its models).
func newLiveNodeOf(t testing.TB, start int64, repo *features.Repo) *liveNode {
	t.Helper()
	repo = withoutModels(repo)
	dir := t.TempDir()
	l, err := wal.Open(filepath.Join(dir, "wal"), wal.Options{Sync: wal.SyncNever, SegmentSize: 1 << 20, Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ln := &liveNode{log: l, clock: start, repo: repo, dir: dir}
	ln.n, err = node.New(repo, node.DefaultConfig(), node.Options{Clock: func() int64 { return ln.clock }, Log: l})
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

type txn struct {
	user, merchant, country string
	amt, lat, long          float64
	fraud                   int
	ts                      int64
}

func (x txn) json() string {
	return fmt.Sprintf(`{"user_id":%q,"merchant":%q,"category":"c","amt":%s,"country":%q,"lat":%s,"long":%s,"is_fraud":%d,"timestamp":%d}`,
		x.user, x.merchant, strconv.FormatFloat(x.amt, 'g', -1, 64), x.country,
		strconv.FormatFloat(x.lat, 'g', -1, 64), strconv.FormatFloat(x.long, 'g', -1, 64), x.fraud, x.ts)
}

func (ln *liveNode) ingest(t testing.TB, xs ...txn) {
	t.Helper()
	var b strings.Builder
	for _, x := range xs {
		b.WriteString(x.json())
		b.WriteByte('\n')
	}
	if _, err := ln.n.IngestNDJSON("transactions", []byte(b.String()), false); err != nil {
		t.Fatalf("ingest: %v", err)
	}
}

func (ln *liveNode) backfill(t testing.TB, xs ...txn) {
	t.Helper()
	var b strings.Builder
	for _, x := range xs {
		b.WriteString(x.json())
		b.WriteByte('\n')
	}
	if _, err := ln.n.ImportNDJSON("transactions", []byte(b.String()), false); err != nil {
		t.Fatalf("import: %v", err)
	}
}

// probe is one online lookup: the spine row that must reproduce it.
type probe struct {
	user, merchant, country string
	amt, lat, long          float64
	latNull                 bool
	t                       int64
	online                  []any // the features get-features returned
}

func (ln *liveNode) lookup(t testing.TB, p *probe) {
	t.Helper()
	lat := strconv.FormatFloat(p.lat, 'g', -1, 64)
	if p.latNull {
		lat = "null"
	}
	body := fmt.Sprintf(`{"params":{"feature_service_name":"fraud_detection","join_key_map":{"user_id":%q,"merchant":%q,"country":%q},"request_context_map":{"amt":%s,"lat":%s,"long":%s}}}`,
		p.user, p.merchant, p.country, strconv.FormatFloat(p.amt, 'g', -1, 64), lat, strconv.FormatFloat(p.long, 'g', -1, 64))
	out, aerr := ln.n.GetFeatures(nil, []byte(body))
	if aerr != nil {
		t.Fatalf("lookup: %v", aerr)
	}
	var r client.Features
	d := json.NewDecoder(bytes.NewReader(out))
	d.UseNumber()
	if err := d.Decode(&r); err != nil {
		t.Fatal(err)
	}
	p.t = ln.clock
	p.online = r.Result.Features
}

// rowsWriter keeps the rows a join writes.
type rowsWriter struct{ rows [][]tabular.Value }

func (w *rowsWriter) Write(row []tabular.Value) error {
	c := make([]tabular.Value, len(row))
	for i, v := range row {
		c[i] = v
		c[i].Nums = append([]float64(nil), v.Nums...)
		c[i].Strs = append([]string(nil), v.Strs...)
	}
	w.rows = append(w.rows, c)
	return nil
}

func (w *rowsWriter) Close() error { return nil }

// spineOf writes probes as a Parquet spine (shuffled, with a row number).
func spineOf(t testing.TB, probes []*probe, rng *rand.Rand) tabular.Reader {
	t.Helper()
	cols := []tabular.Column{
		{Name: "probe", Type: tabular.Int64}, {Name: "user_id", Type: tabular.String}, {Name: "merchant", Type: tabular.String},
		{Name: "country", Type: tabular.String}, {Name: "timestamp", Type: tabular.Timestamp},
		{Name: "amt", Type: tabular.Float64}, {Name: "lat", Type: tabular.Float64}, {Name: "long", Type: tabular.Float64},
	}
	var buf bytes.Buffer
	w, err := tabular.NewWriter(tabular.Parquet, &buf, cols)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range rng.Perm(len(probes)) {
		p := probes[i]
		row := []tabular.Value{{Int: int64(i)}, {Str: p.user}, {Str: p.merchant}, {Str: p.country}, {Int: p.t},
			{Num: p.amt}, {Num: p.lat, Null: p.latNull}, {Num: p.long}}
		if err := w.Write(row); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := tabular.NewReader(tabular.Parquet, bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// join runs a point-in-time join of probes over ln's log.
func join(t testing.TB, ln *liveNode, probes []*probe, rng *rand.Rand) ([]tabular.Column, [][]tabular.Value) {
	t.Helper()
	j, err := New(Options{Repo: ln.repo, Service: "fraud_detection", Archive: ln.log})
	if err != nil {
		t.Fatal(err)
	}
	s, err := j.ReadSpine(spineOf(t, probes, rng), "timestamp", 0)
	if err != nil {
		t.Fatal(err)
	}
	var w rowsWriter
	st, err := j.Run(context.Background(), s, &w)
	if err != nil {
		t.Fatal(err)
	}
	if st.Rows != len(probes) || len(w.rows) != len(probes) {
		t.Fatalf("join wrote %d rows of %d", len(w.rows), len(probes))
	}
	for i := 1; i < len(w.rows); i++ {
		if w.rows[i][4].Int < w.rows[i-1][4].Int {
			t.Fatalf("rows out of time order at %d", i)
		}
	}
	return j.Columns(s), w.rows
}

// sameValue reports whether a historical value equals what get-features
// returned, bit for bit.
func sameValue(v tabular.Value, typ tabular.Type, online any) bool {
	if online == nil {
		return v.Null
	}
	if v.Null {
		return false
	}
	switch typ {
	case tabular.Float64:
		f, err := strconv.ParseFloat(string(online.(json.Number)), 64)
		return err == nil && math.Float64bits(f) == math.Float64bits(v.Num)
	case tabular.Int64:
		i, err := strconv.ParseInt(string(online.(json.Number)), 10, 64)
		return err == nil && i == v.Int
	case tabular.String:
		return online == v.Str
	case tabular.Bool:
		return online == v.Bool
	}
	return fmt.Sprint(online) == fmt.Sprint(v.Nums, v.Strs)
}

// TestOnlineOfflineParity streams a long random stream into a node with a
// real log (in-order, out-of-order, late beyond the lateness, too late for
// the user views, future-stamped events, a backfill before the live stream,
// profile changes mid-stream), reads online at random moments, and checks
// that historical features for a spine of the same keys and times equal
// those reads bit for bit.
func TestOnlineOfflineParity(t *testing.T) {
	rows := 100_000
	if testing.Short() {
		rows = 10_000
	}
	// Rows due together (up to a few here) are read on every core.
	defer func(n int) { parallelRows = n }(parallelRows)
	parallelRows = 2
	rng := rand.New(rand.NewPCG(7, 11))
	start := int64(1_790_000_000_000)
	ln := newLiveNode(t, start)
	users := make([]string, 400)
	for i := range users {
		users[i] = fmt.Sprintf("u%d", i)
		if i%50 == 0 {
			users[i] = fmt.Sprintf("ユーザー-%d", i)
		}
	}
	merchants := make([]string, 40)
	for i := range merchants {
		merchants[i] = fmt.Sprintf("m%d", i)
	}
	countries := []string{"FR", "US", "DE", "日本"}
	scales := []float64{1e-9, 1, 1e6, 1e15}
	newTxn := func(ts int64) txn {
		u := rng.IntN(len(users))
		return txn{user: users[u], merchant: merchants[rng.IntN(len(merchants))], country: countries[rng.IntN(len(countries))],
			amt: scales[u%len(scales)] * (0.01 + rng.Float64()*100), lat: rng.Float64()*120 - 60, long: rng.Float64()*300 - 150,
			fraud: rng.IntN(2), ts: ts}
	}
	profile := func() string {
		var b strings.Builder
		b.WriteString("user_id,home_lat,home_long\n")
		for i, u := range users {
			if rng.IntN(3) == 0 || i%7 == 0 {
				continue
			}
			fmt.Fprintf(&b, "%s,%v,%v\n", u, rng.Float64()*120-60, rng.Float64()*300-150)
		}
		return b.String()
	}
	// History before the live stream: a profile valid two days back, and
	// two days of backfilled events (out of order within minutes).
	if _, aerr := ln.n.UploadTableAt("user_profile", node.CSV, []byte(profile()), false, start-3*86_400_000); aerr != nil {
		t.Fatal(aerr)
	}
	var back []txn
	for ts := start - 2*86_400_000; ts < start-60_000; ts += 1 + rng.Int64N(20_000) {
		back = append(back, newTxn(ts-rng.Int64N(120_000)))
	}
	for i := 0; i < len(back); i += 5000 {
		ln.backfill(t, back[i:min(i+5000, len(back))]...)
	}

	var probes []*probe
	events := 0
	for len(probes) < rows {
		ln.clock += 1 + rng.Int64N(40)
		// Reads first: a read at the start of a millisecond.
		for k := rng.IntN(4); k > 0 && len(probes) < rows; k-- {
			x := newTxn(0)
			p := &probe{user: x.user, merchant: x.merchant, country: x.country, amt: x.amt, lat: x.lat, long: x.long, latNull: rng.IntN(20) == 0}
			ln.lookup(t, p)
			probes = append(probes, p)
		}
		var batch []txn
		for k := rng.IntN(5); k > 0; k-- {
			ts := ln.clock
			switch r := rng.IntN(100); {
			case r < 70:
				ts -= rng.Int64N(1000) // in order, give or take a second
			case r < 88:
				ts -= rng.Int64N(5 * 60_000) // out of order within the lateness
			case r < 94:
				ts -= rng.Int64N(3 * 3_600_000) // late beyond the lateness
			case r < 96:
				ts -= 2*86_400_000 + rng.Int64N(3_600_000) // too late for the user views
			default:
				ts += rng.Int64N(4 * 60_000) // stamped ahead of the node's clock
			}
			batch = append(batch, newTxn(ts))
		}
		if len(batch) > 0 {
			ln.ingest(t, batch...)
			events += len(batch)
		}
		if rng.IntN(5000) == 0 {
			if _, aerr := ln.n.UploadTable("user_profile", node.CSV, []byte(profile()), rng.IntN(2) == 0); aerr != nil {
				t.Fatal(aerr)
			}
		}
	}
	cols, got := join(t, ln, probes, rng)
	feats := cols[8:]
	mismatches, present := 0, 0
	for _, row := range got {
		p := probes[row[0].Int]
		if row[5].Num != p.amt || row[7].Num != p.long || row[4].Int != p.t || row[1].Str != p.user {
			t.Fatalf("probe %d: the spine came back as %+v", row[0].Int, row[:8])
		}
		for f, v := range row[8:] {
			if !v.Null {
				present++
			}
			if !sameValue(v, feats[f].Type, p.online[f]) {
				mismatches++
				if mismatches <= 5 {
					t.Errorf("probe %d (%s at %d) %s: historical %+v, online %v (amt %v, online vector %v, historical %v)", row[0].Int, p.user, p.t, feats[f].Name, v, p.online[f], p.amt, p.online, row[8:])
				}
			}
		}
	}
	t.Logf("%d rows, %d features (%d present), %d live + %d backfilled events: %d mismatches", len(got), len(got)*len(feats), present, events, len(back), mismatches)
	if mismatches > 0 {
		t.Fatalf("%d mismatches", mismatches)
	}
	if present < len(got)*len(feats)/2 {
		t.Fatalf("only %d of %d features present: the stream is too thin to show parity", present, len(got)*len(feats))
	}
}
