package features

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestParseRegistryURI(t *testing.T) {
	for in, want := range map[string]RegistryModel{
		"models:/fraud@champion": {Name: "fraud", Alias: "champion"},
		"models:/fraud/7":        {Name: "fraud", Version: "7"},
	} {
		got, err := ParseRegistryURI(in)
		if err != nil || *got != want || got.String() != in {
			t.Errorf("%s: %+v, %v", in, got, err)
		}
	}
	for _, in := range []string{"models:/fraud", "models:/fraud/latest", "models:/fraud/Production", "models:/fraud/07",
		"models:/fraud/0", "models:/@a", "models:/f@", "models:/a/b@c", "models:/f/1/2", "runs:/abc/model", "models:/f/-1"} {
		if _, err := ParseRegistryURI(in); err == nil {
			t.Errorf("%s: accepted", in)
		}
	}
}

// TestRegistryModelInRepo: a models:/ URI under onnx: is read into Registry,
// poll is accepted with it (and refused without it), and both round-trip.
func TestRegistryModelInRepo(t *testing.T) {
	data, err := defaultFS.ReadFile("defaultrepo/fraud.yaml")
	if err != nil {
		t.Fatal(err)
	}
	y := strings.Replace(string(data), "onnx: fraud_model.onnx", "onnx: models:/fraud@champion\n      poll: 2s", 1)
	if y == string(data) {
		t.Fatal("the default repo no longer names fraud_model.onnx")
	}
	r, err := Load(fstest.MapFS{"f.yaml": {Data: []byte(y)}})
	if err != nil {
		t.Fatal(err)
	}
	m := r.Services[0].Model
	if m.Registry == nil || m.Registry.Alias != "champion" || m.Poll != 2000 {
		t.Fatalf("model %+v, registry %+v", m, m.Registry)
	}
	checkRoundTrip(t, r)
	bad := strings.Replace(string(data), "onnx: fraud_model.onnx", "onnx: fraud_model.onnx\n      poll: 2s", 1)
	if _, err := Load(fstest.MapFS{"f.yaml": {Data: []byte(bad)}}); err == nil || !strings.Contains(err.Error(), "poll") {
		t.Fatalf("poll beside a file: %v", err)
	}
	bad = strings.Replace(string(data), "onnx: fraud_model.onnx", "onnx: models:/fraud/latest", 1)
	if _, err := Load(fstest.MapFS{"f.yaml": {Data: []byte(bad)}}); err == nil || !strings.Contains(err.Error(), "use an alias") {
		t.Fatalf("models:/fraud/latest: %v", err)
	}
}

// go test -run '^$' -fuzz FuzzParseRegistryURI -fuzztime 10s ./features/
func FuzzParseRegistryURI(f *testing.F) {
	f.Add("models:/fraud@champion")
	f.Add("models:/fraud/7")
	f.Add("models:/a/b@c")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRegistryURI(s)
		if err != nil {
			return
		}
		if r.String() != s || (r.Alias == "") == (r.Version == "") {
			t.Fatalf("%q parsed as %+v", s, r)
		}
	})
}
