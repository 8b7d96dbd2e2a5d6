// Package client is the Go client of a tally node's HTTP API: every endpoint
// the node serves (README "API"), with typed requests and answers, typed
// errors, API keys and retries where they are safe. It imports nothing of
// tally's server side; tools (tally import, bench, the system tests) and,
// next, request forwarding between nodes use it.
//
// # Requests
//
//   - Writes: Ingest (Tecton-shaped JSON), IngestBulk (NDJSON, one record a
//     line), Import (a backfill), UploadTable (CSV or NDJSON, upsert or
//     replace). Each answers with what the node applied.
//   - Reads: GetFeatures, GetFeaturesBatch, Predict, FeatureServices, and
//     HistoricalFeatures, whose answer streams (an io.ReadCloser).
//   - Admin: Healthz, Readyz, Metrics.
//
// Features (Result, Metadata) is the one declaration of the get-features
// and predict answer, BatchFeatures of the batch answer: code that holds an
// answer's bytes (LookupJSON's, an in-process node's, a test's) reads them
// with DecodeFeatures and DecodeBatchFeatures, not a struct of its own.
//
// A Client is safe for concurrent use and reuses connections (HTTP
// keep-alive); create one per node and share it.
//
// # Errors
//
// When the node answers with an error status the call returns an *Error
// carrying the HTTP status and the node's error code and message
// ({"error": {"code", "message"}}; Code is empty when the body was not
// tally's, e.g. a proxy's). Match a code with errors.Is and the sentinels
// (errors.Is(err, client.ErrUnknownService)) or with IsCode. Any other error
// (a refused connection, a timeout, a cancelled context, an answer that does
// not decode) is returned wrapped, with the endpoint in its text; StatusOf
// returns 0 for it.
//
// # Retries
//
// A call is retried only when repeating it cannot change the node's state
// twice:
//
//   - Reads (GetFeatures, GetFeaturesBatch, Predict, FeatureServices,
//     Healthz, Metrics, and HistoricalFeatures before its answer starts)
//     are retried on any connection error and on 503, up to
//     Options.Retries more times, with exponential backoff from
//     Options.MinBackoff to Options.MaxBackoff (with jitter).
//   - Writes (Ingest, IngestBulk, Import, UploadTable) without a
//     WriteOptions.RequestID are retried only when the request was
//     certainly not sent: the connection could not be opened (refused,
//     unreachable, or the dial timed out). Such a write that may have
//     reached the node (a reset or timeout after sending, any status, 503
//     NOT_DURABLE included) is never retried: its outcome is unknown to
//     the client. (net/http itself also resends a request on a pooled
//     connection the server had already closed when nothing of it was
//     written.) A write with a RequestID is sent with it as the
//     Idempotency-Key, which the node applies once, and is retried as a
//     read is.
//   - Readyz is a probe and is never retried: it answers what it saw.
//
// Retries stop when the context is done; deadlines are the caller's, set on
// the context.
package client
