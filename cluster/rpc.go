package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"
)

// The internal RPCs' client side: one request to one node (call), or to
// the replica of a group this node believes leads it (callGroup). The
// retry loops around them (reads, proposals, membership steps, checks,
// stream offsets) differ in their budgets and local fast paths; the
// request, the map stamp and the reading of the answer are here once.
// The server side's bounds are here too (rpcServer).

// rpcReadTimeout bounds reading an internal RPC request, its body
// included (ReadHeaderTimeout bounds the headers alone): a peer that
// stops sending mid-body, or never sends the body its headers announce,
// is answered 400 and its connection closed instead of holding the
// connection and a goroutine forever. Well above what any caller waits
// for its answer (a read 3 s, a forwarded write two election timeouts),
// so it never cuts short a call that still has a use. A handler running
// long after its body arrived (an admin change) is not cut: net/http
// lifts the deadline at the body's end. A variable so tests can shorten
// it.
var rpcReadTimeout = 30 * time.Second

// rpcIdle is how long a node's RPC client keeps an idle connection; the
// server keeps one twice as long, so the client always closes first: a
// request sent as the server closes would fail, and a POST is not retried.
const rpcIdle = time.Minute

// rpcServer is the cluster port's HTTP server for the internal RPCs h.
func rpcServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: rpcReadTimeout, IdleTimeout: 2 * rpcIdle}
}

// errNoReplica: this node knows no replica of the group to ask.
var errNoReplica = errors.New("no replica of the group is known")

// errRPC is an internal RPC's answer other than 200, 409, 421 and 422.
type errRPC struct {
	status int
	msg    string
	peer   string // who answered (callGroup: "id at host:port"); "" from call
}

func (e *errRPC) Error() string { return e.msg }

// slowRPC is how long an internal RPC may take before it is logged.
const slowRPC = time.Second

// call sends one internal RPC to the node at cluster address addr,
// stamped with this node's map version, and returns the body of a 200.
// Other answers are errors: 421 an *errNotLeader naming the leader the
// peer knows, 409 (routed on an older map) the newer map adopted and an
// error saying so, 422 an *errApply (the change was refused, do not
// retry), anything else an *errRPC.
func (c *Cluster) call(ctx context.Context, method, addr, path string, body []byte) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	if err != nil {
		return nil, err
	}
	c.stampMap(req)
	t0 := time.Now()
	resp, err := c.rpc.Do(req)
	if d := time.Since(t0); d > slowRPC {
		c.logger.Warn("cluster: slow internal RPC", "to", addr, "path", req.URL.Path, "took", d.Round(time.Millisecond), "err", err)
	}
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return b, nil
	case http.StatusMisdirectedRequest:
		var nl struct{ Leader string }
		json.Unmarshal(b, &nl)
		return nil, &errNotLeader{hint: nl.Leader}
	case http.StatusConflict:
		return nil, c.newerMap(b)
	case http.StatusUnprocessableEntity:
		return nil, &errApply{err: errors.New(string(bytes.TrimSpace(b)))}
	}
	return nil, &errRPC{status: resp.StatusCode, msg: resp.Status + ": " + string(bytes.TrimSpace(b))}
}

// callGroup sends one RPC about group g to the replica target(g,
// attempt) picks (the leader as far as this node knows; other replicas on
// later attempts) and remembers who answered as leader, or whom the
// replica named.
func (c *Cluster) callGroup(ctx context.Context, g, attempt int, method, path string, body []byte) ([]byte, error) {
	t := c.target(g, attempt)
	if t == nil {
		return nil, errNoReplica
	}
	b, err := c.call(ctx, method, t.ClusterAddr, path, body)
	var (
		nl *errNotLeader
		re *errRPC
	)
	switch {
	case err == nil:
		c.hints[g].Store(t.ID)
	case errors.As(err, &nl):
		c.hints[g].Store(nl.hint)
	case errors.As(err, &re):
		re.peer = t.ID + " at " + t.ClusterAddr
	}
	return b, err
}
