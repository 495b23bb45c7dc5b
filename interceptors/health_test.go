package interceptors_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/interceptors/clientcreds"
	"github.com/latchauth/latch/internal/verifier"
	"github.com/latchauth/latch/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// healthClient serves hs over bufconn and returns a client of it.
func healthClient(t *testing.T, hs *health.Server) healthpb.HealthClient {
	t.Helper()
	lis := bufconn.Listen(1 << 16)
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go func() { _ = gs.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///health",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); gs.Stop() })
	return healthpb.NewHealthClient(conn)
}

func servingStatus(t *testing.T, c healthpb.HealthClient, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	resp, err := c.Check(ctxT(t), &healthpb.HealthCheckRequest{Service: service})
	if status.Code(err) == codes.NotFound {
		return healthpb.HealthCheckResponse_SERVICE_UNKNOWN // not reported yet
	}
	if err != nil {
		t.Fatalf("health Check(%q): %v", service, err)
	}
	return resp.GetStatus()
}

// eventually polls cond (bounded, for background work on real timers).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStaleKeysFailClosed: once the key set is older than WithMaxKeyAge
// (the JWKS endpoint down), every token is refused with ErrStale and
// health says NOT_SERVING; when a refresh succeeds again both recover.
func TestStaleKeysFailClosed(t *testing.T) {
	a := newKey(t)
	j := newJWKSServer(t, a)
	clk := newClock(time.Now())
	v := urlVerifier(t, j, interceptors.WithClock(clk.Now), interceptors.WithMaxKeyAge(10*time.Minute),
		interceptors.WithRefreshInterval(20*time.Millisecond))
	hs := health.NewServer()
	hc := healthClient(t, hs)
	tok := mint(t, a, clk.Now())
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if h := v.UpdateHealth(hs, "envoy.service.auth.v3.Authorization"); !h.Serving() {
		t.Fatalf("fresh verifier: %+v", h)
	}
	if got := servingStatus(t, hc, interceptors.HealthService); got != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("fresh: %v", got)
	}

	j.down.Store(true)
	clk.Advance(11 * time.Minute)
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, interceptors.ErrStale) {
		t.Fatalf("keys 11 min old with a 10 min bound: %v, want ErrStale", err)
	}
	h := v.UpdateHealth(hs, "envoy.service.auth.v3.Authorization")
	if !h.Stale || h.KeyAge < 11*time.Minute || h.Serving() {
		t.Fatalf("Health = %+v, want stale with key age ≥ 11m", h)
	}
	for _, svc := range []string{interceptors.HealthService, "envoy.service.auth.v3.Authorization"} {
		if got := servingStatus(t, hc, svc); got != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("stale %s: %v, want NOT_SERVING", svc, got)
		}
	}
	// Through the interceptors: UNAVAILABLE, not a verdict on the token.
	_, err := sibling(t, v, policy()).UnaryCall(bearer(ctxT(t), tok), &testpb.SimpleRequest{})
	wantCode(t, "stale", err, codes.Unavailable, "out of date")

	j.down.Store(false)
	eventually(t, "a successful background refresh", func() bool { return !v.Status().Stale })
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	if got := servingStatus(t, hc, interceptors.HealthService); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("status changed without UpdateHealth: %v", got) // UpdateHealth is what publishes
	}
	v.UpdateHealth(hs)
	if got := servingStatus(t, hc, interceptors.HealthService); got != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("recovered: %v", got)
	}
}

// TestStaleKeysFailOpen: with WithFailOpen a stale verifier keeps verifying
// with its last keys, while health still reports the problem.
func TestStaleKeysFailOpen(t *testing.T) {
	a := newKey(t)
	j := newJWKSServer(t, a)
	clk := newClock(time.Now())
	v := urlVerifier(t, j, interceptors.WithClock(clk.Now), interceptors.WithMaxKeyAge(10*time.Minute),
		interceptors.WithRefreshInterval(time.Hour), interceptors.WithFailOpen())
	j.down.Store(true)
	clk.Advance(11 * time.Minute)
	if _, err := v.Verify(context.Background(), mint(t, a, clk.Now())); err != nil {
		t.Fatalf("fail open: %v", err)
	}
	if h := v.Status(); !h.Stale || h.Serving() || !h.FailOpen {
		t.Fatalf("Status = %+v, want stale, not serving, fail open", h)
	}
}

// TestRevocationLag: when the WatchRevocations stream is cut, the lag grows
// from the moment it went down; past WithMaxRevocationLag tokens are
// refused (unless WithFailOpen) and health is NOT_SERVING.
func TestRevocationLag(t *testing.T) {
	e := newLatch(t)
	e.AddUser("alice@example.com", "alice-password", "orders:read")
	e.AddUser("svc@example.com", "svc-password", server.RoleIntrospect)
	svc, err := clientcreds.Login(ctxT(t), e.conn, "svc@example.com", "svc-password", issuer, clientcreds.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	// A second gRPC server over the same Latch, only for the stream, so
	// that it can be cut while keys stay reachable.
	lis := bufconn.Listen(1 << 20)
	watchSrv := server.NewGRPCServer(e.Server, slog.New(slog.DiscardHandler))
	go func() { _ = watchSrv.Serve(lis) }()
	t.Cleanup(watchSrv.Stop)
	watchConn, err := grpc.NewClient("passthrough:///watch",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(svc))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { watchConn.Close() })

	verifiers := map[string]*interceptors.Verifier{}
	for policy, opt := range map[string]interceptors.Option{"closed": interceptors.WithLeeway(5 * time.Second), "open": interceptors.WithFailOpen()} {
		verifiers[policy] = newVerifier(t, e, interceptors.WithRevocations(watchConn, nil),
			interceptors.WithMaxRevocationLag(time.Minute), opt)
		if h := verifiers[policy].Status(); h.RevocationLag != 0 || !h.Serving() {
			t.Fatalf("in sync: %+v", h)
		}
	}
	tok := e.Login("alice@example.com", "alice-password", "").GetAccessToken()
	watchSrv.Stop()
	for _, v := range verifiers {
		eventually(t, "the stream to drop", func() bool { return !v.Status().RevocationsConnected })
	}
	e.Clock.Advance(2 * time.Minute)
	for policy, v := range verifiers {
		h := v.Status()
		if h.RevocationLag < 2*time.Minute || !h.Stale || h.Serving() {
			t.Fatalf("%v: stream down 2 min with a 1 min bound: %+v", policy, h)
		}
		_, err := v.Verify(context.Background(), tok)
		switch policy {
		case "closed":
			if !errors.Is(err, interceptors.ErrStale) {
				t.Fatalf("fail closed: %v, want ErrStale", err)
			}
		case "open":
			if err != nil {
				t.Fatalf("fail open: %v", err)
			}
		}
	}
}

// TestRevocationCheckFailureIsUnhealthy: a failing WithRevocationCheck
// makes health NOT_SERVING until it answers again.
func TestRevocationCheckFailureIsUnhealthy(t *testing.T) {
	a := newKey(t)
	owned := &ownedKeys{}
	owned.set(t, a)
	var failing atomic.Bool
	v := ownedVerifier(t, epochKeys{owned}, verifier.WithRevocationCheck(func(context.Context, interceptors.Claims) (bool, error) {
		if failing.Load() {
			return false, errors.New("store down")
		}
		return false, nil
	}))
	tok := mint(t, a, time.Now())
	failing.Store(true)
	_, _ = v.Verify(context.Background(), tok)
	if h := v.Status(); !h.RevocationCheckFailing || h.Serving() {
		t.Fatalf("Health = %+v, want revocation check failing", h)
	}
	failing.Store(false)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	if h := v.Status(); !h.Serving() {
		t.Fatalf("Health = %+v after a good check", h)
	}

	// With no requests at all, the reporter's own probe brings health back
	// once the check answers again.
	failing.Store(true)
	_, _ = v.Verify(context.Background(), tok)
	hs := health.NewServer()
	hc := healthClient(t, hs)
	ctx, cancel := context.WithCancel(ctxT(t))
	done := make(chan struct{})
	go func() { defer close(done); v.ReportHealth(ctx, hs, 10*time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, "NOT_SERVING", func() bool {
		return servingStatus(t, hc, interceptors.HealthService) == healthpb.HealthCheckResponse_NOT_SERVING
	})
	failing.Store(false)
	eventually(t, "SERVING without any request", func() bool {
		return servingStatus(t, hc, interceptors.HealthService) == healthpb.HealthCheckResponse_SERVING
	})
}

// TestRevocationCheckCallerCancelStaysHealthy: a check that fails only
// because the caller hung up (its context cancelled) still refuses the
// token but leaves health SERVING; a passed deadline (what a hung store
// looks like) still makes it NOT_SERVING.
func TestRevocationCheckCallerCancelStaysHealthy(t *testing.T) {
	a := newKey(t)
	owned := &ownedKeys{}
	owned.set(t, a)
	v := ownedVerifier(t, epochKeys{owned}, verifier.WithRevocationCheck(func(ctx context.Context, _ interceptors.Claims) (bool, error) {
		return false, ctx.Err()
	}))
	tok := mint(t, a, time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := v.Verify(ctx, tok); !errors.Is(err, verifier.ErrRevocationUnavailable) {
		t.Fatalf("Verify with a cancelled context = %v, want ErrRevocationUnavailable", err)
	}
	if h := v.Status(); h.RevocationCheckFailing || !h.Serving() {
		t.Fatalf("Health = %+v after a caller's cancellation, want serving", h)
	}
	dctx, dcancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer dcancel()
	if _, err := v.Verify(dctx, tok); !errors.Is(err, verifier.ErrRevocationUnavailable) {
		t.Fatalf("Verify past its deadline = %v, want ErrRevocationUnavailable", err)
	}
	if h := v.Status(); !h.RevocationCheckFailing || h.Serving() {
		t.Fatalf("Health = %+v after a deadline passed in the check, want revocation check failing", h)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReportHealth: the reporter publishes changes through a real health
// service and logs each transition.
func TestReportHealth(t *testing.T) {
	a := newKey(t)
	j := newJWKSServer(t, a)
	clk := newClock(time.Now())
	var logs syncBuffer
	v := urlVerifier(t, j, interceptors.WithClock(clk.Now), interceptors.WithMaxKeyAge(10*time.Minute),
		interceptors.WithRefreshInterval(time.Hour), interceptors.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	hs := health.NewServer()
	hc := healthClient(t, hs)
	ctx, cancel := context.WithCancel(ctxT(t))
	done := make(chan struct{})
	go func() { defer close(done); v.ReportHealth(ctx, hs, 10*time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, "SERVING", func() bool {
		return servingStatus(t, hc, interceptors.HealthService) == healthpb.HealthCheckResponse_SERVING
	})
	j.down.Store(true)
	clk.Advance(11 * time.Minute)
	eventually(t, "NOT_SERVING", func() bool {
		return servingStatus(t, hc, interceptors.HealthService) == healthpb.HealthCheckResponse_NOT_SERVING
	})
	eventually(t, "the transition logged", func() bool { return strings.Contains(logs.String(), `"event":"verifier_unhealthy"`) })
}

func TestHealthOptionErrors(t *testing.T) {
	for name, opt := range map[string]interceptors.Option{
		"key age": interceptors.WithMaxKeyAge(0),
		"rev lag": interceptors.WithMaxRevocationLag(-time.Second),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := interceptors.NewVerifier(ctxT(t), interceptors.Config{Issuer: issuer, Audience: []string{"orders"},
				Keys: interceptors.StaticJWKS([]byte(`{}`))}, opt); err == nil {
				t.Fatal("NewVerifier succeeded")
			}
		})
	}
}

// TestHealthWithoutKeys: a lazily started Verifier with no key set yet is
// NOT_SERVING (and refuses tokens on its own, not as stale).
func TestHealthWithoutKeys(t *testing.T) {
	a := newKey(t)
	j := newJWKSServer(t, a)
	j.down.Store(true)
	v := urlVerifier(t, j, interceptors.WithLazyStart(), interceptors.WithRefreshInterval(time.Hour),
		interceptors.WithMinRefetchInterval(time.Hour))
	h := v.Status()
	if !h.KeysMissing || h.Serving() || h.Stale {
		t.Fatalf("Health = %+v, want keys missing, not serving, not stale", h)
	}
	if _, err := v.Verify(context.Background(), mint(t, a, time.Now())); errors.Is(err, interceptors.ErrStale) || err == nil {
		t.Fatalf("Verify without keys = %v, want an invalid-token error", err)
	}
}
