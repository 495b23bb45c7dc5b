package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	exampleOnce sync.Once
	exampleBin  string
	exampleErr  error
)

// exampleBinary builds cmd/latch-example-orders once per test run.
func exampleBinary(t *testing.T) string {
	t.Helper()
	exampleOnce.Do(func() {
		dir, err := os.MkdirTemp("", "latch-example-bin")
		if err != nil {
			exampleErr = err
			return
		}
		exampleBin = filepath.Join(dir, "latch-example-orders")
		if out, err := exec.Command("go", "build", "-o", exampleBin, "../latch-example-orders").CombinedOutput(); err != nil {
			exampleErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if exampleErr != nil {
		t.Fatal(exampleErr)
	}
	return exampleBin
}

var listeningAddr = regexp.MustCompile(`event=listening addr=(\S+)`)

// startExample runs the example orders service against Latch and returns
// its address once it listens.
func startExample(t *testing.T, ctx context.Context, latchAddr string, env []string, extra ...string) string {
	t.Helper()
	args := append([]string{"--addr", "127.0.0.1:0", "--latch-addr", latchAddr, "--issuer", "https://latch.test", "--audience", "orders"}, extra...)
	cmd := exec.Command(exampleBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr := make(chan string, 1)
	var mu sync.Mutex
	var logs strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			logs.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if m := listeningAddr.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a := <-addr:
		return a
	case <-ctx.Done():
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("example service did not start:\n%s", logs.String())
		return ""
	}
}

// TestExampleOrdersServiceWithGrpcurl walks docs/interceptors.md's "Protecting your
// own service" section: a sibling service behind Latch's interceptors,
// called with grpcurl using a token from Login, following revocations.
func TestExampleOrdersServiceWithGrpcurl(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	bin := latchBinary(t)
	db := filepath.Join(t.TempDir(), "latch.db")
	for _, u := range []struct{ email, pw, role string }{
		{"olivia@example.com", "olivia-password-1", "orders:read"},
		{"bob@example.com", "bob-password-111", "user"},
		{"svc@example.com", "svc-password-111", "introspect"},
	} {
		if out, err := userAdd(ctx, bin, db, u.email, u.pw, u.role); err != nil {
			t.Fatalf("user add: %v\n%s", err, out)
		}
	}
	latch := startLatch(t, ctx, db)
	orders := startExample(t, ctx, latch.grpcAddr, []string{"LATCH_EXAMPLE_PASSWORD=svc-password-111"},
		"--revocations-email", "svc@example.com")

	login := func(email, pw string) pair {
		return tokensOf(t, mustOK(t, grpcurl(t, ctx, latch.grpcAddr, nil, "latch.v1.AuthService/Login",
			map[string]string{"email": email, "password": pw, "audience": "orders"}), "Login"))
	}
	olivia := login("olivia@example.com", "olivia-password-1")
	auth := []string{"authorization: Bearer " + olivia.access}

	// Reflection and health are public.
	if r := grpcurl(t, ctx, orders, nil, "list", nil); !strings.Contains(r.raw, "latch.example.orders.v1.OrdersService") {
		t.Fatalf("grpcurl list: %s %s", r.raw, r.stderr)
	}
	// The verifier's freshness, under latch.verifier (keys just fetched,
	// revocation stream in sync).
	healthDeadline := time.Now().Add(10 * time.Second)
	for {
		h := mustOK(t, grpcurl(t, ctx, orders, nil, "grpc.health.v1.Health/Check", map[string]string{"service": "latch.verifier"}), "health")
		if h["status"] == "SERVING" {
			break
		}
		if time.Now().After(healthDeadline) {
			t.Fatalf("latch.verifier health = %v, want SERVING", h)
		}
		time.Sleep(50 * time.Millisecond)
	}
	out := mustOK(t, grpcurl(t, ctx, orders, auth, "latch.example.orders.v1.OrdersService/GetOrder", map[string]string{"order_id": "o-1"}), "GetOrder")
	if order, _ := out["order"].(map[string]any); order["item"] != "a kettle" || order["owner"] == "" {
		t.Fatalf("GetOrder = %v", out)
	}
	wantCode(t, grpcurl(t, ctx, orders, nil, "latch.example.orders.v1.OrdersService/GetOrder", map[string]string{"order_id": "o-1"}),
		"Unauthenticated", "", "GetOrder without a token")
	bob := login("bob@example.com", "bob-password-111")
	wantCode(t, grpcurl(t, ctx, orders, []string{"authorization: Bearer " + bob.access}, "latch.example.orders.v1.OrdersService/GetOrder",
		map[string]string{"order_id": "o-1"}), "PermissionDenied", "", "GetOrder without role orders:read")

	// The server stream: the token is checked before the handler runs.
	cmd := exec.CommandContext(ctx, grpcurlPath(t), "-plaintext", "-H", auth[0], "-d", "{}", orders,
		"latch.example.orders.v1.OrdersService/WatchOrders")
	raw, err := cmd.CombinedOutput()
	if err != nil || strings.Count(string(raw), `"orderId"`) != 3 {
		t.Fatalf("WatchOrders: %v\n%s", err, raw)
	}
	wantCode(t, grpcurl(t, ctx, orders, nil, "latch.example.orders.v1.OrdersService/WatchOrders", map[string]string{}),
		"Unauthenticated", "", "WatchOrders without a token")

	// Revoking the access token at Latch reaches the service over the
	// revocation stream.
	mustOK(t, grpcurl(t, ctx, latch.grpcAddr, nil, "latch.v1.AuthService/Revoke", map[string]string{"token": olivia.access}), "Revoke")
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := grpcurl(t, ctx, orders, auth, "latch.example.orders.v1.OrdersService/GetOrder", map[string]string{"order_id": "o-1"})
		if r.code() == "Unauthenticated" && strings.Contains(r.message(), "revoked") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoked token still accepted after 10 s: %s %s", r.raw, r.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestExampleStartsBeforeLatch: the orders example started before Latch
// listens (the docs' block pasted at once) waits for Latch, logs in its
// revocations account and serves, instead of exiting.
func TestExampleStartsBeforeLatch(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	bin := latchBinary(t)
	db := filepath.Join(t.TempDir(), "latch.db")
	if out, err := userAdd(ctx, bin, db, "svc@example.com", "svc-password-111", "introspect"); err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	latchAddr := lis.Addr().String()
	lis.Close() // Latch takes this port once the example is waiting for it

	cmd := exec.Command(exampleBinary(t), "--addr", "127.0.0.1:0", "--latch-addr", latchAddr, "--issuer", "https://latch.test",
		"--audience", "orders", "--revocations-email", "svc@example.com")
	cmd.Env = append(os.Environ(), "LATCH_EXAMPLE_PASSWORD=svc-password-111")
	var logs syncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	// The example is running without Latch: it waits, saying so.
	for !strings.Contains(logs.String(), "waiting for Latch") {
		select {
		case <-exited:
			t.Fatalf("example exited while Latch was not yet listening: %v\n%s", waitErr, logs.String())
		case <-ctx.Done():
			t.Fatalf("example does not say it waits for Latch:\n%s", logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	startLatch(t, ctx, db, "--grpc-addr", latchAddr)
	for !listeningAddr.MatchString(logs.String()) {
		select {
		case <-exited:
			t.Fatalf("example exited: %v\n%s", waitErr, logs.String())
		case <-ctx.Done():
			t.Fatalf("example did not start serving once Latch listened:\n%s", logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
