package cache

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics count what caches do, by backend. Labels hold only fixed words:
// never a key, a table, a subject, SQL or a value.
type Metrics struct {
	reg           prometheus.Registerer
	hits          *prometheus.CounterVec
	misses        *prometheus.CounterVec
	fills         *prometheus.CounterVec
	invalidations *prometheus.CounterVec
	errors        *prometheus.CounterVec
	delay         *prometheus.HistogramVec
}

// NewMetrics creates the cache's metrics and registers them with reg
// (when it is not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reg: reg,
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "privata_cache_hits_total",
			Help: "Reads answered from the cache.",
		}, []string{"backend"}),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "privata_cache_misses_total",
			Help: "Reads not answered from the cache, by reason: absent, stale, key_removed " +
				"(sealed under a key no longer configured), bypass (break-glass), unsafe " +
				"(an invalidation failed and no flush followed yet), error.",
		}, []string{"backend", "reason"}),
		fills: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "privata_cache_fills_total",
			Help: "Answers offered to the cache, by result: stored, stale (a change " +
				"overtook the read), skipped (too many dependencies), error.",
		}, []string{"backend", "result"}),
		invalidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "privata_cache_invalidations_total",
			Help: "Invalidations, by source: stream (committed changes from the WAL), " +
				"write (writes through Privata), erase (subjects erased or restricted), flush.",
		}, []string{"backend", "source"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "privata_cache_errors_total",
			Help: "Failed backend calls and values that failed to open, by operation.",
		}, []string{"backend", "op"}),
		delay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "privata_cache_invalidation_delay_seconds",
			Help:    "Time from a change's commit to its invalidation in the cache.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"backend"}),
	}
	if reg != nil {
		reg.MustRegister(m.hits, m.misses, m.fills, m.invalidations, m.errors, m.delay)
	}
	return m
}

// backendMetrics are Metrics curried for one backend. A nil one counts
// nothing.
type backendMetrics struct {
	backend string
	m       *Metrics
	hits    prometheus.Counter
	delay   prometheus.Observer
}

func (m *Metrics) forBackend(name string) *backendMetrics {
	if m == nil {
		return nil
	}
	return &backendMetrics{
		backend: name,
		m:       m,
		hits:    m.hits.WithLabelValues(name),
		delay:   m.delay.WithLabelValues(name),
	}
}

func (b *backendMetrics) hit() {
	if b != nil {
		b.hits.Inc()
	}
}

func (b *backendMetrics) miss(reason string) {
	if b != nil {
		b.m.misses.WithLabelValues(b.backend, reason).Inc()
	}
}

func (b *backendMetrics) fill(result string) {
	if b != nil {
		b.m.fills.WithLabelValues(b.backend, result).Inc()
	}
}

func (b *backendMetrics) invalidated(source string, n int) {
	if b != nil {
		b.m.invalidations.WithLabelValues(b.backend, source).Add(float64(n))
	}
}

func (b *backendMetrics) fail(op string) {
	if b != nil {
		b.m.errors.WithLabelValues(b.backend, op).Inc()
	}
}

func (b *backendMetrics) observeDelay(seconds float64) {
	if b != nil {
		b.delay.Observe(seconds)
	}
}

// watchMemory exports the in-process backend's size.
func (m *Metrics) watchMemory(mem *Memory) {
	if m == nil || m.reg == nil {
		return
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "privata_cache_memory_bytes",
		Help: "Bytes the in-process cache holds, keys and values counted.",
	}, func() float64 { return float64(mem.Bytes()) }))
}
