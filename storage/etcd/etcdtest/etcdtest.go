// Package etcdtest starts real etcd for tests: one member (Start) or a
// statically bootstrapped cluster of several (StartCluster), each the etcd
// binary (Debian's etcd-server package, or $LATCH_ETCD) on free loopback
// ports with its data directory in t.TempDir(), stopped at cleanup. A
// member can be stopped, killed, paused and restarted, to test what Latch
// does while etcd fails.
//
// When no etcd binary is found the test is skipped with a message saying how
// to install one, unless LATCH_REQUIRE_ETCD=1 (set by .ci/test), in which
// case it fails: CI must never pass by skipping the etcd backend.
package etcdtest

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/latchauth/latch/internal/certs/certstest"
	"github.com/latchauth/latch/internal/etcdproc"
)

// Server is a running etcd member. Its embedded Member holds the client
// URL, Endpoint: http://127.0.0.1:PORT, or https:// with WithTLS.
type Server struct {
	*etcdproc.Member
	// With WithTLS: PEM files of the CA that signed etcd's certificate and
	// of a client certificate and key it accepts (it requires one).
	CAFile, CertFile, KeyFile string
}

// Endpoints returns the client URL as a list, as Cluster.Endpoints does,
// so that code starting Latch on etcd takes either.
func (s *Server) Endpoints() []string { return []string{s.Endpoint} }

// Restart starts a stopped server again on the same ports and data, as an
// operator restarting the member would.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.Member.Restart(context.Background()); err != nil {
		t.Fatalf("etcdtest: restart: %v", err)
	}
}

// Require skips (or, with LATCH_REQUIRE_ETCD=1, fails) t when etcd is not
// installed, and returns the binary ($LATCH_ETCD, else etcd on $PATH)
// otherwise.
func Require(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("LATCH_ETCD"); p != "" {
		return p
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	const how = "etcd is not installed: `apt-get install -y etcd-server` (Debian/Ubuntu), or set LATCH_ETCD to an etcd binary"
	if os.Getenv("LATCH_REQUIRE_ETCD") == "1" {
		t.Fatalf("LATCH_REQUIRE_ETCD=1 but %s", how)
	}
	t.Skip(how)
	return ""
}

// Option configures Start.
type Option func(*options)

type options struct {
	tls  bool
	args []string
}

// WithTLS makes etcd serve clients over TLS only, with a fresh CA, and
// require a client certificate signed by it.
func WithTLS() Option { return func(o *options) { o.tls = true } }

// WithMaxTxnOps starts etcd with --max-txn-ops n (etcd's default is 128),
// to test what a store does at a cluster's real limit.
func WithMaxTxnOps(n int) Option {
	return func(o *options) { o.args = append(o.args, "--max-txn-ops", fmt.Sprint(n)) }
}

// WithQuotaBackendBytes starts etcd with --quota-backend-bytes n (etcd's
// default is 2 GiB), so that a test can fill it and see what Latch does
// while etcd's NOSPACE alarm refuses writes.
func WithQuotaBackendBytes(n int64) Option {
	return func(o *options) { o.args = append(o.args, "--quota-backend-bytes", fmt.Sprint(n)) }
}

// Start starts a one-member etcd for t and stops it when t ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	return StartCluster(t, 1, opts...).Members[0]
}

// StartCluster starts an n-member cluster for t, waits until it has a
// leader and every member is healthy, and stops every member when t ends,
// logging the end of each member's log if t failed. With WithTLS every
// member serves clients over TLS, under one fresh CA.
func StartCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	cfg := etcdproc.Config{Bin: Require(t), Dir: t.TempDir(), Members: n, Args: o.args}
	var caFile, certFile, keyFile string
	if o.tls {
		ca := certstest.NewCA(t, "latch test CA")
		dir := t.TempDir()
		serverCert, serverKey := ca.Server(t).WriteFiles(t, dir, "server")
		client := ca.Client(t, "latch", "")
		certFile, keyFile = client.WriteFiles(t, dir, "client")
		caFile = filepath.Join(dir, "ca.pem")
		certstest.WriteFile(t, caFile, ca.PEM)
		cfg.Args = append(cfg.Args, "--cert-file", serverCert, "--key-file", serverKey, "--trusted-ca-file", caFile, "--client-cert-auth")
		cfg.ClientTLS = &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{client.TLSCertificate(t)}, MinVersion: tls.VersionTLS12}
	}
	pc, err := etcdproc.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	t.Cleanup(func() {
		pc.Stop()
		if t.Failed() {
			for _, m := range pc.Members {
				t.Logf("etcd member %s log tail:\n%s", m.Name, m.Tail())
			}
		}
	})
	c := &Cluster{}
	for _, m := range pc.Members {
		c.Members = append(c.Members, &Server{Member: m, CAFile: caFile, CertFile: certFile, KeyFile: keyFile})
	}
	return c
}
