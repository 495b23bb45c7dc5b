package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/latchauth/latch/internal/certs/certstest"
)

// clientAuthEnv clears the environment variables that would change what
// these tests configure by flags, whatever the caller's environment says.
func clientAuthEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{"LATCH_INSECURE_LISTEN", "LATCH_TLS_CERT", "LATCH_TLS_KEY", "LATCH_TLS_CLIENT_CA",
		"LATCH_EXT_AUTHZ_CLIENT_CA", "LATCH_EXT_AUTHZ_ALLOW_UNAUTHENTICATED_CLIENTS"} {
		t.Setenv(k, "")
	}
}

// wantRefused runs the binary with args and wants it to exit 1, before
// listening, with every one of want in its output. A process that starts
// listening instead is killed and the test fails.
func wantRefused(t *testing.T, ctx context.Context, args []string, want ...string) string {
	t.Helper()
	cmd := latchCommand(t, ctx, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	listening := false
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["event"] == "listening" {
			listening = true
			_ = cmd.Process.Kill()
			break
		}
	}
	err = cmd.Wait()
	if listening {
		t.Fatalf("latch %s started listening, want a refusal\n%s", strings.Join(args, " "), out.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("latch %s: err=%v, want exit 1\n%s", strings.Join(args, " "), err, out.String())
	}
	for _, w := range want {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
	return out.String()
}

// loopbackPort is addr (as a listener reports it, say "[::]:41234") with
// its host replaced by 127.0.0.1: the tests bind all interfaces but send
// traffic only over loopback.
func loopbackPort(t *testing.T, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// extAuthzCheck calls Check of a public path over creds and returns the
// error (nil when the call was answered).
func extAuthzCheck(t *testing.T, ctx context.Context, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(conn).Check(cctx, checkRequest("GET", "/healthz", ""))
	if err == nil && resp.GetOkResponse() == nil {
		t.Fatalf("Check of a public path = %v", resp)
	}
	return err
}

// handshake dials addr with TLS (ALPN h2, as gRPC does) and completes the
// handshake, reading once so that a client certificate the server refuses
// (reported after the client's side of a TLS 1.3 handshake) is seen.
func handshake(addr string, cfg *tls.Config) error {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 20 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	// An accepted client is sent the server's HTTP/2 settings; a refused
	// one a TLS alert.
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	return err
}

// tlsFiles are a server certificate, a client CA and clients of it and of
// another CA, on disk.
type tlsFiles struct {
	serverCA                  *certstest.CA
	caFile, certFile, keyFile string
	clientCAFile              string
	client, stranger          tls.Certificate
}

func newTLSFiles(t *testing.T) tlsFiles {
	t.Helper()
	dir := t.TempDir()
	serverCA, clientCA, otherCA := certstest.NewCA(t, "server CA"), certstest.NewCA(t, "envoy CA"), certstest.NewCA(t, "other CA")
	f := tlsFiles{serverCA: serverCA, caFile: filepath.Join(dir, "ca.pem"), clientCAFile: filepath.Join(dir, "envoy-ca.pem"),
		client:   clientCA.Client(t, "envoy", "spiffe://latch.test/envoy").TLSCertificate(t),
		stranger: otherCA.Client(t, "stranger", "spiffe://other.test/x").TLSCertificate(t)}
	f.certFile, f.keyFile = serverCA.Server(t).WriteFiles(t, dir, "server")
	certstest.WriteFile(t, f.caFile, serverCA.PEM)
	certstest.WriteFile(t, f.clientCAFile, clientCA.PEM)
	return f
}

// TestExtAuthzRefusesUnauthenticatedClientsBeyondLoopback: `latch serve`
// refuses, before opening anything, an ext_authz listener beyond loopback
// that does not authenticate its clients, with the fixes in the message;
// ext_authz.allow_unauthenticated_clients opts out (with a warning).
func TestExtAuthzRefusesUnauthenticatedClientsBeyondLoopback(t *testing.T) {
	clientAuthEnv(t)
	ctx := testCtx(t, 2*time.Minute)
	f := newTLSFiles(t)
	base := func(db string, extra ...string) []string {
		return append([]string{"serve", "--db", db, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
			"--issuer", "https://latch.test", "--audience", "orders", "--log-format", "json", "--ext-authz-policy", testPolicy}, extra...)
	}
	fixes := []string{"refusing to serve ext_authz on ext_authz.addr (LATCH_EXT_AUTHZ_ADDR) 0.0.0.0:0", "without client certificates",
		"Give ext_authz.client_ca_file (LATCH_EXT_AUTHZ_CLIENT_CA)", "tls.cert_file (LATCH_TLS_CERT) and tls.key_file (LATCH_TLS_KEY)",
		"set ext_authz.allow_unauthenticated_clients (LATCH_EXT_AUTHZ_ALLOW_UNAUTHENTICATED_CLIENTS) to true"}
	for name, tc := range map[string]struct {
		args []string
		want []string
	}{
		"TLS without a client CA":    {[]string{"--ext-authz-addr", "0.0.0.0:0", "--tls-cert", f.certFile, "--tls-key", f.keyFile}, fixes},
		"plaintext, insecure-listen": {[]string{"--ext-authz-addr", "0.0.0.0:0", "--insecure-listen"}, fixes},
		"all interfaces, no host":    {[]string{"--ext-authz-addr", ":0", "--insecure-listen"}, []string{"ext_authz.addr (LATCH_EXT_AUTHZ_ADDR) :0", "ext_authz.client_ca_file (LATCH_EXT_AUTHZ_CLIENT_CA)"}},
		"client CA without TLS": {[]string{"--ext-authz-addr", "127.0.0.1:0", "--ext-authz-client-ca", f.clientCAFile},
			[]string{"ext_authz.client_ca_file (LATCH_EXT_AUTHZ_CLIENT_CA) needs tls.cert_file (LATCH_TLS_CERT) and tls.key_file (LATCH_TLS_KEY)"}},
		"client CA without ext_authz": {[]string{"--tls-cert", f.certFile, "--tls-key", f.keyFile, "--ext-authz-client-ca", f.clientCAFile},
			[]string{"ext_authz.client_ca_file (LATCH_EXT_AUTHZ_CLIENT_CA) is set but ext_authz.addr (LATCH_EXT_AUTHZ_ADDR) is not"}},
	} {
		t.Run(name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "latch.db")
			args := base(db, tc.args...)
			if name == "client CA without ext_authz" {
				args = slicesWithout(args, "--ext-authz-policy", testPolicy)
			}
			wantRefused(t, ctx, args, tc.want...)
			if _, err := os.Stat(db); err == nil {
				t.Errorf("database created despite the refusal")
			}
		})
	}

	// Opted out: it starts, serves over loopback, and says what it risks.
	p := startLatch(t, ctx, filepath.Join(t.TempDir(), "latch.db"), "--insecure-listen",
		"--ext-authz-addr", "0.0.0.0:0", "--ext-authz-policy", testPolicy, "--ext-authz-allow-unauthenticated-clients")
	if err := extAuthzCheck(t, ctx, loopbackPort(t, extAuthzAddr(t, p)), insecure.NewCredentials()); err != nil {
		t.Errorf("Check with the opt-out: %v", err)
	}
	if !strings.Contains(p.logText(), `"event":"ext_authz_unauthenticated_clients"`) {
		t.Errorf("no warning that ext_authz serves unauthenticated clients beyond loopback:\n%s", p.logText())
	}
	// Loopback needs neither.
	p = startLatch(t, ctx, filepath.Join(t.TempDir(), "latch.db"), "--ext-authz-addr", "127.0.0.1:0", "--ext-authz-policy", testPolicy)
	if strings.Contains(p.logText(), `"event":"ext_authz_unauthenticated_clients"`) {
		t.Errorf("warning on loopback:\n%s", p.logText())
	}
}

// slicesWithout returns args without the adjacent pair a, b.
func slicesWithout(args []string, a, b string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == a && i+1 < len(args) && args[i+1] == b {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

// TestExtAuthzOwnClientCA: --ext-authz-client-ca requires client
// certificates from that CA on the ext_authz listener only (here bound to
// all interfaces, which it makes acceptable); the gRPC and HTTP listeners
// keep serving clients without certificates.
func TestExtAuthzOwnClientCA(t *testing.T) {
	clientAuthEnv(t)
	ctx := testCtx(t, 2*time.Minute)
	f := newTLSFiles(t)
	p := startLatch(t, ctx, filepath.Join(t.TempDir(), "latch.db"), "--tls-cert", f.certFile, "--tls-key", f.keyFile,
		"--ext-authz-addr", "0.0.0.0:0", "--ext-authz-policy", testPolicy, "--ext-authz-client-ca", f.clientCAFile)
	addr := loopbackPort(t, extAuthzAddr(t, p))
	if !strings.Contains(p.logText(), `"client_auth":true`) {
		t.Errorf("ext_authz_listening does not say client_auth:\n%s", p.logText())
	}
	roots := f.serverCA.Pool()

	if err := extAuthzCheck(t, ctx, addr, credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{f.client}})); err != nil {
		t.Errorf("Check with a certificate from --ext-authz-client-ca: %v", err)
	}
	if err := handshake(addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{f.client}}); err != nil {
		t.Errorf("handshake with a certificate from --ext-authz-client-ca: %v", err)
	}
	for name, cfg := range map[string]*tls.Config{
		"no client certificate":     {RootCAs: roots},
		"certificate of another CA": {RootCAs: roots, Certificates: []tls.Certificate{f.stranger}},
	} {
		err := handshake(addr, cfg)
		if err == nil || !strings.Contains(err.Error(), "tls:") {
			t.Errorf("ext_authz handshake with %s = %v, want a TLS failure", name, err)
		}
		if err := extAuthzCheck(t, ctx, addr, credentials.NewTLS(cfg)); err == nil {
			t.Errorf("ext_authz Check with %s succeeded", name)
		}
	}

	// The main gRPC listener (Login, JWKS) and the HTTP listener (probes,
	// metrics, JWKS) still serve clients without certificates.
	conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health without a client certificate = %v, %v", hr, err)
	}
	if err := handshake(p.grpcAddr, &tls.Config{RootCAs: roots}); err != nil {
		t.Errorf("gRPC handshake without a client certificate: %v", err)
	}
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	resp, err := hc.Get("https://" + p.httpAddr + "/readyz")
	if err != nil {
		t.Fatalf("/readyz without a client certificate: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz without a client certificate = %d", resp.StatusCode)
	}
}

// TestExtAuthzStandaloneClientAuth: `latch ext-authz` applies the same
// rule to its listener: beyond loopback it needs --tls-client-ca or
// --ext-authz-allow-unauthenticated-clients.
func TestExtAuthzStandaloneClientAuth(t *testing.T) {
	clientAuthEnv(t)
	ctx := testCtx(t, 2*time.Minute)
	f := newTLSFiles(t)
	base := []string{"ext-authz", "--log-format", "json", "--ext-authz-policy", testPolicy, "--issuer", "https://latch.test",
		"--latch-addr", "127.0.0.1:1", "--latch-plaintext", "--stateless", "--ext-authz-addr", "0.0.0.0:0"}
	fixes := []string{"refusing to serve ext_authz on --ext-authz-addr 0.0.0.0:0", "without client certificates",
		"--tls-client-ca", "LATCH_TLS_CLIENT_CA", "--ext-authz-allow-unauthenticated-clients"}
	t.Run("TLS without a client CA", func(t *testing.T) {
		wantRefused(t, ctx, append(base, "--tls-cert", f.certFile, "--tls-key", f.keyFile), fixes...)
	})
	t.Run("plaintext, insecure-listen", func(t *testing.T) {
		out := wantRefused(t, ctx, append(base, "--insecure-listen"), fixes...)
		if strings.Contains(out, "--ext-authz-client-ca") {
			t.Errorf("the fix names serve's flag, which latch ext-authz does not have:\n%s", out)
		}
	})

	latch := startLatch(t, ctx, filepath.Join(t.TempDir(), "latch.db"))
	withLatch := append(slicesWithout(base, "--latch-addr", "127.0.0.1:1"), "--latch-addr", latch.grpcAddr)
	ea := startExtAuthzCmd(t, nil, append(withLatch, "--insecure-listen", "--ext-authz-allow-unauthenticated-clients")[1:]...)
	if err := extAuthzCheck(t, ctx, loopbackPort(t, extAuthzAddr(t, ea)), insecure.NewCredentials()); err != nil {
		t.Errorf("Check with the opt-out: %v", err)
	}
	if !strings.Contains(ea.logText(), `"event":"ext_authz_unauthenticated_clients"`) {
		t.Errorf("no warning that ext_authz serves unauthenticated clients beyond loopback:\n%s", ea.logText())
	}

	ea = startExtAuthzCmd(t, nil, append(withLatch, "--tls-cert", f.certFile, "--tls-key", f.keyFile, "--tls-client-ca", f.clientCAFile)[1:]...)
	addr := loopbackPort(t, extAuthzAddr(t, ea))
	if err := extAuthzCheck(t, ctx, addr, credentials.NewTLS(&tls.Config{RootCAs: f.serverCA.Pool(), Certificates: []tls.Certificate{f.client}})); err != nil {
		t.Errorf("Check with a client certificate: %v", err)
	}
	if err := handshake(addr, &tls.Config{RootCAs: f.serverCA.Pool()}); err == nil {
		t.Error("handshake without a client certificate succeeded")
	}
}
