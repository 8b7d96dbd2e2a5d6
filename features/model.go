package features

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Model is the model a feature service scores its vector with
// (`POST /api/v1/feature-service/predict`). Exactly one of ONNX and MLflow is
// set.
type Model struct {
	// ONNX is a .onnx file, relative to the repo directory unless absolute;
	// it is evaluated in process and reloaded when the file changes. Or a
	// model in an MLflow Model Registry (models:/name@alias or
	// models:/name/7), parsed into Registry.
	ONNX string
	// Registry is the registered model ONNX names, nil for a file.
	Registry *RegistryModel
	// Poll is how often a registry alias is re-resolved (ms).
	Poll int64
	// MLflow is a serving endpoint; tally POSTs {MLflow}/invocations.
	MLflow string
	// TokenEnv names an environment variable holding a bearer token for
	// the endpoint (Databricks serving), "" for none.
	TokenEnv string
	// Inputs are the features fed to the model, in the model's column
	// order: by default every numeric feature of the service, in order.
	// String features (a table view's string column, the last value of a
	// string column) feed an ONNX model's string inputs, in order. A
	// RefRequest input ("request.<field>") reads a field of the request
	// context: its View indexes the service's RequestContext.
	Inputs []Ref
	// OnError is what a request gets when the model cannot score it:
	// "fail" (a 503) or "features" (the features, with the score marked
	// unavailable).
	OnError string
	// Batching: rows per batch, how long a batch may wait to fill, rows
	// queued before requests are shed, batches in flight at once.
	MaxRows     int
	MaxWait     int64 // ms
	QueueRows   int
	MaxInFlight int
	// Timeout bounds one scoring call (ms).
	Timeout int64
}

// modelDefaults are the batching defaults: a local model scores at once
// when idle; a remote endpoint gets batches of up to 64 rows or 1 ms.
func modelDefaults() Model {
	return Model{OnError: "fail", MaxRows: 64, MaxWait: 1, QueueRows: 4096, MaxInFlight: 4, Timeout: 100, Poll: 10000}
}

// model reads a service's model block.
func (l *loader) model(file string, n *yaml.Node, s *Service) *Model {
	o := l.object(file, n, fmt.Sprintf("model of feature service %q", s.Name),
		"onnx", "mlflow", "token_env", "inputs", "on_error", "max_rows", "max_wait", "queue_rows", "max_in_flight", "timeout", "poll")
	m := modelDefaults()
	m.ONNX, m.MLflow, m.TokenEnv = o.str("onnx", false), o.str("mlflow", false), o.str("token_env", false)
	switch {
	case m.ONNX == "" && m.MLflow == "":
		o.errorf(n, "set onnx: <file.onnx> (scored in process) or mlflow: <endpoint URL>")
	case m.ONNX != "" && m.MLflow != "":
		o.errorf(n, "set only one of onnx and mlflow")
	case m.MLflow != "" && !strings.HasPrefix(m.MLflow, "http://") && !strings.HasPrefix(m.MLflow, "https://"):
		o.errorf(o.vals["mlflow"], "mlflow: %q is not an http(s) URL", m.MLflow)
	}
	if strings.HasPrefix(m.ONNX, "models:/") {
		r, err := ParseRegistryURI(m.ONNX)
		if err != nil {
			o.errorf(o.vals["onnx"], "onnx: %v", err)
		}
		m.Registry = r
	}
	if ms, ok := o.duration("poll"); ok {
		if m.Registry == nil || ms <= 0 {
			o.errorf(o.vals["poll"], "poll: set it (a positive duration) only with onnx: models:/name@alias")
		}
		m.Poll = ms
	}
	if v := o.str("on_error", false); v != "" {
		if v != "fail" && v != "features" {
			o.errorf(o.vals["on_error"], "on_error: %q: use fail (the request fails with 503) or features (features returned, score marked unavailable)", v)
		}
		m.OnError = v
	}
	positive := func(key string, dst *int) {
		if s := o.str(key, false); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v <= 0 {
				o.errorf(o.vals[key], "%s: %q must be a positive integer", key, s)
				return
			}
			*dst = v
		}
	}
	positive("max_rows", &m.MaxRows)
	positive("queue_rows", &m.QueueRows)
	positive("max_in_flight", &m.MaxInFlight)
	if ms, ok := o.duration("max_wait", "0"); ok {
		m.MaxWait = ms
	}
	if ms, ok := o.duration("timeout"); ok {
		m.Timeout = ms
	}
	if items := o.seq("inputs", false); items != nil {
		for _, it := range items {
			if field, ok := strings.CutPrefix(it.Value, "request."); ok && it.Kind == yaml.ScalarNode {
				if ref, ok := l.requestInput(o, it, s, field); ok {
					m.Inputs = append(m.Inputs, ref)
				}
				continue
			}
			ref, ok := l.repo.Feature(it.Value)
			if it.Kind != yaml.ScalarNode || !ok {
				o.errorf(it, "inputs: %s is not a feature (write view.feature)", describe(it))
				continue
			}
			if !l.modelInput(o, it, s, ref) {
				continue
			}
			m.Inputs = append(m.Inputs, ref)
		}
	} else {
		for _, ref := range s.Features {
			if l.repo.FeatureType(ref).Numeric() && !l.repo.FeatureList(ref) {
				m.Inputs = append(m.Inputs, ref)
			}
		}
	}
	if len(m.Inputs) == 0 {
		o.errorf(n, "the model has no inputs: the service has no numeric features")
	}
	return &m
}

// requestInput resolves the model input request.<field> to the field of the
// service's request context.
func (l *loader) requestInput(o *obj, it *yaml.Node, s *Service, field string) (Ref, bool) {
	i, ok := columnIndex(s.RequestContext, field)
	if !ok {
		o.errorf(it, "inputs: %s is not in the request context of feature service %s (%s): declare it in the request_schema of a request view the service lists", it.Value, s.Name, list(colNames(s.RequestContext)))
		return Ref{}, false
	}
	if s.RequestContext[i].Type == String && o.str("mlflow", false) != "" {
		o.errorf(it, "inputs: %s is a string; an MLflow model takes numbers (serve the model as ONNX, which takes string inputs)", it.Value)
		return Ref{}, false
	}
	return Ref{Kind: RefRequest, View: i}, true
}

// ModelInputName names a model input as model.inputs lists it: a feature's
// full name, or request.<field> for a field of s's request context.
func (r *Repo) ModelInputName(s *Service, ref Ref) string {
	if ref.Kind == RefRequest {
		if ref.View >= 0 && ref.View < len(s.RequestContext) {
			return "request." + s.RequestContext[ref.View].Name
		}
		return ""
	}
	return r.FeatureName(ref)
}

func (l *loader) modelInput(o *obj, it *yaml.Node, s *Service, ref Ref) bool {
	found := false
	for _, f := range s.Features {
		found = found || f == ref
	}
	if !found {
		o.errorf(it, "inputs: %s is not served by feature service %s: add it to its features", it.Value, s.Name)
		return false
	}
	t := l.repo.FeatureType(ref)
	switch {
	case l.repo.FeatureList(ref):
		o.errorf(it, "inputs: %s is a list of %s; models take one value per feature (a number, or a string for an ONNX model's string input)", it.Value, t)
		return false
	case !t.Numeric() && o.str("mlflow", false) != "":
		o.errorf(it, "inputs: %s is a %s; an MLflow model takes numbers (encode the category in the feature repo, or serve the model as ONNX, which takes string inputs)", it.Value, t)
		return false
	}
	return true
}
