//go:build unix

package systemtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/systemtest/harness"
)

// mlflowServer starts `mlflow server` from the repo's .venv on a free
// loopback port (SQLite backend, local artifact root served through the
// server's artifact proxy) and returns its URL; it is stopped when the
// test ends. It skips the test without MLflow (fails under
// TALLY_REQUIRE_MLFLOW=1).
func mlflowServer(t *testing.T) (url, python string) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, ".venv", "bin")
	if _, err := os.Stat(filepath.Join(bin, "mlflow")); err != nil {
		msg := "MLflow is not installed in " + filepath.Join(root, ".venv") + ": run score/mlflow/testdata/setup.sh"
		if os.Getenv("TALLY_REQUIRE_MLFLOW") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	addr := harness.FreeAddr(t)
	host, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command(filepath.Join(bin, "mlflow"), "server", "--host", host, "--port", port, "--workers", "1",
		"--backend-store-uri", "sqlite:///"+filepath.Join(dir, "mlflow.db"),
		"--artifacts-destination", filepath.Join(dir, "artifacts"))
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"MLFLOW_DISABLE_TELEMETRY=true", "DO_NOT_TRACK=true")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	url = "http://" + addr
	for i := 0; ; i++ {
		resp, err := http.Get(url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if i == 1500 {
			t.Fatalf("mlflow server not healthy after 5 minutes:\n%s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	return url, filepath.Join(bin, "python")
}

// setAlias points the alias champion of model fraud at version v, through
// MLflow's REST API.
func setAlias(t *testing.T, url, v string) {
	t.Helper()
	body := fmt.Sprintf(`{"name":"fraud","alias":"champion","version":%q}`, v)
	resp, err := http.Post(url+"/api/2.0/mlflow/registered-models/alias", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("set alias champion -> %s: %s", v, resp.Status)
	}
}

// TestRegistryModelFollowsAlias serves models:/fraud@champion from a real
// MLflow Model Registry: version 1 (the default RandomForest, onnx flavor)
// at start, version 2 (a bare .onnx artifact, p(fraud) = 0.25 for every row)
// once the alias moves to it, version 3 (not ONNX) refused while version 2
// keeps serving and the failure is reported, version 4 (no ONNX file: a
// sklearn-only MLmodel) refused and reported the same way, counted once and
// not downloaded again, and version 1 again when the alias moves back;
// predict requests run all along and none fails.
func TestRegistryModelFollowsAlias(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an MLflow tracking server (~20 s)")
	}
	url, python := mlflowServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	reg := exec.CommandContext(ctx, python, filepath.Join("testdata", "register_models.py"), url, filepath.Join("..", "features", "defaultrepo", "fraud_model.onnx"))
	reg.Env = append(os.Environ(), "MLFLOW_DISABLE_TELEMETRY=true", "DO_NOT_TRACK=true")
	var stderr bytes.Buffer
	reg.Stderr = &stderr
	out, err := reg.Output()
	if err != nil {
		t.Fatalf("register_models.py: %v\n%s", err, stderr.String())
	}
	var versions map[string]string // the last line: MLflow prints run links before it
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &versions); err != nil || versions["4"] != "4" {
		t.Fatalf("register_models.py printed %q: %v", out, err)
	}

	yaml, err := os.ReadFile(filepath.Join("..", "features", "defaultrepo", "fraud.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	y := strings.Replace(string(yaml), "onnx: fraud_model.onnx", "onnx: models:/fraud@champion\n      poll: 1s", 1)
	if y == string(yaml) {
		t.Fatal("the default repo no longer names fraud_model.onnx")
	}
	if err := os.WriteFile(filepath.Join(repo, "fraud.yaml"), []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MLFLOW_TRACKING_URI", url)
	p := harness.Start(t, harness.Options{Args: []string{"--repo", repo}})
	ref := harness.Start(t, harness.Options{}) // the embedded repo: the same RandomForest as a file

	probe := client.LookupRequest{Service: "fraud_detection",
		JoinKeys:       map[string]any{"user_id": "u1", "merchant": "m1", "country": "FR"},
		RequestContext: map[string]any{"amt": 80.0, "lat": 51.5, "long": -0.12}}
	fraud := func(c *client.Client) float64 {
		t.Helper()
		r, err := c.Predict(ctx, probe)
		if err != nil || r.Result.Prediction == nil {
			t.Fatalf("predict: %v %+v", err, r)
		}
		return r.Result.Prediction.Probabilities["1"]
	}
	status := func() *client.ModelStatus {
		t.Helper()
		svcs, err := p.Client.FeatureServices(ctx)
		if err != nil || len(svcs) != 1 || svcs[0].Model == nil {
			t.Fatalf("feature-services: %v %+v", err, svcs)
		}
		return svcs[0].Model
	}
	waitFor := func(what string, ok func(*client.ModelStatus) bool) *client.ModelStatus {
		t.Helper()
		for i := 0; i < 900; i++ { // the poll is 1 s, checked every second: ~2 s when idle
			if st := status(); ok(st) {
				return st
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s: not within 90 s: %+v", what, status())
		return nil
	}
	metric := func(name string) string {
		t.Helper()
		m, err := p.Client.Metrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(m), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				return v
			}
		}
		t.Fatalf("no metric %s", name)
		return ""
	}

	if st := status(); st.Version != "1" || st.Source != "models:/fraud@champion" || !strings.HasSuffix(st.Location, "/model.onnx") {
		t.Fatalf("at start: %+v", st)
	}
	want1 := fraud(ref.Client)
	if got := fraud(p.Client); got != want1 || math.Abs(want1-0.25) < 1e-6 {
		t.Fatalf("version 1 scores p(fraud) %v; the same RandomForest from a file %v", got, want1)
	}
	if v := metric(`tally_model_version{service="fraud_detection"}`); v != "1" {
		t.Fatalf("tally_model_version %s, want 1", v)
	}

	// Requests run through every move; none may fail.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var served, failed atomic.Int64
	var firstErr atomic.Value
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100_000 && !stop.Load(); i++ {
				r, err := p.Client.Predict(ctx, probe)
				if err != nil || r.Result.PredictionStatus != "PRESENT" {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%v %+v", err, r))
					continue
				}
				served.Add(1)
			}
		}()
	}

	setAlias(t, url, "2")
	waitFor("alias moved to 2", func(st *client.ModelStatus) bool { return st.Version == "2" })
	if got := fraud(p.Client); math.Abs(got-0.25) > 1e-6 {
		t.Fatalf("version 2 scores p(fraud) %v, want 0.25", got)
	}
	if v := metric(`tally_model_version{service="fraud_detection"}`); v != "2" {
		t.Fatalf("tally_model_version %s, want 2", v)
	}

	setAlias(t, url, "3")
	st := waitFor("broken version 3 reported", func(st *client.ModelStatus) bool { return st.FailedVersion == "3" })
	if st.Version != "2" || st.ReloadFailures != 1 || !strings.Contains(st.LastError, "version 3") {
		t.Fatalf("after the broken version: %+v", st)
	}
	if got := fraud(p.Client); math.Abs(got-0.25) > 1e-6 {
		t.Fatalf("after the broken version p(fraud) is %v, want version 2's 0.25", got)
	}
	if v := metric(`tally_model_reload_failures_total{service="fraud_detection"}`); v != "1" {
		t.Fatalf("tally_model_reload_failures_total %s, want 1", v)
	}
	if !strings.Contains(p.Output(), "version 3") {
		t.Fatalf("the failed version is not logged:\n%s", p.Output())
	}

	// A version without an ONNX file fails as a version that does not load:
	// counted once and shown, not fetched again at every poll. (It was
	// taken for a download error: retried each poll, never counted, and
	// no failedVersion.)
	setAlias(t, url, "4")
	st = waitFor("version 4 without ONNX reported", func(st *client.ModelStatus) bool { return st.FailedVersion == "4" })
	if st.Version != "2" || st.ReloadFailures != 2 || !strings.Contains(st.LastError, "sklearn") {
		t.Fatalf("after version 4: %+v", st)
	}
	time.Sleep(3 * time.Second) // three more polls
	if st := status(); st.ReloadFailures != 2 || st.FailedVersion != "4" {
		t.Fatalf("version 4 counted again at later polls: %+v", st)
	}
	if v := metric(`tally_model_reload_failures_total{service="fraud_detection"}`); v != "2" {
		t.Fatalf("tally_model_reload_failures_total %s, want 2", v)
	}
	if got := fraud(p.Client); math.Abs(got-0.25) > 1e-6 {
		t.Fatalf("after version 4 p(fraud) is %v, want version 2's 0.25", got)
	}

	setAlias(t, url, "1")
	st = waitFor("alias moved back to 1", func(st *client.ModelStatus) bool { return st.Version == "1" })
	if st.FailedVersion != "" || st.LastError != "" || st.Reloads != 2 {
		t.Fatalf("back on version 1: %+v", st)
	}
	if got := fraud(p.Client); got != want1 {
		t.Fatalf("version 1 again scores %v, want %v", got, want1)
	}
	stop.Store(true)
	wg.Wait()
	if failed.Load() != 0 || served.Load() == 0 {
		t.Fatalf("during the moves %d predictions served, %d failed (first: %v)", served.Load(), failed.Load(), firstErr.Load())
	}
	t.Logf("%d predictions served during four alias moves", served.Load())
}
