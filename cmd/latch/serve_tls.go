package main

// Transport and exposure flags of `latch serve`: TLS, mutual TLS, the
// loopback-only rule for plaintext, gRPC connection limits, draining and
// metrics.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/latchauth/latch/internal/certs"
	"github.com/latchauth/latch/server"
	"github.com/prometheus/client_golang/prometheus"
)

type transportFlags struct {
	tlsCert, tlsKey, tlsClientCA string
	insecureListen               bool
	maxStreams                   uint
	keepaliveTime, keepaliveTO   time.Duration
	keepaliveMin, maxIdle        time.Duration
	maxAge, maxAgeGrace          time.Duration
	drainDelay                   time.Duration
	metrics                      bool
	// The ext_authz listener's own client authentication (--ext-authz-addr).
	extAuthzClientCA    string
	extAuthzAllowUnauth bool
}

func (f *transportFlags) register(fs *flag.FlagSet) {
	def := server.DefaultTransport()
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate chain for TLS on both ports (reloaded when the file changes)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&f.tlsClientCA, "tls-client-ca", "", "PEM CA bundle: require and verify client certificates on every port (mutual TLS), ext_authz's too unless --ext-authz-client-ca")
	fs.BoolVar(&f.insecureListen, "insecure-listen", false, "allow plaintext on non-loopback addresses (behind a proxy that terminates TLS); no effect with --tls-cert")
	fs.StringVar(&f.extAuthzClientCA, "ext-authz-client-ca", "", "PEM CA bundle: require and verify client certificates (Envoy's) on --ext-authz-addr only, with --tls-cert; the other ports are unaffected (default: --tls-client-ca, when given)")
	fs.BoolVar(&f.extAuthzAllowUnauth, "ext-authz-allow-unauthenticated-clients", false, allowUnauthenticatedHelp)
	fs.UintVar(&f.maxStreams, "max-concurrent-streams", uint(def.MaxConcurrentStreams), "RPCs in flight per gRPC connection")
	fs.DurationVar(&f.keepaliveTime, "keepalive-time", def.Keepalive.Time, "ping a client after this long without activity")
	fs.DurationVar(&f.keepaliveTO, "keepalive-timeout", def.Keepalive.Timeout, "close a connection whose ping is not answered within this")
	fs.DurationVar(&f.keepaliveMin, "keepalive-min-time", def.Enforcement.MinTime, "clients pinging more often are disconnected (too_many_pings)")
	fs.DurationVar(&f.maxIdle, "max-connection-idle", def.Keepalive.MaxConnectionIdle, "close connections without RPCs for this long (0 = never)")
	fs.DurationVar(&f.maxAge, "max-connection-age", 0, "close connections this old, so clients rebalance (0 = never)")
	fs.DurationVar(&f.maxAgeGrace, "max-connection-age-grace", def.Keepalive.MaxConnectionAgeGrace, "RPCs still running at max-connection-age get this long before the connection closes (0 = forever)")
	fs.DurationVar(&f.drainDelay, "drain-delay", 0, "on SIGTERM, report NOT_SERVING (/readyz 503) for this long before refusing new connections")
	fs.BoolVar(&f.metrics, "metrics", true, "serve Prometheus metrics at /metrics on the HTTP port")
}

// transport returns the gRPC connection limits from the flags.
func (f *transportFlags) transport() server.Transport {
	t := server.DefaultTransport()
	t.MaxConcurrentStreams = uint32(min(f.maxStreams, 1<<32-1))
	t.Keepalive.Time, t.Keepalive.Timeout = f.keepaliveTime, f.keepaliveTO
	t.Keepalive.MaxConnectionIdle = f.maxIdle
	t.Keepalive.MaxConnectionAge, t.Keepalive.MaxConnectionAgeGrace = f.maxAge, f.maxAgeGrace
	t.Enforcement.MinTime = f.keepaliveMin // grpc-go reads a zero idle, age or grace as "never"
	return t
}

// validate reports every transport problem at once, given the listen
// addresses by flag name.
func (f *transportFlags) validate(addrs map[string]string) error {
	errs := checkTLSFiles(f.tlsCert, f.tlsKey, f.tlsClientCA)
	if f.maxStreams == 0 || f.maxStreams > 1<<32-1 {
		errs = append(errs, fmt.Errorf("max-concurrent-streams %d must be in [1, %d]", f.maxStreams, uint32(1<<32-1)))
	}
	if f.drainDelay < 0 {
		errs = append(errs, fmt.Errorf("drain-delay %v must not be negative", f.drainDelay))
	}
	if f.maxStreams > 0 {
		errs = append(errs, f.transport().Validate())
	}
	errs = append(errs, checkExposure(addrs, f.tlsCert != "", f.insecureListen))
	switch ext := addrs["ext-authz-addr"]; {
	case f.extAuthzClientCA != "" && ext == "":
		errs = append(errs, errors.New("--ext-authz-client-ca is set but --ext-authz-addr is not: the CA would not be used"))
	case f.extAuthzClientCA != "" && f.tlsCert == "":
		errs = append(errs, errors.New("--ext-authz-client-ca needs --tls-cert and --tls-key: mutual TLS is TLS first"))
	default:
		errs = append(errs, checkExtAuthzClientAuth(ext, f.tlsClientCA != "" || f.extAuthzClientCA != "", f.extAuthzAllowUnauth,
			"--ext-authz-client-ca (LATCH_EXT_AUTHZ_CLIENT_CA) with the CA of Envoy's client certificates, and --tls-cert and --tls-key"))
	}
	return errors.Join(errs...)
}

// checkExposure enforces the exposure rule: plaintext only when every
// listen address is loopback, unless insecureListen.
func checkExposure(addrs map[string]string, tls, insecureListen bool) error {
	if tls || insecureListen {
		return nil
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(addrs)) {
		if addr := addrs[name]; addr != "" && !isLoopback(addr) {
			errs = append(errs, fmt.Errorf("refusing to serve plaintext on --%s %s, which is not a loopback address: "+
				"give --tls-cert and --tls-key (LATCH_TLS_CERT, LATCH_TLS_KEY), or --insecure-listen (LATCH_INSECURE_LISTEN=true) "+
				"if a proxy in front of Latch terminates TLS", name, addr))
		}
	}
	return errors.Join(errs...)
}

// isLoopback reports whether a listen address binds only the loopback
// interface: localhost or a loopback IP. An empty host (all interfaces) or
// any other name is not.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	return isLoopbackHost(host)
}

// isLoopbackHost reports whether a host names only this machine: localhost
// or a loopback IP. The one loopback test for listen, etcd and admin
// addresses.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// transportSetup is what the flags become once files are loaded.
type transportSetup struct {
	certs    *certs.Reloader // nil: plaintext
	extCerts *certs.Reloader // the ext_authz listener's, with its own client CA; nil: certs
	grpcOpts []server.GRPCOption
	// httpOpts configure the HTTP handler: under mutual TLS, everything
	// but the public documents and probes needs a client certificate.
	httpOpts []server.HTTPOption
}

// setup loads the TLS files (failing now, not at the first handshake) and
// returns the gRPC options.
func (f *transportFlags) setup(log *slog.Logger) (*transportSetup, error) {
	ts := &transportSetup{grpcOpts: []server.GRPCOption{server.WithTransport(f.transport())}}
	if f.tlsCert == "" {
		return ts, nil
	}
	r, err := loadCerts(f.tlsCert, f.tlsKey, f.tlsClientCA, log)
	if err != nil {
		return nil, err
	}
	ts.certs = r
	ts.grpcOpts = append(ts.grpcOpts, server.WithTLS(r.ServerConfig("h2")))
	if r.MutualTLS() {
		ts.httpOpts = append(ts.httpOpts, server.WithClientCertRequired())
	}
	if f.extAuthzClientCA != "" {
		if ts.extCerts, err = loadCerts(f.tlsCert, f.tlsKey, f.extAuthzClientCA, log); err != nil {
			return nil, fmt.Errorf("--ext-authz-client-ca: %w", err)
		}
	}
	return ts, nil
}

// checkTLSFiles reports the problems with a --tls-cert, --tls-key and
// --tls-client-ca combination (serve's and ext-authz's).
func checkTLSFiles(cert, key, clientCA string) []error {
	var errs []error
	if (cert == "") != (key == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together: give both, or neither"))
	}
	if clientCA != "" && cert == "" {
		errs = append(errs, errors.New("--tls-client-ca needs --tls-cert and --tls-key: mutual TLS is TLS first"))
	}
	return errs
}

// loadCerts loads the served certificate and, when clientCA is set, the CA
// that client certificates must chain to (failing now, not at the first
// handshake); both reload when their files change.
func loadCerts(cert, key, clientCA string, log *slog.Logger) (*certs.Reloader, error) {
	opts := []certs.Option{certs.WithLogger(log)}
	if clientCA != "" {
		opts = append(opts, certs.WithClientCA(clientCA))
	}
	r, err := certs.New(cert, key, opts...)
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	return r, nil
}

// mode names the transport for the start-up log.
func (ts *transportSetup) mode() string {
	switch {
	case ts.certs == nil:
		return "plaintext"
	case ts.certs.MutualTLS():
		return "mtls"
	}
	return "tls"
}

// instrument exports the served certificate's expiry, so that a renewal
// that never happened can be alerted on.
func (ts *transportSetup) instrument(m *server.Metrics) {
	if ts.certs == nil {
		return
	}
	m.Registry().MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "latch_tls_cert_not_after_seconds",
		Help: "Unix time at which the TLS certificate being served expires (after any reload).",
	}, func() float64 { return float64(ts.certs.Leaf().NotAfter.Unix()) }))
}

// serveHTTP serves hs on lis, with TLS when configured. Under mutual TLS
// a client certificate is verified when given but not demanded at the
// handshake: JWT libraries fetching the JWKS, meshes and platform HTTP
// probes cannot present one, and the handler (httpOpts) admits clients
// without one to the public routes only.
func (ts *transportSetup) serveHTTP(hs *http.Server, lis net.Listener) error {
	if ts.certs == nil {
		return hs.Serve(lis)
	}
	hs.TLSConfig = ts.certs.VerifyIfGivenConfig("h2", "http/1.1")
	return hs.ServeTLS(lis, "", "")
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// logExposure warns when plaintext is served beyond loopback.
func logExposure(log *slog.Logger, ts *transportSetup, insecureListen bool, addrs ...string) {
	if ts.certs != nil || !insecureListen {
		return
	}
	for _, a := range addrs {
		if a != "" && !isLoopback(a) {
			log.Warn("serving plaintext on a non-loopback address (--insecure-listen): TLS must be terminated in front of Latch",
				"event", "insecure_listen", "addr", a)
		}
	}
}
