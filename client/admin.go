package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// HeaderClusterID is the header naming the cluster an admin request is
// meant for (Options.ClusterID).
const HeaderClusterID = "Tally-Cluster-Id"

// Admin calls one of the node's admin endpoints (the cluster API under
// /api/v1/cluster/, which `tally cluster` uses): method and path as the
// endpoint names them, in encoded as the JSON body when not nil, and the
// answer decoded into out when not nil. GETs are retried like reads; other
// methods only when nothing was sent, since an admin change (moving a
// replica, say) must not run twice by accident.
//
// With Options.ClusterID the request names its cluster: a node of another
// cluster refuses it with a 409 WRONG_CLUSTER *Error, having changed
// nothing.
func (c *Client) Admin(ctx context.Context, method, path string, in, out any) error {
	r := request{method: method, path: path, accept: "application/json", retry: retryUnsent, cluster: c.clusterID}
	if method == http.MethodGet {
		r.retry = retryRead
	}
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("tally %s: encode the request: %w", endpoint(path), err)
		}
		r.body, r.ctype = b, "application/json"
	}
	if out == nil {
		_, err := c.call(ctx, r)
		return err
	}
	return c.callJSON(ctx, r, out)
}
