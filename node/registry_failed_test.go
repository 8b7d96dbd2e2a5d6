package node

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tally-ml/tally/features"
)

// fakeMLflow answers the registry calls a models:/fraud@champion model
// makes: the alias resolves to version cur with status[cur], and every
// version's artifacts are a directory holding the default repo's ONNX
// model. It counts the download-location requests per version.
type fakeMLflow struct {
	mu        sync.Mutex
	cur       string
	status    map[string]string
	downloads map[string]int
}

func (f *fakeMLflow) set(v string) {
	f.mu.Lock()
	f.cur = v
	f.mu.Unlock()
}

func (f *fakeMLflow) downloadsOf(v string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.downloads[v]
}

func startFakeMLflow(t *testing.T) *fakeMLflow {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "features", "defaultrepo", "fraud_model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	art := t.TempDir()
	if err := os.WriteFile(filepath.Join(art, "model.onnx"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	f := &fakeMLflow{status: map[string]string{}, downloads: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		switch r.URL.Path {
		case "/api/2.0/mlflow/registered-models/alias":
			json.NewEncoder(w).Encode(map[string]any{"model_version": map[string]string{
				"name": "fraud", "version": f.cur, "status": f.status[f.cur]}})
		case "/api/2.0/mlflow/model-versions/get-download-uri":
			f.downloads[r.URL.Query().Get("version")]++
			json.NewEncoder(w).Encode(map[string]string{"artifact_uri": "file://" + art})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	t.Setenv("MLFLOW_TRACKING_URI", srv.URL)
	t.Setenv("MLFLOW_TRACKING_TOKEN", "")
	return f
}

// TestRegistryVersionThatFailedRegistrationIsSkipped: an alias moved to a
// version whose registration failed (status FAILED_REGISTRATION: it will
// never become READY) keeps the running version serving, is reported and
// counted once, and is neither reported nor downloaded again at the next
// polls; the alias moved on to a good version is then picked up. (It was
// an error at every poll, never counted as a failed version.)
func TestRegistryVersionThatFailedRegistrationIsSkipped(t *testing.T) {
	f := startFakeMLflow(t)
	f.status["1"], f.status["2"], f.status["3"] = "READY", "FAILED_REGISTRATION", "READY"
	f.set("1")
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	m := repo.Services[0].Model
	m.ONNX, m.Registry, m.Poll = "models:/fraud@champion", &features.RegistryModel{Name: "fraud", Alias: "champion"}, 1000
	n, err := New(repo, DefaultConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	mp := n.services[repo.Services[0].Name].model
	ctx := context.Background()
	now := time.Now()
	poll := func() error {
		now = now.Add(2 * time.Second)
		return mp.pollRegistry(ctx, n.openModel, now)
	}

	f.set("2")
	if err := poll(); err == nil {
		t.Fatal("the alias moved to a version that failed registration: no error reported")
	}
	if st := mp.status(); st.Version != "1" || st.FailedVersion != "2" || st.ReloadFailures != 1 {
		t.Fatalf("after version 2 (FAILED_REGISTRATION): serving %q, failed %q, %d reload failures; want 1, 2, 1", st.Version, st.FailedVersion, st.ReloadFailures)
	}
	for i := 0; i < 3; i++ {
		if err := poll(); err != nil {
			t.Fatalf("poll %d with the alias still on version 2: %v (reported again)", i+2, err)
		}
	}
	if st := mp.status(); st.ReloadFailures != 1 || f.downloadsOf("2") != 0 {
		t.Fatalf("after 3 more polls: %d reload failures, %d downloads of version 2; want 1, 0", st.ReloadFailures, f.downloadsOf("2"))
	}

	f.set("3")
	if err := poll(); err != nil {
		t.Fatalf("the alias moved to version 3 (READY): %v", err)
	}
	if st := mp.status(); st.Version != "3" || st.FailedVersion != "" || st.Reloads != 1 {
		t.Fatalf("after version 3: serving %q, failed %q, %d reloads; want 3, none, 1", st.Version, st.FailedVersion, st.Reloads)
	}

	// A version still being registered is asked again at each poll, and
	// taken once it is READY.
	f.status["4"] = "PENDING_REGISTRATION"
	f.set("4")
	for i := 0; i < 2; i++ {
		if err := poll(); err == nil {
			t.Fatalf("poll %d with the alias on version 4 (PENDING_REGISTRATION): no error", i+1)
		}
	}
	f.mu.Lock()
	f.status["4"] = "READY"
	f.mu.Unlock()
	if err := poll(); err != nil {
		t.Fatalf("version 4 once READY: %v", err)
	}
	if st := mp.status(); st.Version != "4" || st.ReloadFailures != 1 {
		t.Fatalf("after version 4: serving %q, %d reload failures; want 4, 1", st.Version, st.ReloadFailures)
	}
}
