package features

import (
	"strings"
	"testing"
	"testing/fstest"
)

const modelRepo = `
sources:
  - name: tx
    schema: {user_id: string, amt: float, merchant: string}
entities:
  - {name: user, join_key: user_id}
feature_views:
  - name: counts
    source: tx
    entity: user
    aggregations:
      - {column: amt, function: count, window: 1m}
      - {column: amt, function: mean, window: 1h}
      - {column: merchant, function: last, window: 1h}
      - {column: merchant, function: last_n, n: 3, window: 1h, name: recent_merchants}
feature_services:
  - name: svc
    features: [counts]
    model: %MODEL%
`

func loadModel(t *testing.T, model string) (*Repo, error) {
	t.Helper()
	src := strings.Replace(modelRepo, "%MODEL%", model, 1)
	return Load(fstest.MapFS{"repo.yaml": {Data: []byte(src)}})
}

func TestModelBlock(t *testing.T) {
	r, err := loadModel(t, `{onnx: fraud.onnx, max_wait: 2ms, on_error: features}`)
	if err != nil {
		t.Fatal(err)
	}
	m := r.Services[0].Model
	if m == nil || m.ONNX != "fraud.onnx" || m.MaxWait != 2 || m.OnError != "features" || m.MaxRows != 64 {
		t.Fatalf("model: %+v", m)
	}
	// Default inputs: the numeric features, in service order (not the string last).
	if len(m.Inputs) != 2 || r.FeatureName(m.Inputs[1]) != "counts.amt_mean_1h" {
		t.Fatalf("default inputs: %v", m.Inputs)
	}
	again, err := Load(fstest.MapFS{"r.yaml": {Data: r.YAML()}})
	if err != nil || again.Services[0].Model.MaxWait != 2 || len(again.Services[0].Model.Inputs) != 2 {
		t.Fatalf("model does not round-trip through YAML(): %v\n%s", err, r.YAML())
	}
	// A string feature feeds an ONNX model's string input.
	r, err = loadModel(t, `{onnx: a.onnx, inputs: [counts.amt_count_1m, counts.merchant_last_1h]}`)
	if err != nil || len(r.Services[0].Model.Inputs) != 2 || r.FeatureName(r.Services[0].Model.Inputs[1]) != "counts.merchant_last_1h" {
		t.Fatalf("string input: %v %+v", err, r)
	}
	r, err = loadModel(t, `{mlflow: "http://127.0.0.1:5000", inputs: [counts.amt_mean_1h], token_env: DATABRICKS_TOKEN}`)
	if err != nil || r.Services[0].Model.MLflow == "" || len(r.Services[0].Model.Inputs) != 1 {
		t.Fatalf("mlflow model: %v %+v", err, r)
	}
}

func TestModelBlockErrors(t *testing.T) {
	cases := map[string]string{
		`{}`:                                                      "set onnx",
		`{onnx: a.onnx, mlflow: "http://x"}`:                      "only one",
		`{mlflow: "ftp://x"}`:                                     "not an http(s) URL",
		`{onnx: a.onnx, on_error: ignore}`:                        "on_error",
		`{onnx: a.onnx, max_rows: -1}`:                            "positive integer",
		`{onnx: a.onnx, inputs: [counts.amt_last_1h]}`:            "not a feature",
		`{mlflow: "http://x", inputs: [counts.merchant_last_1h]}`: "an MLflow model takes numbers",
		`{onnx: a.onnx, inputs: [counts.recent_merchants]}`:       "is a list of string",
		`{onnx: a.onnx, colour: red}`:                             `unknown field "colour"`,
	}
	for model, want := range cases {
		_, err := loadModel(t, model)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "repo.yaml:") {
			t.Errorf("model %s: got %v, want an error mentioning %q with its file", model, err, want)
		}
	}
}

// A model input request.<field> reads the service's request context; a
// string field feeds an ONNX model's string input, and round-trips
// through YAML().
func TestModelRequestInput(t *testing.T) {
	repo := strings.Replace(modelRepo, "feature_services:", `request_views:
  - name: req
    request_schema: {amt: float, category: string}
    features:
      - {name: amt2, expression: request.amt * 2}
feature_services:`, 1)
	repo = strings.Replace(repo, "features: [counts]", "features: [counts, req]", 1)
	load := func(model string) (*Repo, error) {
		return Load(fstest.MapFS{"repo.yaml": {Data: []byte(strings.Replace(repo, "%MODEL%", model, 1))}})
	}
	r, err := load(`{onnx: a.onnx, inputs: [counts.amt_count_1m, request.category, request.amt]}`)
	if err != nil {
		t.Fatal(err)
	}
	s := r.Services[0]
	in := s.Model.Inputs
	if len(in) != 3 || in[1].Kind != RefRequest || r.ModelInputName(s, in[1]) != "request.category" || r.ModelInputName(s, in[2]) != "request.amt" {
		t.Fatalf("inputs %+v", in)
	}
	again, err := Load(fstest.MapFS{"r.yaml": {Data: r.YAML()}})
	if err != nil || again.ModelInputName(again.Services[0], again.Services[0].Model.Inputs[1]) != "request.category" {
		t.Fatalf("request input does not round-trip through YAML(): %v\n%s", err, r.YAML())
	}
	for model, want := range map[string]string{
		`{onnx: a.onnx, inputs: [request.country]}`:        "request.country is not in the request context of feature service svc (amt, category)",
		`{mlflow: "http://x", inputs: [request.category]}`: "request.category is a string; an MLflow model takes numbers",
	} {
		if _, err := load(model); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("model %s: %v, want an error containing %q", model, err, want)
		}
	}
}
