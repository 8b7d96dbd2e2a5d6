package node

import (
	"fmt"

	"github.com/VictoriaMetrics/metrics"
)

// nodeMetrics are the node's Prometheus metrics. Counters are atomic; view
// statistics are read when /metrics is scraped.
type nodeMetrics struct {
	set           *metrics.Set
	refusedRecs   *metrics.Counter
	requests      map[string]*metrics.Counter   // route -> count
	errors        map[string]*metrics.Counter   // route -> 4xx/5xx count
	durations     map[string]*metrics.Histogram // route -> seconds
	unauthorized  *metrics.Counter
	predictErrors *metrics.Counter
	feastNaN      *metrics.Counter // NaN values Feast's writes (push, write-to-online-store) stored as null; not a lookup's request data, which stores nothing
}

// routes whose metrics are kept; others share "other".
var metricRoutes = []string{"get-features", "get-features-batch", "predict", "ingest", "ingest-bulk", "import", "tables", "historical-features", "other"}

// newNodeMetrics registers the front's metrics in s, beside the store's
// (events applied, too late, apply errors, recovery).
func newNodeMetrics(n *Node, s *metrics.Set) *nodeMetrics {
	m := &nodeMetrics{
		set:           s,
		refusedRecs:   s.NewCounter("tally_ingest_refused_records_total"),
		unauthorized:  s.NewCounter("tally_http_unauthorized_total"),
		predictErrors: s.NewCounter("tally_predict_model_errors_total"),
		feastNaN:      s.NewCounter("tally_feast_nan_values_total"),
		requests:      map[string]*metrics.Counter{},
		errors:        map[string]*metrics.Counter{},
		durations:     map[string]*metrics.Histogram{},
	}
	for _, r := range metricRoutes {
		m.requests[r] = s.NewCounter(fmt.Sprintf(`tally_http_requests_total{route=%q}`, r))
		m.errors[r] = s.NewCounter(fmt.Sprintf(`tally_http_errors_total{route=%q}`, r))
		m.durations[r] = s.NewHistogram(fmt.Sprintf(`tally_http_request_duration_seconds{route=%q}`, r))
	}
	// Views of one source and join key share their state (store/group.go):
	// each reports the shared state's figures, labelled with its name, so
	// that a sum over states counts each once.
	for i, v := range n.Repo().Views {
		lbl := fmt.Sprintf(`{view=%q,state=%q}`, v.Name, n.StateOf(i))
		s.NewGauge(`tally_view_entities`+lbl, func() float64 { return float64(n.ViewStats(i).Entities) })
		s.NewGauge(`tally_view_state_bytes`+lbl, func() float64 { return float64(n.ViewStats(i).Bytes) })
		s.NewGauge(`tally_view_too_late_total`+lbl, func() float64 { return float64(n.ViewStats(i).TooLate) })
	}
	registerModelMetrics(n, s)
	for i, t := range n.Repo().Tables {
		tb := n.Table(i)
		s.NewGauge(fmt.Sprintf(`tally_table_rows{table=%q}`, t.Name), func() float64 { return float64(tb.Len()) })
	}
	return m
}

func (m *nodeMetrics) refused(records int) { m.refusedRecs.Add(records) }
