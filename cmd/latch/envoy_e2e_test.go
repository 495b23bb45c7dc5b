package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// envoyPath finds a real Envoy: $LATCH_ENVOY, then PATH.
func envoyPath() string {
	if p := os.Getenv("LATCH_ENVOY"); p != "" {
		return p
	}
	p, _ := exec.LookPath("envoy")
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestEnvoyEndToEnd runs the ext_authz example of docs/service-mesh.md for real: Envoy in
// front of the example orders service, asking the latch binary about every
// call, driven with grpcurl through Envoy. It needs an envoy binary.
func TestEnvoyEndToEnd(t *testing.T) {
	envoy := envoyPath()
	if envoy == "" {
		t.Skip("no envoy binary on PATH or in $LATCH_ENVOY: the real-Envoy end-to-end test cannot run " +
			"(Envoy is not packaged in Debian bookworm and nothing may be downloaded here); " +
			"the same flow runs against the Check API in TestExtAuthzEndToEnd")
	}
	ctx := testCtx(t, 3*time.Minute)
	bin := latchBinary(t)
	dir := t.TempDir()
	db := filepath.Join(dir, "latch.db")
	for _, u := range []struct{ email, pw, role string }{
		{"alice@example.com", "alice-password-1", "orders:read"},
		{"bob@example.com", "bob-password-111", "user"},
	} {
		if out, err := userAdd(ctx, bin, db, u.email, u.pw, u.role); err != nil {
			t.Fatalf("user add: %v\n%s", err, out)
		}
	}
	policy := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policy, []byte(`audiences: [orders]
rules:
  - grpc: /grpc.reflection.v1.ServerReflection/
    public: true
  - grpc: /grpc.reflection.v1alpha.ServerReflection/
    public: true
  - grpc: /latch.example.orders.v1.OrdersService/
    roles: [orders:read]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	latch := startLatch(t, ctx, db, "--ext-authz-addr", "127.0.0.1:0", "--ext-authz-policy", policy,
		"--ext-authz-keep-authorization") // the example service verifies the token too
	_, authzPort, _ := net.SplitHostPort(extAuthzAddr(t, latch))
	orders := startExample(t, ctx, latch.grpcAddr, nil)
	_, ordersPort, _ := net.SplitHostPort(orders)
	listen := freePort(t)

	conf := readmeExamples(t)["envoy-ext-authz"]
	for from, to := range map[string]string{"port_value: 8080": "port_value: " + strconv.Itoa(listen),
		"port_value: 7400": "port_value: " + ordersPort, "port_value: 7302": "port_value: " + authzPort} {
		if !strings.Contains(conf, from) {
			t.Fatalf("documented example lost %q", from)
		}
		conf = strings.Replace(conf, from, to, 1)
	}
	confPath := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(envoy, "-c", confPath, "--disable-hot-restart", "--log-level", "warn")
	var mu sync.Mutex
	var envoyLog strings.Builder
	cmd.Stdout = lockedWriterS{&mu, &envoyLog}
	cmd.Stderr = lockedWriterS{&mu, &envoyLog}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	front := fmt.Sprintf("127.0.0.1:%d", listen)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", front, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			mu.Lock()
			t.Fatalf("envoy did not listen on %s:\n%s", front, envoyLog.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	login := func(email, pw string) pair {
		return tokensOf(t, mustOK(t, grpcurl(t, ctx, latch.grpcAddr, nil, svcLogin,
			map[string]string{"email": email, "password": pw, "audience": "orders"}), "Login"))
	}
	alice, bob := login("alice@example.com", "alice-password-1"), login("bob@example.com", "bob-password-111")
	const getOrder = "latch.example.orders.v1.OrdersService/GetOrder"
	body := map[string]string{"order_id": "o-1"}
	mustOK(t, grpcurl(t, ctx, front, []string{"authorization: Bearer " + alice.access}, getOrder, body), "GetOrder through Envoy")
	wantCode(t, grpcurl(t, ctx, front, nil, getOrder, body), "Unauthenticated", "", "no token through Envoy")
	wantCode(t, grpcurl(t, ctx, front, []string{"authorization: Bearer " + bob.access}, getOrder, body), "PermissionDenied", "", "no role through Envoy")
	mustOK(t, grpcurl(t, ctx, latch.grpcAddr, nil, svcRevoke, map[string]string{"token": alice.refresh}), "Revoke")
	// The example service follows no revocations here: the refusal is Latch's, through Envoy.
	wantCode(t, grpcurl(t, ctx, front, []string{"authorization: Bearer " + alice.access}, getOrder, body), "Unauthenticated", "", "revoked token through Envoy")
}

type lockedWriterS struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriterS) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
