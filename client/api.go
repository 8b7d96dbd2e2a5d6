package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// The node's endpoints (README "API").
const (
	PathIngest             = "/api/v1/ingest"
	PathIngestBulk         = "/api/v1/ingest/bulk"
	PathImport             = "/api/v1/import"
	PathTables             = "/api/v1/tables/" // + table name
	PathGetFeatures        = "/api/v1/feature-service/get-features"
	PathGetFeaturesBatch   = "/api/v1/feature-service/get-features-batch"
	PathPredict            = "/api/v1/feature-service/predict"
	PathHistoricalFeatures = "/api/v1/feature-service/historical-features"
	PathFeatureServices    = "/api/v1/feature-services"
	PathHealthz            = "/healthz"
	PathReadyz             = "/readyz"
	PathMetrics            = "/metrics"
)

// Format is a tabular body's format.
type Format string

// The formats of table uploads, spines and historical answers.
const (
	CSV     Format = "csv"
	NDJSON  Format = "ndjson"
	Parquet Format = "parquet" // spines and historical answers only
)

// contentType is f's media type.
func (f Format) contentType() string {
	switch f {
	case CSV:
		return "text/csv"
	case Parquet:
		return "application/vnd.apache.parquet"
	}
	return "application/x-ndjson"
}

// IngestResult is what the node did with an acknowledged write.
type IngestResult struct {
	Workspace string `json:"workspaceName"`
	// Accepted counts the records validated (and applied, unless DryRun).
	Accepted int `json:"accepted"`
	// TooLate counts (event, view) placements a view skipped because the
	// event was older than it can count in any window.
	TooLate int `json:"tooLate"`
	// Deferred counts, for an import, the events that became visible to
	// historical features after their own timestamp.
	Deferred int  `json:"deferred"`
	DryRun   bool `json:"dryRun"`
}

// Record is one event of a source: field name to value (a string, a number,
// a bool, or for the timestamp RFC 3339 text, epoch milliseconds or a
// time.Time).
type Record map[string]any

// WriteOptions modify an ingest, a bulk ingest or an import.
type WriteOptions struct {
	// DryRun validates the records and applies nothing.
	DryRun bool
	// RequestID, when set, is sent as the Idempotency-Key: a node (and
	// each replica group of a cluster) applies the write of one id once,
	// so the write is retried on connection errors and 503 like a read
	// (with the same id). Use a new id for every distinct write: the
	// node binds an id to the request it came with, so the same id with
	// another request is applied as the other write it is.
	RequestID string
}

// Ingest sends records of source as one Tecton-shaped ingest request:
// acknowledged means durable (per the node's fsync policy) and visible to
// the next lookup; refused (*Error, ErrInvalidRecords) means nothing of it
// was applied, but for ErrPartlyApplied (the retry of a request part of
// which was applied before). Retried only when the request could not be
// sent; with a RequestID (o, at most one: the JSON ingest has no dry run),
// also as a read is.
func (c *Client) Ingest(ctx context.Context, source string, records []Record, o ...WriteOptions) (IngestResult, error) {
	type wrapped struct {
		Record Record `json:"record"`
	}
	recs := make([]wrapped, len(records))
	for i, r := range records {
		recs[i].Record = r
	}
	body, err := json.Marshal(struct {
		Workspace string               `json:"workspace_name,omitempty"`
		Records   map[string][]wrapped `json:"records"`
	}{c.ws, map[string][]wrapped{source: recs}})
	if err != nil {
		return IngestResult{}, fmt.Errorf("tally %s: encode records: %w", PathIngest, err)
	}
	return c.IngestJSON(ctx, body, o...)
}

// IngestJSON sends body, a complete ingest request
// ({"workspace_name", "records": {source: [{"record": {...}}, ...]}}), as it
// is. Same contract as Ingest.
func (c *Client) IngestJSON(ctx context.Context, body []byte, o ...WriteOptions) (IngestResult, error) {
	r := request{method: "POST", path: PathIngest, ctype: "application/json", body: body, retry: retryUnsent}
	switch {
	case len(o) > 1:
		return IngestResult{}, fmt.Errorf("tally %s: give at most one WriteOptions", PathIngest)
	case len(o) == 1 && o[0].DryRun:
		return IngestResult{}, fmt.Errorf("tally %s: the JSON ingest has no dry run: validate with IngestBulk's", PathIngest)
	case len(o) == 1 && o[0].RequestID != "":
		r.idem, r.retry = o[0].RequestID, retryRead
	}
	var res IngestResult
	err := c.callJSON(ctx, r, &res)
	return res, err
}

// IngestBulk sends ndjson, one record of source a line: the high-rate
// path. All records valid, or none applied. Retried only when the request
// could not be sent.
func (c *Client) IngestBulk(ctx context.Context, source string, ndjson []byte, o WriteOptions) (IngestResult, error) {
	return c.writeNDJSON(ctx, PathIngestBulk, source, ndjson, o)
}

// Import backfills ndjson, historical events of source in the file's order,
// each visible to historical features at its own timestamp (README
// "Historical features"). All records valid, or none applied; send a large
// file in chunks, each its own all-or-nothing request. Retried only when
// the request could not be sent.
func (c *Client) Import(ctx context.Context, source string, ndjson []byte, o WriteOptions) (IngestResult, error) {
	return c.writeNDJSON(ctx, PathImport, source, ndjson, o)
}

func (c *Client) writeNDJSON(ctx context.Context, path, source string, body []byte, o WriteOptions) (IngestResult, error) {
	q := url.Values{"source": {source}}
	if o.DryRun {
		q.Set("dry_run", "true")
	}
	var res IngestResult
	r := request{method: "POST", path: path + "?" + q.Encode(), ctype: "application/x-ndjson", body: body, retry: retryUnsent}
	if o.RequestID != "" {
		r.idem, r.retry = o.RequestID, retryRead
	}
	err := c.callJSON(ctx, r, &res)
	return res, err
}

// TableOptions modify a table upload.
type TableOptions struct {
	// Replace replaces the whole table; otherwise rows are upserted by key.
	Replace bool
	// AllowEmpty lets a Replace with no rows empty the table; without it
	// the node refuses one (400 EMPTY_REPLACE), so that a truncated export
	// does not empty a table by mistake. It changes nothing of an upsert.
	AllowEmpty bool
	// AsOf, when set, is when the rows become valid for historical
	// features (a backfill); zero means when the node acknowledges them.
	AsOf time.Time
	// RequestID, when set, is sent as the Idempotency-Key, as for
	// WriteOptions.RequestID: the node (and each replica group of a
	// cluster) applies the upload of one id once, so it is retried on
	// connection errors and 503 like a read.
	RequestID string
}

// UploadTable uploads rows of table in format (CSV with a header, or
// NDJSON) and returns how many rows the node took. All rows valid, or none
// applied. Retried only when the request could not be sent, unless it has
// a RequestID.
func (c *Client) UploadTable(ctx context.Context, table string, format Format, body []byte, o TableOptions) (rows int, err error) {
	if format != CSV && format != NDJSON {
		return 0, fmt.Errorf("tally %s: table format %q: use client.CSV or client.NDJSON", PathTables+table, format)
	}
	q := url.Values{"format": {string(format)}}
	if o.Replace {
		q.Set("mode", "replace")
	}
	if o.AllowEmpty {
		q.Set("allow_empty", "true")
	}
	if !o.AsOf.IsZero() {
		q.Set("as_of", o.AsOf.UTC().Format(time.RFC3339Nano))
	}
	var res struct {
		Rows int `json:"rows"`
	}
	r := request{method: "POST", path: PathTables + url.PathEscape(table) + "?" + q.Encode(),
		ctype: format.contentType(), body: body, retry: retryUnsent}
	if o.RequestID != "" {
		r.idem, r.retry = o.RequestID, retryRead
	}
	err = c.callJSON(ctx, r, &res)
	return res.Rows, err
}

// LookupRequest asks for one feature vector of a service.
type LookupRequest struct {
	Service string
	// JoinKeys holds each of the service's join keys: a string or an integer.
	JoinKeys map[string]any
	// RequestContext holds the service's request-time inputs, if any.
	RequestContext map[string]any
	// AsOf reads at this time (within the source's lateness); zero reads at
	// the node's now.
	AsOf time.Time
	// Metadata, when set, chooses what the answer's metadata holds; nil
	// leaves the node's defaults (names, data types and statuses).
	Metadata *MetadataOptions
	// ReadLevel is a cluster's read level: "" (default), "linearizable"
	// or "local" (README "Cluster"). A single node ignores it.
	ReadLevel string
}

// MetadataOptions choose the metadata of a lookup's answer.
type MetadataOptions struct {
	IncludeNames, IncludeDataTypes, IncludeServingStatus, IncludeEffectiveTimes bool
}

// Row is one row of a batch lookup.
type Row struct {
	JoinKeys       map[string]any
	RequestContext map[string]any
}

// BatchRequest asks for many feature vectors of one service at one time.
type BatchRequest struct {
	Service  string
	Rows     []Row
	AsOf     time.Time
	Metadata *MetadataOptions
}

// Features is the answer of GetFeatures and Predict.
type Features struct {
	Result   Result   `json:"result"`
	Metadata Metadata `json:"metadata"`
}

// Result holds a vector's values and, for Predict, the model's score.
type Result struct {
	// Features are the values in Metadata.Features order: float64, string,
	// bool, []any, or nil when a feature is MISSING_DATA without a value.
	Features []any `json:"features"`
	// Prediction is the model's score (Predict only); nil when
	// PredictionStatus is "UNAVAILABLE" (PredictionError says why).
	Prediction       *Prediction `json:"prediction,omitempty"`
	PredictionStatus string      `json:"predictionStatus,omitempty"`
	PredictionError  string      `json:"predictionError,omitempty"`
}

// Prediction is a model's output: a classifier's Label and Probabilities
// (by class name), or a regressor's Value.
type Prediction struct {
	Label         any                `json:"label,omitempty"`
	Probabilities map[string]float64 `json:"probabilities,omitempty"`
	Value         *float64           `json:"value,omitempty"`
}

// Metadata describes an answer's features.
type Metadata struct {
	Features   []FeatureMetadata `json:"features"`
	ServerTime string            `json:"serverTime"`
}

// FeatureMetadata describes one feature; fields the request's
// MetadataOptions left out are empty.
type FeatureMetadata struct {
	Name          string          `json:"name"`
	DataType      json.RawMessage `json:"dataType,omitempty"`
	Status        string          `json:"status,omitempty"` // PRESENT or MISSING_DATA
	EffectiveTime string          `json:"effectiveTime,omitempty"`
}

// Get returns the value of the feature named name (which needs the names
// in the metadata, the default).
func (f *Features) Get(name string) (v any, ok bool) {
	for i, m := range f.Metadata.Features {
		if m.Name == name && i < len(f.Result.Features) {
			return f.Result.Features[i], true
		}
	}
	return nil, false
}

// Map returns every feature's value by name.
func (f *Features) Map() map[string]any {
	out := make(map[string]any, len(f.Metadata.Features))
	for i, m := range f.Metadata.Features {
		if i < len(f.Result.Features) {
			out[m.Name] = f.Result.Features[i]
		}
	}
	return out
}

// BatchFeatures is the answer of GetFeaturesBatch: one result per request
// row, in order.
type BatchFeatures struct {
	Result   []BatchRow `json:"result"`
	Metadata Metadata   `json:"metadata"`
}

// BatchRow is one row's values and statuses (in Metadata.Features order).
type BatchRow struct {
	Features []any    `json:"features"`
	Statuses []string `json:"statuses"`
}

// GetFeatures reads one feature vector. A read: retried on connection
// errors and 503.
func (c *Client) GetFeatures(ctx context.Context, r LookupRequest) (*Features, error) {
	out := &Features{}
	return out, c.lookup(ctx, PathGetFeatures, withLevel(c.params(r.Service, r.AsOf, r.Metadata, &r.JoinKeys, &r.RequestContext, nil), r.ReadLevel), out)
}

// Predict reads one feature vector and the service model's score of it
// (400 NO_MODEL when the service has none). A read: retried on connection
// errors and 503 (a model that fails with on_error: fail answers 503).
func (c *Client) Predict(ctx context.Context, r LookupRequest) (*Features, error) {
	out := &Features{}
	return out, c.lookup(ctx, PathPredict, withLevel(c.params(r.Service, r.AsOf, r.Metadata, &r.JoinKeys, &r.RequestContext, nil), r.ReadLevel), out)
}

// GetFeaturesBatch reads one vector per row, all at one read time (at most
// the node's limits.max_batch rows). A read: retried on connection errors
// and 503.
func (c *Client) GetFeaturesBatch(ctx context.Context, r BatchRequest) (*BatchFeatures, error) {
	type row struct {
		JoinKeys       map[string]any `json:"join_key_map"`
		RequestContext map[string]any `json:"request_context_map,omitempty"`
	}
	rows := make([]row, len(r.Rows))
	for i, x := range r.Rows {
		rows[i] = row{x.JoinKeys, x.RequestContext}
	}
	out := &BatchFeatures{}
	return out, c.lookup(ctx, PathGetFeaturesBatch, c.params(r.Service, r.AsOf, r.Metadata, nil, nil, rows), out)
}

// LookupJSON posts body, a complete request, to a lookup endpoint
// (PathGetFeatures, PathGetFeaturesBatch or PathPredict) and returns the
// answer's bytes as the node wrote them. A read: retried on connection
// errors and 503.
func (c *Client) LookupJSON(ctx context.Context, path string, body []byte) ([]byte, error) {
	return c.call(ctx, request{method: "POST", path: path, ctype: "application/json", body: body, retry: retryRead})
}

func (c *Client) lookup(ctx context.Context, path string, params map[string]any, out any) error {
	body, err := json.Marshal(map[string]any{"params": params})
	if err != nil {
		return fmt.Errorf("tally %s: encode the request: %w", path, err)
	}
	return c.callJSON(ctx, request{method: "POST", path: path, ctype: "application/json", body: body, retry: retryRead}, out)
}

// withLevel adds a cluster read level to a lookup's params.
func withLevel(p map[string]any, level string) map[string]any {
	if level != "" {
		p["read_level"] = level
	}
	return p
}

// params is a lookup's "params" object.
func (c *Client) params(service string, asOf time.Time, m *MetadataOptions, keys, rc *map[string]any, rows any) map[string]any {
	p := map[string]any{"feature_service_name": service}
	if keys != nil {
		jk := *keys
		if jk == nil {
			jk = map[string]any{}
		}
		p["join_key_map"] = jk
	}
	if rc != nil && *rc != nil {
		p["request_context_map"] = *rc
	}
	if rows != nil {
		p["request_data"] = rows
	}
	if !asOf.IsZero() {
		p["as_of"] = asOf.UnixMilli()
	}
	if m != nil {
		p["metadata_options"] = map[string]bool{
			"include_names": m.IncludeNames, "include_data_types": m.IncludeDataTypes,
			"include_serving_status": m.IncludeServingStatus, "include_effective_times": m.IncludeEffectiveTimes,
		}
	}
	if c.ws != "" {
		p["workspace_name"] = c.ws
	}
	return p
}

// FeatureService describes a service the node serves.
type FeatureService struct {
	Name           string            `json:"name"`
	JoinKeys       []string          `json:"joinKeys"`
	RequestContext []string          `json:"requestContext"`
	Features       []FeatureMetadata `json:"features"` // name and data type
	Model          *ModelStatus      `json:"model"`    // nil without a model
}

// ModelStatus is a feature service's model: its source (an onnx: file, a
// models:/ URI or an mlflow: endpoint), the registry version serving, and
// the last version or file that failed to load (the running one kept
// serving).
type ModelStatus struct {
	Source         string `json:"source"`
	Version        string `json:"version"`
	Location       string `json:"location"`
	ServingSince   string `json:"servingSince"`
	Reloads        int64  `json:"reloads"`
	ReloadFailures int64  `json:"reloadFailures"`
	FailedVersion  string `json:"failedVersion"`
	LastError      string `json:"lastError"`
}

// FeatureServices lists the node's feature services. A read: retried on
// connection errors and 503.
func (c *Client) FeatureServices(ctx context.Context) ([]FeatureService, error) {
	var out struct {
		FeatureServices []FeatureService `json:"featureServices"`
	}
	err := c.callJSON(ctx, request{method: "GET", path: PathFeatureServices, retry: retryRead}, &out)
	return out.FeatureServices, err
}

// HistoricalRequest asks for the historical features of a spine.
type HistoricalRequest struct {
	Service string
	// Spine holds the rows to answer: the service's join keys, a timestamp
	// column and its request-context columns; other columns pass through.
	Spine       []byte
	SpineFormat Format // CSV, NDJSON or Parquet; default NDJSON
	// Format is the answer's; default NDJSON.
	Format Format
	// TimestampKey names the spine's time column; default "timestamp".
	TimestampKey string
	// AllowPartial answers even when retention removed the archive's start
	// (windows reaching before it miss events); else 409
	// ErrArchiveIncomplete.
	AllowPartial bool
}

// HistoricalFeatures asks for the point-in-time features of every spine row
// and returns the answer as it streams: the spine's columns then the
// features, rows in time order, in r.Format. The caller reads it to the end
// and closes it. A refusal comes before anything streams, as an *Error
// (ErrInvalidSpine, ErrUnknownService, ErrArchiveIncomplete, ErrExportBusy);
// a join that fails while streaming cuts the answer short, so reading it
// ends in an error (io.ErrUnexpectedEOF), never in a clean EOF after a
// partial answer. Retried on connection errors and 503 until the answer
// starts, never after.
func (c *Client) HistoricalFeatures(ctx context.Context, r HistoricalRequest) (io.ReadCloser, error) {
	if r.SpineFormat == "" {
		r.SpineFormat = NDJSON
	}
	if r.Format == "" {
		r.Format = NDJSON
	}
	q := url.Values{"service": {r.Service}, "format": {string(r.Format)}}
	if r.TimestampKey != "" {
		q.Set("timestamp_key", r.TimestampKey)
	}
	if r.AllowPartial {
		q.Set("allow_partial", "true")
	}
	resp, err := c.send(ctx, request{method: "POST", path: PathHistoricalFeatures + "?" + q.Encode(),
		ctype: r.SpineFormat.contentType(), body: r.Spine, retry: retryRead})
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Healthz returns nil when the process answers (it may still be
// recovering; see Readyz). Retried on connection errors and 503.
func (c *Client) Healthz(ctx context.Context) error {
	_, err := c.call(ctx, request{method: "GET", path: PathHealthz, retry: retryRead})
	return err
}

// Readyz reports whether the node has recovered and serves: true on 200,
// false on 503 (recovering or stopping). An error means it did not answer
// (or answered something else). Never retried: it is a probe.
func (c *Client) Readyz(ctx context.Context) (bool, error) {
	_, err := c.call(ctx, request{method: "GET", path: PathReadyz, retry: retryNever})
	if err == nil {
		return true, nil
	}
	if StatusOf(err) == http.StatusServiceUnavailable {
		return false, nil
	}
	return false, err
}

// Metrics returns the node's metrics in Prometheus text format (scope
// admin). Retried on connection errors and 503.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	return c.call(ctx, request{method: "GET", path: PathMetrics, retry: retryRead})
}
