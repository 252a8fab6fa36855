package proxy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/privata/privata/regions"
)

// regionMetrics count routing between regions. Labels hold region names
// (from the configuration), outcomes and ways: never a value.
type regionMetrics struct {
	routed    *prometheus.CounterVec // statements run in another region's cluster
	sides     *prometheus.CounterVec // side connections opened
	twoPhase  *prometheus.CounterVec // two-phase commits by outcome
	transfers *prometheus.CounterVec // reads under transfers, by region read and way
}

func newRegionMetrics(reg prometheus.Registerer, dir *regions.Directory) *regionMetrics {
	m := &regionMetrics{
		routed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "privata_routed_statements_total",
			Help: "Statements run in another region's cluster than the session's, by region.",
		}, []string{"region"}),
		sides: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "privata_region_connections_total",
			Help: "Connections sessions opened to other regions' clusters, by region and outcome.",
		}, []string{"region", "outcome"}),
		twoPhase: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "privata_two_phase_commits_total",
			Help: "Transactions committed across clusters with two-phase commit, by outcome.",
		}, []string{"outcome"}),
		transfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "privata_transfers_total",
			Help: "Reads of another region's data under a transfer, by region read and way.",
		}, []string{"from", "via"}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.routed, m.sides, m.twoPhase, m.transfers)
	if dir != nil {
		for _, c := range []struct {
			result string
			get    func(regions.DirectoryStats) uint64
		}{
			{"cached", func(s regions.DirectoryStats) uint64 { return s.Hits }},
			{"asked", func(s regions.DirectoryStats) uint64 { return s.Asked }},
		} {
			get := c.get
			reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name:        "privata_directory_lookups_total",
				Help:        "Lookups of a subject's home region, by how they were answered.",
				ConstLabels: prometheus.Labels{"result": c.result},
			}, func() float64 { return float64(get(dir.Stats())) }))
		}
	}
	return m
}
