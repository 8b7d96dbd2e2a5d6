// Command tally is the one binary of the tally feature serving node.
//
//	tally serve   serve a feature repo (default: the embedded fraud repo) on 127.0.0.1:8080
//	tally demo    serve it and drive it with a synthetic transaction stream, printing live vectors and scores
//	tally model   inspect an ONNX model, or score rows with it
//	tally bench   measure tally beside Redis, Feast and onnxruntime, and write a report
//	tally admin   operate on a data directory (wal repair)
//	tally version print the version
//
// The package holds flags and wiring only: what tally does lives in node/,
// windows/, wal/, features/, score/ and bench/.
package main
