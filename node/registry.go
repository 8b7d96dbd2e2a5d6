package node

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"sync"
	"testing/fstest"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/score/registry"
)

// registryFetchTimeout bounds one resolve-and-download of a registry model.
const registryFetchTimeout = 2 * time.Minute

// registryWatch is the registry side of a models:/ model: where it comes
// from, the version serving, and the last version that failed to load.
// Only WatchModels' goroutine polls; the API reads under mu.
type registryWatch struct {
	c        *registry.Client
	ref      *features.RegistryModel
	poll     time.Duration
	lastPoll time.Time

	mu       sync.Mutex
	serving  registry.Version
	location string // artifact path of the serving ONNX file
	since    time.Time
	failed   string // version that failed to load ("" for none)
	lastErr  string // the last failure (load, registry, download), cleared by a success
}

// ModelStatus is what GET /api/v1/feature-services says of a service's
// model: where it comes from and which version serves.
type ModelStatus struct {
	// Source is the repo's onnx: file, models:/ URI or mlflow: endpoint.
	Source string `json:"source"`
	// Version is the registry version serving ("" for a file or endpoint),
	// and Location its ONNX file in the artifact store.
	Version  string `json:"version,omitempty"`
	Location string `json:"location,omitempty"`
	// ServingSince is when that version (or file) was swapped in.
	ServingSince string `json:"servingSince,omitempty"`
	// Reloads counts swaps since start; ReloadFailures the versions or
	// files that failed to load (the running model kept serving).
	Reloads        int64 `json:"reloads"`
	ReloadFailures int64 `json:"reloadFailures"`
	// FailedVersion is the registry version that last failed to load, and
	// LastError the last failure, until a later version loads.
	FailedVersion string `json:"failedVersion,omitempty"`
	LastError     string `json:"lastError,omitempty"`
}

// newRegistryWatch resolves def's registered model and downloads its ONNX
// file, returned as path in fsys for the ModelOpener.
func newRegistryWatch(def *features.Model) (*registryWatch, fs.FS, string, error) {
	c, err := registry.FromEnv()
	if err != nil {
		return nil, nil, "", err
	}
	r := &registryWatch{c: c, ref: def.Registry, poll: time.Duration(def.Poll) * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), registryFetchTimeout)
	defer cancel()
	v, data, where, err := r.fetch(ctx)
	if err != nil {
		return nil, nil, "", err
	}
	r.serving, r.location, r.since, r.lastPoll = v, where, time.Now(), time.Now()
	fsys, path := oneFile(data)
	return r, fsys, path, nil
}

func (r *registryWatch) fetch(ctx context.Context) (registry.Version, []byte, string, error) {
	v, err := r.c.Resolve(ctx, r.ref.Name, r.ref.Alias, r.ref.Version)
	if err != nil {
		return v, nil, "", err
	}
	data, where, err := r.c.Fetch(ctx, v)
	return v, data, where, err
}

// oneFile is an in-memory file system holding a downloaded model.
func oneFile(data []byte) (fs.FS, string) {
	return fstest.MapFS{"model.onnx": {Data: data, ModTime: time.Now()}}, "model.onnx"
}

// pollRegistry re-resolves an alias every poll interval and swaps in the
// version it points to when that changed. A version that fails to load,
// has no ONNX file to load (registry.ErrUnusable), or failed registration
// (registry.ErrFailedRegistration), keeps the running model, is reported (status, metric, error) and is not downloaded again
// until the alias moves; a registry or download failure is retried at the
// next poll.
func (mp *modelPlan) pollRegistry(ctx context.Context, open ModelOpener, now time.Time) error {
	r := mp.reg
	if r == nil || r.ref.Alias == "" || now.Sub(r.lastPoll) < r.poll {
		return nil
	}
	r.lastPoll = now
	ctx, cancel := context.WithTimeout(ctx, registryFetchTimeout)
	defer cancel()
	v, err := r.c.Resolve(ctx, r.ref.Name, r.ref.Alias, "")
	// A version whose registration failed will never be READY: it is
	// skipped as a version that does not load, until the alias moves.
	failedReg := errors.Is(err, registry.ErrFailedRegistration)
	r.mu.Lock()
	unchanged := (err == nil || failedReg) && (v.Version == r.serving.Version || v.Version == r.failed)
	cur := r.serving.Version
	r.mu.Unlock()
	if unchanged {
		return nil
	}
	if failedReg {
		mp.failures.Add(1)
		return r.report(v.Version, fmt.Errorf("%s moved to version %s, whose registration failed (keeping version %s; skipped until the alias moves): %w", r.ref, v.Version, cur, err))
	}
	if err != nil {
		return r.report("", fmt.Errorf("%s (keeping version %s): %w", r.ref, cur, err))
	}
	data, where, err := r.c.Fetch(ctx, v)
	if errors.Is(err, registry.ErrUnusable) {
		// The version has no ONNX file to load (a sklearn-only MLmodel,
		// artifacts deleted): it fails as a file that does not load.
		mp.failures.Add(1)
		return r.report(v.Version, fmt.Errorf("%s moved to version %s, which has no ONNX model to load (keeping version %s): %w", r.ref, v.Version, cur, err))
	}
	if err != nil {
		return r.report("", fmt.Errorf("%s moved to version %s (keeping version %s): %w", r.ref, v.Version, cur, err))
	}
	fsys, path := oneFile(data)
	s, err := open(mp.def, fsys, path)
	var lm *loadedModel
	if err == nil {
		if lm, err = mp.check(s); err != nil {
			closeScorer(s) // nothing else holds it
		}
	}
	if err != nil {
		mp.failures.Add(1)
		return r.report(v.Version, fmt.Errorf("%s moved to version %s, which does not load (keeping version %s): %w", r.ref, v.Version, cur, err))
	}
	mp.swap(lm)
	r.mu.Lock()
	r.serving, r.location, r.since, r.failed, r.lastErr = v, where, time.Now(), "", ""
	r.mu.Unlock()
	return nil
}

func (r *registryWatch) report(failedVersion string, err error) error {
	r.mu.Lock()
	if failedVersion != "" {
		r.failed = failedVersion
	}
	r.lastErr = err.Error()
	r.mu.Unlock()
	return err
}

// status describes the model for the feature-services API.
func (mp *modelPlan) status() *ModelStatus {
	st := &ModelStatus{Source: mp.def.ONNX, Reloads: mp.reloads.Load(), ReloadFailures: mp.failures.Load()}
	if st.Source == "" {
		st.Source = mp.def.MLflow
	}
	if r := mp.reg; r != nil {
		r.mu.Lock()
		st.Version, st.Location, st.FailedVersion, st.LastError = r.serving.Version, r.location, r.failed, r.lastErr
		st.ServingSince = r.since.UTC().Format(time.RFC3339Nano)
		r.mu.Unlock()
	}
	return st
}

// servingVersion is the registry version serving as a number (0 for a file
// or an endpoint), for tally_model_version.
func (mp *modelPlan) servingVersion() float64 {
	if mp.reg == nil {
		return 0
	}
	mp.reg.mu.Lock()
	defer mp.reg.mu.Unlock()
	v, _ := strconv.ParseFloat(mp.reg.serving.Version, 64)
	return v
}

// registerModelMetrics adds each model's version, reload and failure
// gauges to s.
func registerModelMetrics(n *Node, s *metrics.Set) {
	for _, sv := range n.Repo().Services {
		mp := n.services[sv.Name].model
		if mp == nil {
			continue
		}
		s.NewGauge(fmt.Sprintf(`tally_model_version{service=%q}`, sv.Name), mp.servingVersion)
		s.NewGauge(fmt.Sprintf(`tally_model_reloads_total{service=%q}`, sv.Name), func() float64 { return float64(mp.reloads.Load()) })
		s.NewGauge(fmt.Sprintf(`tally_model_reload_failures_total{service=%q}`, sv.Name), func() float64 { return float64(mp.failures.Load()) })
	}
}
