package history

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tally-ml/tally/features"
	"github.com/tally-ml/tally/node"
	"github.com/tally-ml/tally/tabular"
)

// Path is where a node serves historical features.
const Path = "/api/v1/feature-service/historical-features"

// Handler serves historical features over HTTP for a node whose log is
// archive and whose repo is repo:
//
//	POST /api/v1/feature-service/historical-features?service=NAME[&timestamp_key=timestamp][&format=csv|ndjson|parquet][&allow_partial=true]
//
// The body is the spine: Parquet (Content-Type application/vnd.apache.parquet),
// CSV (text/csv, with a header) or NDJSON (application/x-ndjson). The answer
// streams in the format asked for by ?format or Accept (NDJSON by default):
// the spine's columns and then the service's features, rows in time order.
// A bad spine is refused before anything streams (400 INVALID_SPINE, naming
// the row and column), and so is an archive that retention has cut (409
// ARCHIVE_INCOMPLETE, unless allow_partial), and so is a spine over
// lim.MaxSpineRows rows or lim.MaxSpineBytes decoded (413 SPINE_TOO_LARGE; a
// Parquet spine is refused from its footer, before its rows are decoded).
// One join runs at a time (429 EXPORT_BUSY otherwise); a failure while
// streaming cuts the response short, so a client never mistakes a partial
// answer for a whole one (CSV and NDJSON end with a complete last line only
// when the join finished; Parquet lacks its footer). A client that reads
// nothing for lim.StallTimeout is cut off, which frees the join for others.
//
// Cancelling ctx (the server stopping) stops a join in progress at once,
// even one blocked writing to a client that stopped reading.
func Handler(ctx context.Context, repo *features.Repo, archive Archive, log *slog.Logger, lim node.Limits) fasthttp.RequestHandler {
	return handler(ctx, repo, func() (Options, error) { return Options{Archive: archive}, nil }, log, lim)
}

// ClusterHandler is Handler for a node of a cluster: groups returns the
// archives of every replica group (an error when this node lacks some).
func ClusterHandler(ctx context.Context, repo *features.Repo, groups func() ([]Group, error), log *slog.Logger, lim node.Limits) fasthttp.RequestHandler {
	return handler(ctx, repo, func() (Options, error) {
		gs, err := groups()
		return Options{Groups: gs}, err
	}, log, lim)
}

func handler(ctx context.Context, repo *features.Repo, source func() (Options, error), log *slog.Logger, lim node.Limits) fasthttp.RequestHandler {
	stop := ctx
	var busy sync.Mutex
	return func(ctx *fasthttp.RequestCtx) {
		args := ctx.QueryArgs()
		service := string(args.Peek("service"))
		if service == "" {
			node.WriteError(ctx, &node.APIError{Status: 400, Code: "INVALID_REQUEST", Message: "historical features need ?service=<feature service name>"})
			return
		}
		tsKey := string(args.Peek("timestamp_key"))
		if tsKey == "" {
			tsKey = "timestamp"
		}
		inFormat, ok := tabular.FormatFromContentType(string(ctx.Request.Header.ContentType()))
		if !ok {
			node.WriteError(ctx, &node.APIError{Status: 415, Code: "UNSUPPORTED_MEDIA_TYPE", Message: "send the spine as application/vnd.apache.parquet, text/csv or application/x-ndjson"})
			return
		}
		outFormat, err := answerFormat(string(args.Peek("format")), string(ctx.Request.Header.Peek("Accept")))
		if err != nil {
			node.WriteError(ctx, &node.APIError{Status: 400, Code: "INVALID_REQUEST", Message: err.Error()})
			return
		}
		if !busy.TryLock() {
			node.WriteError(ctx, &node.APIError{Status: 429, Code: "EXPORT_BUSY", Message: "a historical-features join is already running on this node; retry when it ends"})
			return
		}
		unlock := sync.OnceFunc(busy.Unlock)
		defer func() {
			if ctx.Response.StatusCode() != 200 || !ctx.Response.IsBodyStream() {
				unlock()
			}
		}()
		partial, aerr := node.QueryBool(args, "allow_partial")
		if aerr != nil {
			node.WriteError(ctx, aerr)
			return
		}
		opts, err := source()
		if err != nil {
			node.WriteError(ctx, &node.APIError{Status: 501, Code: "NOT_ON_THIS_NODE", Message: err.Error()})
			return
		}
		opts.Repo, opts.Service, opts.AllowPartial = repo, service, partial
		j, err := New(opts)
		if err != nil {
			var us *UnknownServiceError
			if errors.As(err, &us) {
				node.WriteError(ctx, &node.APIError{Status: 404, Code: "UNKNOWN_FEATURE_SERVICE", Message: err.Error()})
			} else {
				node.WriteError(ctx, &node.APIError{Status: 500, Code: "INTERNAL", Message: err.Error()})
			}
			return
		}
		if err := j.CheckArchive(); err != nil {
			node.WriteError(ctx, &node.APIError{Status: 409, Code: "ARCHIVE_INCOMPLETE", Message: err.Error() + " (?allow_partial=true)"})
			return
		}
		r, err := tabular.NewLimitedReader(inFormat, bytes.NewReader(ctx.PostBody()),
			tabular.Limits{MaxRows: int64(lim.MaxSpineRows), MaxBytes: lim.MaxSpineBytes})
		if err != nil {
			node.WriteError(ctx, spineError(err, lim))
			return
		}
		s, err := j.ReadSpine(r, tsKey, lim.MaxSpineRows)
		r.Close()
		if err != nil {
			node.WriteError(ctx, spineError(err, lim))
			return
		}
		cols := j.Columns(s)
		conn := ctx.Conn()
		ctx.SetContentType(outFormat.ContentType())
		ctx.SetBodyStreamWriter(func(bw *bufio.Writer) {
			defer unlock()
			// The join outlives the server's write timeout: each flush of
			// the stream extends the deadline by the stall timeout instead,
			// and stopping the server moves it to now, which fails a write
			// blocked on a client that reads nothing.
			dw := &deadlineWriter{w: bw, conn: conn, stall: lim.StallTimeout, stop: stop}
			defer context.AfterFunc(stop, func() { conn.SetWriteDeadline(time.Now()) })()
			w, err := tabular.NewWriter(outFormat, dw, cols)
			if err == nil {
				var st Stats
				st, err = j.Run(stop, s, w)
				if err == nil {
					err = w.Close()
				}
				if err == nil && log != nil {
					log.Info("historical features", "service", service, "rows", st.Rows, "records", st.Records, "took", st.Elapsed.Round(time.Millisecond))
				}
			}
			if err != nil {
				if log != nil {
					log.Error("historical features: join failed, response cut short", "service", service, "err", err)
				}
				conn.Close()
			}
		})
	}
}

// answerFormat picks the response format from ?format, else Accept.
func answerFormat(param, accept string) (tabular.Format, error) {
	if param != "" {
		return tabular.ParseFormat(param)
	}
	for _, part := range strings.Split(accept, ",") {
		mt := strings.TrimSpace(strings.SplitN(part, ";", 2)[0])
		if f, ok := tabular.FormatFromContentType(mt); ok {
			return f, nil
		}
	}
	return tabular.NDJSON, nil
}

// spineError answers a spine the node refuses: too large (413) or bad (400).
func spineError(err error, lim node.Limits) *node.APIError {
	var le *tabular.LimitError
	var se *SpineError
	switch {
	case errors.As(err, &le) && le.Rows:
		return &node.APIError{Status: 413, Code: "SPINE_TOO_LARGE", Message: fmt.Sprintf(
			"the spine has more than %d rows (limits.max_spine_rows): split it, or run `tally export` beside the node", lim.MaxSpineRows)}
	case errors.As(err, &le):
		return &node.APIError{Status: 413, Code: "SPINE_TOO_LARGE", Message: fmt.Sprintf(
			"the spine decodes to more than %d bytes (limits.max_spine_bytes): split it, or run `tally export` beside the node", lim.MaxSpineBytes)}
	case errors.As(err, &se) && se.TooManyRows:
		return &node.APIError{Status: 413, Code: "SPINE_TOO_LARGE", Message: "spine: " + err.Error() + " (limits.max_spine_rows)"}
	}
	return &node.APIError{Status: 400, Code: "INVALID_SPINE", Message: "spine: " + err.Error()}
}

// deadlineWriter extends the connection's write deadline by stall as the
// stream makes progress (at most every stall/4, and every second), and fails
// once stop is done.
type deadlineWriter struct {
	w     *bufio.Writer
	conn  interface{ SetWriteDeadline(time.Time) error }
	stall time.Duration
	stop  context.Context
	last  time.Time
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if now := time.Now(); now.Sub(d.last) > min(time.Second, d.stall/4) {
		if err := d.stop.Err(); err != nil {
			return 0, fmt.Errorf("server stopping: %w", err)
		}
		d.last = now
		if err := d.conn.SetWriteDeadline(now.Add(d.stall)); err != nil {
			return 0, fmt.Errorf("extend write deadline: %w", err)
		}
	}
	return d.w.Write(p)
}
