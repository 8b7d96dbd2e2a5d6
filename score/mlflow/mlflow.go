package mlflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fastjson"

	"github.com/tally-ml/tally/score"
)

// ErrCircuitOpen is returned, without a request, while the circuit breaker
// is open. It wraps score.ErrUnavailable.
var ErrCircuitOpen = fmt.Errorf("%w: mlflow: circuit breaker open", score.ErrUnavailable)

// Defaults for zero Options fields.
const (
	DefaultTimeout          = time.Second
	DefaultMaxRetries       = 2
	DefaultRetryBackoff     = 5 * time.Millisecond
	DefaultMaxRetryBackoff  = 100 * time.Millisecond
	DefaultBreakerFailures  = 5
	DefaultBreakerCooldown  = time.Second
	DefaultMaxConns         = 64
	DefaultMaxIdleConn      = 4 * time.Second
	DefaultMaxResponseBytes = 64 << 20
)

// Options configure a Client. Endpoint and Columns are required.
type Options struct {
	// Endpoint is the scoring server's base URL (http://host:5000, where
	// "/invocations" is appended) or the full invocations URL (a path that
	// already ends in /invocations, as Databricks serving endpoints have).
	Endpoint string
	// Columns names the model's inputs in the order rows carry them; they
	// are sent as dataframe_split columns. NumInputs is len(Columns).
	Columns []string
	// Classes lists class labels in the order the model reports
	// probabilities; nil for regressors. With Classes set, a bare number
	// in the response is a label (Prediction.HasLabel).
	Classes []string
	// Token, when set, is sent as "Authorization: Bearer <Token>".
	Token string

	// Timeout bounds a call whose ctx has no deadline (DefaultTimeout).
	Timeout time.Duration
	// MaxRetries is how many times a call is retried after 429, 503, 504 or
	// a connection error, within the ctx deadline (DefaultMaxRetries; a
	// negative value disables retries).
	MaxRetries int
	// RetryBackoff is the first retry's mean delay; it doubles per retry up
	// to MaxRetryBackoff, with +-50% jitter. A Retry-After header raises
	// the delay; a retry that cannot start before the deadline is not made.
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// BreakerFailures consecutive failed calls open the circuit breaker
	// (DefaultBreakerFailures; a negative value disables the breaker). After
	// BreakerCooldown one probe call is let through: its success closes the
	// breaker, its failure opens it for another cool-down.
	BreakerFailures int
	BreakerCooldown time.Duration

	// MaxConns caps connections to the endpoint (DefaultMaxConns); calls
	// beyond it wait for a free connection until their deadline.
	MaxConns int
	// MaxIdleConn closes idle keep-alive connections; keep it below the
	// server's keep-alive timeout (uvicorn's is 5 s) so that a request is
	// not written to a connection the server is closing (DefaultMaxIdleConn).
	MaxIdleConn time.Duration
	// MaxResponseBytes caps a response body (DefaultMaxResponseBytes).
	MaxResponseBytes int
}

// Stats count a Client's calls since New.
type Stats struct {
	Calls        uint64 // Score calls with rows to send
	Requests     uint64 // HTTP requests sent, retries included
	Retries      uint64 // requests that were retries
	Failures     uint64 // calls that failed with ErrUnavailable
	BadInput     uint64 // calls that failed with ErrBadInput
	BreakerOpens uint64 // times the breaker opened
	FastFails    uint64 // calls refused while the breaker was open
}

// Client scores rows through an MLflow scoring server's /invocations
// endpoint. It implements score.Scorer and is safe for concurrent use.
type Client struct {
	url       string
	auth      string
	columns   []string
	classes   []string
	classInts []int64 // classes parsed as integers, when all of them are
	prefix    []byte  // {"dataframe_split":{"columns":[...],"data":[
	opts      Options

	hc      *fasthttp.Client
	bodies  sync.Pool // *[]byte request bodies
	parsers fastjson.ParserPool
	arenas  fastjson.ArenaPool // per-row objects built from column-wise answers
	br      breaker

	calls, requests, retries, failures, badInput, fastFails atomic.Uint64
}

// New returns a Client for opts. It does not contact the endpoint.
func New(opts Options) (*Client, error) {
	u, err := url.Parse(opts.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("mlflow: endpoint %q: want an http:// or https:// URL", opts.Endpoint)
	}
	if len(opts.Columns) == 0 {
		return nil, errors.New("mlflow: Options.Columns is empty: name the model's input columns in row order")
	}
	seen := make(map[string]bool, len(opts.Columns))
	for _, c := range opts.Columns {
		if seen[c] {
			return nil, fmt.Errorf("mlflow: column %q is named twice in Options.Columns", c)
		}
		seen[c] = true
	}
	if !strings.HasSuffix(u.Path, "/invocations") {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/invocations"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxRetries == 0 {
		opts.MaxRetries = DefaultMaxRetries
	}
	if opts.RetryBackoff <= 0 {
		opts.RetryBackoff = DefaultRetryBackoff
	}
	if opts.MaxRetryBackoff <= 0 {
		opts.MaxRetryBackoff = DefaultMaxRetryBackoff
	}
	if opts.BreakerFailures == 0 {
		opts.BreakerFailures = DefaultBreakerFailures
	}
	if opts.BreakerCooldown <= 0 {
		opts.BreakerCooldown = DefaultBreakerCooldown
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = DefaultMaxConns
	}
	if opts.MaxIdleConn <= 0 {
		opts.MaxIdleConn = DefaultMaxIdleConn
	}
	if opts.MaxResponseBytes <= 0 {
		opts.MaxResponseBytes = DefaultMaxResponseBytes
	}
	cols, _ := json.Marshal(opts.Columns)
	c := &Client{
		url:     u.String(),
		columns: append([]string(nil), opts.Columns...),
		classes: append([]string(nil), opts.Classes...),
		prefix:  append(append([]byte(`{"dataframe_split":{"columns":`), cols...), `,"data":[`...),
		opts:    opts,
		hc: &fasthttp.Client{
			Name:                "tally",
			MaxConnsPerHost:     opts.MaxConns,
			MaxIdleConnDuration: opts.MaxIdleConn,
			MaxResponseBodySize: opts.MaxResponseBytes,
			// Calls wait for a connection until their own deadline.
			MaxConnWaitTimeout: time.Hour,
			// A keep-alive connection the server closed under us fails
			// before any response byte: resend once on a fresh connection
			// (scoring is idempotent). Other errors go to the retry loop.
			RetryIfErr: func(_ *fasthttp.Request, attempts int, err error) (bool, bool) {
				return false, attempts < 2 && errors.Is(err, fasthttp.ErrConnectionClosed)
			},
		},
		br: breaker{threshold: opts.BreakerFailures, cooldown: opts.BreakerCooldown},
	}
	if opts.Token != "" {
		c.auth = "Bearer " + opts.Token
	}
	if len(c.classes) > 0 {
		ints := make([]int64, len(c.classes))
		for i, s := range c.classes {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				ints = nil
				break
			}
			ints[i] = v
		}
		c.classInts = ints
	}
	return c, nil
}

// NumInputs is len(Options.Columns).
func (c *Client) NumInputs() int { return len(c.columns) }

// Inputs returns Options.Columns. The caller must not modify it.
func (c *Client) Inputs() []string { return c.columns }

// Classes returns Options.Classes. The caller must not modify it.
func (c *Client) Classes() []string { return c.classes }

// Close closes idle connections. The Client stays usable.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// Stats returns the call counters.
func (c *Client) Stats() Stats {
	return Stats{
		Calls:        c.calls.Load(),
		Requests:     c.requests.Load(),
		Retries:      c.retries.Load(),
		Failures:     c.failures.Load(),
		BadInput:     c.badInput.Load(),
		BreakerOpens: c.br.opens.Load(),
		FastFails:    c.fastFails.Load(),
	}
}

// Score sends the n rows in one request and writes out[:n]. See the package
// documentation for the error contract.
func (c *Client) Score(ctx context.Context, rows []float32, n int, out []Prediction) error {
	if n == 0 {
		return nil
	}
	w := len(c.columns)
	if n < 0 || len(rows) < n*w || len(out) < n {
		return fmt.Errorf("%w: mlflow: %d rows of %d columns need %d values and %d outputs; got %d and %d",
			score.ErrBadInput, n, w, n*w, n, len(rows), len(out))
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: mlflow: %w", score.ErrUnavailable, err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(c.opts.Timeout)
	}
	probe, allowed := c.br.allow()
	if !allowed {
		c.fastFails.Add(1)
		return ErrCircuitOpen
	}
	c.calls.Add(1)

	bp := c.body(rows, n, w)
	if bp == nil {
		c.br.release(probe)
		c.badInput.Add(1)
		return c.infError(rows, n, w)
	}
	err := c.send(ctx, deadline, *bp, n, out)
	c.bodies.Put(bp)

	switch {
	case err == nil:
		c.br.success()
	case errors.Is(err, score.ErrBadInput):
		// The server answered: it is up.
		c.badInput.Add(1)
		c.br.success()
	default:
		c.failures.Add(1)
		c.br.failure(probe)
	}
	return err
}

// Prediction is score.Prediction, named here for brevity.
type Prediction = score.Prediction

// send posts body until it gets an answer that is not retried, runs out of
// retries, or the deadline would pass.
func (c *Client) send(ctx context.Context, deadline time.Time, body []byte, n int, out []Prediction) error {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(c.url)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	if c.auth != "" {
		req.Header.Set(fasthttp.HeaderAuthorization, c.auth)
	}
	req.SetBodyRaw(body)

	var last error
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			c.retries.Add(1)
		}
		c.requests.Add(1)
		resp.Reset()
		err := c.hc.DoDeadline(req, resp, deadline)
		var retryAfter time.Duration
		if err != nil {
			last = fmt.Errorf("%w: mlflow: POST %s: %w", score.ErrUnavailable, c.url, err)
			if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrBodyTooLarge) {
				return last
			}
		} else {
			status := resp.StatusCode()
			switch {
			case status == fasthttp.StatusOK:
				return c.decode(resp.Body(), n, out)
			case status == fasthttp.StatusBadRequest || status == fasthttp.StatusUnprocessableEntity ||
				status == fasthttp.StatusRequestEntityTooLarge:
				return fmt.Errorf("%w: mlflow: POST %s: %d: %s", score.ErrBadInput, c.url, status, explain(resp.Body()))
			case status == fasthttp.StatusTooManyRequests || status == fasthttp.StatusServiceUnavailable ||
				status == fasthttp.StatusGatewayTimeout:
				last = fmt.Errorf("%w: mlflow: POST %s: %d: %s", score.ErrUnavailable, c.url, status, explain(resp.Body()))
				retryAfter = parseRetryAfter(resp.Header.Peek(fasthttp.HeaderRetryAfter))
			default:
				return fmt.Errorf("%w: mlflow: POST %s: %d: %s", score.ErrUnavailable, c.url, status, explain(resp.Body()))
			}
		}
		if attempt >= c.opts.MaxRetries {
			return last
		}
		delay := c.backoff(attempt)
		if retryAfter > delay {
			delay = retryAfter
		}
		if !time.Now().Add(delay).Before(deadline) {
			return last
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (then %w)", last, ctx.Err())
		case <-t.C:
		}
	}
}

// backoff is the delay before retry attempt+1: the mean doubles per attempt,
// capped, with +-50% jitter so that callers shed together do not return
// together.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.opts.RetryBackoff << min(attempt, 20)
	if d > c.opts.MaxRetryBackoff || d <= 0 {
		d = c.opts.MaxRetryBackoff
	}
	return d/2 + rand.N(d)
}

// parseRetryAfter reads a Retry-After header in seconds (HTTP dates are
// ignored).
func parseRetryAfter(v []byte) time.Duration {
	if len(v) == 0 {
		return 0
	}
	s, err := strconv.Atoi(string(v))
	if err != nil || s < 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}

// body encodes rows as a dataframe_split request into a pooled buffer, or
// returns nil when a value is infinite (JSON has no infinity).
func (c *Client) body(rows []float32, n, w int) *[]byte {
	bp, _ := c.bodies.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	b := append((*bp)[:0], c.prefix...)
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		for j, v := range rows[i*w : (i+1)*w] {
			if j > 0 {
				b = append(b, ',')
			}
			f := float64(v)
			switch {
			case math.IsNaN(f):
				b = append(b, "null"...)
			case math.IsInf(f, 0):
				*bp = b
				c.bodies.Put(bp)
				return nil
			default:
				// The float32's exact value: the model sees what the
				// node computed.
				b = strconv.AppendFloat(b, f, 'g', -1, 64)
			}
		}
		b = append(b, ']')
	}
	b = append(b, "]}}"...)
	*bp = b
	return bp
}

func (c *Client) infError(rows []float32, n, w int) error {
	for i, v := range rows[:n*w] {
		if math.IsInf(float64(v), 0) {
			return fmt.Errorf("%w: mlflow: row %d column %q is %v; JSON cannot carry infinities",
				score.ErrBadInput, i/w, c.columns[i%w], v)
		}
	}
	return fmt.Errorf("%w: mlflow: infinite value", score.ErrBadInput)
}

// explain returns the MLflow error message in body (or body), on one line,
// shortened in the middle: MLflow puts the cause at the end of its message
// ("... Error: Model is missing inputs ['x']").
func explain(body []byte) string {
	const head, tail = 160, 352
	s := string(body)
	if m := fastjson.GetString(body, "message"); m != "" {
		s = m
	}
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > head+tail {
		s = s[:head] + " ... " + s[len(s)-tail:]
	}
	if s == "" {
		s = "(empty body)"
	}
	return s
}
