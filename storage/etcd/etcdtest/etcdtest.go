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
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/latchauth/latch/internal/certs/certstest"
)

// Server is a running etcd.
type Server struct {
	// Endpoint is the client URL: http://127.0.0.1:PORT, or https:// with
	// WithTLS.
	Endpoint string
	// With WithTLS: PEM files of the CA that signed etcd's certificate and
	// of a client certificate and key it accepts (it requires one).
	CAFile, CertFile, KeyFile string

	bin     string
	args    []string
	logPath string
	hc      *http.Client
	mu      sync.Mutex
	exited  chan error // of the running process; nil when stopped
	proc    *exec.Cmd
	paused  bool
}

// Endpoints returns the client URL as a list, as Cluster.Endpoints does,
// so that code starting Latch on etcd takes either.
func (s *Server) Endpoints() []string { return []string{s.Endpoint} }

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
	tls        bool
	maxTxnOps  int
	quotaBytes int64
}

// WithTLS makes etcd serve clients over TLS only, with a fresh CA, and
// require a client certificate signed by it.
func WithTLS() Option { return func(o *options) { o.tls = true } }

// WithMaxTxnOps starts etcd with --max-txn-ops n (etcd's default is 128),
// to test what a store does at a cluster's real limit.
func WithMaxTxnOps(n int) Option { return func(o *options) { o.maxTxnOps = n } }

// WithQuotaBackendBytes starts etcd with --quota-backend-bytes n (etcd's
// default is 2 GiB), so that a test can fill it and see what Latch does
// while etcd's NOSPACE alarm refuses writes.
func WithQuotaBackendBytes(n int64) Option { return func(o *options) { o.quotaBytes = n } }

// Start starts a one-member etcd for t and stops it when t ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	return StartCluster(t, 1, opts...).Members[0]
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// serveTLS makes s, whose client URL is https://, serve clients with a
// server certificate from ca and require a client certificate from ca; it
// writes the client's files (and the CA's) under dir.
func (s *Server) serveTLS(t testing.TB, ca *certstest.CA, dir string) {
	serverCert, serverKey := ca.Server(t).WriteFiles(t, dir, "server")
	clientLeaf := ca.Client(t, "latch", "")
	s.CertFile, s.KeyFile = clientLeaf.WriteFiles(t, dir, "client")
	s.CAFile = filepath.Join(dir, "ca.pem")
	certstest.WriteFile(t, s.CAFile, ca.PEM)
	s.args = append(s.args, "--cert-file", serverCert, "--key-file", serverKey, "--trusted-ca-file", s.CAFile, "--client-cert-auth")
	s.hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(),
		Certificates: []tls.Certificate{clientLeaf.TLSCertificate(t)}, MinVersion: tls.VersionTLS12}}
}

// memberArgs are the flags of member name, with its data under dir, in the
// statically bootstrapped cluster initial.
func memberArgs(name, dir, client, peer, initial string, o options) []string {
	args := []string{
		"--name", name,
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", initial, "--initial-cluster-state", "new",
		"--logger", "zap", "--log-outputs", "stderr"}
	if o.maxTxnOps > 0 {
		args = append(args, "--max-txn-ops", fmt.Sprint(o.maxTxnOps))
	}
	if o.quotaBytes > 0 {
		args = append(args, "--quota-backend-bytes", fmt.Sprint(o.quotaBytes))
	}
	return args
}

// spawn starts the process without waiting for it to be ready.
func (s *Server) spawn() error {
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, s.args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logFile.Close() }()
	s.mu.Lock()
	s.proc, s.exited, s.paused = cmd, exited, false
	s.mu.Unlock()
	return nil
}

// waitHealthy waits until the member reports healthy, which for a member of
// a cluster means the cluster has a leader, and stops it if it exits first
// or is not healthy within limit.
func (s *Server) waitHealthy(limit time.Duration) error {
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			exited <- err
			s.Stop()
			return fmt.Errorf("etcd exited before it was ready (%v):\n%s", err, s.tail())
		case <-ctx.Done():
			s.Stop()
			return fmt.Errorf("etcd not healthy after %v:\n%s", limit, s.tail())
		case <-tick.C:
		}
		if healthy(ctx, s.hc, s.Endpoint) {
			return nil
		}
	}
}

// Stop stops etcd and waits for it to exit (SIGTERM, then SIGKILL after
// 15 s). Stopping a stopped server does nothing; cleanup stops it anyway.
func (s *Server) Stop() { s.halt(syscall.SIGTERM) }

// Crash kills etcd with SIGKILL (no clean shutdown) and waits for it to
// exit; Restart brings it back on the same data.
func (s *Server) Crash() { s.halt(syscall.SIGKILL) }

func (s *Server) halt(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	_ = s.proc.Process.Signal(sig)
	if s.paused { // a stopped process acts on SIGTERM only once continued
		_ = s.proc.Process.Signal(syscall.SIGCONT)
	}
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		_ = s.proc.Process.Kill()
		<-s.exited
	}
	s.proc, s.exited, s.paused = nil, nil, false
}

// Pause freezes the member with SIGSTOP: its connections stay open but it
// answers nothing, as a member stalled by its host does. Resume ends it.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP, true) }

// Resume continues a member Pause froze.
func (s *Server) Resume() { s.signal(syscall.SIGCONT, false) }

func (s *Server) signal(sig syscall.Signal, paused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	_ = s.proc.Process.Signal(sig)
	s.paused = paused
}

// Restart starts a stopped server again on the same ports and data, as an
// operator restarting the member would.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	err := s.spawn()
	if err == nil {
		err = s.waitHealthy(30 * time.Second)
	}
	if err != nil {
		t.Fatalf("etcdtest: restart: %v", err)
	}
}

func healthy(ctx context.Context, hc *http.Client, endpoint string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/health", nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return err == nil && resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"health":"true"`)
}

// tail returns the end of etcd's log, for failure messages.
func (s *Server) tail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return string(b)
}
