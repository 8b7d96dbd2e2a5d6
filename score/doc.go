// Package score turns feature vectors into model outputs.
//
// A Scorer is anything that scores rows: the pure-Go ONNX-ML evaluator in
// score/onnx (in process, no cgo), or the MLflow /invocations client in
// score/mlflow (remote). score/batch puts a micro-batcher in front of either,
// so that a feature service scores each request at once when idle and
// coalesces rows under load.
package score
