package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/latchauth/latch/internal/keyseal"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/internal/redact"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/server/extauthz"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
)

// serveSetup is serve's configuration, checked and turned into what the
// server, the storage and the listeners take.
type serveSetup struct {
	cfg       config
	srv       server.Config
	sf        storageFlags
	tf        transportFlags
	ext       extAuthzFlags
	boot      bootstrapFlags
	policy    *extauthz.Policy
	sealer    *keyseal.Sealer
	retention time.Duration
	log       *slog.Logger
}

// prepareServe checks cfg and builds serve's parts from it, reporting every
// problem at once and opening nothing but the files it names (TLS,
// policy, key-encryption key, bootstrap password).
func prepareServe(cfg config, e env) (*serveSetup, []error) {
	n := configNamer()
	set := changed(cfg)
	var errs []error
	log, err := newLogger(e, cfg.Log.Format, cfg.Log.Level, n)
	if err != nil {
		errs = append(errs, err)
		log = slog.New(redact.NewHandler(slog.NewJSONHandler(e.stderr, nil)))
	}
	if cfg.Log.AccessSample < 0 {
		errs = append(errs, fmt.Errorf("%s %d: want 0 (no access log) or N > 0 (one record in every N calls)", n("access-log-sample"), cfg.Log.AccessSample))
	}
	if !cfg.Dev || cfg.Issuer != "" { // dev mode defaults an empty issuer
		errs = append(errs, checkIssuer(cfg.Issuer, n))
	}
	st := &serveSetup{cfg: cfg, log: log}
	proxies, proxyErr := parsePrefixes(n("trusted-proxy"), cfg.Limits.TrustedProxies)
	t := cfg.Tokens
	st.srv = server.Config{
		Issuer: cfg.Issuer, Audiences: cfg.Audiences,
		AccessTTL: t.AccessTTL, RefreshIdleTTL: t.RefreshTTL, RefreshMaxAge: t.RefreshMaxAge,
		RefreshReuseGrace: zeroDisables(t.RefreshReuseGrace), IntrospectOpen: cfg.IntrospectOpen,
		ProbeBurst: cfg.Limits.ProbeBurst, ProbeRefill: cfg.Limits.ProbeRefill, VerifyCacheSize: zeroDisables(t.VerifyCache),
		TrustedProxies: proxies, PersonLimits: server.AccountLimits{MaxSessions: cfg.Limits.MaxSessions},
		AddressBurst: cfg.Limits.LoginAddressBurst, AddressRefill: cfg.Limits.LoginAddressRefill,
		ServiceRoles: append([]string{}, cfg.Limits.ServiceRoles...),
	}
	errs = append(errs, proxyErr, checkServeNumbers(cfg, n))
	kf := keyFlags{rotation: cfg.Keys.Rotation, reload: cfg.Keys.ReloadInterval, publishLead: cfg.Keys.PublishLead,
		kekFile: cfg.Keys.EncryptionKeyFile, name: n}
	errs = append(errs, kf.apply(&st.srv))
	st.sealer, err = kf.sealer(e.getenv, log)
	errs = append(errs, err)
	sc := cfg.Storage
	st.sf = storageFlags{kind: sc.Backend, db: sc.DB, endpoints: stringList{vals: sc.Etcd.Endpoints}, prefix: sc.Etcd.Prefix,
		ca: sc.Etcd.CAFile, cert: sc.Etcd.CertFile, key: sc.Etcd.KeyFile, username: sc.Etcd.Username, passwordFile: sc.Etcd.PasswordFile, plaintext: sc.Etcd.AllowPlaintext,
		dialTimeout: sc.Etcd.DialTimeout, reqTimeout: sc.Etcd.RequestTimeout, maxTxnOps: sc.Etcd.MaxTxnOps, set: set, name: n}
	errs = append(errs, st.sf.validate()...)
	errs = append(errs, st.sf.resolvePassword(e.getenv, log))
	g := cfg.GRPC
	st.tf = transportFlags{tlsCert: cfg.TLS.CertFile, tlsKey: cfg.TLS.KeyFile, tlsClientCA: cfg.TLS.ClientCAFile,
		insecureListen: cfg.Listen.Insecure, maxStreams: uint(max(g.MaxConcurrentStreams, 0)),
		keepaliveTime: g.KeepaliveTime, keepaliveTO: g.KeepaliveTimeout, keepaliveMin: g.KeepaliveMinTime, maxIdle: g.MaxConnectionIdle,
		maxAge: g.MaxConnectionAge, maxAgeGrace: g.MaxConnectionAgeGrace, drainDelay: cfg.Shutdown.DrainDelay, metrics: cfg.Metrics.Enabled,
		extAuthzClientCA: cfg.ExtAuthz.ClientCAFile, extAuthzAllowUnauth: cfg.ExtAuthz.AllowUnauthenticatedClients, name: n}
	x := cfg.ExtAuthz
	st.ext = extAuthzFlags{addr: x.Addr, policy: x.PolicyFile, subH: x.SubHeader, sidH: x.SidHeader, rolesH: x.RolesHeader,
		keepAuthorization: x.KeepAuthorization, cache: x.Cache, healthInterval: x.HealthInterval, name: n}
	st.policy, err = loadExtAuthzPolicy(st.ext, st.srv.Issuer, st.srv.Audiences, n)
	errs = append(errs, err)
	st.boot = bootstrapFlags{email: cfg.BootstrapAdmin.Email, passwordFile: cfg.BootstrapAdmin.PasswordFile, name: n}
	errs = append(errs, st.boot.check(e.getenv, log))
	vc := st.srv.Defaults()
	if vc.Issuer == "" {
		vc.Issuer = "https://issuer.invalid" // a missing issuer is reported above, with the ways to set it
	}
	errs = append(errs, inKeys(vc.Validate(), n))
	st.retention, err = revokedRetention(t.RevokedSessionRetention, st.srv, n)
	errs = append(errs, err)
	errs = append(errs, st.tf.validate(map[string]string{"grpc-addr": cfg.Listen.GRPC, "http-addr": cfg.Listen.HTTP, "ext-authz-addr": x.Addr}))
	return st, slices.DeleteFunc(errs, func(err error) bool { return err == nil })
}

// serverFields maps the server.Config fields that the server's validation
// names to serve's setting ids.
var serverFields = map[string]string{
	"Issuer": "issuer", "Audiences": "audience", "AccessTTL": "access-ttl", "RefreshIdleTTL": "refresh-ttl",
	"RefreshMaxAge": "refresh-max-age", "RefreshReuseGrace": "refresh-reuse-grace", "KeyPublishLead": "key-publish-lead",
	"KeyRotation": "key-rotation", "KeyReloadInterval": "key-reload-interval",
}

// serverFieldRE matches the field names of serverFields, and Leeway (fixed,
// not a setting), in a message.
var serverFieldRE = regexp.MustCompile(`\b(Issuer|Audiences|AccessTTL|RefreshIdleTTL|RefreshMaxAge|RefreshReuseGrace|KeyPublishLead|KeyRotation|KeyReloadInterval|Leeway)\b`)

// inKeys rewrites the server's validation errors, which name
// server.Config fields, in the words of serve's configuration.
func inKeys(err error, n namer) error {
	if err == nil {
		return nil
	}
	msg := strings.ReplaceAll(err.Error(), "config: ", "")
	return errors.New(serverFieldRE.ReplaceAllStringFunc(msg, func(f string) string {
		if f == "Leeway" {
			return "the clock leeway" // fixed, not a setting
		}
		return n(serverFields[f])
	}))
}

// checkServeNumbers reports settings that make no sense on their own and
// that no library checks.
func checkServeNumbers(cfg config, n namer) error {
	var errs []error
	if cfg.Limits.HashConcurrency < 0 {
		errs = append(errs, fmt.Errorf("%s %d must not be negative (0: all cores but one)", n("hash-concurrency"), cfg.Limits.HashConcurrency))
	}
	if cfg.Limits.MaxSessions < 1 {
		errs = append(errs, fmt.Errorf("%s %d must be at least 1", n("max-sessions"), cfg.Limits.MaxSessions))
	}
	if cfg.Storage.SweepInterval <= 0 {
		errs = append(errs, fmt.Errorf("%s %v must be positive", n("sweep-interval"), cfg.Storage.SweepInterval))
	}
	if cfg.Shutdown.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("%s %v must be positive", n("shutdown-timeout"), cfg.Shutdown.Timeout))
	}
	if cfg.Tokens.VerifyCache < 0 {
		errs = append(errs, fmt.Errorf("%s %d must not be negative (0 disables it)", n("verify-cache"), cfg.Tokens.VerifyCache))
	}
	if cfg.Tokens.RefreshReuseGrace < 0 {
		errs = append(errs, fmt.Errorf("%s %v must not be negative (0 disables it)", n("refresh-reuse-grace"), cfg.Tokens.RefreshReuseGrace))
	}
	return errors.Join(errs...)
}

// validateServeConfig reports every problem with cfg, as serve would
// before opening anything.
func validateServeConfig(cfg config, getenv func(string) string) []error {
	_, errs := prepareServe(cfg, env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: getenv})
	return errs
}

func serve(ctx context.Context, args []string, e env) error {
	sa, argErrs := parseServeArgs(args)
	if sa.help {
		fmt.Fprint(e.stdout, serveUsage)
		return flag.ErrHelp
	}
	cfg, cfgErrs := loadServeConfig(sa, e.getenv)
	st, errs := prepareServe(cfg, e)
	if err := errors.Join(append(append(argErrs, cfgErrs...), errs...)...); err != nil {
		if len(argErrs) > 0 {
			fmt.Fprintf(e.stderr, "latch serve: %v\n", invalidConfig(err))
			return errUsage
		}
		return invalidConfig(err)
	}
	log, sf, tf := st.log, st.sf, st.tf
	f := st.cfg

	// The ports are taken before anything is created, so that one in use
	// stops serve before a database and signing keys exist.
	grpcLis, err := net.Listen("tcp", f.Listen.GRPC)
	if err != nil {
		return explainListen(listenName("grpc-addr"), f.Listen.GRPC, err)
	}
	defer grpcLis.Close()
	httpLis, err := net.Listen("tcp", f.Listen.HTTP)
	if err != nil {
		return explainListen(listenName("http-addr"), f.Listen.HTTP, err)
	}
	defer httpLis.Close()
	var extLis net.Listener
	if st.policy != nil {
		if extLis, err = net.Listen("tcp", st.ext.addr); err != nil {
			return explainListen(listenName("ext-authz-addr"), st.ext.addr, err)
		}
		defer extLis.Close()
	}

	tp, err := tf.setup(log)
	if err != nil {
		return err
	}
	store, err := sf.open(ctx, log, st.retention)
	if err != nil {
		return err
	}
	defer store.Close()
	hasher, err := password.NewHasher(password.DefaultParams(), hashConcurrency(f.Limits.HashConcurrency))
	if err != nil {
		return err
	}
	srvOpts := []server.Option{server.WithLogger(log), server.WithKeySealer(st.sealer)}
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
	srv, err := server.New(ctx, store, hasher, st.srv, srvOpts...)
	if err != nil {
		return explainKeyError(err, configNamer())
	}
	if err := st.boot.apply(ctx, srv); err != nil {
		return err
	}
	if f.IntrospectOpen {
		log.Warn("Introspect is open to unauthenticated callers (introspect_open); never use this in production",
			"event", "introspect_open")
	}

	extAuthz, err := startExtAuthz(ctx, st.ext, extLis, st.policy, f.GRPC.Reflection, tp.extAuthzTransport(tf.transport()), metricsReg, srv, log)
	if err != nil {
		return err
	}
	if extAuthz != nil {
		defer extAuthz.stop(context.Background()) // on early returns; a no-op after the graceful stop below
	}
	gs := server.NewGRPCServer(srv, log, append(tp.grpcOpts, server.WithReflection(f.GRPC.Reflection), server.WithAccessLog(f.Log.AccessSample))...)
	hs := &http.Server{
		Handler: srv.HTTPHandler(tp.httpOpts...), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler().WithAttrs([]slog.Attr{slog.String("event", "http_server_error")}), slog.LevelWarn),
	}

	if f.Dev {
		if err := devSetup(ctx, e, store, hasher, grpcLis.Addr().String(), st.srv.Issuer); err != nil {
			return err
		}
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if sf.kind == storageBolt { // etcd's leases delete expired rows
		go storage.RunSweeper(runCtx, store, f.Storage.SweepInterval, sweepChunk, time.Now, log)
	}
	startRevocationFeed(runCtx, srv, log, sf.dialTimeout)
	go srv.RunKeyManager(runCtx)
	errc := make(chan error, 3)
	// Return start-up garbage to the OS, above all the argon2id block of
	// the hasher's dummy hash, so that an idle server does not keep it.
	debug.FreeOSMemory()
	go func() { errc <- gs.Serve(grpcLis) }()
	go func() { errc <- tp.serveHTTP(hs, httpLis) }()
	if extAuthz != nil {
		go func() { errc <- extAuthz.serve() }()
	}
	logExposure(log, tp, tf.insecureListen, f.Listen.GRPC, f.Listen.HTTP, st.ext.addr)
	log.Info("latch serving", append([]any{"event", "listening", "grpc_addr", grpcLis.Addr().String(),
		"http_addr", httpLis.Addr().String(), "transport", tp.mode(), "issuer", st.srv.Issuer, "version", readBuildInfo().version},
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
	stopCtx, stopCancel := context.WithTimeout(context.Background(), f.Shutdown.Timeout)
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

// newLogger builds the redacting logger, or reports every problem with
// the format and level, naming them with n.
func newLogger(e env, format, level string, n namer) (*slog.Logger, error) {
	var lvl slog.Level
	var errs []error
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		errs = append(errs, fmt.Errorf("%s %q: want debug, info, warn or error", n("log-level"), level))
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	switch format {
	case "json":
		h = slog.NewJSONHandler(e.stderr, opts)
	case "text":
		h = slog.NewTextHandler(e.stderr, opts)
	default:
		errs = append(errs, fmt.Errorf("%s %q: want json or text", n("log-format"), format))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return slog.New(redact.NewHandler(h)), nil
}

// explainOpen turns a failure to open the database into advice, naming
// the path once.
func explainOpen(path string, err error) error {
	if errors.Is(err, bolt.ErrLocked) {
		return fmt.Errorf("database %s is in use by another process (a running `latch serve`?); stop it first: %w", path, err)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		dir := filepath.Dir(path)
		switch {
		case errors.Is(pe.Err, fs.ErrNotExist):
			if _, serr := os.Stat(dir); serr != nil {
				return fmt.Errorf("open database %s: %w: its directory does not exist; create it (mkdir -p %s) or choose another path", path, pe.Err, dir)
			}
		case errors.Is(pe.Err, fs.ErrPermission):
			return fmt.Errorf("open database %s: %w: the user running latch must be able to write the file and its directory %s", path, pe.Err, dir)
		}
		return fmt.Errorf("open database %s: %s: %w", path, pe.Op, pe.Err)
	}
	return fmt.Errorf("open database %s: %w", path, err)
}

// listenName names a listen address in serve's messages.
func listenName(id string) string { return configNamer()(id) }

// explainListen turns a failure to listen into advice.
func explainListen(name, addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("listen on %s %s: the address is in use (another latch, or another program); stop it or choose another address: %w", name, addr, err)
	}
	return fmt.Errorf("listen on %s %s: %w", name, addr, err)
}

// hashConcurrency maps the setting (0: all cores but one) to the hasher's
// bound.
func hashConcurrency(n int) int {
	if n > 0 {
		return n
	}
	return max(1, runtime.GOMAXPROCS(0)-1)
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

// zeroDisables maps a setting where 0 disables to server.Config, where a
// negative value disables and 0 means the default.
func zeroDisables[T ~int | ~int64](v T) T {
	if v <= 0 {
		return -1
	}
	return v
}

// sweepChunk is how many expired rows the sweeper deletes per write
// transaction: the sweeper holds bbolt's one writer lock for the whole
// transaction, so a small chunk keeps the wait of a refresh arriving
// meanwhile to a few milliseconds (`latch bench`'s sweep rows measure it).
const sweepChunk = 16
