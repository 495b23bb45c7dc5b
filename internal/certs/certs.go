// Package certs serves TLS from certificate files that operators renew in
// place: a Reloader notices, at each handshake, that the certificate, key or
// client-CA files changed on disk and loads them again, so a renewed
// certificate (cert-manager, certbot, a mounted Kubernetes secret) takes
// effect without a restart.
//
// A reload that fails (for example while a renewal has written the new
// certificate but not yet its key) keeps the last good material serving and
// is tried again at the next handshake; the failure is logged once per
// change of the files.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"
)

// MinVersion is the lowest TLS version served: TLS 1.2 (RFC 8996 retired
// 1.0 and 1.1).
const MinVersion = tls.VersionTLS12

// Reloader holds the current server certificate and, for mutual TLS, the
// pool of client CAs, and reloads them when their files change.
type Reloader struct {
	certFile, keyFile, caFile string
	log                       *slog.Logger

	mu       sync.Mutex
	stamp    fileStamp // of the files the current material was loaded from
	badStamp fileStamp // files whose load last failed (logged once)
	gen      uint64    // incremented on every successful load
	lastWarn string    // last reload failure logged, to log each once
	cert     *tls.Certificate
	pool     *x509.CertPool
}

// fileStamp identifies a version of the files by modification time and
// size; any write that a renewal makes changes one of them.
type fileStamp [3]struct {
	mod  time.Time
	size int64
}

// Option configures a Reloader.
type Option func(*Reloader)

// WithLogger sets where reload successes and failures are logged. Default:
// discarded.
func WithLogger(l *slog.Logger) Option { return func(r *Reloader) { r.log = l } }

// WithClientCA turns on mutual TLS: every client must present a certificate
// that chains to a CA in the PEM file caFile, or the handshake fails. The
// file is reloaded like the certificate.
func WithClientCA(caFile string) Option { return func(r *Reloader) { r.caFile = caFile } }

// New loads the PEM certificate chain and private key (and the client CA
// bundle, with WithClientCA) and returns a Reloader. It fails if any of them
// cannot be loaded now, so that a misconfigured server refuses to start.
func New(certFile, keyFile string, opts ...Option) (*Reloader, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("certs: both a certificate file and a key file are required")
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: slog.New(slog.DiscardHandler)}
	for _, opt := range opts {
		opt(r)
	}
	st, err := r.statFiles()
	if err != nil {
		return nil, err
	}
	cert, pool, err := r.load()
	if err != nil {
		return nil, err
	}
	r.stamp, r.cert, r.pool, r.gen = st, cert, pool, 1
	return r, nil
}

// MutualTLS reports whether client certificates are required.
func (r *Reloader) MutualTLS() bool { return r.caFile != "" }

// Leaf returns the certificate being served now (after reloading it if its
// files changed).
func (r *Reloader) Leaf() *x509.Certificate {
	cert, _, _ := r.current()
	return cert.Leaf
}

// ServerConfig returns a TLS configuration for a listener that offers the
// given ALPN protocols ("h2" for gRPC; "h2", "http/1.1" for HTTP). It serves
// TLS 1.2 or later with the current certificate and, with a client CA,
// requires and verifies a client certificate. The certificate and CA are
// those on disk at each handshake.
func (r *Reloader) ServerConfig(nextProtos ...string) *tls.Config {
	return r.serverConfig(tls.RequireAndVerifyClientCert, nextProtos)
}

// VerifyIfGivenConfig is ServerConfig for a listener that also serves
// clients without a certificate: with a client CA, a certificate that is
// presented must chain to it (otherwise the handshake fails), and a client
// that presents none completes the handshake unauthenticated, for the
// handler to admit only to its public routes. Without a client CA it is
// ServerConfig.
func (r *Reloader) VerifyIfGivenConfig(nextProtos ...string) *tls.Config {
	return r.serverConfig(tls.VerifyClientCertIfGiven, nextProtos)
}

// serverConfig is ServerConfig with the client authentication to apply
// when a client CA is configured.
func (r *Reloader) serverConfig(clientAuth tls.ClientAuthType, nextProtos []string) *tls.Config {
	protos := slices.Clone(nextProtos)
	var (
		mu     sync.Mutex
		gen    uint64
		cached *tls.Config
	)
	base := &tls.Config{MinVersion: MinVersion, NextProtos: protos}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, pool, g := r.current()
		mu.Lock()
		defer mu.Unlock()
		if cached == nil || gen != g {
			// One Config per loaded generation, so that session tickets
			// keep working between reloads.
			c := &tls.Config{MinVersion: MinVersion, NextProtos: protos, Certificates: []tls.Certificate{*cert}}
			if pool != nil {
				c.ClientAuth = clientAuth
				c.ClientCAs = pool
			}
			cached, gen = c, g
		}
		return cached, nil
	}
	return base
}

// current returns the material to serve, reloading it first if the files
// changed and the new files load.
func (r *Reloader) current() (*tls.Certificate, *x509.CertPool, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.statFiles()
	switch {
	case err != nil:
		r.warn(err)
	case st == r.stamp || st == r.badStamp:
		// Nothing new since the last load or the last failed attempt.
	default:
		cert, pool, err := r.load()
		if err != nil {
			r.badStamp = st
			r.warn(err)
			break
		}
		r.stamp, r.badStamp, r.cert, r.pool, r.lastWarn = st, fileStamp{}, cert, pool, ""
		r.gen++
		r.log.Info("TLS certificate reloaded", "event", "tls_reloaded", "cert_file", r.certFile,
			"subject", cert.Leaf.Subject.String(), "serial", cert.Leaf.SerialNumber.String(),
			"not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return r.cert, r.pool, r.gen
}

// warn logs a reload failure once per distinct failure.
func (r *Reloader) warn(err error) {
	if msg := err.Error(); msg != r.lastWarn {
		r.lastWarn = msg
		r.log.Warn("TLS files changed but do not load; still serving the previous certificate",
			"event", "tls_reload_failed", "cert_file", r.certFile, "error", msg)
	}
}

func (r *Reloader) statFiles() (fileStamp, error) {
	var st fileStamp
	for i, name := range []string{r.certFile, r.keyFile, r.caFile} {
		if name == "" {
			continue
		}
		fi, err := os.Stat(name)
		if err != nil {
			return fileStamp{}, fmt.Errorf("certs: %w", err)
		}
		st[i].mod, st[i].size = fi.ModTime(), fi.Size()
	}
	return st, nil
}

func (r *Reloader) load() (*tls.Certificate, *x509.CertPool, error) {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: load %s and %s: %w", r.certFile, r.keyFile, err)
	}
	if r.caFile == "" {
		return &cert, nil, nil
	}
	pemBytes, err := os.ReadFile(r.caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: read client CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, nil, fmt.Errorf("certs: client CA file %s holds no PEM certificate", r.caFile)
	}
	return &cert, pool, nil
}
