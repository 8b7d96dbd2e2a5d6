package registry

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestPickONNX: the accepted layouts of a version's artifact directory, and
// the errors for the others, on a local artifact root.
func TestPickONNX(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		files map[string]string
		want  string // file picked, or a piece of the error
		ok    bool
	}{
		{"onnx flavor", map[string]string{"MLmodel": "flavors:\n  onnx:\n    data: model.onnx\n    onnx_version: 1.18.0\n  python_function:\n    loader_module: mlflow.onnx\n", "model.onnx": "x", "other.onnx": "y"}, "model.onnx", true},
		{"bare onnx file", map[string]string{"fraud.onnx": "x", "README.txt": "hi"}, "fraud.onnx", true},
		{"sklearn flavor beside a logged onnx", map[string]string{"MLmodel": "flavors:\n  sklearn: {}\n", "model.pkl": "p", "model.onnx": "x"}, "model.onnx", true},
		{"sklearn only", map[string]string{"MLmodel": "flavors:\n  python_function: {}\n  sklearn: {}\n", "model.pkl": "p"}, "flavors [python_function sklearn]", false},
		{"nothing", map[string]string{"a.txt": "x"}, "no .onnx file", false},
		{"two onnx files", map[string]string{"a.onnx": "x", "b.onnx": "y"}, "several .onnx files", false},
		{"data escapes", map[string]string{"MLmodel": "flavors:\n  onnx:\n    data: ../../etc/passwd\n"}, "want a file in the model directory", false},
		{"bad MLmodel", map[string]string{"MLmodel": "flavors: [\n"}, "read MLmodel", false},
	} {
		dir := writeFiles(t, c.files)
		got, err := pickONNX(ctx, fileStore(dir))
		if c.ok && (err != nil || got != c.want) {
			t.Errorf("%s: picked %q, %v; want %q", c.name, got, err, c.want)
		}
		if !c.ok && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: picked %q, error %v; want an error with %q", c.name, got, err, c.want)
		}
	}
}

func TestStoreSchemes(t *testing.T) {
	c, err := New("http://127.0.0.1:5000/", "")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := c.store("mlflow-artifacts:/1/models/m-1/artifacts"); err != nil || st.root() != "1/models/m-1/artifacts" {
		t.Fatalf("mlflow-artifacts: %v %v", st, err)
	}
	if st, err := c.store("mlflow-artifacts://host:5000/1/abc/artifacts/model"); err != nil || st.root() != "1/abc/artifacts/model" {
		t.Fatalf("mlflow-artifacts with a host: %v %v", st, err)
	}
	if st, err := c.store("file:///srv/mlruns/1/abc/artifacts/model"); err != nil || st.root() != "/srv/mlruns/1/abc/artifacts/model" {
		t.Fatalf("file: %v %v", st, err)
	}
	if _, err := c.store("s3://bucket/models/1"); err == nil || !strings.Contains(err.Error(), "s3:") {
		t.Fatalf("s3: %v", err)
	}
	for _, bad := range []string{"", "localhost:5000", "ftp://x", "databricks"} {
		if _, err := New(bad, ""); err == nil || !strings.Contains(err.Error(), "MLFLOW_TRACKING_URI") {
			t.Errorf("tracking URI %q: %v", bad, err)
		}
	}
}
