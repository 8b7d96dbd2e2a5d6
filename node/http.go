package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"github.com/tally-ml/tally/store"
	"github.com/tally-ml/tally/tabular"
)

// Server is the node's HTTP API on fasthttp.
type Server struct {
	n      *Node
	srv    *fasthttp.Server
	extras map[string]extraRoute
	// lookupMetrics are get-features' metrics, found once, not per request.
	lookupMetrics routeMetrics
	// stopMu guards ln and stopped: Shutdown closes the listener Serve
	// hands fasthttp itself, because fasthttp's Shutdown only closes the
	// listeners its Serve has registered, and one that runs before then
	// returns at once, leaving that Serve to start afterwards and serve on.
	stopMu  sync.Mutex
	ln      *sweepListener
	stopped bool
}

// extraRoute is an endpoint served here but built by another package.
type extraRoute struct {
	route string
	need  Scope
	h     fasthttp.RequestHandler
	get   bool // GET, else POST
}

// Handle serves POST path with h for clients holding scope need; route names
// it in the metrics (one of the node's metric routes, else "other"). Call
// before Serve.
func (s *Server) Handle(path, route string, need Scope, h fasthttp.RequestHandler) {
	if s.extras == nil {
		s.extras = map[string]extraRoute{}
	}
	if !slices.Contains(metricRoutes, route) {
		route = "other"
	}
	s.extras[path] = extraRoute{route: route, need: need, h: h}
}

// HandleGet is Handle for a GET endpoint.
func (s *Server) HandleGet(path, route string, need Scope, h fasthttp.RequestHandler) {
	s.Handle(path, route, need, h)
	x := s.extras[path]
	x.get = true
	s.extras[path] = x
}

// NewServer returns the HTTP API of n, with the timeouts and size limits of
// its config (they are what stops slow or oversized clients).
func NewServer(n *Node) *Server {
	s := &Server{n: n}
	if m := n.metrics; m != nil {
		s.lookupMetrics = routeMetrics{m.requests["get-features"], m.errors["get-features"], m.durations["get-features"]}
	}
	l := n.cfg.Limits
	s.srv = &fasthttp.Server{
		Handler: s.handle,
		Name:    "tally",
		// The timeouts are the connections' own (sweepListener), not
		// fasthttp's: ReadTimeout, WriteTimeout and IdleTimeout stay 0.
		// So are limits.max_conns and max_conns_per_ip (connLimits):
		// Concurrency stays at fasthttp's default, 262,144 connections,
		// and MaxConnsPerIP at 0.
		MaxRequestBodySize:    l.MaxBodyBytes,
		ReadBufferSize:        l.MaxHeaderBytes,
		MaxRequestsPerConn:    l.MaxRequestsConn,
		NoDefaultServerHeader: true,
		CloseOnShutdown:       true,
		// Connection-level errors (oversized bodies, timeouts) are the
		// client's and are answered and counted, not logged.
		Logger: quietLogger{},
		ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) {
			status, code := connErrorClass(err)
			msg := err.Error()
			if code == "BODY_TOO_LARGE" {
				msg = fmt.Sprintf("the body is over limits.max_body_bytes (%d bytes); nothing of it was read: send it in smaller requests", l.MaxBodyBytes)
			}
			if code != "TIMEOUT" {
				// The request is unread, and fasthttp closes the
				// connection after this answer: read the rest first, so
				// that the client gets the answer and not a reset.
				drainOnClose(ctx.Conn())
			}
			writeError(ctx, &APIError{Status: status, Code: code, Message: msg})
		},
	}
	s.registerPprof()
	return s
}

// connErrorClass is the status and code of err, an error fasthttp met
// reading a request (its ErrorHandler's): 413 BODY_TOO_LARGE, 431
// HEADERS_TOO_LARGE (the headers outgrew the read buffer,
// limits.max_header_bytes), 408 TIMEOUT (the connection's read deadline,
// limits.read_timeout), else 400 BAD_REQUEST. It goes by fasthttp's error
// values and types (ErrBodyTooLarge, *ErrSmallBuffer, an error whose
// Timeout() is true, as net.Error's and fasthttp.ErrTimeout's are), and by
// their text only when none is found, in case a fasthttp release stops
// wrapping one with %w: its wording can change with any release.
func connErrorClass(err error) (status int, code string) {
	var small *fasthttp.ErrSmallBuffer
	var timeout interface{ Timeout() bool }
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return fasthttp.StatusRequestEntityTooLarge, "BODY_TOO_LARGE"
	case errors.As(err, &small), errors.Is(err, fasthttp.ErrSmallReadBuffer):
		return fasthttp.StatusRequestHeaderFieldsTooLarge, "HEADERS_TOO_LARGE"
	case errors.As(err, &timeout) && timeout.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		return fasthttp.StatusRequestTimeout, "TIMEOUT"
	}
	switch msg := err.Error(); {
	case strings.Contains(msg, "small read buffer"):
		return fasthttp.StatusRequestHeaderFieldsTooLarge, "HEADERS_TOO_LARGE"
	case strings.Contains(msg, "timeout"):
		return fasthttp.StatusRequestTimeout, "TIMEOUT"
	}
	return fasthttp.StatusBadRequest, "BAD_REQUEST"
}

// Serve accepts connections on ln until Shutdown; running out of file
// descriptors pauses accepting, it does not stop it. The connections keep
// the config's timeouts (limits.read_timeout, write_timeout, idle_timeout)
// by themselves, to within deadlineTick (sweepListener).
//
// Serve called after Shutdown closes ln and returns nil at once.
func (s *Server) Serve(ln net.Listener) error {
	s.stopMu.Lock()
	if s.stopped {
		s.stopMu.Unlock()
		ln.Close()
		return nil
	}
	l := s.n.cfg.Limits
	s.ln = newSweepListener(retryListener{ln}, connTimeouts{read: l.ReadTimeout, write: l.WriteTimeout, idle: l.IdleTimeout},
		connLimits{total: s.n.maxConns, perIP: l.MaxConnsPerIP})
	sl := s.ln
	s.stopMu.Unlock()
	return s.srv.Serve(sl)
}

// Shutdown stops accepting, lets in-flight requests finish, and closes idle
// connections. It ends Serve wherever Serve is, even not yet accepting (Serve
// started in a goroutine and stopped at once): Serve then returns nil.
func (s *Server) Shutdown() error {
	s.stopMu.Lock()
	s.stopped = true
	ln := s.ln
	s.stopMu.Unlock()
	if ln != nil {
		ln.Close() // fasthttp's Shutdown closes it again, if its Serve registered it
	}
	return s.srv.Shutdown()
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	start := ctx.Time() // fasthttp's, read as the request arrived: one clock read less
	// A lookup's request line names its path as it is: no URI to parse
	// (that was a tenth of the handler's work beside the lookup's).
	path := ctx.Request.Header.RequestURI()
	if !bytes.Equal(path, pathGetFeatures) && !bytes.Equal(path, pathPredict) && !bytes.Equal(path, pathGetFeaturesBatch) {
		path = ctx.Path()
	}
	route := "other"
	switch {
	case bytes.Equal(path, pathGetFeatures):
		route = "get-features"
		if s.allow(ctx, ScopeRead, true) {
			s.lookup(ctx, s.n.GetFeatures)
		}
	case bytes.Equal(path, pathGetFeaturesBatch):
		route = "get-features-batch"
		if s.allow(ctx, ScopeRead, true) {
			s.lookup(ctx, s.n.GetFeaturesBatch)
		}
	case bytes.Equal(path, pathPredict):
		route = "predict"
		if s.allow(ctx, ScopeRead, true) {
			s.lookup(ctx, s.n.Predict)
		}
	case bytes.Equal(path, pathIngest):
		route = "ingest"
		if s.allow(ctx, ScopeIngest, true) {
			if aerr := checkQuery(ctx.QueryArgs(), "ingest"); aerr != nil {
				writeError(ctx, aerr)
				break
			}
			res, err := s.n.IngestJSONAs(BoundRequestID(requestID(ctx), route, "", ctx.PostBody()), ctx.PostBody())
			s.ingestReply(ctx, res, err)
		}
	case bytes.Equal(path, pathIngestBulk):
		route = "ingest-bulk"
		if s.allow(ctx, ScopeIngest, true) {
			args := ctx.QueryArgs()
			if aerr := checkQuery(args, "bulk ingest", "source", "dry_run"); aerr != nil {
				writeError(ctx, aerr)
				break
			}
			src := string(args.Peek("source"))
			if src == "" {
				writeError(ctx, badRequest("INVALID_REQUEST", "bulk ingest needs ?source=<source name>"))
				break
			}
			dry, aerr := QueryBool(args, "dry_run")
			if aerr != nil {
				writeError(ctx, aerr)
				break
			}
			res, err := s.n.IngestNDJSONAs(BoundRequestID(requestID(ctx), route, src, ctx.PostBody()), src, ctx.PostBody(), dry)
			s.ingestReply(ctx, res, err)
		}
	case bytes.Equal(path, pathImport):
		route = "import"
		if s.allow(ctx, ScopeIngest, true) {
			args := ctx.QueryArgs()
			if aerr := checkQuery(args, "import", "source", "dry_run"); aerr != nil {
				writeError(ctx, aerr)
				break
			}
			src := string(args.Peek("source"))
			if src == "" {
				writeError(ctx, badRequest("INVALID_REQUEST", "import needs ?source=<source name>"))
				break
			}
			dry, aerr := QueryBool(args, "dry_run")
			if aerr != nil {
				writeError(ctx, aerr)
				break
			}
			res, err := s.n.ImportNDJSONAs(BoundRequestID(requestID(ctx), route, src, ctx.PostBody()), src, ctx.PostBody(), dry)
			s.ingestReply(ctx, res, err)
		}
	case bytes.HasPrefix(path, pathTables):
		route = "tables"
		if s.allow(ctx, ScopeIngest, true) {
			s.uploadTable(ctx, string(path[len(pathTables):]))
		}
	case bytes.Equal(path, pathServices):
		if s.allow(ctx, ScopeRead, false) {
			s.listServices(ctx)
		}
	case bytes.Equal(path, pathHealthz):
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"status":"ok"}`)
	case bytes.Equal(path, pathReadyz):
		switch err := s.n.Ready(); {
		case err == nil:
			ctx.SetContentType("application/json")
			ctx.SetBodyString(`{"status":"ready"}`)
		case err == errRecovering:
			writeJSON(ctx, fasthttp.StatusServiceUnavailable, map[string]string{"status": "recovering"})
		case errors.Is(err, ErrClusterNotReady):
			writeJSON(ctx, fasthttp.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
		case errors.Is(err, ErrStreamLagging):
			writeJSON(ctx, fasthttp.StatusServiceUnavailable, map[string]string{"status": "lagging", "reason": err.Error()})
		default:
			writeJSON(ctx, fasthttp.StatusServiceUnavailable, map[string]string{"status": "not durable", "reason": err.Error()})
		}
	case bytes.Equal(path, pathMetrics):
		if s.allow(ctx, ScopeAdmin, false) {
			ctx.SetContentType("text/plain; version=0.0.4")
			s.n.metrics.set.WritePrometheus(ctx)
		}
	case s.extras[string(path)].h != nil:
		x := s.extras[string(path)]
		route = x.route
		if s.allow(ctx, x.need, !x.get) {
			x.h(ctx)
		}
	default:
		if r, ok := s.feastRoutes(ctx, path); ok {
			route = r
			break
		}
		writeError(ctx, &APIError{Status: 404, Code: "NOT_FOUND", Message: "no such endpoint " + string(path) + ": see the README for the API"})
	}
	rm := s.lookupMetrics
	if route != "get-features" || rm.requests == nil {
		m := s.n.metrics
		rm = routeMetrics{m.requests[route], m.errors[route], m.durations[route]}
	}
	rm.requests.Inc()
	if ctx.Response.StatusCode() >= 400 {
		rm.errors.Inc()
	}
	rm.durations.UpdateDuration(start)
}

// routeMetrics are one route's request metrics.
type routeMetrics struct {
	requests, errors *metrics.Counter
	durations        *metrics.Histogram
}

var (
	pathGetFeatures      = []byte("/api/v1/feature-service/get-features")
	pathGetFeaturesBatch = []byte("/api/v1/feature-service/get-features-batch")
	pathPredict          = []byte("/api/v1/feature-service/predict")
	pathIngest           = []byte("/api/v1/ingest")
	pathIngestBulk       = []byte("/api/v1/ingest/bulk")
	pathImport           = []byte("/api/v1/import")
	pathTables           = []byte("/api/v1/tables/")
	pathServices         = []byte("/api/v1/feature-services")
	pathHealthz          = []byte("/healthz")
	pathReadyz           = []byte("/readyz")
	pathMetrics          = []byte("/metrics")
)

// requestID is the client's id for a write (Idempotency-Key, else
// X-Request-Id), "" if it sent none.
func requestID(ctx *fasthttp.RequestCtx) string {
	if id := ctx.Request.Header.Peek("Idempotency-Key"); len(id) > 0 {
		return string(id)
	}
	return string(ctx.Request.Header.Peek("X-Request-Id"))
}

// allow checks the method, the body's coding and the caller's key; on
// refusal it has written the error response. A POST body with a
// Content-Encoding other than identity is refused (415): bodies are read
// as they come, and compressed bytes read as JSON, CSV or NDJSON are
// refused for reasons that name none of the cause.
func (s *Server) allow(ctx *fasthttp.RequestCtx, need Scope, post bool) bool {
	if post && !ctx.IsPost() {
		writeError(ctx, &APIError{Status: 405, Code: "METHOD_NOT_ALLOWED", Message: "use POST"})
		return false
	}
	if ce := ctx.Request.Header.ContentEncoding(); post && len(ce) > 0 && !strings.EqualFold(string(ce), "identity") {
		writeError(ctx, &APIError{Status: 415, Code: "UNSUPPORTED_MEDIA_TYPE", Message: "Content-Encoding " + string(ce) + " is not supported: send the body uncompressed; nothing was read"})
		return false
	}
	if !post && !ctx.IsGet() {
		writeError(ctx, &APIError{Status: 405, Code: "METHOD_NOT_ALLOWED", Message: "use GET"})
		return false
	}
	if need == ScopePublic {
		return true
	}
	ok, known := s.n.keys.authorize(ctx.Request.Header.Peek("Authorization"), need)
	if ok {
		return true
	}
	s.n.metrics.unauthorized.Inc()
	if !known {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="tally"`)
		writeError(ctx, &APIError{Status: 401, Code: "UNAUTHENTICATED", Message: "send a valid API key as \"Authorization: Bearer <key>\" or \"Authorization: Tecton-key <key>\""})
		return false
	}
	writeError(ctx, &APIError{Status: 403, Code: "PERMISSION_DENIED", Message: "this API key lacks the scope this endpoint needs"})
	return false
}

func (s *Server) lookup(ctx *fasthttp.RequestCtx, fn func(dst, body []byte) ([]byte, *APIError)) {
	bp := bufPool.Get().(*[]byte)
	out, aerr := fn((*bp)[:0], ctx.PostBody())
	if aerr != nil {
		writeError(ctx, aerr)
	} else {
		ctx.SetContentType("application/json")
		ctx.SetBody(out)
	}
	*bp = out
	bufPool.Put(bp)
}

// unavailableHint is how to retry a write a cluster answered 503: groups
// may have applied their share, so only a retry under the request's key is
// safe; a write sent without one has no key to retry under.
func unavailableHint(id string) string {
	if id == "" {
		return "; this write had no Idempotency-Key, so the groups that applied their share would count it again on a retry: send writes with an Idempotency-Key to retry them safely"
	}
	return "; retry with the same Idempotency-Key"
}

func (s *Server) ingestReply(ctx *fasthttp.RequestCtx, res IngestResult, err error) {
	if err != nil {
		var ie *IngestError
		if errors.As(err, &ie) {
			status := fasthttp.StatusBadRequest
			switch ie.Code {
			case "UNKNOWN_SOURCE", "UNKNOWN_WORKSPACE":
				status = fasthttp.StatusNotFound
			case "PARTLY_APPLIED":
				status = fasthttp.StatusConflict
			}
			body := map[string]any{
				"code": ie.Code, "message": ie.Message, "records": ie.Records, "refused": ie.Refused, "total": ie.Total,
			}
			if len(ie.Groups) > 0 {
				groups := make([]map[string]any, len(ie.Groups))
				for i, g := range ie.Groups {
					groups[i] = map[string]any{"group": g.Group, "records": g.Records, "share": g.State.String()}
					if g.Err != nil {
						groups[i]["error"] = g.Err.Error()
					}
				}
				body["groups"] = groups
			}
			if len(ie.Sources) > 0 {
				body["sources"] = ie.Sources
			}
			writeJSON(ctx, status, map[string]any{"error": body})
			return
		}
		if errors.Is(err, store.ErrLogFailed) {
			writeError(ctx, &APIError{Status: 503, Code: "NOT_DURABLE", Message: err.Error()})
			return
		}
		if errors.Is(err, store.ErrTooLarge) {
			writeError(ctx, &APIError{Status: 413, Code: "TOO_LARGE", Message: err.Error() + "; nothing was ingested: send the records in smaller requests"})
			return
		}
		if errors.Is(err, ErrUnavailable) {
			writeError(ctx, &APIError{Status: 503, Code: "UNAVAILABLE", Message: err.Error() + unavailableHint(requestID(ctx))})
			return
		}
		writeError(ctx, &APIError{Status: 500, Code: "INTERNAL", Message: err.Error()})
		return
	}
	if !res.DryRun {
		s.n.ingested.events.Add(uint64(res.Accepted))
	}
	bp := bufPool.Get().(*[]byte)
	b := append((*bp)[:0], `{"workspaceName":`...)
	b = tabular.AppendJSONString(b, s.n.cfg.Workspace)
	b = append(b, `,"accepted":`...)
	b = strconv.AppendInt(b, int64(res.Accepted), 10)
	b = append(b, `,"tooLate":`...)
	b = strconv.AppendInt(b, int64(res.TooLate), 10)
	if res.Backfill {
		b = append(b, `,"deferred":`...)
		b = strconv.AppendInt(b, int64(res.Deferred), 10)
	}
	if res.DryRun {
		b = append(b, `,"dryRun":true}`...)
	} else {
		b = append(b, `,"dryRun":false}`...)
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
	*bp = b
	bufPool.Put(bp)
}

func (s *Server) uploadTable(ctx *fasthttp.RequestCtx, name string) {
	args := ctx.QueryArgs()
	if aerr := checkQuery(args, "a table upload", "format", "mode", "as_of", "allow_empty"); aerr != nil {
		writeError(ctx, aerr)
		return
	}
	param := string(args.Peek("format"))
	format, err := tabular.BodyFormat(param, string(ctx.Request.Header.ContentType()))
	switch {
	case param != "" && (err != nil || format == tabular.Parquet):
		writeError(ctx, badRequest("INVALID_REQUEST", "format %q: use csv or ndjson", param))
		return
	case err != nil || format == tabular.Parquet:
		writeError(ctx, badRequest("INVALID_REQUEST", "say the format: Content-Type text/csv or application/x-ndjson, or ?format=csv|ndjson"))
		return
	}
	mode := string(args.Peek("mode"))
	if mode != "" && mode != "upsert" && mode != "replace" {
		writeError(ctx, badRequest("INVALID_REQUEST", "mode %q: use upsert (default) or replace", mode))
		return
	}
	validFrom := s.n.now()
	if v := args.Peek("as_of"); len(v) > 0 {
		t, err := ParseTime(string(v))
		if err != nil {
			writeError(ctx, badRequest("INVALID_REQUEST", "as_of: %v", err))
			return
		}
		validFrom = t
	}
	allowEmpty := string(args.Peek("allow_empty"))
	if allowEmpty != "" && allowEmpty != "true" && allowEmpty != "false" {
		writeError(ctx, badRequest("INVALID_REQUEST", "allow_empty %q: use true or false", allowEmpty))
		return
	}
	// A retry is the same upload again: its as_of, when it has none, is
	// the node's clock at each attempt, so the request's options, not
	// validFrom, name it.
	target := strings.Join([]string{name, format.String(), mode, string(args.Peek("as_of")), allowEmpty}, "\x00")
	id := BoundRequestID(requestID(ctx), "tables", target, ctx.PostBody())
	rows, aerr := s.n.uploadTable(id, name, format, ctx.PostBody(), mode == "replace", allowEmpty == "true", validFrom)
	if aerr != nil {
		writeError(ctx, aerr)
		return
	}
	writeJSON(ctx, 200, map[string]any{"table": name, "rows": rows})
}

func (s *Server) listServices(ctx *fasthttp.RequestCtx) {
	type feature struct {
		Name     string          `json:"name"`
		DataType json.RawMessage `json:"dataType"`
	}
	type service struct {
		Name           string       `json:"name"`
		JoinKeys       []string     `json:"joinKeys"`
		RequestContext []string     `json:"requestContext"`
		Features       []feature    `json:"features"`
		Model          *ModelStatus `json:"model,omitempty"`
	}
	var out []service
	for _, sv := range s.n.Repo().Services {
		p := s.n.services[sv.Name]
		svc := service{Name: sv.Name, JoinKeys: p.joinKeys, RequestContext: []string{}}
		for _, c := range p.ctxCols {
			svc.RequestContext = append(svc.RequestContext, c.Name)
		}
		for _, o := range p.outputs {
			svc.Features = append(svc.Features, feature{Name: o.name, DataType: json.RawMessage(o.dtype)})
		}
		if p.model != nil {
			svc.Model = p.model.status()
		}
		out = append(out, svc)
	}
	writeJSON(ctx, 200, map[string]any{"featureServices": out})
}

func writeError(ctx *fasthttp.RequestCtx, e *APIError) {
	writeJSON(ctx, e.Status, errorJSON(e))
}

// errorJSON is e as the API's JSON error body.
func errorJSON(e *APIError) any {
	return map[string]any{"error": map[string]any{"code": e.Code, "message": e.Message}}
}

// errorBody is e's JSON error body, encoded.
func errorBody(e *APIError) []byte {
	b, _ := json.Marshal(errorJSON(e))
	return b
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = 500, []byte(`{"error":{"code":"INTERNAL","message":"encode response"}}`)
	}
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}

// WriteError answers ctx with e as the API's JSON error, for endpoints built
// by other packages (see Handle).
func WriteError(ctx *fasthttp.RequestCtx, e *APIError) { writeError(ctx, e) }
