package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/internal/redact"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
)

type serveFlags struct {
	grpcAddr, httpAddr, issuer    string
	audiences                     stringList
	accessTTL, refreshTTL, maxAge time.Duration
	reuseGrace, shutdownTimeout   time.Duration
	sweepInterval, revokedKeep    time.Duration
	logFormat, logLevel           string
	introspectOpen, dev, reflect  bool
	trustedProxies, serviceRoles  stringList
	maxSessions, addrBurst        int
	addrRefill                    time.Duration
	hashConcurrency, probeBurst   int
	verifyCache, accessLogSample  int
	probeRefill                   time.Duration
	keys                          keyFlags
	extAuthz                      extAuthzFlags
}

func serve(ctx context.Context, args []string, e env) error {
	fs := flag.NewFlagSet("latch serve", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var f serveFlags
	var tf transportFlags
	f.audiences = stringList{vals: []string{"latch"}}
	var sf storageFlags // --storage, --db, --etcd-* (serve_storage.go)
	sf.register(fs)
	fs.StringVar(&f.grpcAddr, "grpc-addr", "127.0.0.1:7300", "gRPC listen address")
	fs.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:7301", "HTTP listen address (/.well-known/jwks.json, /healthz)")
	fs.StringVar(&f.issuer, "issuer", "http://127.0.0.1:7301", "iss claim of every token")
	fs.Var(&f.audiences, "audience", "audience a Login may ask for (repeatable; the first is the default)")
	fs.DurationVar(&f.accessTTL, "access-ttl", 15*time.Minute, "access token lifetime")
	fs.DurationVar(&f.refreshTTL, "refresh-ttl", 168*time.Hour, "refresh token idle lifetime, renewed by each refresh")
	fs.DurationVar(&f.maxAge, "refresh-max-age", 720*time.Hour, "absolute session lifetime")
	fs.DurationVar(&f.reuseGrace, "refresh-reuse-grace", server.DefaultRefreshReuseGrace, "window in which a client may retry its last refresh with the same token after a lost reply (0 = none; at most 1m)")
	fs.Var(&f.trustedProxies, "trusted-proxy", "network (CIDR) of a proxy in front of Latch whose x-forwarded-for is believed (repeatable); the client is the right-most address not in these networks")
	fs.IntVar(&f.addrBurst, "login-address-burst", 300, "login attempts (right or wrong) one client address may make at once; size it for the clients behind your largest NAT or proxy")
	fs.DurationVar(&f.addrRefill, "login-address-refill", time.Second, "one more login attempt per client address allowed per this period")
	fs.IntVar(&f.maxSessions, "max-sessions", 50, "live sessions a person may hold; a login past it revokes the oldest")
	fs.Var(&f.serviceRoles, "service-role", "role marking service accounts, which fleets share: higher login rate, 10,000 live sessions (repeatable; default service,introspect)")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long a graceful stop waits for in-flight requests")
	fs.DurationVar(&f.sweepInterval, "sweep-interval", time.Minute, "how often expired sessions and revocations are deleted")
	fs.DurationVar(&f.revokedKeep, "revoked-session-retention", 0, "how long a revoked session is kept before it is deleted (default: --access-ttl plus the 30s leeway); after lowering --access-ttl, keep the old value here until tokens minted under it have expired")
	fs.StringVar(&f.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.IntVar(&f.accessLogSample, "access-log-sample", 0, "per-call access log: one record for every N calls that end OK or with a client error (0: none; 1: every call); failures at warn or error are always logged")
	fs.BoolVar(&f.introspectOpen, "introspect-open", false, "let anyone call Introspect without a credential (development only)")
	fs.BoolVar(&f.dev, "dev", false, "first-try mode: on an empty database create a demo user and a service user and print grpcurl commands")
	fs.BoolVar(&f.reflect, "reflection", true, "serve gRPC server reflection (for grpcurl)")
	fs.IntVar(&f.verifyCache, "verify-cache", 50000, "access tokens remembered as verified (skips ECDSA for hot tokens; revocation is always checked); 0 disables")
	fs.IntVar(&f.probeBurst, "probe-burst", 30, "invalid tokens a client address (Refresh) or caller (Introspect) may present before RESOURCE_EXHAUSTED")
	fs.DurationVar(&f.probeRefill, "probe-refill", time.Second, "one more invalid token allowed per this period")
	fs.IntVar(&f.hashConcurrency, "hash-concurrency", max(1, runtime.GOMAXPROCS(0)-1), "password hashes computed at once (default: all cores but one, so a login flood cannot starve token checks); more wait up to 2 s, then RESOURCE_EXHAUSTED")
	f.keys.register(fs)
	tf.register(fs)
	f.extAuthz.register(fs)
	var boot bootstrapFlags // serve_admin.go
	boot.register(fs)
	fs.Usage = usageFunc(fs, "Usage: latch serve [flags]\n\nRuns Latch's gRPC AuthService (with reflection and grpc.health.v1) and its HTTP\nendpoints. Keys are generated on first start. SIGINT or SIGTERM stops it gracefully.")
	if err := parseFlags(fs, args, e.getenv); err != nil {
		return err
	}
	sf.noteSet(fs)

	log, err := newLogger(e, f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	if f.accessLogSample < 0 {
		return fmt.Errorf("--access-log-sample %d: want 0 (no access log) or N > 0 (one record in every N calls)", f.accessLogSample)
	}
	proxies, proxyErr := parsePrefixes("--trusted-proxy", f.trustedProxies.vals)
	cfg := server.Config{
		Issuer: f.issuer, Audiences: f.audiences.vals,
		AccessTTL: f.accessTTL, RefreshIdleTTL: f.refreshTTL, RefreshMaxAge: f.maxAge,
		RefreshReuseGrace: reuseGrace(f.reuseGrace), IntrospectOpen: f.introspectOpen,
		ProbeBurst: f.probeBurst, ProbeRefill: f.probeRefill, VerifyCacheSize: cacheSize(f.verifyCache),
		TrustedProxies: proxies, PersonLimits: server.AccountLimits{MaxSessions: f.maxSessions},
		AddressBurst: f.addrBurst, AddressRefill: f.addrRefill,
	}
	if f.serviceRoles.isSet {
		cfg.ServiceRoles = append([]string{}, f.serviceRoles.vals...)
	}
	keyErr := f.keys.apply(&cfg)
	sealer, kekErr := f.keys.sealer(e.getenv)
	extPolicy, extErr := loadExtAuthzPolicy(f.extAuthz, cfg.Issuer, cfg.Audiences)
	bootErr := boot.check(e.getenv, log)
	retention, retentionErr := revokedRetention(f.revokedKeep, cfg)
	if err := errors.Join(append(sf.validate(), proxyErr, cfg.Defaults().Validate(), keyErr, kekErr, extErr, retentionErr,
		tf.validate(map[string]string{"grpc-addr": f.grpcAddr, "http-addr": f.httpAddr, "ext-authz-addr": f.extAuthz.addr}), bootErr)...); err != nil {
		return fmt.Errorf("invalid configuration:\n  %s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
	}

	tp, err := tf.setup(log)
	if err != nil {
		return err
	}
	store, err := sf.open(ctx, log, e.getenv, retention)
	if err != nil {
		return err
	}
	defer store.Close()
	hasher, err := password.NewHasher(password.DefaultParams(), f.hashConcurrency)
	if err != nil {
		return err
	}
	srvOpts := []server.Option{server.WithLogger(log), server.WithKeySealer(sealer)}
	var metricsReg prometheus.Registerer // nil: no metrics
	if tf.metrics {
		bi := readBuildInfo()
		m := server.NewMetrics(server.WithBuildInfo(bi.version, bi.revision))
		tp.instrument(m)
		srvOpts = append(srvOpts, server.WithMetrics(m))
		metricsReg = m.Registry()
		if ws, ok := store.(writeStatser); ok {
			m.Registry().MustRegister(newStorageMetrics(ws.WriteStats))
		}
	}
	srv, err := server.New(ctx, store, hasher, cfg, srvOpts...)
	if err != nil {
		return explainKeyError(err)
	}
	if err := boot.apply(ctx, srv); err != nil {
		return err
	}
	if f.introspectOpen {
		log.Warn("Introspect is open to unauthenticated callers (--introspect-open); never use this in production",
			"event", "introspect_open")
	}

	extAuthz, err := startExtAuthz(ctx, f.extAuthz, extPolicy, f.reflect, tp.extAuthzTransport(tf.transport()), metricsReg, srv, log)
	if err != nil {
		return err
	}
	if extAuthz != nil {
		defer extAuthz.stop(context.Background()) // on early returns; a no-op after the graceful stop below
	}
	grpcLis, err := net.Listen("tcp", f.grpcAddr)
	if err != nil {
		return fmt.Errorf("listen on --grpc-addr: %w", err)
	}
	httpLis, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("listen on --http-addr: %w", err)
	}
	gs := server.NewGRPCServer(srv, log, append(tp.grpcOpts, server.WithReflection(f.reflect), server.WithAccessLog(f.accessLogSample))...)
	hs := &http.Server{
		Handler: srv.HTTPHandler(tp.httpOpts...), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler().WithAttrs([]slog.Attr{slog.String("event", "http_server_error")}), slog.LevelWarn),
	}

	if f.dev {
		if err := devSetup(ctx, e, store, hasher, grpcLis.Addr().String(), cfg.Issuer); err != nil {
			return err
		}
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if sf.kind == storageBolt { // etcd's leases delete expired rows
		go storage.RunSweeper(runCtx, store, f.sweepInterval, sweepChunk, time.Now, log)
	}
	startRevocationFeed(runCtx, srv, log, sf.dialTimeout)
	go srv.RunKeyManager(runCtx)
	errc := make(chan error, 3)
	releaseStartupMemory()
	go func() { errc <- gs.Serve(grpcLis) }()
	go func() { errc <- tp.serveHTTP(hs, httpLis) }()
	if extAuthz != nil {
		go func() { errc <- extAuthz.serve() }()
	}
	logExposure(log, tp, tf.insecureListen, f.grpcAddr, f.httpAddr, f.extAuthz.addr)
	log.Info("latch serving", append([]any{"event", "listening", "grpc_addr", grpcLis.Addr().String(),
		"http_addr", httpLis.Addr().String(), "transport", tp.mode(), "issuer", cfg.Issuer, "version", readBuildInfo().version},
		sf.describe()...)...)

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("stopping", "event", "shutdown")
	case serveErr = <-errc:
		log.Error("server failed; stopping", "event", "serve_failed", "error", serveErr.Error())
	}
	gs.StartDrain()
	if serveErr == nil {
		sleepCtx(context.Background(), tf.drainDelay) // balancers see NOT_SERVING and move away
	}
	stopCtx, stopCancel := context.WithTimeout(context.Background(), f.shutdownTimeout)
	defer stopCancel()
	if extAuthz != nil {
		extAuthz.stop(stopCtx)
	}
	gs.Drain(stopCtx)
	if err := hs.Shutdown(stopCtx); err != nil {
		log.Warn("http shutdown", "error", err.Error())
	}
	cancel()
	log.Info("stopped", "event", "stopped")
	return serveErr
}

func newLogger(e env, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	switch format {
	case "json":
		h = slog.NewJSONHandler(e.stderr, opts)
	case "text":
		h = slog.NewTextHandler(e.stderr, opts)
	default:
		return nil, fmt.Errorf("--log-format %q: want json or text", format)
	}
	return slog.New(redact.NewHandler(h)), nil
}

// explainOpen turns a failure to open the database into advice.
func explainOpen(path string, err error) error {
	if errors.Is(err, bolt.ErrLocked) {
		return fmt.Errorf("database %s is in use by another process (a running `latch serve`?); stop it first: %w", path, err)
	}
	return fmt.Errorf("open database %s: %w", path, err)
}

// reuseGrace maps the flag (0 disables) to server.Config (negative
// disables, 0 means the default).
func reuseGrace(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// parsePrefixes parses CIDR networks (a bare address is its own /32 or
// /128), reporting every bad one.
func parsePrefixes(flagName string, vals []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, v := range vals {
		if p, err := netip.ParsePrefix(v); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(v); err == nil {
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		errs = append(errs, fmt.Errorf("%s %q is not a CIDR network or an IP address", flagName, v))
	}
	return out, errors.Join(errs...)
}

// cacheSize maps the flag (0 disables) to server.Config (negative disables,
// 0 means the default).
func cacheSize(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}

// sweepChunk is how many expired rows the sweeper deletes per write
// transaction. Deleting one session dirties about six scattered pages, and
// the sweeper holds bbolt's one writer lock for the whole transaction, so
// a refresh arriving meanwhile waits for it: 16 rows keep that wait to a
// few milliseconds (`latch bench`'s sweep rows measure it; 50 rows took
// ~19 ms a chunk at 200,000 expired sessions), while SweepOnce's pacing
// still gives the sweep up to half the writer's time.
const sweepChunk = 16

// releaseStartupMemory returns to the OS the memory that starting up left
// behind as garbage, above all the argon2id block (19 MiB at the default
// parameters) of the dummy hash the password hasher computes once at
// construction. Without it an idle server keeps that block resident until
// the next forced collection and the scavenger catch up, minutes later.
func releaseStartupMemory() { debug.FreeOSMemory() }
