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
// ARCHIVE_INCOMPLETE, unless allow_partial); one join runs at a time (429
// EXPORT_BUSY otherwise); a failure while streaming cuts the response short,
// so a client never mistakes a partial answer for a whole one (CSV and NDJSON
// end with a complete last line only when the join finished; Parquet lacks
// its footer).
//
// Cancelling ctx (the server stopping) stops a join in progress.
func Handler(ctx context.Context, repo *features.Repo, archive Archive, log *slog.Logger) fasthttp.RequestHandler {
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
		partial := string(args.Peek("allow_partial")) == "true"
		j, err := New(Options{Repo: repo, Service: service, Archive: archive, AllowPartial: partial})
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
		r, err := tabular.NewReader(inFormat, bytes.NewReader(ctx.PostBody()))
		if err != nil {
			node.WriteError(ctx, &node.APIError{Status: 400, Code: "INVALID_SPINE", Message: "spine: " + err.Error()})
			return
		}
		s, err := j.ReadSpine(r, tsKey, 0)
		r.Close()
		if err != nil {
			node.WriteError(ctx, &node.APIError{Status: 400, Code: "INVALID_SPINE", Message: "spine: " + err.Error()})
			return
		}
		cols := j.Columns(s)
		conn := ctx.Conn()
		ctx.SetContentType(outFormat.ContentType())
		ctx.SetBodyStreamWriter(func(bw *bufio.Writer) {
			defer unlock()
			// The join outlives the server's write timeout: each flush of
			// the stream extends the deadline instead.
			dw := &deadlineWriter{w: bw, conn: conn}
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

// deadlineWriter extends the connection's write deadline as the stream
// makes progress.
type deadlineWriter struct {
	w    *bufio.Writer
	conn interface{ SetWriteDeadline(time.Time) error }
	last time.Time
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if now := time.Now(); now.Sub(d.last) > time.Second {
		d.last = now
		if err := d.conn.SetWriteDeadline(now.Add(time.Minute)); err != nil {
			return 0, fmt.Errorf("extend write deadline: %w", err)
		}
	}
	return d.w.Write(p)
}
