package batch

import (
	"context"
	"testing"
	"time"

	"github.com/tally-ml/tally/score"
)

// noop scores nothing: what is left is the batcher's own cost.
type noop struct{ width int }

func (n noop) NumInputs() int    { return n.width }
func (n noop) Inputs() []string  { return nil }
func (n noop) Classes() []string { return nil }
func (n noop) Score(context.Context, []float32, int, []score.Prediction) error {
	return nil
}

// spin is a scorer with a fixed cost per batch, like a model's setup.
type spin struct {
	noop
	cost time.Duration
}

func (s spin) Score(context.Context, []float32, int, []score.Prediction) error {
	for start := time.Now(); time.Since(start) < s.cost; {
	}
	return nil
}

// BenchmarkBatcherIdle is one caller at a time against a local scorer: the
// cost of going through the batcher when it never waits.
func BenchmarkBatcherIdle(b *testing.B) {
	bt := New(noop{width: 16}, Options{Local: true, MaxInFlight: 1})
	defer bt.Close()
	rows := make([]float32, 16)
	out := make([]score.Prediction, 1)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := bt.Score(ctx, rows, 1, out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBatcherParallel is many callers of one row each, coalesced.
func BenchmarkBatcherParallel(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"local", Options{Local: true, MaxInFlight: 2}},
		{"local-busy", Options{Local: true, MaxInFlight: 2}},
		{"remote", Options{MaxWait: 100 * time.Microsecond, MaxInFlight: 2, QueueRows: 1 << 16}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var s score.Scorer = noop{width: 16}
			if tc.name == "local-busy" {
				s = spin{noop{width: 16}, 20 * time.Microsecond}
			}
			bt := New(s, tc.opts)
			defer bt.Close()
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				rows := make([]float32, 16)
				out := make([]score.Prediction, 1)
				ctx := context.Background()
				for pb.Next() {
					if err := bt.Score(ctx, rows, 1, out); err != nil {
						b.Error(err)
						return
					}
				}
			})
			st := bt.Stats()
			b.ReportMetric(float64(st.Rows)/float64(max(st.Batches, 1)), "rows/batch")
		})
	}
}

// BenchmarkBatcherDeadline is the idle path with a ctx deadline, which costs
// the batch its own deadline context.
func BenchmarkBatcherDeadline(b *testing.B) {
	bt := New(noop{width: 16}, Options{Local: true, MaxInFlight: 1})
	defer bt.Close()
	rows := make([]float32, 16)
	out := make([]score.Prediction, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		if err := bt.Score(ctx, rows, 1, out); err != nil {
			b.Fatal(err)
		}
	}
}
