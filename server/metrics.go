package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/latchauth/latch/internal/password"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
)

// MetricsPath is where the HTTP handler serves Prometheus metrics.
const MetricsPath = "/metrics"

// Outcomes of Login, as the outcome label of latch_logins_total.
const (
	LoginSuccess            = "success"
	LoginInvalidCredentials = "invalid_credentials" // unknown email, wrong password, disabled user
	LoginRateLimited        = "rate_limited"
	LoginBusy               = "busy" // password hashing queue full
	LoginInvalidRequest     = "invalid_request"
	LoginError              = "error" // internal failure, cancellation, deadline
)

// Outcomes of Refresh, as the outcome label of latch_refreshes_total.
const (
	RefreshRotated       = "rotated"
	RefreshReuseDetected = "reuse_detected" // the session was revoked
	RefreshInvalid       = "invalid"        // unknown, expired, revoked or malformed token
	RefreshRateLimited   = "rate_limited"
	RefreshBadRequest    = "invalid_request"
	RefreshError         = "error"
)

// Kinds of revocation, as the kind label of latch_revocations_total.
const (
	RevokedAccess  = "access"  // an access token's jti denied (Revoke)
	RevokedSession = "session" // a session ended by its refresh token (Revoke)
	RevokedAdmin   = "admin"   // sessions ended by an administrator
)

// Triggers of a signing-key rotation, as the trigger label of
// latch_key_rotations_total.
const (
	RotationScheduled = "scheduled" // on the Config.KeyRotation schedule
	RotationManual    = "manual"    // on demand, through the published next key
	RotationImmediate = "immediate" // on demand, a fresh key signing at once
)

// Limiters, as the limiter label of latch_rate_limited_total.
const (
	LimiterLoginAccount    = "login_account"
	LimiterLoginAddress    = "login_address"
	LimiterLoginDevice     = "login_device"
	LimiterLoginRate       = "login_rate"
	LimiterProbeRefresh    = "probe_refresh"
	LimiterProbeCaller     = "probe_caller"
	LimiterProbeIntrospect = "probe_introspect"
)

// sessionsLiveTTL is how long a count of live sessions (a scan of the
// store) is reused between scrapes; sessionsLiveTimeout bounds one count.
const (
	sessionsLiveTTL     = 30 * time.Second
	sessionsLiveTimeout = 5 * time.Second
)

// Metrics is a Prometheus registry owned by one Server (never the global
// default registry): gRPC RPC counts and handling-time histograms by method
// and code (go-grpc-middleware's prometheus provider), Latch's domain
// counters and gauges, and the Go runtime and process collectors. Give it to
// New with WithMetrics; NewGRPCServer then instruments every RPC and
// HTTPHandler serves it at /metrics. A nil *Metrics records nothing.
type Metrics struct {
	reg          *prometheus.Registry
	grpc         *grpcprom.ServerMetrics
	logins       *prometheus.CounterVec
	refreshes    *prometheus.CounterVec
	revocations  *prometheus.CounterVec
	rateLimited  *prometheus.CounterVec
	keyRotations *prometheus.CounterVec
	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec
	bound        atomic.Bool
}

// MetricsOption configures NewMetrics.
type MetricsOption func(*metricsOptions)

type metricsOptions struct{ version, revision string }

// WithBuildInfo sets the version and VCS revision reported by
// latch_build_info. Default "unknown".
func WithBuildInfo(version, revision string) MetricsOption {
	return func(o *metricsOptions) { o.version, o.revision = version, revision }
}

// NewMetrics returns a fresh registry with every Latch metric registered.
func NewMetrics(opts ...MetricsOption) *Metrics {
	o := metricsOptions{version: "unknown", revision: "unknown"}
	for _, opt := range opts {
		opt(&o)
	}
	counter := func(name, help, label string, values ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{label})
		for _, v := range values {
			c.WithLabelValues(v) // every series exists from the start, at 0
		}
		return c
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		grpc: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets([]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}))),
		logins: counter("latch_logins_total", "Login calls by outcome.", "outcome",
			LoginSuccess, LoginInvalidCredentials, LoginRateLimited, LoginBusy, LoginInvalidRequest, LoginError),
		refreshes: counter("latch_refreshes_total", "Refresh calls by outcome.", "outcome",
			RefreshRotated, RefreshReuseDetected, RefreshInvalid, RefreshRateLimited, RefreshBadRequest, RefreshError),
		revocations: counter("latch_revocations_total", "Revocations by kind: access tokens, sessions by their holder, sessions by an administrator.", "kind",
			RevokedAccess, RevokedSession, RevokedAdmin),
		rateLimited: counter("latch_rate_limited_total", "Requests refused with RESOURCE_EXHAUSTED by a rate limiter, by limiter.", "limiter",
			LimiterLoginAccount, LimiterLoginAddress, LimiterLoginDevice, LimiterLoginRate, LimiterProbeRefresh, LimiterProbeCaller, LimiterProbeIntrospect),
		keyRotations: counter("latch_key_rotations_total", "Signing-key rotations by trigger.", "trigger",
			RotationScheduled, RotationManual, RotationImmediate),
	}
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "latch_http_requests_total", Help: "HTTP requests by route pattern and status code.",
	}, []string{"route", "code"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "latch_http_request_duration_seconds", Help: "Time to answer an HTTP request, by route pattern.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	}, []string{"route"})
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "latch_build_info", Help: "Always 1; the labels describe the running binary."},
		[]string{"version", "revision", "go_version"})
	build.WithLabelValues(o.version, o.revision, runtime.Version()).Set(1)
	m.reg.MustRegister(m.grpc, m.logins, m.refreshes, m.revocations, m.rateLimited, m.keyRotations, build,
		m.httpRequests, m.httpDuration,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry returns the registry, for adding collectors of one's own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler(log *slog.Logger) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// KeyRotated counts one signing-key rotation; trigger is RotationScheduled,
// RotationManual or RotationImmediate.
func (m *Metrics) KeyRotated(trigger string) {
	if m != nil {
		m.keyRotations.WithLabelValues(trigger).Inc()
	}
}

// Revoked counts n revocations of the given kind: RevokedAccess (access
// tokens denied), RevokedSession (sessions ended by their holder) or
// RevokedAdmin (sessions ended by an administrator; AdminService calls it
// with the number of sessions a call revoked).
func (m *Metrics) Revoked(kind string, n int) {
	if m != nil && n > 0 {
		m.revocations.WithLabelValues(kind).Add(float64(n))
	}
}

func (m *Metrics) login(outcome string) {
	if m != nil {
		m.logins.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) refresh(outcome string) {
	if m != nil {
		m.refreshes.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) limited(limiter string) {
	if m != nil {
		m.rateLimited.WithLabelValues(limiter).Inc()
	}
}

// instrumentHTTP counts and times every request mux answers, labelled by
// the ServeMux pattern that matched ("unmatched" for 404s), so the label
// set stays bounded whatever paths clients send.
func (m *Metrics) instrumentHTTP(mux http.Handler) http.Handler {
	if m == nil {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		mux.ServeHTTP(sw, r)
		route := r.Pattern // set by ServeMux on r
		if route == "" {
			route = "unmatched"
		}
		m.httpRequests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
		m.httpDuration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

// WriteHeader implements http.ResponseWriter.
func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.code, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// bind registers the gauges that read from s: live sessions, revocation
// watchers and whether the store is out of space. A Metrics serves one Server.
func (m *Metrics) bind(s *Server) error {
	if !m.bound.CompareAndSwap(false, true) {
		return errors.New("server: this Metrics already serves another Server")
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "latch_revocation_watchers", Help: "WatchRevocations streams open now.",
	}, func() float64 { return float64(s.revs.count()) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "latch_storage_no_space",
		Help: "1 while the store refuses writes for lack of space (etcd's NOSPACE alarm), as the last failed write or readiness check saw it; else 0.",
	}, func() float64 {
		if s.ready.noSpace.Load() {
			return 1
		}
		return 0
	}))
	m.reg.MustRegister(&liveSessions{
		desc:  prometheus.NewDesc("latch_sessions_live", "Sessions neither revoked nor expired (counted at most every 30 s).", nil, nil),
		count: s.store.CountLiveSessions, now: s.now, log: s.log,
	})
	return nil
}

// liveSessions is a gauge counted by the store at scrape time, reusing a
// count younger than sessionsLiveTTL (the count may scan every session).
type liveSessions struct {
	desc  *prometheus.Desc
	count func(context.Context, time.Time) (int, error)
	now   func() time.Time
	log   *slog.Logger

	mu     sync.Mutex
	at     time.Time
	value  float64
	failed bool
}

// Describe implements prometheus.Collector.
func (l *liveSessions) Describe(ch chan<- *prometheus.Desc) { ch <- l.desc }

// Collect implements prometheus.Collector: the cached count, or a fresh one.
func (l *liveSessions) Collect(ch chan<- prometheus.Metric) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.at.IsZero() || now.Sub(l.at) >= sessionsLiveTTL || now.Before(l.at) {
		ctx, cancel := context.WithTimeout(context.Background(), sessionsLiveTimeout)
		n, err := l.count(ctx, now)
		cancel()
		if err != nil {
			// Leave the series out rather than report a stale number; the
			// next scrape tries again.
			if !l.failed {
				l.log.Warn("count live sessions", "event", "metrics_error", "error", err.Error())
			}
			l.failed, l.at = true, time.Time{}
			return
		}
		l.at, l.value, l.failed = now, float64(n), false
	}
	ch <- prometheus.MustNewConstMetric(l.desc, prometheus.GaugeValue, l.value)
}

// outcomeError marks a failure with the outcome its metric should count
// when the error's code alone does not say it (reuse detection).
type outcomeError struct {
	error
	outcome string
}

func (e *outcomeError) Unwrap() error { return e.error }

func withOutcome(err error, outcome string) error { return &outcomeError{error: err, outcome: outcome} }

// loginOutcome classifies Login's result for latch_logins_total.
func loginOutcome(err error) string {
	var ce *clientError
	switch {
	case err == nil:
		return LoginSuccess
	case errors.Is(err, password.ErrBusy):
		return LoginBusy
	case !errors.As(err, &ce):
		return LoginError
	case ce.code == codes.InvalidArgument:
		return LoginInvalidRequest
	case ce.code == codes.Unauthenticated:
		return LoginInvalidCredentials
	case ce.code == codes.ResourceExhausted:
		return LoginRateLimited
	}
	return LoginError
}

// refreshOutcome classifies Refresh's result for latch_refreshes_total.
func refreshOutcome(err error) string {
	var oe *outcomeError
	var ce *clientError
	switch {
	case err == nil:
		return RefreshRotated
	case errors.As(err, &oe):
		return oe.outcome
	case !errors.As(err, &ce):
		return RefreshError
	case ce.code == codes.InvalidArgument:
		return RefreshBadRequest
	case ce.code == codes.Unauthenticated:
		return RefreshInvalid
	}
	return RefreshError
}
