package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// startExtAuthzCmd runs `latch ext-authz` and waits for its listening
// record.
func startExtAuthzCmd(t *testing.T, env []string, args ...string) *latchProc {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	cmd := exec.Command(latchBinary(t), append([]string{"ext-authz", "--log-format", "json"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	p := &latchProc{cmd: cmd, done: make(chan error, 1)}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			p.mu.Lock()
			p.logs.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			var rec map[string]any
			if !signalled && json.Unmarshal(sc.Bytes(), &rec) == nil && rec["event"] == "listening" {
				signalled = true
				close(ready)
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case <-ready:
	case err := <-p.done:
		t.Fatalf("latch ext-authz exited: %v\n%s", err, p.logText())
	case <-ctx.Done():
		t.Fatalf("latch ext-authz did not start\n%s", p.logText())
	}
	return p
}

// TestExtAuthzStandalone: `latch ext-authz` away from Latch verifies with
// the keys it fetched and follows revocations over the stream; when Latch
// goes away for longer than --max-revocation-lag it reports NOT_SERVING on
// latch.verifier and refuses with 503 (fail closed).
func TestExtAuthzStandalone(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	bin := latchBinary(t)
	db := filepath.Join(t.TempDir(), "latch.db")
	for _, u := range [][3]string{{"alice@example.com", "alice-password-1", "orders:read"}, {"svc@example.com", "svc-password-111", "introspect"}} {
		if out, err := userAdd(ctx, bin, db, u[0], u[1], u[2]); err != nil {
			t.Fatalf("user add: %v\n%s", err, out)
		}
	}
	latch := startLatch(t, ctx, db)
	ea := startExtAuthzCmd(t, []string{"LATCH_EXT_AUTHZ_PASSWORD=svc-password-111"},
		"--ext-authz-addr", "127.0.0.1:0", "--ext-authz-policy", testPolicy, "--latch-addr", latch.grpcAddr,
		"--latch-plaintext", "--issuer", "https://latch.test", "--revocations-email", "svc@example.com",
		"--max-revocation-lag", "1s", "--ext-authz-health-interval", "100ms", "--metrics-addr", "127.0.0.1:0")
	conn, err := grpc.NewClient(extAuthzAddr(t, ea), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	check, hc := authv3.NewAuthorizationClient(conn), healthpb.NewHealthClient(conn)
	httpStatus := func(tok string) int32 {
		t.Helper()
		resp, err := check.Check(ctx, checkRequest("GET", "/api/orders/1", tok))
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetOkResponse() != nil {
			return 200
		}
		return int32(resp.GetDeniedResponse().GetStatus().GetCode())
	}
	health := func() healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "latch.verifier"})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetStatus()
	}
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\n%s", what, ea.logText())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	login := func() pair {
		return tokensOf(t, mustOK(t, grpcurl(t, ctx, latch.grpcAddr, nil, svcLogin,
			map[string]string{"email": "alice@example.com", "password": "alice-password-1", "audience": "orders"}), "Login"))
	}
	alice, other := login(), login()
	if got := httpStatus(alice.access); got != 200 {
		t.Fatalf("valid token: %d", got)
	}
	eventually("latch.verifier SERVING", func() bool { return health() == healthpb.HealthCheckResponse_SERVING })
	mustOK(t, grpcurl(t, ctx, latch.grpcAddr, nil, svcRevoke, map[string]string{"token": alice.refresh}), "Revoke")
	eventually("the revocation to arrive over the stream", func() bool { return httpStatus(alice.access) == 401 })

	if err := latch.stop(t, ctx, syscall.SIGTERM); err != nil {
		t.Fatalf("stop latch: %v", err)
	}
	eventually("latch.verifier NOT_SERVING", func() bool { return health() == healthpb.HealthCheckResponse_NOT_SERVING })
	if got := httpStatus(other.access); got != 503 {
		t.Fatalf("valid token while the revocation stream is down past its bound: %d, want 503 (fail closed)", got)
	}
	fams := scrape(t, "http://"+listeningField(t, ea, "metrics_addr")+"/metrics")
	if got := metricValue(fams["latch_verifier_serving"]); got != 0 {
		t.Errorf("latch_verifier_serving = %v while stale, want 0", got)
	}
	if got := metricValue(fams["latch_verifier_revocation_lag_seconds"]); got <= 0 {
		t.Errorf("latch_verifier_revocation_lag_seconds = %v with the stream down, want > 0", got)
	}
	if got := metricValue(fams["latch_ext_authz_checks_total"], "decision", "denied", "code", "503"); got < 1 {
		t.Errorf("latch_ext_authz_checks_total{denied,503} = %v, want ≥ 1", got)
	}
	if !strings.Contains(ea.logText(), `"event":"verifier_unhealthy"`) {
		t.Error("the transition to unhealthy is not logged")
	}
	checkLogsHoldNoSecrets(t, ea.logText(), alice.access, other.access, "svc-password-111")
	if err := ea.stop(t, ctx, syscall.SIGTERM); err != nil {
		t.Fatalf("stop ext-authz: %v", err)
	}
}

func TestExtAuthzStandaloneBadConfig(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	out, err := exec.CommandContext(ctx, latchBinary(t), "ext-authz", "--ext-authz-policy", testPolicy,
		"--stale-policy", "maybe", "--tls-key", "key.pem", "--tls-client-ca", "ca.pem").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("err=%v, want exit 1\n%s", err, out)
	}
	for _, want := range []string{"--ext-authz-addr is required", "--revocations-email is required", `--stale-policy "maybe"`,
		"--tls-cert and --tls-key go together", "--tls-client-ca needs --tls-cert"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestExtAuthzStandaloneRefusesLatchAudience: `latch ext-authz` refuses
// at start-up a policy whose audiences include its --issuer, Latch's own
// audience.
func TestExtAuthzStandaloneRefusesLatchAudience(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte("audiences: [\"https://latch.test\"]\nrules: [{prefix: /, roles: []}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, latchBinary(t), "ext-authz", "--ext-authz-addr", "127.0.0.1:0", "--ext-authz-policy", policy,
		"--issuer", "https://latch.test", "--latch-addr", "127.0.0.1:1", "--latch-plaintext", "--stateless").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("err=%v, want exit 1\n%s", err, out)
	}
	if want := `"https://latch.test" is Latch's issuer, which is Latch's own audience`; !strings.Contains(string(out), want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}

// listeningField returns a field of the process's "listening" record.
func listeningField(t *testing.T, p *latchProc, field string) string {
	t.Helper()
	for _, line := range strings.Split(p.logText(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["event"] == "listening" {
			if v, _ := rec[field].(string); v != "" {
				return v
			}
		}
	}
	t.Fatalf("no %s in the listening record:\n%s", field, p.logText())
	return ""
}
