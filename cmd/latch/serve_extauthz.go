package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/internal/verifier"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/server/extauthz"
)

// extAuthzFlags configure Envoy's external authorization listener.
type extAuthzFlags struct {
	addr, policy       string
	subH, sidH, rolesH string
	keepAuthorization  bool
	cache              int
	healthInterval     time.Duration
	name               namer // how messages and logs name these settings: serve's keys or ext-authz's flags
}

func (f *extAuthzFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "ext-authz-addr", "", "listen address of the Envoy ext_authz gRPC service (envoy.service.auth.v3.Authorization); off when empty")
	fs.StringVar(&f.policy, "ext-authz-policy", "", "route policy file (YAML or JSON) for --ext-authz-addr: audiences, path/prefix/grpc rules → roles or public; unmatched requests are denied; reread on SIGHUP")
	fs.StringVar(&f.subH, "ext-authz-sub-header", extauthz.DefaultSubjectHeader, "header carrying the token's subject to the upstream")
	fs.StringVar(&f.sidH, "ext-authz-sid-header", extauthz.DefaultSessionHeader, "header carrying the token's session id to the upstream")
	fs.StringVar(&f.rolesH, "ext-authz-roles-header", extauthz.DefaultRolesHeader, "header carrying the token's roles (comma-separated) to the upstream")
	fs.BoolVar(&f.keepAuthorization, "ext-authz-keep-authorization", false, "forward the authorization header to the upstream (default: removed from every allowed request, public ones included)")
	fs.IntVar(&f.cache, "ext-authz-cache", 50000, "tokens remembered as verified by ext_authz (revocation is checked on every request); 0 disables")
	fs.DurationVar(&f.healthInterval, "ext-authz-health-interval", 5*time.Second, "how often the latch.verifier health status is updated")
	f.name = flagName
}

// extAuthz is the running ext_authz listener.
type extAuthz struct {
	lis    net.Listener
	gs     *grpc.Server
	hs     *health.Server
	v      *interceptors.Verifier
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// loadExtAuthzPolicy checks the ext_authz settings and loads the policy
// file, reporting every problem at once (before anything is opened); the
// policy is nil when no ext_authz address is set. issuer is Latch's, its
// own audience, which the policy may not name; audiences are the ones
// Latch issues (nil: not known here, not checked).
func loadExtAuthzPolicy(f extAuthzFlags, issuer string, audiences []string, n namer) (*extauthz.Policy, error) {
	if f.addr == "" {
		if f.policy != "" {
			return nil, fmt.Errorf("%s is set but %s is not: the policy would not be used", n("ext-authz-policy"), n("ext-authz-addr"))
		}
		return nil, nil
	}
	var errs []error
	if f.policy == "" {
		errs = append(errs, fmt.Errorf("%s is required with %s (requests no rule names are denied)", n("ext-authz-policy"), n("ext-authz-addr")))
	}
	if f.cache < 0 {
		errs = append(errs, fmt.Errorf("%s must not be negative", n("ext-authz-cache")))
	}
	if f.healthInterval <= 0 {
		errs = append(errs, fmt.Errorf("%s must be positive", n("ext-authz-health-interval")))
	}
	if err := extauthz.CheckHeaderNames(f.subH, f.sidH, f.rolesH); err != nil {
		errs = append(errs, fmt.Errorf("%s, %s, %s: %w", n("ext-authz-sub-header"), n("ext-authz-sid-header"), n("ext-authz-roles-header"), err))
	}
	var policy *extauthz.Policy
	if f.policy != "" {
		p, err := loadPolicyFile(f.policy, issuer, audiences, n)
		if err != nil {
			errs = append(errs, err)
		}
		policy = p
	}
	return policy, errors.Join(errs...)
}

// loadPolicyFile loads and checks a policy file for issuer, including,
// when audiences is not nil, that every audience it names is one Latch
// issues.
func loadPolicyFile(path, issuer string, audiences []string, n namer) (*extauthz.Policy, error) {
	p, err := extauthz.LoadPolicy(path, issuer)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, a := range p.Audiences() {
		if audiences != nil && !slices.Contains(audiences, a) {
			errs = append(errs, fmt.Errorf("%s: audience %q is not one Latch issues (%s %s): no token could pass",
				n("ext-authz-policy"), a, n("audience"), strings.Join(audiences, ",")))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// startExtAuthz builds the ext_authz service over Latch's own key ring and
// store and listens on ext_authz.addr; it returns nil when policy is nil
// (the listener is off).
//
// Verification inside Latch goes through the interceptors' Verifier, the
// code path sibling services use, over the server's key ring
// (verifier.WithKeySource: no fetching, a rotation is seen at once) and its
// store (verifier.WithRevocationCheck: a Revoke that has returned is seen by the next
// Check, with no stream lag).
//
// With reflect (grpc.reflection) the listener serves gRPC reflection too, so
// that grpcurl and ghz can call Check without Envoy's proto files.
func startExtAuthz(ctx context.Context, f extAuthzFlags, lis net.Listener, policy *extauthz.Policy, reflect bool, et extAuthzTransport,
	reg prometheus.Registerer, srv *server.Server, log *slog.Logger) (*extAuthz, error) {
	if policy == nil {
		return nil, nil
	}
	v, err := interceptors.NewVerifier(ctx, interceptors.Config{Issuer: srv.Config().Issuer, Audience: policy.Audiences()},
		verifier.WithKeySource(srv.KeySource()),
		verifier.WithRevocationCheck(srv.TokenRevoked),
		interceptors.WithLeeway(min(srv.Config().Leeway, 30*time.Second)),
		interceptors.WithCacheSize(f.cache),
		interceptors.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("ext_authz verifier: %w", err)
	}
	return listenExtAuthz(f, lis, v, policy, reflect, et, reg, srv.Config().Audiences, log)
}

// extAuthzTransport is how the ext_authz listener is served: TLS (nil:
// plaintext, which the exposure rule allows on loopback only), whether it
// requires client certificates, and connection limits.
type extAuthzTransport struct {
	tls        *tls.Config
	clientAuth bool
	transport  server.Transport
}

// extAuthzTransport gives the ext_authz listener the gRPC port's
// certificate (with reloads) and connection limits, and its own client CA
// (ext_authz.client_ca_file) when given, else the gRPC port's.
func (ts *transportSetup) extAuthzTransport(t server.Transport) extAuthzTransport {
	et := extAuthzTransport{transport: t}
	if r := cmp.Or(ts.extCerts, ts.certs); r != nil {
		et.tls, et.clientAuth = r.ServerConfig("h2"), r.MutualTLS()
	}
	return et
}

// allowUnauthenticatedHelp is the help of latch ext-authz's
// --ext-authz-allow-unauthenticated-clients.
const allowUnauthenticatedHelp = "serve --ext-authz-addr on a non-loopback address without requiring client certificates. " +
	"RISK: anyone who can reach the port can test whether stolen or guessed tokens are valid and read their subject, session and roles; " +
	"use it only where the network or a mesh lets nothing but Envoy reach the port"

// checkExtAuthzClientAuth refuses an ext_authz listener on a non-loopback
// addr that does not require client certificates (clientAuth), unless
// allowed: Check answers whether a token is valid and whose it is, so
// whoever can call it has a token oracle. fix names the flags that turn
// client certificates on.
func checkExtAuthzClientAuth(addr string, clientAuth, allowed bool, fix string, n namer) error {
	if addr == "" || isLoopback(addr) || clientAuth || allowed {
		return nil
	}
	return fmt.Errorf("refusing to serve ext_authz on %s %s, which is not a loopback address, without client certificates: "+
		"anyone who can reach it could test tokens and read their subject, session and roles. Give %s, or "+
		"set %s to true if the network or a mesh lets nothing but Envoy reach the port",
		n("ext-authz-addr"), addr, fix, n("ext-authz-allow-unauthenticated-clients"))
}

// listenExtAuthz serves the ext_authz service over v on --ext-authz-addr,
// with grpc.health.v1 (latch.verifier kept up to date from v) and, with
// reflect, reflection; SIGHUP reloads the policy, whose audiences must stay
// among audiences and whose issuer must stay the same. It takes ownership
// of v (closed by stop, or on error).
func listenExtAuthz(f extAuthzFlags, lis net.Listener, v *interceptors.Verifier, policy *extauthz.Policy, reflect bool, et extAuthzTransport,
	reg prometheus.Registerer, audiences []string, log *slog.Logger) (*extAuthz, error) {
	eopts := []extauthz.Option{extauthz.WithHeaderNames(f.subH, f.sidH, f.rolesH),
		extauthz.WithKeepAuthorization(f.keepAuthorization), extauthz.WithLogger(log)}
	if reg != nil {
		eopts = append(eopts, extauthz.WithMetrics(reg))
		if err := registerVerifierMetrics(reg, v); err != nil {
			v.Close()
			return nil, err
		}
	}
	ea, err := extauthz.New(v, policy, eopts...)
	if err != nil {
		v.Close()
		return nil, err
	}
	// Envoy keeps a few long-lived HTTP/2 connections and multiplexes
	// every check over them (opening more when the stream limit is
	// reached); limits and keepalive are the gRPC port's. Check answers
	// every refusal itself; a panic (none is known: FuzzCheck) becomes
	// INTERNAL, which Envoy turns into a denial with failure_mode_allow off.
	recoverOpt := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		log.LogAttrs(ctx, slog.LevelError, "panic in ext_authz", slog.String("event", "panic"),
			slog.String("panic", fmt.Sprint(p)), slog.String("stack", string(debug.Stack())))
		return status.Error(codes.Internal, "internal error")
	})
	sopts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(et.transport.Enforcement),
		grpc.KeepaliveParams(et.transport.Keepalive),
		grpc.MaxConcurrentStreams(et.transport.MaxConcurrentStreams),
		grpc.MaxRecvMsgSize(4 << 20), // room for with_request_body
		grpc.MaxHeaderListSize(server.MaxHeaderListSize),
		grpc.ChainUnaryInterceptor(recovery.UnaryServerInterceptor(recoverOpt)),
	}
	if et.tls != nil {
		sopts = append(sopts, grpc.Creds(credentials.NewTLS(et.tls)))
	}
	gs := grpc.NewServer(sopts...)
	ea.Register(gs)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	if reflect {
		reflection.Register(gs)
	}
	hctx, cancel := context.WithCancel(context.Background())
	x := &extAuthz{lis: lis, gs: gs, hs: hs, v: v, cancel: cancel, done: make(chan struct{})}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	// Published before the listener serves, so that no health check ever
	// finds latch.verifier unknown.
	v.UpdateHealth(hs, authv3.Authorization_ServiceDesc.ServiceName)
	var wg sync.WaitGroup
	wg.Go(func() { v.ReportHealth(hctx, hs, f.healthInterval, authv3.Authorization_ServiceDesc.ServiceName) })
	wg.Go(func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-hctx.Done():
				return
			case <-hup:
				reloadPolicy(hctx, f, policy.Issuer(), audiences, ea, log)
			}
		}
	})
	go func() { wg.Wait(); close(x.done) }()
	if !et.clientAuth && !isLoopback(f.addr) { // only when unauthenticated clients are allowed (checkExtAuthzClientAuth)
		log.Warn("ext_authz serves clients without certificates beyond loopback ("+f.name("ext-authz-allow-unauthenticated-clients")+"): "+
			"whoever reaches the port can test tokens", "event", "ext_authz_unauthenticated_clients", "addr", lis.Addr().String())
	}
	log.Info("ext_authz serving", "event", "ext_authz_listening", "addr", lis.Addr().String(), "policy", f.policy,
		"audiences", strings.Join(policy.Audiences(), ","), "tls", et.tls != nil, "client_auth", et.clientAuth)
	return x, nil
}

// registerVerifierMetrics exports the Verifier's health as gauges, read at
// each scrape: latch_verifier_key_age_seconds,
// latch_verifier_revocation_lag_seconds and latch_verifier_serving.
func registerVerifierMetrics(reg prometheus.Registerer, v *interceptors.Verifier) error {
	gauges := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "latch_verifier_key_age_seconds",
			Help: "Time since the ext_authz verifier last fetched the key set (0 when it uses Latch's own ring)."},
			func() float64 { return v.Status().KeyAge.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "latch_verifier_revocation_lag_seconds",
			Help: "How long the ext_authz verifier's revocation stream has been out of sync (0 in sync or inside Latch)."},
			func() float64 { return v.Status().RevocationLag.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "latch_verifier_serving",
			Help: "1 while latch.verifier health is SERVING, else 0."},
			func() float64 {
				if v.Status().Serving() {
					return 1
				}
				return 0
			}),
	}
	for _, g := range gauges {
		if err := reg.Register(g); err != nil {
			return fmt.Errorf("ext_authz metrics: %w", err)
		}
	}
	return nil
}

// reloadPolicy rereads the policy file (on SIGHUP). A file that does not
// load, or changes the audiences, is refused and the current policy stays.
func reloadPolicy(ctx context.Context, f extAuthzFlags, issuer string, audiences []string, ea *extauthz.Server, log *slog.Logger) {
	path := f.policy
	p, err := loadPolicyFile(path, issuer, audiences, f.name)
	if err == nil {
		err = ea.SetPolicy(p)
	}
	if err != nil {
		log.LogAttrs(ctx, slog.LevelError, "ext_authz policy not reloaded; the current one stays", slog.String("event", "ext_authz_policy_reload_failed"),
			slog.String("policy", path), slog.String("error", err.Error()))
		return
	}
	log.LogAttrs(ctx, slog.LevelInfo, "ext_authz policy reloaded", slog.String("event", "ext_authz_policy_reloaded"), slog.String("policy", path))
}

func (x *extAuthz) serve() error { return x.gs.Serve(x.lis) }

// stop marks the service NOT_SERVING, drains in-flight checks until ctx
// ends, then stops.
// Only the first call does anything.
func (x *extAuthz) stop(ctx context.Context) {
	x.once.Do(func() {
		x.cancel()
		<-x.done
		x.hs.Shutdown()
		stopped := make(chan struct{})
		go func() { x.gs.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-ctx.Done():
			x.gs.Stop()
		}
		_ = x.lis.Close() // in case Serve never ran
		x.v.Close()
	})
}
