package main

import (
	"os"
	"strings"
	"testing"
)

// tally model predict refuses a model with string inputs up front, naming
// them and where such a model is fed, rather than failing in the scorer.
func TestModelPredictRefusesStringInputs(t *testing.T) {
	model := "../../score/onnx/testdata/generated/str_onehot_gb.onnx"
	if _, err := os.Stat(model); err != nil {
		if os.Getenv("TALLY_REQUIRE_PARITY") == "1" {
			t.Fatalf("parity model missing (make parity): %v", err)
		}
		t.Skip("parity models not generated (make parity)")
	}
	_, err := run(t, "model", "predict", model, "--input", "rows.csv")
	if err == nil || !strings.Contains(err.Error(), "string inputs [category]") || !strings.Contains(err.Error(), "model.inputs") {
		t.Fatalf("predict with a string-input model: %v", err)
	}
}
