package history

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tally-ml/tally/bench/workload"
	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/tabular"
	"github.com/tally-ml/tally/wal"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkExport measures `tally export`'s path end to end: a Parquet spine
// read, the archive replayed, every row's vector read, a Parquet training
// set written. The archive (TALLY_EXPORT_EVENTS events, default 10M, of the
// synthetic fraud stream over 100k users, a node clock that follows the
// stream) is built once into $TMPDIR and reused; the spine has
// TALLY_EXPORT_ROWS rows (default 1M) at random times over the stream, drawn
// like the stream's transactions. TALLY_EXPORT_UNIFORM=1 draws users
// uniformly (no hot card holder) instead of the harness's Zipf skew, under
// which the busiest user makes 2% of all transactions and every exact
// 1-day aggregate over it scans ~170k raw events.
//
//	go test -run '^$' -bench Export -benchtime 1x -timeout 30m ./history/
func BenchmarkExport(b *testing.B) {
	events, rows := envInt("TALLY_EXPORT_EVENTS", 10_000_000), envInt("TALLY_EXPORT_ROWS", 1_000_000)
	repo, err := features.Default()
	if err != nil {
		b.Fatal(err)
	}
	repo = withoutModels(repo)
	uniform := os.Getenv("TALLY_EXPORT_UNIFORM") == "1"
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("tally-export-bench-%d-%v", events, uniform))
	wcfg := workload.Config{Seed: 3, Users: 100_000, Merchants: 2000, FraudRate: 0.004, UniformUsers: uniform}
	start, span := buildArchive(b, repo, dir, events, wcfg)
	spine := filepath.Join(b.TempDir(), "spine.parquet")
	writeSpine(b, spine, rows, start, span, wcfg)
	out := filepath.Join(b.TempDir(), "train.parquet")
	b.ResetTimer()
	for range b.N {
		archive, err := wal.OpenArchive(nil, filepath.Join(dir, "wal"))
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		j, err := New(Options{Repo: repo, Service: "fraud_detection", Archive: archive})
		if err != nil {
			b.Fatal(err)
		}
		r, err := tabular.Open(spine)
		if err != nil {
			b.Fatal(err)
		}
		s, err := j.ReadSpine(r, "timestamp", 0)
		r.Close()
		if err != nil {
			b.Fatal(err)
		}
		w, err := tabular.Create(out, j.Columns(s))
		if err != nil {
			b.Fatal(err)
		}
		st, err := j.Run(context.Background(), s, w)
		if err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
		el := time.Since(t0)
		b.ReportMetric(float64(st.Rows)/el.Minutes(), "rows/min")
		b.ReportMetric(float64(events)/el.Seconds(), "events/s")
		b.ReportMetric(el.Seconds(), "s/export")
	}
}

// buildArchive writes events of the synthetic stream through a node with a
// log in dir (once; later runs reuse it) and returns the stream's start and
// span in milliseconds.
func buildArchive(b *testing.B, repo *features.Repo, dir string, events int, wcfg workload.Config) (start, span int64) {
	start = 1_790_000_000_000
	const step = 10 // ms of event time per transaction: 10M events span ~28 hours
	span = int64(events) * step
	if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
		return start, span
	}
	os.RemoveAll(dir)
	l, err := wal.Open(filepath.Join(dir, "wal"), wal.Options{Sync: wal.SyncNever, Compress: true})
	if err != nil {
		b.Fatal(err)
	}
	clock := start
	n, err := node.New(repo, node.DefaultConfig(), node.Options{Log: l, Clock: func() int64 { return clock }})
	if err != nil {
		b.Fatal(err)
	}
	g := workload.New(wcfg)
	profile := []byte("user_id,home_lat,home_long\n")
	for _, u := range g.Users() {
		profile = fmt.Appendf(profile, "%s,%g,%g\n", u.ID, u.HomeLat, u.HomeLong)
	}
	if _, aerr := n.UploadTable("user_profile", node.CSV, profile, false); aerr != nil {
		b.Fatal(aerr)
	}
	var body []byte
	for i := 0; i < events; i++ {
		clock += step
		tx := g.Next(clock - rand.Int64N(2000))
		body = tx.AppendJSON(body)
		body = append(body, '\n')
		if (i+1)%5000 == 0 || i == events-1 {
			if _, err := n.IngestNDJSON("transactions", body, false); err != nil {
				b.Fatal(err)
			}
			body = body[:0]
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "complete"), nil, 0o644); err != nil {
		b.Fatal(err)
	}
	return start, span
}

func writeSpine(b *testing.B, path string, rows int, start, span int64, wcfg workload.Config) {
	wcfg.Seed++
	g := workload.New(wcfg)
	cols := []tabular.Column{{Name: "user_id", Type: tabular.String}, {Name: "merchant", Type: tabular.String}, {Name: "country", Type: tabular.String},
		{Name: "timestamp", Type: tabular.Timestamp}, {Name: "amt", Type: tabular.Float64}, {Name: "lat", Type: tabular.Float64},
		{Name: "long", Type: tabular.Float64}, {Name: "is_fraud", Type: tabular.Int64}}
	w, err := tabular.Create(path, cols)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	row := make([]tabular.Value, len(cols))
	for range rows {
		tx := g.Next(start + rng.Int64N(span))
		row[0], row[1], row[2] = tabular.Value{Str: tx.UserID}, tabular.Value{Str: tx.Merchant}, tabular.Value{Str: tx.Country}
		row[3], row[4], row[5], row[6] = tabular.Value{Int: tx.TS}, tabular.Value{Num: tx.Amt}, tabular.Value{Num: tx.Lat}, tabular.Value{Num: tx.Long}
		row[7] = tabular.Value{Int: int64(tx.IsFraud)}
		if err := w.Write(row); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
}
