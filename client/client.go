package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Options configure a Client. The zero value is ready to use.
type Options struct {
	// APIKey is sent as "Authorization: Bearer <key>"; empty sends none
	// (a node without api_keys allows every request).
	APIKey string
	// Workspace, when set, is sent as the workspace_name of ingest and
	// lookup requests; the node refuses a workspace it does not serve.
	Workspace string
	// Retries is how many more times a retryable call is tried (see the
	// package doc for which are); 0 means 4, a negative value never retries.
	Retries int
	// MinBackoff and MaxBackoff bound the wait before a retry: it doubles
	// from MinBackoff (default 50ms) up to MaxBackoff (default 2s), with
	// jitter.
	MinBackoff, MaxBackoff time.Duration
	// ClusterID, when set, is sent with every admin request (Admin) as
	// the Tally-Cluster-Id header: a cluster node of another cluster
	// refuses the request (409 WRONG_CLUSTER) and changes nothing, so a
	// command aimed at the wrong cluster's address does no harm. Nodes
	// that predate the header ignore it.
	ClusterID string
	// HTTPClient sends the requests; nil uses one with its own keep-alive
	// transport (up to 256 idle connections to the node, a 10 s dial
	// timeout, no overall timeout: set deadlines on the context).
	HTTPClient *http.Client
}

// Client talks to one tally node. It is safe for concurrent use; its
// connections are reused across calls.
type Client struct {
	base string // scheme://host[:port] without a trailing slash
	auth string
	ws   string
	hc   *http.Client
	// clusterID: see Options.ClusterID.
	clusterID string
	// retries, minBackoff, maxBackoff: see Options.
	retries                int
	minBackoff, maxBackoff time.Duration
}

// New returns a client of the node at baseURL (e.g. "http://127.0.0.1:8080";
// a bare host:port means http).
func New(baseURL string, o Options) (*Client, error) {
	if !strings.Contains(baseURL, "://") {
		baseURL = "http://" + baseURL
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("tally client: base URL %q: %w", baseURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tally client: base URL %q: want http://host:port", baseURL)
	}
	c := &Client{base: strings.TrimRight(baseURL, "/"), ws: o.Workspace, hc: o.HTTPClient, clusterID: o.ClusterID,
		retries: o.Retries, minBackoff: o.MinBackoff, maxBackoff: o.MaxBackoff}
	if o.APIKey != "" {
		c.auth = "Bearer " + o.APIKey
	}
	if c.hc == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns, t.MaxIdleConnsPerHost = 256, 256
		t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		c.hc = &http.Client{Transport: t}
	}
	switch {
	case c.retries == 0:
		c.retries = 4
	case c.retries < 0:
		c.retries = 0
	}
	if c.minBackoff <= 0 {
		c.minBackoff = 50 * time.Millisecond
	}
	if c.maxBackoff < c.minBackoff {
		c.maxBackoff = max(2*time.Second, c.minBackoff)
	}
	return c, nil
}

// URL returns the node's base URL.
func (c *Client) URL() string { return c.base }

// CloseIdleConnections closes the connections kept alive for reuse.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// retryKind says when a request may be sent again.
type retryKind uint8

const (
	// retryRead: on any connection error and on 503 (reads change nothing).
	retryRead retryKind = iota
	// retryUnsent: only when the connection could not be opened, so
	// nothing of the request reached the node (writes).
	retryUnsent
	// retryNever: probes.
	retryNever
)

// request is one call's wire form.
type request struct {
	method, path string // path with its query
	ctype        string
	accept       string
	body         []byte
	retry        retryKind
	idem         string // Idempotency-Key, if any
	cluster      string // Tally-Cluster-Id, if any
}

// send performs r, retrying as r.retry allows, and returns the response of
// a status below 400 with its body unread; an error status becomes *Error.
func (c *Client) send(ctx context.Context, r request) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		resp, err := c.once(ctx, r)
		if err == nil && resp.StatusCode < 400 {
			return resp, nil
		}
		retry := false
		if err != nil {
			err = fmt.Errorf("tally %s: %w", endpoint(r.path), err)
			retry = ctx.Err() == nil && (r.retry == retryRead || r.retry == retryUnsent && notSent(err))
		} else {
			err = readError(resp, endpoint(r.path))
			retry = r.retry == retryRead && resp.StatusCode == http.StatusServiceUnavailable
		}
		if !retry || attempt >= c.retries {
			return nil, err
		}
		d := c.backoff(attempt)
		d = d/2 + rand.N(d/2+1)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(d):
		}
	}
}

// backoff is the wait before retry attempt+1 (before jitter): MinBackoff
// doubled attempt times, at most MaxBackoff. It doubles step by step, so
// that a large Options.Retries cannot overflow it (MinBackoff<<attempt
// wrapped to a negative or zero duration, on which rand.N panics).
func (c *Client) backoff(attempt int) time.Duration {
	d := c.minBackoff
	for range attempt {
		if d > c.maxBackoff/2 {
			return c.maxBackoff
		}
		d *= 2
	}
	return min(d, c.maxBackoff)
}

func (c *Client) once(ctx context.Context, r request) (*http.Response, error) {
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, c.base+r.path, body)
	if err != nil {
		return nil, err
	}
	if r.ctype != "" {
		req.Header.Set("Content-Type", r.ctype)
	}
	if r.accept != "" {
		req.Header.Set("Accept", r.accept)
	}
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	if r.idem != "" {
		req.Header.Set("Idempotency-Key", r.idem)
	}
	if r.cluster != "" {
		req.Header.Set(HeaderClusterID, r.cluster)
	}
	return c.hc.Do(req)
}

// notSent reports whether err happened while opening the connection, so
// that no byte of the request reached the node.
func notSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// endpoint is path without its query, for messages.
func endpoint(path string) string {
	if i := strings.IndexByte(path, '?'); i >= 0 {
		return path[:i]
	}
	return path
}

// readError turns an error response into *Error and closes its body.
func readError(resp *http.Response, ep string) error {
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var w struct {
		Error struct {
			Code    string        `json:"code"`
			Message string        `json:"message"`
			Records []RecordError `json:"records"`
			Refused int           `json:"refused"`
			Total   int           `json:"total"`
			Groups  []GroupShare  `json:"groups"`
			Sources []SourceShare `json:"sources"`
		} `json:"error"`
	}
	e := &Error{Status: resp.StatusCode, Endpoint: ep}
	if json.Unmarshal(raw, &w) == nil && w.Error.Code != "" {
		e.Code, e.Message = w.Error.Code, w.Error.Message
		e.Records, e.Refused, e.Total = w.Error.Records, w.Error.Refused, w.Error.Total
		e.Groups, e.Sources = w.Error.Groups, w.Error.Sources
	} else {
		// Not tally's error body (a proxy's, say): keep its text.
		e.Message = strings.TrimSpace(string(raw))
		if len(e.Message) > 300 {
			e.Message = e.Message[:300] + "..."
		}
	}
	return e
}

// call performs r and returns the whole body of a successful answer.
func (c *Client) call(ctx context.Context, r request) ([]byte, error) {
	resp, err := c.send(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("tally %s: read the answer: %w", endpoint(r.path), err)
	}
	return b, nil
}

// callJSON performs r and decodes a successful answer into out.
func (c *Client) callJSON(ctx context.Context, r request, out any) error {
	b, err := c.call(ctx, r)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("tally %s: decode the answer: %w", endpoint(r.path), err)
	}
	return nil
}
