package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/score"
	"github.com/tally-ml/tally/score/batch"
	"github.com/tally-ml/tally/score/mlflow"
	"github.com/tally-ml/tally/score/onnx"
	"github.com/tally-ml/tally/tabular"
)

// modelPlan is a feature service's model: which outputs feed it, in
// model.inputs order, and the live model (swapped atomically on reload, so
// in-flight requests finish on the model they started with).
type modelPlan struct {
	def    *features.Model
	inputs []feed // each numeric model input, in model.inputs order
	strs   []feed // each string model input (score.StringScorer)
	// names are the features' names of inputs and strs.
	names, strNames []string
	scorer          atomic.Pointer[loadedModel]
	fsys            fs.FS  // where the ONNX file is, for reloads
	path            string // the ONNX file in fsys
	// modTime and size are the file's when it was last read (loaded or
	// refused): a change to either is a new file to load.
	modTime time.Time
	size    int64
	reloads atomic.Int64
	// failures counts files or versions that failed to load.
	failures atomic.Int64
	// reg follows a models:/ model in the registry (nil for a file).
	reg *registryWatch
}

// feed is where a model input's value comes from: the service's output i,
// or (ctx) field i of its request context.
type feed struct {
	ctx bool
	i   int
}

// loadedModel is a Scorer and its feeds in the model's input order
// (check): a model whose inputs are named after the features is fed by
// name, so a reloaded file may order them otherwise.
type loadedModel struct {
	s            score.Scorer
	inputs, strs []feed
}

// ModelOpener builds the Scorer of a model definition; an ONNX model's file
// is path in fsys. Tests and embedders may supply their own.
type ModelOpener func(def *features.Model, fsys fs.FS, path string) (score.Scorer, error)

// openModel builds a model's Scorer: an ONNX file evaluated in process, or
// an MLflow endpoint, either behind a micro-batcher with the service's
// batching settings (a local model scores at once when idle and coalesces
// rows only under load; a remote endpoint gets batches of up to max_rows
// rows or max_wait).
func (n *Node) defaultOpenModel(def *features.Model, fsys fs.FS, path string) (score.Scorer, error) {
	opts := batch.Options{MaxRows: def.MaxRows, MaxWait: time.Duration(def.MaxWait) * time.Millisecond,
		QueueRows: def.QueueRows, MaxInFlight: def.MaxInFlight}
	if def.MLflow != "" {
		cols := make([]string, len(def.Inputs))
		for _, s := range n.Repo().Services {
			if s.Model == def {
				for i, ref := range def.Inputs {
					cols[i] = strings.TrimPrefix(n.Repo().ModelInputName(s, ref), "request.")
				}
			}
		}
		token := ""
		if def.TokenEnv != "" {
			token = os.Getenv(def.TokenEnv)
		}
		c, err := mlflow.New(mlflow.Options{Endpoint: def.MLflow, Columns: cols, Token: token,
			Timeout: time.Duration(def.Timeout) * time.Millisecond})
		if err != nil {
			return nil, fmt.Errorf("mlflow endpoint %s: %w", def.MLflow, err)
		}
		return remoteScorer{batch.New(c, opts), c}, nil
	}
	data, err := fs.ReadFile(fsys, path)
	if err != nil {
		return nil, fmt.Errorf("read model: %w", err)
	}
	m, err := onnx.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	if len(m.StringInputs()) > 0 {
		// The batcher carries numbers only; in process, a call scores at
		// once anyway (batching only coalesces rows under load).
		return m, nil
	}
	opts.Local = true
	return batch.New(m, opts), nil
}

// modelFS is where a model path resolves: absolute paths on the OS, others
// in the repo's file system.
func modelFS(repo fs.FS, path string) (fs.FS, string) {
	if filepath.IsAbs(path) || repo == nil {
		return os.DirFS(filepath.Dir(path)), filepath.Base(path)
	}
	return repo, filepath.ToSlash(path)
}

func (n *Node) newModelPlan(p *servicePlan, def *features.Model, repo fs.FS, open ModelOpener) (*modelPlan, error) {
	mp := &modelPlan{def: def}
	for _, ref := range def.Inputs {
		if ref.Kind == features.RefRequest {
			if ref.View < 0 || ref.View >= len(p.ctxCols) {
				return nil, fmt.Errorf("model input %d is not in the service's request context", ref.View)
			}
			name := "request." + p.ctxCols[ref.View].Name
			if p.ctxCols[ref.View].Type == features.String {
				mp.strs = append(mp.strs, feed{ctx: true, i: ref.View})
				mp.strNames = append(mp.strNames, name)
			} else {
				mp.inputs = append(mp.inputs, feed{ctx: true, i: ref.View})
				mp.names = append(mp.names, name)
			}
			continue
		}
		idx := -1
		for i, o := range p.outputs {
			if o.kind == ref.Kind && o.name == n.Repo().FeatureName(ref) {
				idx = i
			}
		}
		if idx < 0 {
			return nil, fmt.Errorf("model input %s is not a feature of the service", n.Repo().FeatureName(ref))
		}
		if p.outputs[idx].enc == encString {
			mp.strs = append(mp.strs, feed{i: idx})
			mp.strNames = append(mp.strNames, p.outputs[idx].name)
		} else {
			mp.inputs = append(mp.inputs, feed{i: idx})
			mp.names = append(mp.names, p.outputs[idx].name)
		}
	}
	fsys, path := fs.FS(nil), ""
	if def.Registry != nil {
		var err error
		if mp.reg, fsys, path, err = newRegistryWatch(def); err != nil {
			return nil, fmt.Errorf("model: %w", err)
		}
	} else if def.ONNX != "" {
		mp.fsys, mp.path = modelFS(repo, def.ONNX)
		fsys, path = mp.fsys, mp.path
		// Before reading it: a write after this is seen as a change.
		if st, err := fs.Stat(mp.fsys, mp.path); err == nil {
			mp.modTime, mp.size = st.ModTime(), st.Size()
		}
	}
	s, err := open(def, fsys, path)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	lm, err := mp.check(s)
	if err != nil {
		closeScorer(s)
		return nil, err
	}
	mp.scorer.Store(lm)
	return mp, nil
}

// check refuses a model the service cannot feed: numeric features fill
// its numeric values, string features its string inputs. A model with
// several inputs of one kind named after the features (skl2onnx from a
// DataFrame: one input per column) is fed by name, whatever the order of
// model.inputs, and refused when a name contradicts the order (an input
// named after another feature than the one its position gives it); other
// inputs (one tensor of k values, names unlike the features') are fed in
// order.
func (mp *modelPlan) check(s score.Scorer) (*loadedModel, error) {
	if s.NumInputs() != len(mp.inputs) {
		return nil, fmt.Errorf("model takes %d numeric values per row but the service feeds it %d numeric features: list its inputs under model.inputs", s.NumInputs(), len(mp.inputs))
	}
	var names []string
	if ss, ok := s.(score.StringScorer); ok {
		names = ss.StringInputs()
	}
	switch {
	case len(names) > len(mp.strs):
		return nil, fmt.Errorf("model input %s takes a string per row (a category), but model.inputs lists %d string features for the model's %d string inputs %v: list a string feature (a table view's string column, or the last value of a string column) for each, in the model's input order",
			names[len(mp.strs)], len(mp.strs), len(names), names)
	case len(names) < len(mp.strs):
		return nil, fmt.Errorf("model.inputs lists %d string features but the model takes %d string inputs %v: feed it numeric features, or export the model with a string input (skl2onnx StringTensorType) for each category",
			len(mp.strs), len(names), names)
	}
	lm := &loadedModel{s: s}
	var err error
	if lm.inputs, err = byName(s.Inputs(), mp.inputs, mp.names); err != nil {
		return nil, err
	}
	if lm.strs, err = byName(names, mp.strs, mp.strNames); err != nil {
		return nil, err
	}
	return lm, nil
}

// byName orders feeds (named names, in model.inputs order) as the model's
// inputs model: by name when each of them is named after exactly one
// feature, each a different one; else in order, refusing an input named
// after features of which none is the one its position gives it. A name
// matches a feature's full name (view.feature, request.field) or the part
// after the view (feature, field). One input, or none named, is fed in
// order.
func byName(model []string, feeds []feed, names []string) ([]feed, error) {
	if len(model) < 2 || len(model) != len(feeds) {
		return feeds, nil
	}
	matches := func(m, name string) bool {
		_, short, _ := strings.Cut(name, ".")
		return m == name || m == short
	}
	perm := make([]int, len(model))
	used := make([]bool, len(feeds))
	exact := true
	for i, m := range model {
		perm[i] = -1
		for j, name := range names {
			if matches(m, name) {
				if perm[i] >= 0 || used[j] {
					exact = false
				}
				perm[i] = j
				used[j] = true
			}
		}
		exact = exact && perm[i] >= 0
	}
	if exact {
		out := make([]feed, len(feeds))
		for i, j := range perm {
			out[i] = feeds[j]
		}
		return out, nil
	}
	for i, m := range model {
		if perm[i] >= 0 && !matches(m, names[i]) {
			return nil, fmt.Errorf("the model's input %s (input %d) is named after feature %s, but model.inputs feeds it %s: the model's inputs are %v, model.inputs lists %v; list model.inputs in the model's input order, or name the features as the model's inputs",
				m, i+1, names[perm[i]], names[i], model, names)
		}
	}
	return feeds, nil
}

// reloadIfChanged swaps in the model file when it changed on disk (its
// modification time or its size). A file that fails to load leaves the
// running model in place; the same file is not read again until it changes.
func (mp *modelPlan) reloadIfChanged(open ModelOpener) error {
	if mp.fsys == nil {
		return nil
	}
	st, err := fs.Stat(mp.fsys, mp.path)
	if err != nil || st.ModTime().IsZero() || st.ModTime().Equal(mp.modTime) && st.Size() == mp.size {
		return nil
	}
	s, err := open(mp.def, mp.fsys, mp.path)
	var lm *loadedModel
	if err == nil {
		if lm, err = mp.check(s); err != nil {
			closeScorer(s) // nothing else holds it
		}
	}
	mp.modTime, mp.size = st.ModTime(), st.Size()
	if err != nil {
		mp.failures.Add(1)
		return fmt.Errorf("reload %s (keeping the running model): %w", mp.path, err)
	}
	mp.swap(lm)
	return nil
}

// swap serves s from now on and retires the scorer it replaces: closed
// (its batcher's goroutines, an MLflow client's connections) once the
// calls that loaded it before the swap are done, retireGrace after it. A
// call loads the scorer just before it scores; the model's timeout bounds
// the call.
func (mp *modelPlan) swap(lm *loadedModel) {
	old := mp.scorer.Swap(lm)
	mp.reloads.Add(1)
	if old != nil {
		grace := retireGrace + time.Duration(mp.def.Timeout)*time.Millisecond
		time.AfterFunc(grace, func() { closeScorer(old.s) })
	}
}

// retireGrace is how long a replaced scorer serves the calls that loaded it
// before the swap, beyond the model's timeout (a variable: tests shorten it).
var retireGrace = 10 * time.Second

// closeScorer closes s if it holds resources (io.Closer).
func closeScorer(s score.Scorer) {
	if c, ok := s.(io.Closer); ok {
		c.Close()
	}
}

// remoteScorer is an MLflow endpoint behind its batcher: closing it closes
// both (the batcher leaves its wrapped scorer open).
type remoteScorer struct {
	*batch.Batcher
	c *mlflow.Client
}

func (r remoteScorer) Close() error {
	r.Batcher.Close()
	return r.c.Close()
}

// WatchModels reloads changed model files every interval until ctx ends,
// and re-resolves registry aliases every model's poll interval (checked at
// this interval), reporting failed reloads to logf.
func (n *Node) WatchModels(ctx context.Context, interval time.Duration, logf func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range n.services {
			if p.model != nil {
				if err := p.model.reloadIfChanged(n.openModel); err != nil && logf != nil {
					logf(err)
				}
				if err := p.model.pollRegistry(ctx, n.openModel, time.Now()); err != nil && logf != nil {
					logf(err)
				}
			}
		}
	}
}

// predictWork is the pooled scratch of one predict request.
type predictWork struct {
	row  []float32
	strs []string
	pred [1]score.Prediction
}

var predictPool = sync.Pool{New: func() any { return &predictWork{} }}

// Predict answers a get-features body with the features and the service
// model's score. When the model cannot score, the service's on_error policy
// decides: "fail" answers 503, "features" returns the features with
// "prediction": null and "predictionStatus": "UNAVAILABLE".
func (n *Node) Predict(dst, body []byte) ([]byte, *APIError) {
	w := getLookupWork()
	defer lookupPool.Put(w)
	r, aerr := n.lookupOne(w, body)
	if aerr != nil {
		return dst, aerr
	}
	p := r.plan
	if p.model == nil {
		return dst, badRequest("NO_MODEL", "feature service %s has no model: add a model: block to it in the feature repo", p.name)
	}
	start := len(dst)
	dst = append(dst, `{"result":{"features":`...)
	dst = p.appendFeatures(dst, w)

	pw := predictPool.Get().(*predictWork)
	defer predictPool.Put(pw)
	mp := p.model
	lm := mp.scorer.Load()
	s := lm.s
	pw.row = resize(pw.row, len(lm.inputs))
	for i, f := range lm.inputs {
		pw.row[i] = float32(p.feedValue(w, f))
	}
	var err error
	if len(lm.strs) > 0 {
		// check made sure the scorer takes them; ONNX only (in process).
		pw.strs = resize(pw.strs, len(lm.strs))
		for i, f := range lm.strs {
			pw.strs[i] = p.feedString(w, f)
		}
		err = s.(score.StringScorer).ScoreStrings(context.Background(), pw.row, pw.strs, 1, pw.pred[:])
		clear(pw.strs) // the pool keeps no reference to the row's strings
	} else if mp.def.ONNX != "" {
		// In process: one row takes microseconds and cannot hang, so no
		// deadline (and none of its allocations).
		err = s.Score(context.Background(), pw.row, 1, pw.pred[:])
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(mp.def.Timeout)*time.Millisecond)
		err = s.Score(ctx, pw.row, 1, pw.pred[:])
		cancel()
	}
	if err != nil {
		n.metrics.predictErrors.Inc()
		if mp.def.OnError == "fail" {
			status, code := 503, "MODEL_UNAVAILABLE"
			switch {
			case errors.Is(err, score.ErrOverloaded):
				code = "MODEL_OVERLOADED"
			case errors.Is(err, score.ErrBadInput):
				status, code = 500, "MODEL_INPUT"
			}
			return dst[:start], &APIError{Status: status, Code: code, Message: "feature service " + p.name + ": model could not score: " + err.Error()}
		}
		dst = append(dst, `,"prediction":null,"predictionStatus":"UNAVAILABLE","predictionError":`...)
		dst = tabular.AppendJSONString(dst, err.Error())
	} else {
		dst = append(dst, `,"prediction":`...)
		dst = appendPrediction(dst, &pw.pred[0], s.Classes())
		dst = append(dst, `,"predictionStatus":"PRESENT"`...)
	}
	return r.appendTail(dst, w), nil
}

// outputValue returns output i's numeric value for the model (NaN when
// missing, which models read as a missing value).
func (p *servicePlan) outputValue(w *lookupWork, i int) float64 {
	o := &p.outputs[i]
	if !w.statuses[i] {
		return math.NaN()
	}
	switch o.kind {
	case features.RefAggregate:
		return w.vals[o.slot][o.feat].Num
	case features.RefTable:
		return w.tnums[o.slot][o.feat]
	case features.RefRequestView:
		return w.reqVal[o.slot]
	}
	return math.NaN()
}

// feedValue returns a numeric model input's value: NaN when missing.
func (p *servicePlan) feedValue(w *lookupWork, f feed) float64 {
	if !f.ctx {
		return p.outputValue(w, f.i)
	}
	if !w.ctxOK[f.i] {
		return math.NaN()
	}
	return w.ctx[f.i]
}

// feedString returns a string model input's value: "" when missing, which
// a model reads as an unknown category unless it knows "".
func (p *servicePlan) feedString(w *lookupWork, f feed) string {
	if f.ctx {
		if !w.ctxOK[f.i] {
			return ""
		}
		return w.ctxStr[f.i]
	}
	o := &p.outputs[f.i]
	if !w.statuses[f.i] {
		return ""
	}
	switch o.kind {
	case features.RefAggregate:
		return w.vals[o.slot][o.feat].Str
	case features.RefTable:
		return w.tstrs[o.slot][o.feat]
	}
	return ""
}

func appendPrediction(dst []byte, pr *score.Prediction, classes []string) []byte {
	dst = append(dst, '{')
	sep := false
	if pr.HasLabel {
		dst = append(dst, `"label":`...)
		if pr.LabelString != "" {
			dst = tabular.AppendJSONString(dst, pr.LabelString)
		} else {
			dst = strconv.AppendInt(dst, pr.Label, 10)
		}
		sep = true
	}
	if len(pr.Probabilities) > 0 {
		if sep {
			dst = append(dst, ',')
		}
		dst = append(dst, `"probabilities":{`...)
		for i, v := range pr.Probabilities {
			if i > 0 {
				dst = append(dst, ',')
			}
			name := strconv.Itoa(i)
			if i < len(classes) {
				name = classes[i]
			}
			dst = tabular.AppendJSONString(dst, name)
			dst = append(dst, ':')
			dst, _ = appendNumber(dst, float64(v), encFloat)
		}
		dst = append(dst, '}')
		sep = true
	}
	if pr.HasValue || !pr.HasLabel && len(pr.Probabilities) == 0 {
		if sep {
			dst = append(dst, ',')
		}
		dst = append(dst, `"value":`...)
		dst, _ = appendNumber(dst, pr.Value, encFloat)
	}
	return append(dst, '}')
}
