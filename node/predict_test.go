package node

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/score"
)

func TestPredictScoresTheDefaultModel(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	if _, err := n.IngestJSON(ingestBody(txn("u1", "m1", "FR", 10, t0-1000))); err != nil {
		t.Fatal(err)
	}
	out, aerr := n.Predict(nil, lookupBody("u1", "m1", "FR", 12, 48.85, 2.35))
	if aerr != nil {
		t.Fatal(aerr)
	}
	r, err := client.DecodeFeatures(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r.Result.PredictionStatus != "PRESENT" || r.Result.Prediction == nil || r.Result.Prediction.Label == nil {
		t.Fatalf("no prediction: %s", out)
	}
	p := r.Result.Prediction.Probabilities
	if len(p) != 2 || p["0"]+p["1"] < 0.999 || p["0"]+p["1"] > 1.001 {
		t.Fatalf("probabilities do not sum to 1: %s", out)
	}
	if len(r.Result.Features) != 18 {
		t.Fatalf("predict returned %d features, want the 18 of fraud_detection", len(r.Result.Features))
	}
	// A transaction far from home, a burst of amounts: the score must rise.
	var recs []string
	for i := 0; i < 12; i++ {
		recs = append(recs, txn("u2", "m1", "FR", 900, t0-int64(i)*2000))
	}
	if _, err := n.IngestJSON(ingestBody(recs...)); err != nil {
		t.Fatal(err)
	}
	if _, aerr := n.UploadTable("user_profile", CSV, []byte("user_id,home_lat,home_long\nu1,48.85,2.35\nu2,48.85,2.35\n"), false); aerr != nil {
		t.Fatal(aerr)
	}
	low, _ := n.Predict(nil, lookupBody("u1", "m1", "FR", 12, 48.85, 2.35))
	high, _ := n.Predict(nil, lookupBody("u2", "m1", "FR", 2500, -33.9, 151.2))
	lo, _ := client.DecodeFeatures(low)
	hi, _ := client.DecodeFeatures(high)
	if hi.Result.Prediction.Probabilities["1"] <= lo.Result.Prediction.Probabilities["1"] {
		t.Fatalf("a burst far from home scores %v, an ordinary purchase %v", hi.Result.Prediction.Probabilities["1"], lo.Result.Prediction.Probabilities["1"])
	}
}

func TestPredictWithoutModelIsAClearError(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	repo.Services[0].Model = nil
	n, err := New(repo, DefaultConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, aerr := n.Predict(nil, lookupBody("u", "m", "FR", 1, 0, 0)); aerr == nil || aerr.Code != "NO_MODEL" {
		t.Fatalf("predict without a model: %v", aerr)
	}
}

// TestModelReload: a changed model file is swapped in; a broken one is
// refused and the running model keeps serving.
func TestModelReload(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"fraud.yaml", "fraud_model.onnx"} {
		data, err := os.ReadFile(filepath.Join("..", "features", "defaultrepo", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	repo, err := features.Load(os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(repo, DefaultConfig(), Options{RepoFS: os.DirFS(dir)})
	if err != nil {
		t.Fatal(err)
	}
	mp := n.services["fraud_detection"].model
	model := filepath.Join(dir, "fraud_model.onnx")
	good, _ := os.ReadFile(model)

	later := time.Now().Add(time.Minute)
	os.WriteFile(model, []byte("not an onnx model"), 0o644)
	os.Chtimes(model, later, later)
	if err := mp.reloadIfChanged(n.openModel); err == nil || !strings.Contains(err.Error(), "keeping the running model") {
		t.Fatalf("broken model file: %v", err)
	}
	if _, aerr := n.Predict(nil, lookupBody("u", "m", "FR", 1, 0, 0)); aerr != nil {
		t.Fatalf("predict after a failed reload: %v", aerr)
	}
	os.WriteFile(model, good, 0o644)
	later = later.Add(time.Minute)
	os.Chtimes(model, later, later)
	if err := mp.reloadIfChanged(n.openModel); err != nil || mp.reloads.Load() != 1 {
		t.Fatalf("reload of a good model: %v, %d reloads", err, mp.reloads.Load())
	}
}

// TestModelReloadSeesACompletedWrite: a model file read while it was being
// written (a truncated file, refused) and then completed within the same
// clock tick has the refused file's modification time but not its size; it
// is a new file and loads, instead of the old model serving on for good.
func TestModelReloadSeesACompletedWrite(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"fraud.yaml", "fraud_model.onnx"} {
		data, err := os.ReadFile(filepath.Join("..", "features", "defaultrepo", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	repo, err := features.Load(os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(repo, DefaultConfig(), Options{RepoFS: os.DirFS(dir)})
	if err != nil {
		t.Fatal(err)
	}
	mp := n.services["fraud_detection"].model
	model := filepath.Join(dir, "fraud_model.onnx")
	good, _ := os.ReadFile(model)

	tick := time.Now().Add(time.Minute)
	os.WriteFile(model, good[:len(good)/2], 0o644) // the writer is half way
	os.Chtimes(model, tick, tick)
	if err := mp.reloadIfChanged(n.openModel); err == nil {
		t.Fatal("a truncated model file loaded")
	}
	os.WriteFile(model, good, 0o644) // done, within the same tick
	os.Chtimes(model, tick, tick)
	if err := mp.reloadIfChanged(n.openModel); err != nil || mp.reloads.Load() != 1 {
		t.Fatalf("the completed file: %v, %d reloads, want it loaded", err, mp.reloads.Load())
	}
	// Unchanged since: nothing to do.
	if err := mp.reloadIfChanged(n.openModel); err != nil || mp.reloads.Load() != 1 {
		t.Fatalf("an unchanged file: %v, %d reloads", err, mp.reloads.Load())
	}
}

func TestPredictAllocations(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	body := lookupBody("u1", "m1", "FR", 10, 1.5, 2.5)
	dst := make([]byte, 0, 8192)
	allocs := testing.AllocsPerRun(200, func() {
		out, err := n.Predict(dst[:0], body)
		if err != nil {
			t.Fatal(err)
		}
		dst = out
	})
	if allocs != 0 {
		t.Fatalf("predict allocates %.1f times per request", allocs)
	}
}

// closeCounted is a scorer that counts its closes.
type closeCounted struct {
	score.Scorer
	closes *atomic.Int32
}

func (c closeCounted) Close() error { c.closes.Add(1); return nil }

// TestModelReloadClosesTheReplacedScorer: a reload closes the scorer it
// replaced once its grace has passed (a batcher's goroutines would leak
// with every reload), and not the one it serves.
func TestModelReloadClosesTheReplacedScorer(t *testing.T) {
	defer func(g time.Duration) { retireGrace = g }(retireGrace)
	retireGrace = 10 * time.Millisecond
	dir := t.TempDir()
	for _, f := range []string{"fraud.yaml", "fraud_model.onnx"} {
		data, err := os.ReadFile(filepath.Join("..", "features", "defaultrepo", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	repo, err := features.Load(os.DirFS(dir))
	if err != nil {
		t.Fatal(err)
	}
	var closes [3]atomic.Int32
	opened := 0
	open := func(def *features.Model, fsys fs.FS, path string) (score.Scorer, error) {
		s, err := (&Node{}).defaultOpenModel(def, fsys, path) // (the repo is read for MLflow models only)
		if err != nil {
			return nil, err
		}
		c := closeCounted{s, &closes[opened]}
		opened++
		return c, nil
	}
	n, err := New(repo, DefaultConfig(), Options{RepoFS: os.DirFS(dir), OpenModel: open})
	if err != nil {
		t.Fatal(err)
	}
	mp := n.services["fraud_detection"].model
	model := filepath.Join(dir, "fraud_model.onnx")
	later := time.Now().Add(time.Minute)
	os.Chtimes(model, later, later)
	if err := mp.reloadIfChanged(n.openModel); err != nil || mp.reloads.Load() != 1 {
		t.Fatalf("reload: %v, %d reloads", err, mp.reloads.Load())
	}
	if _, aerr := n.Predict(nil, lookupBody("u", "m", "FR", 1, 0, 0)); aerr != nil {
		t.Fatalf("predict after a reload: %v", aerr)
	}
	deadline := time.Now().Add(5 * time.Second)
	for closes[0].Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if closes[0].Load() != 1 || closes[1].Load() != 0 {
		t.Fatalf("closes %d, %d: want the replaced scorer closed once, the serving one open", closes[0].Load(), closes[1].Load())
	}
}
