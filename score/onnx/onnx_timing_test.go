package onnx

import (
	"context"
	"path/filepath"
	"testing"
)

// benchModel loads rf100_d8.onnx (100 trees, depth 8, 30 features, from
// parity/generate.sh) and its rows; parity/bench_ort.py times onnxruntime
// on the same model and rows.
func benchModel(b *testing.B) (*Model, []float32, int) {
	dir := filepath.Join("testdata", "generated")
	m, err := Load(filepath.Join(dir, "rf100_d8.onnx"))
	if err != nil {
		b.Skipf("%v: run score/onnx/parity/generate.sh", err)
	}
	rows, n, _ := readRows(b, filepath.Join(dir, "rows_rf100_d8.csv"))
	return m, rows, n
}

func benchBatch(b *testing.B, batch int) {
	m, rows, n := benchModel(b)
	w := m.NumInputs()
	out := make([]Prediction, batch)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	off := 0
	for b.Loop() {
		if off+batch > n {
			off = 0
		}
		if err := m.Score(ctx, rows[off*w:(off+batch)*w], batch, out); err != nil {
			b.Fatal(err)
		}
		off += batch
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/row")
}

// BenchmarkRF100Batch1 is per-row latency: one row per Score call.
func BenchmarkRF100Batch1(b *testing.B) { benchBatch(b, 1) }

// BenchmarkRF100Batch100 is throughput: 100 rows per Score call.
func BenchmarkRF100Batch100(b *testing.B) { benchBatch(b, 100) }

// BenchmarkRF100Parallel scores single rows from every P at once.
func BenchmarkRF100Parallel(b *testing.B) {
	m, rows, n := benchModel(b)
	w := m.NumInputs()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		out := make([]Prediction, 1)
		i := 0
		for pb.Next() {
			i = (i + 1) % n
			if err := m.Score(context.Background(), rows[i*w:(i+1)*w], 1, out); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
