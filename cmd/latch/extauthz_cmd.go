package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/interceptors/clientcreds"
	"github.com/latchauth/latch/server"
)

// extAuthzCmd runs the ext_authz service on its own, next to the sidecars,
// verifying with Latch's published keys (GetJWKS) and following its
// revocations (WatchRevocations), so that Latch is not on the path of
// every request. It is the interceptors' Verifier, the same as sibling
// services use, and its freshness is what latch.verifier reports.
func extAuthzCmd(ctx context.Context, args []string, e env) error {
	fs := flag.NewFlagSet("latch ext-authz", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var f extAuthzFlags
	f.register(fs)
	latchAddr := fs.String("latch-addr", "127.0.0.1:7300", "Latch's gRPC address: keys (GetJWKS) and revocations (WatchRevocations)")
	issuer := fs.String("issuer", "http://127.0.0.1:7301", "Latch's --issuer (iss of every token)")
	plaintext := fs.Bool("latch-plaintext", false, "talk to Latch without TLS (loopback, or a mesh that adds mTLS); default TLS with the system's roots")
	revEmail := fs.String("revocations-email", "", "account with role introspect that follows Latch's revocations (logged in for Latch's own audience, --issuer); its password in LATCH_EXT_AUTHZ_PASSWORD")
	stateless := fs.Bool("stateless", false, "run without following revocations: a revoked token passes until it expires (refused unless given)")
	maxKeyAge := fs.Duration("max-key-age", time.Hour, "key set older than this (Latch unreachable) is stale")
	maxRevLag := fs.Duration("max-revocation-lag", 5*time.Minute, "revocation stream out of sync longer than this is stale")
	stalePolicy := fs.String("stale-policy", "closed", "while stale: closed (refuse every request with 503) or open (keep deciding on the last state)")
	tlsCert := fs.String("tls-cert", "", "PEM certificate chain for TLS on --ext-authz-addr (reloaded when the file changes)")
	tlsKey := fs.String("tls-key", "", "PEM private key of --tls-cert")
	tlsClientCA := fs.String("tls-client-ca", "", "PEM CA bundle: require and verify client certificates (mutual TLS with the sidecars)")
	insecureListen := fs.Bool("insecure-listen", false, "allow plaintext on a non-loopback --ext-authz-addr (a mesh adds mTLS); no effect with --tls-cert")
	allowUnauth := fs.Bool("ext-authz-allow-unauthenticated-clients", false, allowUnauthenticatedHelp)
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus metrics at /metrics on this address (plain HTTP; off when empty)")
	logFormat := fs.String("log-format", "json", "log format: json or text")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	fs.Usage = usageWithEnv(fs, "Usage: latch ext-authz --ext-authz-addr ADDR --ext-authz-policy FILE --latch-addr ADDR --issuer URL [flags]\n\n"+
		"Serves Envoy's ext_authz API away from Latch: verifies tokens with Latch's published keys and\n"+
		"follows its revocations. SIGHUP rereads the policy; SIGINT or SIGTERM stops it.", envName)
	if err := parseFlags(fs, args, e.getenv, envName); err != nil {
		return err
	}
	log, err := newLogger(e, *logFormat, *logLevel, flagName)
	if err != nil {
		return err
	}

	var errs []error
	if f.addr == "" {
		errs = append(errs, errors.New("--ext-authz-addr is required"))
	}
	policy, err := loadExtAuthzPolicy(f, *issuer, nil, flagName)
	if err != nil {
		errs = append(errs, err)
	}
	password := e.getenv("LATCH_EXT_AUTHZ_PASSWORD")
	switch {
	case *revEmail == "" && !*stateless:
		errs = append(errs, errors.New("--revocations-email is required (or --stateless, to let revoked tokens pass until they expire)"))
	case *revEmail != "" && *stateless:
		errs = append(errs, errors.New("--revocations-email and --stateless are exclusive"))
	case *revEmail != "" && password == "":
		errs = append(errs, errors.New("LATCH_EXT_AUTHZ_PASSWORD must hold the password of --revocations-email"))
	}
	if *stalePolicy != "closed" && *stalePolicy != "open" {
		errs = append(errs, fmt.Errorf("--stale-policy %q: want closed or open", *stalePolicy))
	}
	if *issuer == "" || *latchAddr == "" {
		errs = append(errs, errors.New("--issuer and --latch-addr are required"))
	}
	errs = append(errs, checkTLSFiles(*tlsCert, *tlsKey, *tlsClientCA, flagName)...)
	errs = append(errs, checkExposure(map[string]string{"ext-authz-addr": f.addr}, *tlsCert != "", *insecureListen, flagName))
	errs = append(errs, checkExtAuthzClientAuth(f.addr, *tlsClientCA != "", *allowUnauth,
		"--tls-client-ca (LATCH_TLS_CLIENT_CA) with the CA of Envoy's client certificates, and --tls-cert and --tls-key", flagName))
	if *metricsAddr != "" && !isLoopback(*metricsAddr) && !*insecureListen {
		errs = append(errs, fmt.Errorf("refusing to serve plaintext metrics on --metrics-addr %s, which is not a loopback address: "+
			"give --insecure-listen if the network in between is trusted", *metricsAddr))
	}
	if err := errors.Join(errs...); err != nil {
		return invalidConfig(err)
	}

	et := extAuthzTransport{transport: server.DefaultTransport()}
	if *tlsCert != "" {
		r, err := loadCerts(*tlsCert, *tlsKey, *tlsClientCA, log)
		if err != nil {
			return err
		}
		et.tls, et.clientAuth = r.ServerConfig("h2"), r.MutualTLS()
	}
	tc := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
	var loginOpts []clientcreds.Option
	if *plaintext {
		tc = insecure.NewCredentials()
		loginOpts = append(loginOpts, clientcreds.WithInsecure())
	}
	latch, err := grpc.NewClient(*latchAddr, grpc.WithTransportCredentials(tc))
	if err != nil {
		return fmt.Errorf("latch connection: %w", err)
	}
	defer latch.Close()
	vopts := []interceptors.Option{
		interceptors.WithCacheSize(f.cache),
		interceptors.WithMaxKeyAge(*maxKeyAge),
		interceptors.WithMaxRevocationLag(*maxRevLag),
		interceptors.WithLogger(log),
	}
	if *stalePolicy == "open" {
		vopts = append(vopts, interceptors.WithFailOpen())
	}
	if *revEmail != "" {
		// WatchRevocations is one of Latch's own APIs: it accepts only
		// tokens for Latch's own audience, its issuer. When the session
		// ends (revoked, expired), the credentials log in again.
		login := clientcreds.PasswordLogin(latch, *revEmail, *issuer, func(context.Context) (string, error) { return password, nil })
		creds, err := clientcreds.Login(ctx, latch, *revEmail, password, *issuer, append(loginOpts, clientcreds.WithRelogin(login))...)
		if err != nil {
			return fmt.Errorf("--revocations-email: %w", err)
		}
		vopts = append(vopts, interceptors.WithRevocations(latch, creds))
	} else {
		log.Warn("not following revocations (--stateless): a revoked token passes until it expires", "event", "ext_authz_stateless")
	}
	v, err := interceptors.NewVerifier(ctx, interceptors.Config{Issuer: *issuer, Audience: policy.Audiences(),
		Keys: interceptors.JWKSFromGRPC(latch)}, vopts...)
	if err != nil {
		return err
	}
	var reg *prometheus.Registry
	var regr prometheus.Registerer // a nil interface, not a nil *Registry, when metrics are off
	if *metricsAddr != "" {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		regr = reg
	}
	lis, err := net.Listen("tcp", f.addr)
	if err != nil {
		v.Close()
		return explainListen("--ext-authz-addr", f.addr, err)
	}
	x, err := listenExtAuthz(f, lis, v, policy, true, et, regr, policy.Audiences(), log)
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- x.serve() }()
	var metricsSrv *http.Server
	var metricsBound string
	if reg != nil {
		lis, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			x.stop(context.Background())
			return fmt.Errorf("listen on --metrics-addr: %w", err)
		}
		metricsBound = lis.Addr().String()
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second}
		go func() { errc <- metricsSrv.Serve(lis) }()
	}
	log.Info("ext_authz following Latch", "event", "listening", "latch_addr", *latchAddr, "revocations", *revEmail != "",
		"stale_policy", *stalePolicy, "metrics_addr", metricsBound, "version", readBuildInfo().version)
	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("stopping", "event", "shutdown")
	case serveErr = <-errc:
		log.Error("ext_authz failed; stopping", "event", "serve_failed", "error", serveErr.Error())
	}
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	x.stop(stopCtx)
	if metricsSrv != nil {
		_ = metricsSrv.Shutdown(stopCtx)
	}
	log.Info("stopped", "event", "stopped")
	return serveErr
}
