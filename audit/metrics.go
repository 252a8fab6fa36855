package audit

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the audit trail. Labels name stores (cluster names) and record
// kinds, never a subject or a value.
var (
	recordsWritten = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "privata", Subsystem: "audit", Name: "records_written_total",
		Help: "Audit records committed to an audit store, by store and kind (read, change).",
	}, []string{"store", "kind"})

	writeSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "privata", Subsystem: "audit", Name: "write_seconds",
		Help: "Latency of audit writes: append (a read record made durable in the spool), " +
			"ship (a batch of read records committed to the store), change (a batch of " +
			"change records committed to the store).",
		Buckets: []float64{1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1, 5},
	}, []string{"store", "op"})

	spoolBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "privata", Subsystem: "audit", Name: "spool_bytes",
		Help: "Bytes of read records in the local spool not yet shipped to the store.",
	}, []string{"store"})

	dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "privata", Subsystem: "audit", Name: "dropped_total",
		Help: "Read records lost because the spool could not be written and " +
			"audit.fail_open is set (development only).",
	}, []string{"store"})
)

// Collectors returns the package's metrics, for the server to register.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{recordsWritten, writeSeconds, spoolBytes, dropped}
}
