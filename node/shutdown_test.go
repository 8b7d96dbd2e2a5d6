package node

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestShutdownBeforeServeRuns: Shutdown ends Serve even when it comes
// before Serve has begun accepting (Serve started in a goroutine, stopped
// at once), and Serve called after Shutdown returns at once.
func TestShutdownBeforeServeRuns(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; i < 200 && time.Now().Before(deadline); i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := NewServer(n)
		done := make(chan error, 1)
		go func() { done <- s.Serve(ln) }()
		if err := s.Shutdown(); err != nil {
			t.Fatalf("shutdown %d: %v", i+1, err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("serve %d: %v", i+1, err)
			}
		case <-time.After(2 * time.Second):
			ln.Close()
			t.Fatalf("shutdown %d before serve ran: serve still running after 2s", i+1)
		}
	}
}

// TestShutdownDrainsInFlight: Shutdown waits for a request in flight, which
// gets its answer, before it returns.
func TestShutdownDrainsInFlight(t *testing.T) {
	n, _ := newTestNode(t, DefaultConfig())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(n)
	entered, release := make(chan struct{}), make(chan struct{})
	s.Handle("/slow", "other", ScopeRead, func(ctx *fasthttp.RequestCtx) {
		close(entered)
		<-release
		ctx.SetBodyString("done")
	})
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()

	type answer struct {
		status int
		body   string
		err    error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := http.Post("http://"+ln.Addr().String()+"/slow", "application/json", nil)
		if err != nil {
			got <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- answer{resp.StatusCode, string(b), err}
	}()
	<-entered
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown() }()
	select {
	case err := <-shut:
		t.Fatalf("shutdown returned (%v) with a request in flight", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if a := <-got; a.err != nil || a.status != 200 || a.body != "done" {
		t.Fatalf("request in flight at shutdown: %d %q %v, want 200 \"done\"", a.status, a.body, a.err)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown still waiting 5s after the last request ended")
	}
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}
