package node

import (
	"fmt"

	"github.com/VictoriaMetrics/metrics"
)

// nodeMetrics are the node's Prometheus metrics. Counters are atomic; view
// statistics are read when /metrics is scraped.
type nodeMetrics struct {
	set           *metrics.Set
	events        *metrics.Counter
	tooLate       *metrics.Counter
	refusedRecs   *metrics.Counter
	applyErrors   *metrics.Counter
	requests      map[string]*metrics.Counter   // route -> count
	errors        map[string]*metrics.Counter   // route -> 4xx/5xx count
	durations     map[string]*metrics.Histogram // route -> seconds
	unauthorized  *metrics.Counter
	predictErrors *metrics.Counter
}

// routes whose metrics are kept; others share "other".
var metricRoutes = []string{"get-features", "get-features-batch", "predict", "ingest", "ingest-bulk", "import", "tables", "historical-features", "other"}

func newNodeMetrics(n *Node) *nodeMetrics {
	s := metrics.NewSet()
	m := &nodeMetrics{
		set:           s,
		events:        s.NewCounter("tally_ingest_events_total"),
		tooLate:       s.NewCounter("tally_ingest_too_late_placements_total"),
		refusedRecs:   s.NewCounter("tally_ingest_refused_records_total"),
		applyErrors:   s.NewCounter("tally_ingest_apply_errors_total"),
		unauthorized:  s.NewCounter("tally_http_unauthorized_total"),
		predictErrors: s.NewCounter("tally_predict_model_errors_total"),
		requests:      map[string]*metrics.Counter{},
		errors:        map[string]*metrics.Counter{},
		durations:     map[string]*metrics.Histogram{},
	}
	for _, r := range metricRoutes {
		m.requests[r] = s.NewCounter(fmt.Sprintf(`tally_http_requests_total{route=%q}`, r))
		m.errors[r] = s.NewCounter(fmt.Sprintf(`tally_http_errors_total{route=%q}`, r))
		m.durations[r] = s.NewHistogram(fmt.Sprintf(`tally_http_request_duration_seconds{route=%q}`, r))
	}
	for i, v := range n.repo.Views {
		w := n.views[i]
		s.NewGauge(fmt.Sprintf(`tally_view_entities{view=%q}`, v.Name), func() float64 { return float64(w.Stats().Entities) })
		s.NewGauge(fmt.Sprintf(`tally_view_state_bytes{view=%q}`, v.Name), func() float64 { return float64(w.Stats().Bytes) })
		s.NewGauge(fmt.Sprintf(`tally_view_too_late_total{view=%q}`, v.Name), func() float64 { return float64(w.Stats().TooLate) })
	}
	for i, t := range n.repo.Tables {
		tb := n.tables[i]
		s.NewGauge(fmt.Sprintf(`tally_table_rows{table=%q}`, t.Name), func() float64 { return float64(tb.len()) })
	}
	return m
}

func (m *nodeMetrics) ingested(events, tooLate int) {
	m.events.Add(events)
	m.tooLate.Add(tooLate)
}

func (m *nodeMetrics) refused(records int) { m.refusedRecs.Add(records) }
