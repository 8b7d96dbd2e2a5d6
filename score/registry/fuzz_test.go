package registry

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// go test -run '^$' -fuzz FuzzPickONNX -fuzztime 10s ./score/registry/
// Whatever MLmodel a registry holds, the pick is an error or a clean path
// inside the model directory, never a panic or an escape.
func FuzzPickONNX(f *testing.F) {
	f.Add("flavors:\n  onnx:\n    data: model.onnx\n")
	f.Add("flavors:\n  onnx:\n    data: ../x.onnx\n")
	f.Add("flavors:\n  sklearn: {}\n")
	f.Add("flavors: [\n")
	f.Add("flavors:\n  onnx: 3\n")
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "model.onnx"), []byte("x"), 0o644); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, mlmodel string) {
		if err := os.WriteFile(filepath.Join(dir, "MLmodel"), []byte(mlmodel), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := pickONNX(context.Background(), fileStore(dir))
		if err != nil {
			return
		}
		if got == "" || path.IsAbs(got) || got != path.Clean(got) || strings.HasPrefix(got, "..") {
			t.Fatalf("MLmodel %q: picked %q", mlmodel, got)
		}
	})
}
