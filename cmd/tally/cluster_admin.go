package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/valyala/fasthttp"

	"github.com/tally-ml/tally/client"
	"github.com/tally-ml/tally/cluster"
	"github.com/tally-ml/tally/node"
)

// adminOp is one endpoint of the cluster's admin API, served by every
// cluster node under the admin scope (`tally cluster` is its client).
// Each file adding operations appends to adminOps in an init function.
type adminOp struct {
	method, path string
	// run answers the request: its result is written as JSON with 200;
	// an error as the API's JSON error (an *node.APIError keeps its
	// status and code, any other error is a 500 INTERNAL).
	run func(c *cluster.Cluster, ctx *fasthttp.RequestCtx) (any, error)
}

var adminOps []adminOp

// registerAdmin serves every adminOp on srv for cluster c.
func registerAdmin(srv *node.Server, c *cluster.Cluster) {
	for _, op := range adminOps {
		h := adminHandler(c, op)
		if op.method == http.MethodGet {
			srv.HandleGet(op.path, "cluster", node.ScopeAdmin, h)
		} else {
			srv.Handle(op.path, "cluster", node.ScopeAdmin, h)
		}
	}
}

func adminHandler(c *cluster.Cluster, op adminOp) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		if ae := wrongCluster(c, ctx); ae != nil {
			node.WriteError(ctx, ae)
			return
		}
		out, err := op.run(c, ctx)
		if err != nil {
			var ae *node.APIError
			if !errors.As(err, &ae) {
				ae = &node.APIError{Status: 500, Code: "INTERNAL", Message: err.Error()}
			}
			node.WriteError(ctx, ae)
			return
		}
		b, err := json.Marshal(out)
		if err != nil {
			node.WriteError(ctx, &node.APIError{Status: 500, Code: "INTERNAL", Message: "encode the answer: " + err.Error()})
			return
		}
		ctx.SetContentType("application/json")
		ctx.SetBody(b)
	}
}

// adminBody decodes a request's JSON body into v; a bad body is a 400
// that says what was expected.
func adminBody(ctx *fasthttp.RequestCtx, v any) error {
	if err := json.Unmarshal(ctx.PostBody(), v); err != nil {
		return &node.APIError{Status: 400, Code: "BAD_REQUEST", Message: "the body must be a JSON object: " + err.Error()}
	}
	return nil
}

// wrongCluster refuses a request whose Tally-Cluster-Id header (`tally
// cluster --cluster-id`, client.Options.ClusterID) names another cluster
// than c's, before anything runs: an operator with several clusters whose
// command went to the wrong one's address changes nothing there.
func wrongCluster(c *cluster.Cluster, ctx *fasthttp.RequestCtx) *node.APIError {
	want := string(ctx.Request.Header.Peek(client.HeaderClusterID))
	if want == "" {
		return nil
	}
	m := c.Map()
	if m == nil {
		return &node.APIError{Status: 503, Code: "NOT_READY", Message: "this node has no cluster map yet: nothing was done"}
	}
	if got := m.ID; got != want {
		return &node.APIError{Status: 409, Code: "WRONG_CLUSTER",
			Message: fmt.Sprintf("this node (%s) belongs to cluster %q, not %q: nothing was done; point --addr at a node of %q", ctx.LocalAddr(), got, want, want)}
	}
	return nil
}
