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
	benchRows(b, m, rows, nil, n, batch)
}

// benchRows times m over n rows (and their string columns, if any), batch
// rows per call, cycling through them; it reports ns/row.
func benchRows(b *testing.B, m *Model, rows []float32, strs []string, n, batch int) {
	w, ns := m.NumInputs(), len(m.StringInputs())
	out := make([]Prediction, batch)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	off := 0
	for b.Loop() {
		if off+batch > n {
			off = 0
		}
		if err := m.ScoreStrings(ctx, rows[off*w:(off+batch)*w], strs[off*ns:(off+batch)*ns], batch, out); err != nil {
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

// benchNamed times the generated model name at the given batch size on its
// parity rows (and string columns); parity/bench_ort.py name times
// onnxruntime on the same.
func benchNamed(b *testing.B, name string, batch int) {
	dir := filepath.Join("testdata", "generated")
	m, err := Load(filepath.Join(dir, name+".onnx"))
	if err != nil {
		b.Skipf("%v: run score/onnx/parity/generate.sh", err)
	}
	var exp parityExpected
	readJSON(b, filepath.Join(dir, name+".expected.json"), &exp)
	rows, n, _ := readRows(b, filepath.Join(dir, exp.Rows))
	var strs []string
	if exp.Strings != "" {
		strs = readStrings(b, filepath.Join(dir, exp.Strings))
	}
	benchRows(b, m, rows, strs, n, batch)
}

// An imputer + scaler + logistic regression pipeline (8 features).
func BenchmarkPipelineLRBatch1(b *testing.B)   { benchNamed(b, "pipe_imputer_std_lr", 1) }
func BenchmarkPipelineLRBatch100(b *testing.B) { benchNamed(b, "pipe_imputer_std_lr", 100) }

// IsolationForest of 100 trees as skl2onnx exports it (about 1,300 nodes).
func BenchmarkIsoForest100Batch1(b *testing.B)   { benchNamed(b, "iso_forest", 1) }
func BenchmarkIsoForest100Batch100(b *testing.B) { benchNamed(b, "iso_forest", 100) }

// Imputer + scaler on 4 numeric inputs and a one-hot string category into
// 30 boosted trees.
func BenchmarkOneHotGBBatch1(b *testing.B)   { benchNamed(b, "str_onehot_gb", 1) }
func BenchmarkOneHotGBBatch100(b *testing.B) { benchNamed(b, "str_onehot_gb", 100) }

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
