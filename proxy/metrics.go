package proxy

import "github.com/prometheus/client_golang/prometheus"

// metrics are the server's Prometheus collectors. Labels hold statement
// kinds, decisions, SQLSTATEs and outcomes: never SQL text, a literal, a
// user value or a name from the data.
type metrics struct {
	connections      prometheus.Gauge
	connectionsTotal *prometheus.CounterVec
	statements       *prometheus.CounterVec
	refused          *prometheus.CounterVec
	rewritten        *prometheus.CounterVec
	parse            prometheus.Histogram
	upstream         prometheus.Histogram
	cancels          *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "privata_client_connections",
			Help: "Client connections open now.",
		}),
		connectionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "privata_client_connections_total",
			Help: "Client connections by outcome of their startup (accepted or refused).",
		}, []string{"outcome"}),
		statements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "privata_statements_total",
			Help: "Statements received (Query and Parse) by kind and decision.",
		}, []string{"kind", "decision"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "privata_refused_statements_total",
			Help: "Statements and messages refused, by SQLSTATE.",
		}, []string{"sqlstate"}),
		rewritten: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "privata_rewritten_statements_total",
			Help: "Statement texts forwarded in the form Privata wrote for split tables (upserts, " +
				"COPY TO, TRUNCATE), by the kind of their first statement.",
		}, []string{"kind"}),
		parse: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "privata_parse_seconds",
			Help:    "Time to analyse a statement text (cache hits included).",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10),
		}),
		upstream: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "privata_upstream_seconds",
			Help:    "Time from forwarding a message to its completion upstream.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 4, 10),
		}),
		cancels: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "privata_cancel_requests_total",
			Help: "Cancel requests by outcome (forwarded or unknown key).",
		}, []string{"outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.connections, m.connectionsTotal, m.statements, m.refused, m.rewritten,
			m.parse, m.upstream, m.cancels)
	}
	return m
}
