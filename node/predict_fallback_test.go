package node

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/tally-ml/tally/features"
)

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func mlflowNode(t *testing.T, onError string) *Node {
	yaml, err := os.ReadFile(filepath.Join("..", "features", "defaultrepo", "fraud.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	src := strings.Replace(string(yaml), "onnx: fraud_model.onnx\n      on_error: features",
		"mlflow: http://"+closedPort(t)+"\n      on_error: "+onError+"\n      timeout: 200ms", 1)
	repo, err := features.Load(fstest.MapFS{"fraud.yaml": {Data: []byte(src)}})
	if err != nil {
		t.Fatal(err)
	}
	n, err := New(repo, DefaultConfig(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPredictFallbackWhenTheEndpointIsDown: with the MLflow endpoint down,
// on_error: features returns the features with the score marked
// unavailable, on_error: fail answers 503; neither waits past the deadline.
func TestPredictFallbackWhenTheEndpointIsDown(t *testing.T) {
	body := lookupBody("u1", "m1", "FR", 12, 48.85, 2.35)
	n := mlflowNode(t, "features")
	start := time.Now()
	out, aerr := n.Predict(nil, body)
	if aerr != nil {
		t.Fatalf("on_error features: %v", aerr)
	}
	if !strings.Contains(string(out), `"prediction":null,"predictionStatus":"UNAVAILABLE"`) || !strings.Contains(string(out), `"features":[`) {
		t.Fatalf("on_error features: %s", out)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("predict took %s with a 200ms model timeout", took)
	}
	n = mlflowNode(t, "fail")
	if _, aerr := n.Predict(nil, body); aerr == nil || aerr.Status != 503 {
		t.Fatalf("on_error fail: %v", aerr)
	}
}
