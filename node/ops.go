package node

import (
	"errors"
	"net/http"
	"net/http/pprof"
	"sync/atomic"

	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// ScopePublic marks a route anyone may call without a key (Handle,
// HandleGet): a page that holds no data itself, like the status page.
const ScopePublic Scope = 0

// ErrClusterNotReady wraps why a cluster node is not ready (no cluster map
// yet, a group it holds a replica of without a leader): /readyz answers
// 503 {"status":"not ready","reason":...} while it is.
var ErrClusterNotReady = errors.New("cluster not ready")

// Counters are a node's request totals since it started, for an operator
// to compute rates from two readings.
type Counters struct {
	// IngestedEvents counts the events this node's API acknowledged
	// (ingest, bulk ingest and imports; dry runs excluded).
	IngestedEvents uint64 `json:"ingestedEvents"`
	// IngestRequests and Lookups count requests to the ingest routes and to
	// the lookup routes (get-features, get-features-batch, predict),
	// answered or refused.
	IngestRequests uint64 `json:"ingestRequests"`
	Lookups        uint64 `json:"lookups"`
}

// ingestedEvents backs Counters.IngestedEvents.
type ingestCounter struct{ events atomic.Uint64 }

// Counters returns the node's request totals.
func (n *Node) Counters() Counters {
	m := n.metrics
	return Counters{
		IngestedEvents: n.ingested.events.Load(),
		IngestRequests: m.requests["ingest"].Get() + m.requests["ingest-bulk"].Get() + m.requests["import"].Get(),
		Lookups:        m.requests["get-features"].Get() + m.requests["get-features-batch"].Get() + m.requests["predict"].Get(),
	}
}

// pprofPaths are net/http/pprof's endpoints, each served under the admin
// scope: the index, the named profiles it links to, and the handlers that
// take a duration.
var pprofPaths = map[string]http.HandlerFunc{
	"/debug/pprof/":        pprof.Index,
	"/debug/pprof/cmdline": pprof.Cmdline,
	"/debug/pprof/profile": pprof.Profile,
	"/debug/pprof/symbol":  pprof.Symbol,
	"/debug/pprof/trace":   pprof.Trace,
}

// registerPprof serves Go's profiler at /debug/pprof/ to admin keys: CPU
// (profile?seconds=N), heap, allocs, goroutine, block, mutex,
// threadcreate, and execution traces.
func (s *Server) registerPprof() {
	for p, h := range pprofPaths {
		s.HandleGet(p, "other", ScopeAdmin, fasthttpadaptor.NewFastHTTPHandlerFunc(h))
	}
	for _, name := range []string{"heap", "allocs", "goroutine", "block", "mutex", "threadcreate"} {
		s.HandleGet("/debug/pprof/"+name, "other", ScopeAdmin, fasthttpadaptor.NewFastHTTPHandler(pprof.Handler(name)))
	}
}
