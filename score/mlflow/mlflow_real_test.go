//go:build unix

package mlflow_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tally-ml/tally/score"
	"github.com/tally-ml/tally/score/batch"
	"github.com/tally-ml/tally/score/mlflow"
)

// expected is what testdata/train.py writes.
type expected struct {
	ModelURI      string       `json:"model_uri"`
	ModelPath     string       `json:"model_path"`
	MLflowVersion string       `json:"mlflow_version"`
	Columns       []string     `json:"columns"`
	Classes       []string     `json:"classes"`
	Rows          [][]*float64 `json:"rows"`
	Probabilities [][]float64  `json:"probabilities"`
	Labels        []int64      `json:"labels"`
}

// TestRealMLflow trains a scikit-learn model, logs it with MLflow, serves it
// with `mlflow models serve` on loopback, and scores it through a Batcher
// and a Client from many goroutines, behind a proxy that counts requests.
func TestRealMLflow(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	venv := filepath.Join(root, ".venv")
	python, mlflowBin := filepath.Join(venv, "bin", "python"), filepath.Join(venv, "bin", "mlflow")
	if _, err := os.Stat(mlflowBin); err != nil {
		msg := "MLflow is not installed in " + venv + ": run score/mlflow/testdata/setup.sh"
		if os.Getenv("TALLY_REQUIRE_MLFLOW") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	if testing.Short() {
		t.Skip("starts an MLflow scoring server (~30 s)")
	}
	dir := t.TempDir()
	env := append(os.Environ(),
		"PATH="+filepath.Join(venv, "bin")+string(os.PathListSeparator)+os.Getenv("PATH"),
		"MLFLOW_DISABLE_TELEMETRY=true", "DO_NOT_TRACK=true", "PYTHONUNBUFFERED=1")

	// Train and log the model; record its outputs.
	trainCtx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	train := exec.CommandContext(trainCtx, python, filepath.Join("testdata", "train.py"), dir)
	train.Env = env
	if out, err := train.CombinedOutput(); err != nil {
		t.Fatalf("testdata/train.py: %v\n%s", err, out)
	}
	var exp expected
	if b, err := os.ReadFile(filepath.Join(dir, "expected.json")); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &exp); err != nil {
		t.Fatal(err)
	}
	t.Logf("MLflow %s, model %s", exp.MLflowVersion, exp.ModelURI)

	// Serve it.
	base := serve(t, mlflowBin, exp.ModelPath, env, dir)

	// Count what reaches the endpoint.
	var requests, rowsSeen atomic.Int64
	target, _ := url.Parse(base)
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/invocations" {
			requests.Add(1)
			body, _ := readAll(r)
			var req struct {
				DataframeSplit struct {
					Data []json.RawMessage `json:"data"`
				} `json:"dataframe_split"`
			}
			if json.Unmarshal(body, &req) == nil {
				rowsSeen.Add(int64(len(req.DataframeSplit.Data)))
			}
		}
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()

	client, err := mlflow.New(mlflow.Options{Endpoint: proxy.URL, Columns: exp.Columns, Classes: exp.Classes})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	w := len(exp.Columns)
	n := len(exp.Rows)
	rows := make([]float32, n*w)
	for i, row := range exp.Rows {
		for j, v := range row {
			rows[i*w+j] = float32(math.NaN())
			if v != nil {
				rows[i*w+j] = float32(*v)
			}
		}
	}
	check := func(what string, i int, p score.Prediction) {
		t.Helper()
		want := exp.Probabilities[i]
		if !p.HasLabel || p.Label != exp.Labels[i] || len(p.Probabilities) != len(want) {
			t.Errorf("%s row %d: got %+v, want label %d, probabilities %v", what, i, p, exp.Labels[i], want)
			return
		}
		for k, f := range want {
			if d := math.Abs(float64(p.Probabilities[k]) - float64(float32(f))); d > 1e-6 {
				t.Errorf("%s row %d: probabilities %v, want %v", what, i, p.Probabilities, want)
				return
			}
		}
	}

	// All rows in one request.
	out := make([]score.Prediction, n)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := client.Score(ctx, rows, n, out); err != nil {
		t.Fatal(err)
	}
	for i := range out {
		check("one request", i, out[i])
	}
	if got := requests.Load(); got != 1 {
		t.Errorf("one Score call made %d requests", got)
	}

	// One row per call from many goroutines, through the batcher.
	requests.Store(0)
	rowsSeen.Store(0)
	b := batch.New(client, batch.Options{MaxRows: 64, MaxWait: 5 * time.Millisecond, MaxInFlight: 2})
	const goroutines = 16
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := make([]score.Prediction, 1)
			for i := g; i < n; i += goroutines {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := b.Score(ctx, rows[i*w:(i+1)*w], 1, out)
				cancel()
				if err != nil {
					t.Errorf("row %d: %v", i, err)
					return
				}
				check("batched", i, out[0])
			}
		}()
	}
	wg.Wait()
	b.Close()
	st := b.Stats()
	t.Logf("batched: %d calls, %d batches, %d HTTP requests carrying %d rows", st.Calls, st.Batches, requests.Load(), rowsSeen.Load())
	if rowsSeen.Load() != int64(n) || st.Rows != uint64(n) {
		t.Errorf("endpoint saw %d rows, batcher sent %d; want %d", rowsSeen.Load(), st.Rows, n)
	}
	if got := requests.Load(); got >= int64(n) || got != int64(st.Batches) {
		t.Errorf("%d requests for %d rows in %d batches: want one request per batch, fewer than rows", got, n, st.Batches)
	}

	// A request the model refuses: MLflow's 400 is ErrBadInput, explained.
	short, err := mlflow.New(mlflow.Options{Endpoint: base, Columns: exp.Columns[:w-1]})
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	err = short.Score(ctx, rows[:w-1], 1, make([]score.Prediction, 1))
	if !errors.Is(err, score.ErrBadInput) || !bytes.Contains([]byte(err.Error()), []byte(exp.Columns[w-1])) {
		t.Errorf("missing column: got %v, want ErrBadInput naming %s", err, exp.Columns[w-1])
	}
}

// serve starts `mlflow models serve` on a free loopback port and waits for
// /ping; the server is stopped at cleanup.
func serve(t *testing.T, mlflowBin, model string, env []string, dir string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	logPath := filepath.Join(dir, "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(mlflowBin, "models", "serve", "-m", model, "--env-manager", "local",
		"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-w", "1")
	cmd.Env, cmd.Stdout, cmd.Stderr = env, logf, logf
	// Its own process group: the server is a child of the mlflow CLI.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		logf.Close()
	})
	dump := func() string { b, _ := os.ReadFile(logPath); return string(b) }

	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	start := time.Now()
	for time.Since(start) < 120*time.Second {
		select {
		case err := <-exited:
			t.Fatalf("mlflow models serve exited: %v\n%s", err, dump())
		case <-time.After(250 * time.Millisecond):
		}
		resp, err := http.Get(base + "/ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Logf("scoring server up after %v", time.Since(start).Round(time.Millisecond))
				return base
			}
		}
	}
	t.Fatalf("mlflow models serve: no /ping after 120 s\n%s", dump())
	return ""
}

func readAll(r *http.Request) ([]byte, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(r.Body)
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(buf.Bytes()))
	r.ContentLength = int64(buf.Len())
	return buf.Bytes(), err
}
