package extauthz

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/passgate/passgate/extauthz/internal/tokencache"
)

// Front ends, the frontend label.
type frontend uint8

const (
	frontendGRPC frontend = iota
	frontendHTTP
	// frontendProxy is passgate's built-in reverse proxy (extauthz/proxy),
	// which asks the Checker in process.
	frontendProxy
	numFrontends
)

var frontendNames = [numFrontends]string{"envoy_grpc", "http", "proxy"}

// metrics are the check metrics. Counters are resolved once per label set
// so the check path increments without allocating.
type metrics struct {
	checks      [numFrontends][numReasons]prometheus.Counter
	duration    [numFrontends]prometheus.Observer
	hits        prometheus.Counter
	misses      prometheus.Counter
	evictions   prometheus.Counter
	storeErrors prometheus.Counter

	invalidations *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, allowUnknown bool) (*metrics, error) {
	checks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "passgate_checks_total",
		Help: "Proxy authorization checks by front end (envoy_grpc, http, proxy), decision (allow, deny, error) and reason.",
	}, []string{"frontend", "decision", "reason"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "passgate_check_duration_seconds",
		Help:    "Time to decide a proxy authorization check, by front end.",
		Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	}, []string{"frontend"})
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &metrics{
		hits:      counter("passgate_check_cache_hits_total", "Token lookups answered from the check cache."),
		misses:    counter("passgate_check_cache_misses_total", "Token lookups that went to the store."),
		evictions: counter("passgate_check_cache_evictions_total", "Cached tokens evicted because the cache was full."),
		storeErrors: counter("passgate_check_store_errors_total",
			"Token lookups on the check path that failed (store unreachable or too slow); the check failed closed."),
		invalidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passgate_check_cache_invalidations_total",
			Help: "Invalidations received from the store: revoked tokens (kind=token) and full cache drops (kind=all).",
		}, []string{"kind"}),
	}
	for _, col := range []prometheus.Collector{checks, duration, m.hits, m.misses, m.evictions, m.storeErrors, m.invalidations} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	for f := range numFrontends {
		m.duration[f] = duration.WithLabelValues(frontendNames[f])
		for r := range numReasons {
			label := r.label()
			if r == ReasonUnknownResource && allowUnknown {
				continue
			}
			if r == ReasonUnprotected && !allowUnknown {
				continue
			}
			m.checks[f][r] = checks.WithLabelValues(frontendNames[f], label, r.String())
		}
	}
	m.invalidations.WithLabelValues("token")
	m.invalidations.WithLabelValues("all")
	return m, nil
}

func (m *metrics) registerCacheSize(reg prometheus.Registerer, c *tokencache.Cache) error {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "passgate_check_cache_entries",
		Help: "Tokens currently in the check cache.",
	}, func() float64 { return float64(c.Len()) })
	if err := reg.Register(g); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	return nil
}

// observe counts one check.
func (m *metrics) observe(f frontend, r Reason, seconds float64) {
	if c := m.checks[f][r]; c != nil {
		c.Inc()
	}
	m.duration[f].Observe(seconds)
}
