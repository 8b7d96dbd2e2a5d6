package load

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
)

func noopClient(t *testing.T, workers int) (*fasthttp.HostClient, func()) {
	t.Helper()
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("{}") }}
	go srv.Serve(ln) //nolint:errcheck // stopped below
	c := &fasthttp.HostClient{Addr: "noop", MaxConns: workers, Dial: func(string) (net.Conn, error) { return ln.Dial() }}
	return c, func() { _ = srv.Shutdown() }
}

func get(c *fasthttp.HostClient) Func {
	return func(int, int64) error {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI("http://noop/")
		if err := c.DoTimeout(req, resp, time.Second); err != nil {
			return err
		}
		if resp.StatusCode() != 200 {
			return fmt.Errorf("status %d", resp.StatusCode())
		}
		return nil
	}
}

func TestOpenLoopKeepsTheRate(t *testing.T) {
	c, stop := noopClient(t, 8)
	defer stop()
	r := RunOpen(context.Background(), Open{Rate: 2000, Duration: time.Second, Workers: 8, Warmup: 100 * time.Millisecond}, get(c))
	if r.Errors != 0 || r.Requests != 2000 {
		t.Fatalf("%d requests, %d errors (%v): want 2000, 0", r.Requests, r.Errors, r.FirstErr)
	}
	if tp := r.Throughput(); tp < 1500 || tp > 2500 {
		t.Fatalf("throughput %.0f/s at a 2000/s schedule", tp)
	}
	if r.Latency.ValueAtQuantile(50) > r.Latency.ValueAtQuantile(99) {
		t.Fatalf("p50 > p99")
	}
	t.Logf("p50 %v p99 %v sendlag p50 %v p99 %v", time.Duration(r.Latency.ValueAtQuantile(50)), time.Duration(r.Latency.ValueAtQuantile(99)),
		time.Duration(r.SendLag.ValueAtQuantile(50)), time.Duration(r.SendLag.ValueAtQuantile(99)))
}

// A stalled server shows in every request due during the stall: latency is
// measured from the due time, not the send time.
func TestOpenLoopCountsStalls(t *testing.T) {
	r := RunOpen(context.Background(), Open{Rate: 1000, Duration: 500 * time.Millisecond, Workers: 1}, func(w int, i int64) error {
		if i == 100 {
			time.Sleep(200 * time.Millisecond)
		}
		return nil
	})
	// ~200 requests were due during the stall; their latency is up to 200ms.
	if p75 := time.Duration(r.Latency.ValueAtQuantile(75)); p75 < 50*time.Millisecond {
		t.Fatalf("p75 %v: the stall was not charged to the requests due during it", p75)
	}
}

func TestClosedLoopBounded(t *testing.T) {
	c, stop := noopClient(t, 4)
	defer stop()
	r := RunClosed(context.Background(), Closed{Workers: 4, Duration: 5 * time.Second, Max: 3000}, get(c))
	if r.Requests != 3000 || r.Errors != 0 {
		t.Fatalf("%d requests %d errors (%v)", r.Requests, r.Errors, r.FirstErr)
	}
}
