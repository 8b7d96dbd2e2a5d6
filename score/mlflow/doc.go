// Package mlflow scores rows through a remote MLflow model: the /invocations
// endpoint of `mlflow models serve`, an MLflow Docker image, or a Databricks
// model serving endpoint.
//
// New(Options) returns a *Client, which implements score.Scorer and is safe
// for concurrent use. Score sends its n rows as one request; put a
// score/batch Batcher in front of it to coalesce concurrent callers.
//
// # Request
//
//	POST {Endpoint}/invocations
//	Content-Type: application/json
//	Authorization: Bearer {Token}          (when Token is set)
//
//	{"dataframe_split": {"columns": [Options.Columns...], "data": [[row 0], ...]}}
//
// Rows are sent in Options.Columns order; the server matches columns by name
// against the model's signature. NaN is sent as null (missing). A float32 is
// written as its exact decimal value (0.1f is 0.10000000149011612), so the
// model sees exactly the value the node computed. Infinities have no JSON
// form: Score refuses such rows with score.ErrBadInput, sending nothing.
//
// # Response
//
// The body is {"predictions": [...]} (MLflow 2 and 3) or a bare list
// (MLflow 1.x), with one entry per row; anything else wraps
// score.ErrUnavailable. Each entry maps to a score.Prediction:
//
//   - a number: Value; with Options.Classes set it is also the label
//     (HasLabel, Label) when integral, as sklearn's predict returns.
//   - a string: a label: LabelString, and Label is its class (integer
//     classes) or its index in Classes; -1 without Classes. A label not in
//     Classes is an error.
//   - a list of numbers: Probabilities in Classes order (its length must be
//     len(Classes) when set), and the most probable class as the label, as
//     from a model logged with pyfunc_predict_fn="predict_proba". A
//     one-element list without Classes is a Value ([[v]] regressors).
//   - an object: "label"/"predicted_label"/"class" (a label),
//     "probabilities"/"probability"/"proba"/"predict_proba"/"scores" (a list),
//     "value"/"score" (a Value), "prediction" (as a bare number or string),
//     or one number per class named as in Classes (a DataFrame of class
//     probabilities); an object with one field is that field's value;
//     without Classes, an object of several numbers is the outputs of a
//     multi-output regressor: Probabilities in field order, no label.
//
// A DataFrame answered column-wise is read row by row: pandas' split orient
// ({"predictions": {"columns": [...], "data": [[row 0], ...]}}) or one list
// per column ({"predictions": {"label": [...], "fraud": [...]}}); one
// column is a bare entry per row, several an object per row keyed by
// column name (the records orient, a list of such objects, needs nothing
// special). Probabilities reuse the backing array of the caller's
// out[i].Probabilities when it has room; the Client keeps no reference to
// rows or out.
//
// # Errors, deadlines and retries
//
// Every failure wraps one of score's sentinels:
//
//   - score.ErrBadInput: rows or out too short for n, an infinite value, or
//     the server answered 400, 413 or 422 (the model refused the rows: wrong
//     columns, types, schema). The error carries MLflow's message, shortened
//     in the middle (MLflow puts the cause last). Not retried.
//   - score.ErrUnavailable: the endpoint could not be reached, did not answer
//     by the deadline, answered another status (401, 404, 500, ...), or
//     answered something that is not one prediction per row; and
//     ErrCircuitOpen while the breaker is open.
//
// The ctx deadline bounds the whole call, retries included (Options.Timeout
// when ctx has none). 429, 503 and 504 and connection errors are retried up
// to Options.MaxRetries times, after a jittered, doubling backoff (raised to
// the Retry-After header when given); a retry that could not start before
// the deadline is not made, and the call fails at once with the last error.
// A timed-out request is not retried: its deadline has passed. A ctx
// cancelled without a deadline is seen between attempts, not during one.
//
// # Circuit breaker
//
// Options.BreakerFailures consecutive failed calls (ErrUnavailable; a 400 is
// an answer, and counts as success) open the breaker: calls then fail at
// once with ErrCircuitOpen, sending nothing. After Options.BreakerCooldown
// one call goes through as a probe while the others still fail fast; its
// success closes the breaker, its failure opens it for another cool-down.
//
// # Fallback
//
// The Client never substitutes a default prediction. What a request gets
// when the model is unavailable (a default score, a cached one, an error to
// the client, a rule) is the caller's policy: the node's, per feature
// service.
//
// # Cost
//
// A call in steady state allocates nothing: request bodies, fasthttp
// requests and responses and JSON parsers are pooled. Failures allocate
// their error. Idle keep-alive connections are closed after
// Options.MaxIdleConn, below uvicorn's 5 s keep-alive; a connection the
// server closed anyway is resent to once on a new one.
//
// # Tests
//
// The unit tests use a loopback stand-in server for failure modes only.
// TestRealMLflow (mlflow_real_test.go) trains a scikit-learn pipeline with
// testdata/train.py, logs it to a SQLite tracking store in a temporary
// directory, serves it with `mlflow models serve --env-manager local` from
// the repository's .venv, and checks predictions from a Batcher over this
// Client, from 16 goroutines, against what Python recorded, counting the
// HTTP requests behind a proxy. testdata/setup.sh installs the pinned
// MLflow (testdata/requirements.txt) after score/onnx/parity/setup.sh. The
// test skips without it, or fails when TALLY_REQUIRE_MLFLOW=1.
package mlflow
