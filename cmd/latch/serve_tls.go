package main

// Transport and exposure flags of `latch serve`: TLS, mutual TLS, the
// loopback-only rule for plaintext, gRPC connection limits, draining and
// metrics.

import (
	"context"
	"errors"
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
	// The ext_authz listener's own client authentication (ext_authz.addr).
	extAuthzClientCA    string
	extAuthzAllowUnauth bool
	name                namer // how messages name a setting
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
	n := f.name
	if n == nil {
		n = flagName
	}
	errs := checkTLSFiles(f.tlsCert, f.tlsKey, f.tlsClientCA, n)
	if f.maxStreams == 0 || f.maxStreams > 1<<32-1 {
		errs = append(errs, fmt.Errorf("%s %d must be in [1, %d]", n("max-concurrent-streams"), f.maxStreams, uint32(1<<32-1)))
	}
	if f.drainDelay < 0 {
		errs = append(errs, fmt.Errorf("%s %v must not be negative", n("drain-delay"), f.drainDelay))
	}
	if f.maxStreams > 0 {
		if err := f.transport().Validate(); err != nil {
			errs = append(errs, fmt.Errorf("grpc connection settings: %w", err))
		}
	}
	errs = append(errs, checkExposure(addrs, f.tlsCert != "", f.insecureListen, n))
	switch ext := addrs["ext-authz-addr"]; {
	case f.extAuthzClientCA != "" && ext == "":
		errs = append(errs, fmt.Errorf("%s is set but %s is not: the CA would not be used", n("ext-authz-client-ca"), n("ext-authz-addr")))
	case f.extAuthzClientCA != "" && f.tlsCert == "":
		errs = append(errs, fmt.Errorf("%s needs %s and %s: mutual TLS is TLS first", n("ext-authz-client-ca"), n("tls-cert"), n("tls-key")))
	default:
		errs = append(errs, checkExtAuthzClientAuth(ext, f.tlsClientCA != "" || f.extAuthzClientCA != "", f.extAuthzAllowUnauth,
			n("ext-authz-client-ca")+" with the CA of Envoy's client certificates, and "+n("tls-cert")+" and "+n("tls-key"), n))
	}
	return errors.Join(errs...)
}

// checkExposure enforces the exposure rule: plaintext only when every
// listen address is loopback, unless insecureListen.
func checkExposure(addrs map[string]string, tls, insecureListen bool, n namer) error {
	if tls || insecureListen {
		return nil
	}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(addrs)) {
		if addr := addrs[name]; addr != "" && !isLoopback(addr) {
			errs = append(errs, fmt.Errorf("refusing to serve plaintext on %s %s, which is not a loopback address: "+
				"give %s and %s, or set %s to true if a proxy in front of Latch terminates TLS",
				n(name), addr, n("tls-cert"), n("tls-key"), n("insecure-listen")))
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
			return nil, fmt.Errorf("%s: %w", f.name("ext-authz-client-ca"), err)
		}
	}
	return ts, nil
}

// checkTLSFiles reports the problems with a certificate, key and client CA
// combination (serve's tls.* keys and ext-authz's --tls-* flags).
func checkTLSFiles(cert, key, clientCA string, n namer) []error {
	var errs []error
	if (cert == "") != (key == "") {
		errs = append(errs, fmt.Errorf("%s and %s go together: give both, or neither", n("tls-cert"), n("tls-key")))
	}
	if clientCA != "" && cert == "" {
		errs = append(errs, fmt.Errorf("%s needs %s and %s: mutual TLS is TLS first", n("tls-client-ca"), n("tls-cert"), n("tls-key")))
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
			log.Warn("serving plaintext on a non-loopback address (listen.insecure): TLS must be terminated in front of Latch",
				"event", "insecure_listen", "addr", a)
		}
	}
}
