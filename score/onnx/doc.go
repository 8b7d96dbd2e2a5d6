// Package onnx evaluates ONNX-ML models (scikit-learn, XGBoost and LightGBM
// exports) in pure Go, with onnxruntime's numerics.
//
// Load or Parse a .onnx file into a *Model, which implements score.Scorer.
// A Model is immutable and safe for concurrent use.
//
// # Supported operators
//
// Loading refuses, with an error wrapping ErrUnsupported that names the
// operator and its domain, any graph using another operator.
//
//	ai.onnx.ml  TreeEnsembleClassifier, TreeEnsembleRegressor (opsets 1, 3;
//	            *_as_tensor attributes), TreeEnsemble (opset 5, with
//	            BRANCH_MEMBER), LinearClassifier, LinearRegressor, Scaler,
//	            Normalizer, ZipMap, FeatureVectorizer
//	ai.onnx     Identity, Cast, Reshape, Flatten (axis 1), Concat (axis 1),
//	            Add, Sub, Mul, Div (per-row tensors of one width, or a
//	            per-row tensor and a constant broadcast along the row),
//	            Sigmoid, Softmax (last axis), ArgMax (axis 1)
//
// Every tensor in the graph must be [N, width] with a known width: one row
// per input row. Graph inputs are float or double tensors; with several
// inputs, a row's values are split across them in input order.
//
// # Semantics
//
// Results match onnxruntime 1.22 (the parity test in this package compares
// 48 models over 120,000 rows; labels identical, scores within 1e-6):
//
//   - Trees compare in the input's type: float32 thresholds for float input
//     (a value exactly on a threshold goes the BRANCH_LEQ true way), float64
//     for double input. Leaf weights accumulate in that type, in tree order.
//   - NaN fails every comparison except BRANCH_NEQ, unless the node's
//     nodes_missing_value_tracks_true is set, which sends it the true way.
//   - BRANCH_MEMBER (opset 5) is a chain of equality tests, as in
//     onnxruntime; TreeEnsemble's integer post_transform codes follow
//     onnxruntime's mapping (1 LOGISTIC, 2 SOFTMAX), which is what it runs.
//   - Aggregates SUM, AVERAGE, MIN, MAX; base values; post transforms NONE,
//     LOGISTIC, SOFTMAX, SOFTMAX_ZERO and PROBIT (onnxruntime's ErfInv
//     approximation, so PROBIT is within ~1e-3 of the true normal quantile);
//     the binary classifier conventions (weights for one class only expand
//     to two scores; a 0.5 threshold when all weights are positive).
//   - A single-target regressor applies only PROBIT, and only the first
//     weight of each leaf counts, as in onnxruntime.
//   - LinearClassifier/LinearRegressor scores are float32 fused
//     multiply-add chains, as onnxruntime's x86 GEMM kernels compute them.
//
// # Output mapping
//
// The first int64 or string output of width 1 is the label
// (Prediction.Label; LabelString and the class index in Label for string
// labels). The first float output is the class scores
// (Prediction.Probabilities, in Classes() order; ZipMap outputs count), or
// Prediction.Value when the model has no label and that output has width 1.
//
// # Cost and ownership
//
// Trees are compiled into one flat node array (false child next, true child
// by index; leaf weights contiguous); ensembles whose splits are all
// BRANCH_LEQ (or all BRANCH_LT) without missing tracks walk a branch-free
// layout, four rows at a time. Score walks blocks of up to 128 rows through
// one tree before the next. It allocates nothing per call in steady state:
// scratch buffers are pooled, and Probabilities reuse the backing array of
// the caller's out[i].Probabilities when it has room. Slices returned in
// Predictions belong to the caller; the Model keeps no reference to them
// or to rows.
//
// # Limits
//
// Parse allocates in proportion to the file: repeated fields are bounded by
// their bytes, tensors by the data they carry, tree copies by 4x the node
// count, tree depth by 1000, row width by 2^20. Files are capped at 1 GiB.
// External tensor data, sparse tensors, subgraphs and int inputs are not
// supported.
//
// # Parity data
//
// score/onnx/parity/generate.sh installs pinned scikit-learn, skl2onnx,
// onnxmltools, XGBoost, LightGBM and onnxruntime into the repository's
// .venv and writes models, rows and onnxruntime's outputs into
// testdata/generated (gitignored). TestParity skips without them, or fails
// when TALLY_REQUIRE_PARITY=1. parity/bench_ort.py times onnxruntime on the
// benchmark model for comparison with BenchmarkRF100*.
package onnx
