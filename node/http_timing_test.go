package node

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkHandleGetFeatures is BenchmarkGetFeaturesSmall through the HTTP
// handler, without a connection: what the server adds to a lookup
// (routing, auth, metrics, response headers and body) beside the lookup
// itself. Under callgrind (see BenchmarkGetFeaturesSmall) with
// --toggle-collect='github.com/tally-ml/tally/node.(*Server).handle'.
func BenchmarkHandleGetFeatures(b *testing.B) {
	n, _ := newTestNode(b, DefaultConfig())
	g := populate(b, n, 2000, 20)
	s := NewServer(n)
	ctxs := make([]*fasthttp.RequestCtx, 4096)
	for i := range ctxs {
		tx := g.Next(t0)
		ctx := &fasthttp.RequestCtx{}
		ctx.Request.SetRequestURI("/api/v1/feature-service/get-features")
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetBody(lookupBody(tx.UserID, tx.Merchant, tx.Country, tx.Amt, tx.Lat, tx.Long))
		ctxs[i] = ctx
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctx := ctxs[i%len(ctxs)]
		ctx.Response.Reset()
		s.handle(ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}
