package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/latchauth/latch/internal/certs/certstest"
)

const testPolicy = "../../server/extauthz/testdata/policy.yaml"

// extAuthzAddr reads the ext_authz listener's address from the logs.
func extAuthzAddr(t *testing.T, p *latchProc) string {
	t.Helper()
	for _, line := range strings.Split(p.logText(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["event"] == "ext_authz_listening" {
			if a, _ := rec["addr"].(string); a != "" {
				return a
			}
		}
	}
	t.Fatalf("no ext_authz_listening record:\n%s", p.logText())
	return ""
}

func checkRequest(method, path, token string) *authv3.CheckRequest {
	h := map[string]string{":authority": "orders.local"}
	if token != "" {
		h["authorization"] = "Bearer " + token
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Headers: h}}}}
}

// TestExtAuthzEndToEnd: the real binary with --ext-authz-addr, a Check
// client with Envoy's types over real TCP, tokens from grpcurl Login, a
// revocation seen by the next Check, health under latch.verifier, and a
// graceful stop.
func TestExtAuthzEndToEnd(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	bin := latchBinary(t)
	db := filepath.Join(t.TempDir(), "latch.db")
	if out, err := userAdd(ctx, bin, db, "alice@example.com", "alice-password-1", "orders:read"); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	p := startLatch(t, ctx, db, "--ext-authz-addr", "127.0.0.1:0", "--ext-authz-policy", testPolicy)
	conn, err := grpc.NewClient(extAuthzAddr(t, p), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	check := authv3.NewAuthorizationClient(conn)

	alice := tokensOf(t, mustOK(t, grpcurl(t, ctx, p.grpcAddr, nil, svcLogin,
		map[string]string{"email": "alice@example.com", "password": "alice-password-1", "audience": "orders"}), "Login"))
	resp, err := check.Check(ctx, checkRequest("GET", "/api/orders/1", alice.access))
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("Check with a valid token = %v, %v", resp, err)
	}
	if !strings.Contains(resp.GetOkResponse().String(), alice.sid) {
		t.Errorf("allowed response does not carry the session id: %v", resp.GetOkResponse())
	}
	resp, err = check.Check(ctx, checkRequest("GET", "/api/orders/1", ""))
	if err != nil || resp.GetDeniedResponse().GetStatus().GetCode() != 401 || codes.Code(resp.GetStatus().GetCode()) != codes.Unauthenticated {
		t.Fatalf("Check without a token = %v, %v", resp, err)
	}
	mustOK(t, grpcurl(t, ctx, p.grpcAddr, nil, svcRevoke, map[string]string{"token": alice.refresh}), "Revoke")
	resp, err = check.Check(ctx, checkRequest("GET", "/api/orders/1", alice.access))
	if err != nil || resp.GetDeniedResponse().GetStatus().GetCode() != 401 {
		t.Fatalf("Check right after Revoke = %v, %v; want 401", resp, err)
	}

	// grpcurl, an independent client, through reflection on the listener.
	allowed := mustOK(t, grpcurl(t, ctx, extAuthzAddr(t, p), nil, "envoy.service.auth.v3.Authorization/Check",
		map[string]any{"attributes": map[string]any{"request": map[string]any{"http": map[string]any{
			"method": "GET", "path": "/healthz"}}}}), "grpcurl Check")
	if _, ok := allowed["okResponse"]; !ok {
		t.Errorf("grpcurl Check of a public path = %v, want okResponse", allowed)
	}
	denied := mustOK(t, grpcurl(t, ctx, extAuthzAddr(t, p), nil, "envoy.service.auth.v3.Authorization/Check",
		map[string]any{"attributes": map[string]any{"request": map[string]any{"http": map[string]any{
			"method": "GET", "path": "/api/orders/1", "headers": map[string]string{"authorization": "Bearer " + alice.access}}}}}), "grpcurl Check")
	if dr, _ := denied["deniedResponse"].(map[string]any); dr == nil || !strings.Contains(fmt.Sprint(dr["status"]), "Unauthorized") {
		t.Errorf("grpcurl Check of a revoked token = %v, want deniedResponse 401", denied)
	}

	hc := healthpb.NewHealthClient(conn)
	for _, svc := range []string{"latch.verifier", "envoy.service.auth.v3.Authorization", ""} {
		hr, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q = %v, %v", svc, hr, err)
		}
	}
	fams := scrape(t, "http://"+p.httpAddr+"/metrics")
	if got := metricValue(fams["latch_ext_authz_checks_total"], "decision", "denied", "code", "401"); got < 2 {
		t.Errorf("latch_ext_authz_checks_total{denied,401} = %v, want ≥ 2", got)
	}
	if got := metricValue(fams["latch_ext_authz_checks_total"], "decision", "allowed", "code", "200"); got < 2 {
		t.Errorf("latch_ext_authz_checks_total{allowed,200} = %v, want ≥ 2", got)
	}
	if got := metricValue(fams["latch_verifier_serving"]); got != 1 {
		t.Errorf("latch_verifier_serving = %v, want 1", got)
	}
	checkLogsHoldNoSecrets(t, p.logText(), alice.access, alice.refresh)
	if !strings.Contains(p.logText(), `"event":"ext_authz_denied"`) {
		t.Error("denials are not logged")
	}
	if err := p.stop(t, ctx, syscall.SIGTERM); err != nil {
		t.Fatalf("graceful stop: %v\n%s", err, p.logText())
	}
}

// TestExtAuthzBadConfig: flag and policy problems are all reported at
// once, before the database is opened.
func TestExtAuthzBadConfig(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("audiences: [payments]\nrules:\n  - path: nope\n    roles: [x]\n  - prefix: /a/\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	latchAud := filepath.Join(dir, "latch-audience.yaml")
	if err := os.WriteFile(latchAud, []byte("audiences: [orders, \"https://latch.test\"]\nrules: [{prefix: /, roles: []}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(dir, "foreign.yaml")
	if err := os.WriteFile(foreign, []byte("audiences: [payments]\nrules: [{prefix: /, roles: []}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		args []string
		want []string
	}{
		"no policy":           {[]string{"--ext-authz-addr", "127.0.0.1:0"}, []string{"ext_authz.policy_file (LATCH_EXT_AUTHZ_POLICY) is required with ext_authz.addr (LATCH_EXT_AUTHZ_ADDR)"}},
		"policy without addr": {[]string{"--ext-authz-policy", testPolicy}, []string{"ext_authz.policy_file (LATCH_EXT_AUTHZ_POLICY) is set but ext_authz.addr (LATCH_EXT_AUTHZ_ADDR) is not"}},
		"broken policy":       {[]string{"--ext-authz-addr", "127.0.0.1:0", "--ext-authz-policy", bad, "--access-ttl", "-1s"}, []string{`"nope": must start with /`, "rules[1] (line 5): give roles", "tokens.access_ttl (LATCH_ACCESS_TTL) -1s must be in (0, 24h]"}},
		"foreign audience":    {[]string{"--ext-authz-addr", "127.0.0.1:0", "--ext-authz-policy", foreign}, []string{`audience "payments" is not one Latch issues`}},
		"bad headers":         {[]string{"--ext-authz-addr", "127.0.0.1:0", "--ext-authz-policy", testPolicy, "--ext-authz-sub-header", "X-Sub", "--ext-authz-sid-header", "x-latch-roles"}, []string{`"X-Sub"`, "must differ"}},
		"Latch's audience": {[]string{"--issuer", "https://latch.test", "--ext-authz-addr", "127.0.0.1:0", "--ext-authz-policy", latchAud},
			[]string{`"https://latch.test" is Latch's issuer, which is Latch's own audience`}},
		"missing file": {[]string{"--ext-authz-addr", "127.0.0.1:0", "--ext-authz-policy", filepath.Join(dir, "none.yaml")}, []string{"none.yaml"}},
	} {
		t.Run(name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "latch.db")
			args := append([]string{"serve", "--db", db, "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--audience", "orders"}, tc.args...)
			out, err := latchCommand(t, ctx, args...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("err=%v, want exit 1\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if _, err := os.Stat(db); err == nil {
				t.Errorf("database created despite invalid configuration")
			}
		})
	}
}

// TestExtAuthzPolicyReload: SIGHUP rereads the policy file; a broken file
// is refused with a log record and the running policy stays.
func TestExtAuthzPolicyReload(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	bin := latchBinary(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "latch.db")
	if out, err := userAdd(ctx, bin, db, "alice@example.com", "alice-password-1", "orders:read"); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	policy := filepath.Join(dir, "policy.yaml")
	write := func(doc string) {
		t.Helper()
		if err := os.WriteFile(policy, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("audiences: [orders]\nrules: [{prefix: /api/, roles: [orders:read]}]\n")
	p := startLatch(t, ctx, db, "--ext-authz-addr", "127.0.0.1:0", "--ext-authz-policy", policy)
	conn, err := grpc.NewClient(extAuthzAddr(t, p), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	check := authv3.NewAuthorizationClient(conn)
	alice := tokensOf(t, mustOK(t, grpcurl(t, ctx, p.grpcAddr, nil, svcLogin,
		map[string]string{"email": "alice@example.com", "password": "alice-password-1", "audience": "orders"}), "Login"))
	status := func() int32 {
		t.Helper()
		resp, err := check.Check(ctx, checkRequest("GET", "/api/x", alice.access))
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetOkResponse() != nil {
			return 200
		}
		return int32(resp.GetDeniedResponse().GetStatus().GetCode())
	}
	waitLog := func(event string, n int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for strings.Count(p.logText(), `"event":"`+event+`"`) < n {
			if time.Now().After(deadline) {
				t.Fatalf("no %s record after SIGHUP:\n%s", event, p.logText())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if got := status(); got != 200 {
		t.Fatalf("before reload: %d", got)
	}
	write("audiences: [orders]\nrules: [{prefix: /api/, roles: [orders:admin]}]\n")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("ext_authz_policy_reloaded", 1)
	if got := status(); got != 403 {
		t.Fatalf("after reload: %d, want 403", got)
	}
	write("audiences: [orders]\nrules: [{prefix: /api/, roles: [orders:read]}, {prefixx: /b}]\n")
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog("ext_authz_policy_reload_failed", 1)
	if got := status(); got != 403 {
		t.Fatalf("after a broken file: %d, want 403 (the running policy stays)", got)
	}
	if err := p.stop(t, ctx, syscall.SIGTERM); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

// TestExtAuthzMutualTLS: with --tls-cert and --tls-client-ca the ext_authz
// listener is served like the gRPC port: mutual TLS, plaintext refused.
// Without TLS, a non-loopback --ext-authz-addr is refused at start.
func TestExtAuthzMutualTLS(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	dir := t.TempDir()
	serverCA, clientCA := certstest.NewCA(t, "server CA"), certstest.NewCA(t, "client CA")
	certFile, keyFile := serverCA.Server(t).WriteFiles(t, dir, "server")
	clientCAFile := filepath.Join(dir, "clients.pem")
	certstest.WriteFile(t, clientCAFile, clientCA.PEM)
	envoyCert := clientCA.Client(t, "envoy", "spiffe://latch.test/envoy")

	db := filepath.Join(dir, "latch.db")
	p := startLatch(t, ctx, db, "--insecure-listen", "--tls-cert", certFile, "--tls-key", keyFile, "--tls-client-ca", clientCAFile,
		"--ext-authz-addr", "127.0.0.1:0", "--ext-authz-policy", testPolicy)
	addr := extAuthzAddr(t, p)
	if !strings.Contains(p.logText(), `"tls":true`) {
		t.Errorf("ext_authz_listening does not say tls:\n%s", p.logText())
	}
	creds := credentials.NewTLS(&tls.Config{RootCAs: serverCA.Pool(), Certificates: []tls.Certificate{envoyCert.TLSCertificate(t)}})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := authv3.NewAuthorizationClient(conn).Check(ctx, checkRequest("GET", "/healthz", ""))
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("Check over mutual TLS = %v, %v", resp, err)
	}
	for name, c := range map[string]credentials.TransportCredentials{
		"plaintext":             insecure.NewCredentials(),
		"no client certificate": credentials.NewTLS(&tls.Config{RootCAs: serverCA.Pool()}),
	} {
		bad, err := grpc.NewClient(addr, grpc.WithTransportCredentials(c))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := authv3.NewAuthorizationClient(bad).Check(ctx, checkRequest("GET", "/healthz", "")); err == nil {
			t.Errorf("Check with %s succeeded", name)
		}
		bad.Close()
	}

	out, err := serveCommand(t, ctx, "--db", filepath.Join(t.TempDir(), "x.db"),
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--audience", "orders",
		"--ext-authz-addr", "0.0.0.0:0", "--ext-authz-policy", testPolicy).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "refusing to serve plaintext on ext_authz.addr (LATCH_EXT_AUTHZ_ADDR) 0.0.0.0:0") {
		t.Errorf("plaintext ext_authz on all interfaces: err=%v\n%s", err, out)
	}
}

// scrape GETs a Prometheus text endpoint and parses it.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}
