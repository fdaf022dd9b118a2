package probe

import (
	"runtime"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the agent's Prometheus metrics, on a registry of its own (no
// globals: tests and embedders get a clean set each time).
type Metrics struct {
	Registry *prometheus.Registry

	ready         prometheus.Gauge
	draining      prometheus.Gauge
	checkStatus   *prometheus.GaugeVec
	checkDuration *prometheus.HistogramVec
	rounds        prometheus.Counter

	guardOnce sync.Once
}

var statuses = [...]Status{Pass, Fail, Degraded, Skip}

// NewMetrics registers the agent's metrics with the Go and process
// collectors.
func NewMetrics(version, commit string) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshready_ready", Help: "1 when /health answers 200.",
		}),
		draining: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshready_draining", Help: "1 once SIGTERM started the drain.",
		}),
		checkStatus: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshready_check_status", Help: "1 for the status each check had in the last round (pass, fail, degraded, skip).",
		}, []string{"check", "status"}),
		checkDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "meshready_check_duration_seconds", Help: "How long each check took.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"check"}),
		rounds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshready_check_rounds_total", Help: "Rounds of checks run (one round answers every probe within --interval).",
		}),
	}
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "meshready_build_info", Help: "Build of this agent; always 1.",
	}, []string{"version", "commit", "goversion"})
	buildInfo.WithLabelValues(version, commit, runtime.Version()).Set(1)
	reg.MustRegister(m.ready, m.draining, m.checkStatus, m.checkDuration, m.rounds, buildInfo,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Register adds more collectors (Pilot, drain) to the agent's registry.
func (m *Metrics) Register(cs ...prometheus.Collector) { m.Registry.MustRegister(cs...) }

// observeGuard exports the probe server's shedding (the first server that
// serves these metrics; a second one is not counted).
func (m *Metrics) observeGuard(g *connGuard) {
	m.guardOnce.Do(func() {
		m.Registry.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "meshready_http_conns_shed_total",
				Help: "Connections to :54321 closed to make room while they held no request in progress (slowloris, silent or idle clients).",
			}, func() float64 { return float64(g.shed.Load()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "meshready_http_conns_refused_total",
				Help: "New connections to :54321 closed at once because every open one was young or being served.",
			}, func() float64 { return float64(g.refused.Load()) }),
		)
	})
}

// ObserveVerdict records a new verdict; it is the Aggregator's Observe hook.
func (m *Metrics) ObserveVerdict(v *Verdict) {
	m.ready.Set(b2f(v.Ready && !v.Draining))
	m.draining.Set(b2f(v.Draining))
	if v.Draining {
		// The twin shares its outcomes with a verdict already counted.
		return
	}
	m.rounds.Inc()
	for _, o := range v.Outcomes {
		for _, s := range statuses {
			m.checkStatus.WithLabelValues(o.Name, string(s)).Set(b2f(o.Result.Status == s))
		}
		m.checkDuration.WithLabelValues(o.Name).Observe(o.Duration.Seconds())
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
