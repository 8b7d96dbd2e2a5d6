package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// Admin calls one of the node's admin endpoints (the cluster API under
// /api/v1/cluster/, which `tally cluster` uses): method and path as the
// endpoint names them, in encoded as the JSON body when not nil, and the
// answer decoded into out when not nil. GETs are retried like reads; other
// methods only when nothing was sent, since an admin change (moving a
// replica, say) must not run twice by accident.
func (c *Client) Admin(ctx context.Context, method, path string, in, out any) error {
	r := request{method: method, path: path, accept: "application/json", retry: retryUnsent}
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
