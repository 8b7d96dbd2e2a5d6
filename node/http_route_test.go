package node

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// TestHandleLookupPaths checks that a lookup is routed the same whether its
// request line names the path as it is or in a form that normalizes to it,
// and counted in its route's metrics.
func TestHandleLookupPaths(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	s := NewServer(n)
	body := lookupBody("nobody", "m1", "FR", 1, 2, 3)
	var want []byte
	for _, uri := range []string{"/api/v1/feature-service/get-features", "/api/v1//feature-service/get-features",
		"/api/v1/feature-service/get-features?x=1", "/api/v1/x/../feature-service/get-features", "/api/v1/feature-service/%67et-features"} {
		ctx := &fasthttp.RequestCtx{}
		ctx.Request.SetRequestURI(uri)
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetBody(body)
		s.handle(ctx)
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("%s: status %d: %s", uri, ctx.Response.StatusCode(), ctx.Response.Body())
		}
		got := ctx.Response.Body()
		if want == nil {
			want = append([]byte(nil), got...)
		} else if string(got) != string(want) {
			t.Errorf("%s answered %s, want %s", uri, got, want)
		}
	}
	ctx := &fasthttp.RequestCtx{}
	ctx.Request.SetRequestURI("/api/v1/feature-service/get-features-nope")
	ctx.Request.Header.SetMethod("POST")
	s.handle(ctx)
	if ctx.Response.StatusCode() != 404 {
		t.Errorf("a path beside the lookup's answered %d, want 404", ctx.Response.StatusCode())
	}
	m := n.metrics
	if got := m.requests["get-features"].Get(); got != 5 {
		t.Errorf("get-features requests counted: %d, want 5", got)
	}
	if got := m.errors["get-features"].Get(); got != 0 {
		t.Errorf("get-features errors counted: %d, want 0", got)
	}
	if got := m.errors["other"].Get(); got != 1 {
		t.Errorf("other errors counted: %d, want 1", got)
	}
}
