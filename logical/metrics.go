package logical

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the change consumers, labelled by cluster name (and slot).
var (
	changesWritten = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "privata", Subsystem: "logical", Name: "changes_written_total",
		Help: "Change records committed to the audit store, by cluster.",
	}, []string{"cluster"})

	lagBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "privata", Subsystem: "logical", Name: "lag_bytes",
		Help: "WAL between the cluster's current position and what the consumer acknowledged.",
	}, []string{"cluster"})

	lagSeconds = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "privata", Subsystem: "logical", Name: "lag_seconds",
		Help: "Age of the newest transaction at the moment its records became durable " +
			"(0 when the consumer is idle and caught up).",
	}, []string{"cluster"})

	commitToAudit = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "privata", Subsystem: "logical", Name: "commit_to_audit_seconds",
		Help:    "Time from a transaction's commit to its change records being durable.",
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
	}, []string{"cluster"})

	retainedBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "privata", Subsystem: "logical", Name: "slot_retained_bytes",
		Help: "WAL the consumer's replication slot holds back on its cluster.",
	}, []string{"cluster", "slot"})
)

// Collectors returns the package's metrics, for the server to register.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{changesWritten, lagBytes, lagSeconds, commitToAudit,
		retainedBytes}
}
