package node

import (
	"strings"
	"testing"

	"github.com/tally-ml/tally/features"
)

// TestRegistryModelNeedsItsRegistryAtStart: a models:/ model without
// MLFLOW_TRACKING_URI, or with a registry that cannot be reached, stops the
// node at start with an error saying what to set. The alias flow against a
// real MLflow server is systemtest's TestRegistryModelFollowsAlias.
func TestRegistryModelNeedsItsRegistryAtStart(t *testing.T) {
	repo, err := features.Default()
	if err != nil {
		t.Fatal(err)
	}
	m := repo.Services[0].Model
	m.ONNX, m.Registry, m.Poll = "models:/fraud@champion", &features.RegistryModel{Name: "fraud", Alias: "champion"}, 1000
	t.Setenv("MLFLOW_TRACKING_URI", "")
	if _, err := New(repo, DefaultConfig(), Options{}); err == nil || !strings.Contains(err.Error(), "set MLFLOW_TRACKING_URI") {
		t.Fatalf("without MLFLOW_TRACKING_URI: %v", err)
	}
	t.Setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
	if _, err := New(repo, DefaultConfig(), Options{}); err == nil || !strings.Contains(err.Error(), "resolve models:/fraud@champion") {
		t.Fatalf("with an unreachable registry: %v", err)
	}
}
