package node

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/features"
)

// parityDir is where score/onnx/parity/generate.sh writes the models and
// onnxruntime's answers; tests using it skip when it is absent, unless
// TALLY_REQUIRE_PARITY=1 (make test).
func parityDir(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs("../score/onnx/testdata/generated")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "str_onehot_gb.onnx")); err != nil {
		if os.Getenv("TALLY_REQUIRE_PARITY") == "1" {
			t.Fatalf("parity models missing (make parity): %v", err)
		}
		t.Skip("parity models not generated (make parity)")
	}
	return dir
}

// stringRepo serves the parity model str_onehot_gb (a ColumnTransformer of
// imputer + scaler over x0..x3 and a OneHotEncoder over the string input
// category, then a GBDT) twice: with the category from a table view's
// string column, and from the last value of a string column of a stream.
const stringRepo = `
sources:
  - name: tx
    schema: {user_id: string, category: string, amt: float}
entities:
  - {name: user, join_key: user_id}
feature_views:
  - name: cats
    source: tx
    entity: user
    aggregations:
      - {column: category, function: last, window: 1h}
table_views:
  - name: profile
    entity: user
    schema: {x0: float, x1: float, x2: float, x3: float, category: string}
request_views:
  - name: req
    request_schema: {category: string, amt: float}
    features:
      - {name: amt2, expression: request.amt * 2}
  - name: req2
    request_schema: {country: string}
    features:
      - {name: one, expression: "1"}
feature_services:
  - name: by_table
    features: [profile]
    model:
      onnx: str_onehot_gb.onnx
      inputs: [profile.x0, profile.x1, profile.x2, profile.x3, profile.category]
  - name: by_stream
    features: [profile.x0, profile.x1, profile.x2, profile.x3, cats.category_last_1h]
    model:
      onnx: str_onehot_gb.onnx
      inputs: [profile.x0, profile.x1, profile.x2, profile.x3, cats.category_last_1h]
  - name: by_request
    features: [profile.x0, profile.x1, profile.x2, profile.x3, req]
    model:
      onnx: str_onehot_gb.onnx
      inputs: [profile.x0, profile.x1, profile.x2, profile.x3, request.category]
  - name: two_cats
    features: [profile.x0, profile.x1, profile.x2, profile.category, req2]
    model:
      onnx: str_two_cats_lr.onnx
      inputs: [profile.x0, profile.x1, profile.x2, profile.category, request.country]
`

// parityCase is a parity model's rows, string columns and onnxruntime's
// answers.
type parityCase struct {
	rows    [][]float32
	strs    [][]string
	labels  []string
	classes []string
	probs   [][]float64
}

func loadParityCase(t *testing.T, dir, name string) parityCase {
	t.Helper()
	var want struct {
		Rows          string      `json:"rows"`
		Strings       string      `json:"strings"`
		Labels        []string    `json:"labels"`
		Classes       []string    `json:"classes"`
		Probabilities [][]float64 `json:"probabilities"`
	}
	data, err := os.ReadFile(filepath.Join(dir, name+".expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	pc := parityCase{rows: readParityRows(t, filepath.Join(dir, want.Rows)), labels: want.Labels, classes: want.Classes, probs: want.Probabilities}
	for _, line := range readLines(t, filepath.Join(dir, want.Strings)) {
		pc.strs = append(pc.strs, strings.Split(line, ","))
	}
	if len(pc.rows) != len(pc.strs) || len(pc.rows) != len(pc.labels) || len(pc.probs) != len(pc.rows) {
		t.Fatalf("%s parity data: %d rows, %d strings, %d labels", name, len(pc.rows), len(pc.strs), len(pc.labels))
	}
	return pc
}

// tableNDJSON writes pc's rows as profile table rows of users prefix0,
// prefix1, ...: x0, x1, ... (null for NaN) and the first string column as
// category.
func (pc parityCase) tableNDJSON(b *strings.Builder, prefix string) {
	for i, r := range pc.rows {
		fmt.Fprintf(b, `{"user_id":"%s%d"`, prefix, i)
		for j, x := range r {
			if math.IsNaN(float64(x)) {
				fmt.Fprintf(b, `,"x%d":null`, j)
			} else {
				fmt.Fprintf(b, `,"x%d":%s`, j, strconv.FormatFloat(float64(x), 'g', -1, 64))
			}
		}
		cat, _ := json.Marshal(pc.strs[i][0])
		fmt.Fprintf(b, `,"category":%s}`+"\n", cat)
	}
}

// TestPredictStringInputMatchesOnnxruntime: a service whose model takes
// string inputs (categories) predicts over HTTP exactly what onnxruntime
// answers for the same values: every parity row (NaN holes, extreme
// values, unknown and empty categories), the category read from a table
// view's string column, from a stream's last value and from the request
// context, and two string inputs from two sources, in model.inputs order.
func TestPredictStringInputMatchesOnnxruntime(t *testing.T) {
	dir := parityDir(t)
	one, two := loadParityCase(t, dir, "str_onehot_gb"), loadParityCase(t, dir, "str_two_cats_lr")
	repo, err := features.Load(fstest.MapFS{"repo.yaml": {Data: []byte(stringRepo)}})
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(repo, DefaultConfig(), Options{RepoFS: os.DirFS(dir)})
	if err != nil {
		t.Fatalf("a service feeding a string input from a string feature: %v", err)
	}
	n.SetReady(true)
	c, err := client.New(serve(t, n), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var table strings.Builder
	one.tableNDJSON(&table, "u")
	two.tableNDJSON(&table, "t")
	var events []client.Record
	now := time.Now()
	for i := range one.rows {
		events = append(events, client.Record{"user_id": fmt.Sprintf("u%d", i), "category": one.strs[i][0], "amt": 1.0, "timestamp": now.UnixMilli()})
	}
	if got, err := c.UploadTable(ctx, "profile", client.NDJSON, []byte(table.String()), client.TableOptions{}); err != nil || got != len(one.rows)+len(two.rows) {
		t.Fatalf("upload: %d rows, %v", got, err)
	}
	if _, err := c.Ingest(ctx, "tx", events); err != nil {
		t.Fatal(err)
	}
	for _, sc := range []struct {
		svc, user string
		pc        parityCase
		rc        func(i int) map[string]any
	}{
		{"by_table", "u", one, nil},
		{"by_stream", "u", one, nil},
		{"by_request", "u", one, func(i int) map[string]any { return map[string]any{"category": one.strs[i][0], "amt": 1.5} }},
		{"two_cats", "t", two, func(i int) map[string]any { return map[string]any{"country": two.strs[i][1]} }},
	} {
		bad := 0
		for i := range sc.pc.rows {
			req := client.LookupRequest{Service: sc.svc, JoinKeys: map[string]any{"user_id": fmt.Sprintf("%s%d", sc.user, i)}}
			if sc.rc != nil {
				req.RequestContext = sc.rc(i)
			}
			f, err := c.Predict(ctx, req)
			if err != nil {
				t.Fatalf("%s row %d: %v", sc.svc, i, err)
			}
			p := f.Result.Prediction
			if p == nil {
				t.Fatalf("%s row %d: no prediction: %+v", sc.svc, i, f.Result)
			}
			ok := fmt.Sprint(p.Label) == sc.pc.labels[i] && len(p.Probabilities) == len(sc.pc.classes)
			for k, cl := range sc.pc.classes {
				got, w := p.Probabilities[cl], sc.pc.probs[i][k]
				ok = ok && math.Abs(got-w) <= 1e-6*max(1, math.Abs(w))
			}
			if !ok {
				if bad++; bad <= 5 {
					t.Errorf("%s row %d (%v, %q): label %v probabilities %v, onnxruntime %s %v", sc.svc, i, sc.pc.rows[i], sc.pc.strs[i], p.Label, p.Probabilities, sc.pc.labels[i], sc.pc.probs[i])
				}
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d rows differ from onnxruntime", sc.svc, bad, len(sc.pc.rows))
		}
		rcm := ""
		if sc.rc != nil {
			b, _ := json.Marshal(sc.rc(3))
			rcm = `, "request_context_map": ` + string(b)
		}
		body := []byte(`{"params": {"feature_service_name": "` + sc.svc + `", "join_key_map": {"user_id": "` + sc.user + `3"}` + rcm + `}}`)
		dst := make([]byte, 0, 4096)
		allocs := testing.AllocsPerRun(100, func() {
			out, aerr := n.Predict(dst[:0], body)
			if aerr != nil {
				t.Fatal(aerr)
			}
			dst = out
		})
		if allocs != 0 {
			t.Errorf("%s: predict with a string input allocates %.1f times per request", sc.svc, allocs)
		}
	}
}

// TestStringInputModelFeedCheck: a string input the service lists no
// string feature for is refused at load, naming the input and saying what
// to list; so is a string feature for a model that takes none.
func TestStringInputModelFeedCheck(t *testing.T) {
	dir := parityDir(t)
	for _, c := range []struct{ model, inputs, want string }{
		{"str_onehot_gb.onnx", "[profile.x0, profile.x1, profile.x2, profile.x3]", "model input category takes a string per row"},
		{"str_onehot_gb.onnx", "[profile.x0, profile.x1, profile.x2, profile.category]", "takes 4 numeric values per row but the service feeds it 3"},
		{"pipe_imputer_std_lr.onnx", "[profile.x0, profile.x1, profile.x2, profile.x3, profile.x0b, profile.x1b, profile.x2b, profile.x3b, profile.category]", "model.inputs lists 1 string features but the model takes 0 string inputs"},
	} {
		src := strings.Replace(stringRepo, "x3: float, category", "x3: float, x0b: float, x1b: float, x2b: float, x3b: float, category", 1)
		src = strings.Replace(src, "onnx: str_onehot_gb.onnx\n      inputs: [profile.x0, profile.x1, profile.x2, profile.x3, profile.category]",
			"onnx: "+c.model+"\n      inputs: "+c.inputs, 1)
		repo, err := features.Load(fstest.MapFS{"repo.yaml": {Data: []byte(src)}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = New(repo, DefaultConfig(), Options{RepoFS: os.DirFS(dir)})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s fed %s: %v, want an error containing %q", c.model, c.inputs, err, c.want)
		}
	}
}

// A string request field takes a string (or null: a missing category) and
// refuses anything else, naming the field; a number field refuses a string.
func TestStringRequestContextRefusesOtherTypes(t *testing.T) {
	dir := parityDir(t)
	repo, err := features.Load(fstest.MapFS{"repo.yaml": {Data: []byte(stringRepo)}})
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(repo, DefaultConfig(), Options{RepoFS: os.DirFS(dir)})
	if err != nil {
		t.Fatal(err)
	}
	for ctx, want := range map[string]string{
		`{"category": 3, "amt": 1}`:          "request_context_map.category must be a string, got 3",
		`{"category": true, "amt": 1}`:       "request_context_map.category must be a string, got true",
		`{"category": "gaming", "amt": "x"}`: "request_context_map.amt must be a number, got string",
		`{"category": null, "amt": 1}`:       "",
	} {
		body := `{"params": {"feature_service_name": "by_request", "join_key_map": {"user_id": "u1"}, "request_context_map": ` + ctx + `}}`
		_, aerr := n.Predict(nil, []byte(body))
		switch {
		case want == "" && aerr != nil:
			t.Errorf("%s: %v", ctx, aerr)
		case want != "" && (aerr == nil || aerr.Code != "INVALID_REQUEST_CONTEXT" || !strings.Contains(aerr.Message, want)):
			t.Errorf("%s: %v, want INVALID_REQUEST_CONTEXT %q", ctx, aerr, want)
		}
	}
}

// FuzzPredictStringInputs: any predict body for services whose model
// takes strings from a table, a stream and the request context gets an
// answer or a 4xx, never a panic or a model failure.
func FuzzPredictStringInputs(f *testing.F) {
	dir := parityDir(f)
	repo, err := features.Load(fstest.MapFS{"repo.yaml": {Data: []byte(stringRepo)}})
	if err != nil {
		f.Fatal(err)
	}
	n, err := New(repo, DefaultConfig(), Options{RepoFS: os.DirFS(dir)})
	if err != nil {
		f.Fatal(err)
	}
	if _, aerr := n.UploadTable("profile", NDJSON, []byte(`{"user_id":"u1","x0":1,"x1":null,"x2":-3e38,"x3":0,"category":"gaming"}`+"\n"), false); aerr != nil {
		f.Fatal(aerr)
	}
	f.Add([]byte(`{"params":{"feature_service_name":"by_request","join_key_map":{"user_id":"u1"},"request_context_map":{"category":"gaming","amt":2}}}`))
	f.Add([]byte(`{"params":{"feature_service_name":"by_request","join_key_map":{"user_id":"u2"},"request_context_map":{"category":"\u00e9\"","amt":null}}}`))
	f.Add([]byte(`{"params":{"feature_service_name":"two_cats","join_key_map":{"user_id":"u1"},"request_context_map":{"country":null}}}`))
	f.Add([]byte(`{"params":{"feature_service_name":"by_table","join_key_map":{"user_id":"u1"}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, err := n.Predict(nil, body); err != nil && (err.Status < 400 || err.Status >= 500) {
			t.Fatalf("answered with status %d: %v", err.Status, err)
		}
	})
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

// readParityRows reads a parity rows file: float32 values, "nan" missing.
func readParityRows(t *testing.T, path string) [][]float32 {
	t.Helper()
	var rows [][]float32
	for _, line := range readLines(t, path) {
		var r []float32
		for _, s := range strings.Split(line, ",") {
			x, err := strconv.ParseFloat(s, 32)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			r = append(r, float32(x))
		}
		rows = append(rows, r)
	}
	return rows
}
