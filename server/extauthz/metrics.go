package extauthz

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Check counters and latency, when WithMetrics is given.
type metrics struct {
	checks   *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// WithMetrics registers on reg, and keeps up to date:
//
//   - latch_ext_authz_checks_total{decision, code}: Checks by decision
//     (allowed, denied) and the HTTP status Envoy answers (200 for allowed);
//   - latch_ext_authz_check_duration_seconds{decision}: time to decide.
//
// Default: no metrics.
func WithMetrics(reg prometheus.Registerer) Option {
	return func(o *options) error {
		if reg == nil {
			return errors.New("WithMetrics: nil registerer")
		}
		m := &metrics{
			checks: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "latch_ext_authz_checks_total",
				Help: "Envoy ext_authz Checks by decision and the HTTP status answered (200 when allowed).",
			}, []string{"decision", "code"}),
			duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
				Name:    "latch_ext_authz_check_duration_seconds",
				Help:    "Time to decide an Envoy ext_authz Check, by decision.",
				Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
			}, []string{"decision"}),
		}
		for _, code := range []string{"200", "400", "401", "403", "503"} { // every series from the start
			m.checks.WithLabelValues(decision(code == "200"), code)
		}
		for _, c := range []prometheus.Collector{m.checks, m.duration} {
			if err := reg.Register(c); err != nil {
				return fmt.Errorf("WithMetrics: %w", err)
			}
		}
		o.metrics = m
		return nil
	}
}

// observe records one decision; m may be nil.
func (m *metrics) observe(allowed bool, httpStatus int, since time.Time) {
	if m == nil {
		return
	}
	m.checks.WithLabelValues(decision(allowed), strconv.Itoa(httpStatus)).Inc()
	m.duration.WithLabelValues(decision(allowed)).Observe(time.Since(since).Seconds())
}

// decision is the "decision" label of the metrics.
func decision(allowed bool) string {
	if allowed {
		return "allowed"
	}
	return "denied"
}
