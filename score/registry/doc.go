// Package registry fetches ONNX models from an MLflow Model Registry over
// MLflow's REST API, so a feature service can serve models:/name@alias or
// models:/name/7 in process.
//
// New(trackingURI, token) returns a *Client (FromEnv reads
// MLFLOW_TRACKING_URI and MLFLOW_TRACKING_TOKEN). Resolve turns a
// registered model's alias or version into a Version through
//
//	GET {uri}/api/2.0/mlflow/registered-models/alias?name=N&alias=A
//	GET {uri}/api/2.0/mlflow/model-versions/get?name=N&version=V
//
// and Fetch downloads that version's ONNX bytes from the location
//
//	GET {uri}/api/2.0/mlflow/model-versions/get-download-uri?name=N&version=V
//
// answers: an mlflow-artifacts: URI (the tracking server proxies the
// artifact store: `mlflow server`'s default) is listed and read through
// /api/2.0/mlflow-artifacts/artifacts; a file: URI or an absolute path (a
// local artifact root without the proxy) is read from this machine's file
// system. Other schemes (s3:, dbfs:, ...) are refused with an error naming
// them: serve the artifacts through the tracking server.
//
// # Accepted layouts
//
// In the version's artifact directory, in this order:
//
//  1. an MLmodel file with an onnx flavor: the file its `data:` names
//     (mlflow.onnx.log_model writes model.onnx);
//  2. otherwise exactly one *.onnx file at the top of the directory (a
//     model logged with mlflow.log_artifact and registered from its
//     directory);
//  3. the version's source itself ending in .onnx (a registered file).
//
// Anything else (no .onnx file, several, an MLmodel without an onnx flavor)
// is an error that names what was found. Fetch does not parse the bytes:
// the caller loads them with its model loader and keeps the running model
// when they fail.
//
// Every request carries `Authorization: Bearer {token}` when a token is set,
// and is bounded by the ctx deadline; answers are capped at MaxModelBytes.
// Errors wrap ErrNotFound when the registry says the model, alias or
// version does not exist, and Fetch's wrap ErrUnusable when the version's
// artifacts are missing or hold no ONNX file it can pick: the version's
// fault, not the connection's. Resolve's error for a version in status
// FAILED_REGISTRATION wraps ErrFailedRegistration (and ErrUnusable): it
// will never be READY; PENDING_REGISTRATION is an error that may pass.
package registry
