package interceptors_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/test/bufconn"
)

// switchableLatch is a second gRPC server over e's Latch, reached through
// a listener the test can take away and bring back, so that the
// WatchRevocations stream can be made unreachable while keys stay
// reachable over e.conn.
type switchableLatch struct {
	t   *testing.T
	e   *latchEnv
	lis atomic.Pointer[bufconn.Listener]
	gs  *server.GRPCServer // nil while down
}

// newSwitchableLatch starts unreachable.
func newSwitchableLatch(t *testing.T, e *latchEnv) *switchableLatch {
	s := &switchableLatch{t: t, e: e}
	dead := bufconn.Listen(1)
	dead.Close()
	s.lis.Store(dead)
	return s
}

// up serves Latch on a fresh listener.
func (s *switchableLatch) up() {
	lis := bufconn.Listen(1 << 20)
	gs := server.NewGRPCServer(s.e.srv, slog.New(slog.DiscardHandler))
	go func() { _ = gs.Serve(lis) }()
	s.t.Cleanup(gs.Stop)
	s.lis.Store(lis)
	s.gs = gs
}

// down stops serving: open streams end, new connections are refused.
func (s *switchableLatch) down() {
	dead := bufconn.Listen(1)
	dead.Close()
	s.lis.Store(dead)
	s.gs.Stop()
	s.gs = nil
}

// dial connects to it, retrying quickly while it is unreachable.
func (s *switchableLatch) dial(opts ...grpc.DialOption) *grpc.ClientConn {
	s.t.Helper()
	conn, err := grpc.NewClient("passthrough:///watch", append([]grpc.DialOption{
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return s.lis.Load().DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6,
			MaxDelay: 100 * time.Millisecond}, MinConnectTimeout: time.Second})}, opts...)...)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { conn.Close() })
	return conn
}

// TestLazyStartRefusesUntilRevocationsSync: a lazily started Verifier that
// follows revocations refuses every token as stale (UNAVAILABLE through
// the interceptors) until the first revocation snapshot arrives, however
// short the time since start, and accepts valid tokens after it.
func TestLazyStartRefusesUntilRevocationsSync(t *testing.T) {
	e := newLatch(t)
	e.addUser("alice@example.com", "alice-password", "orders:read")
	e.addUser("svc@example.com", "svc-password", server.RoleIntrospect)
	svc, err := interceptors.Login(ctxT(t), e.conn, "svc@example.com", "svc-password", "", interceptors.AllowInsecure())
	if err != nil {
		t.Fatal(err)
	}
	watch := newSwitchableLatch(t, e)
	v := newVerifier(t, e, interceptors.WithLazyStart(), interceptors.WithRevocationsFromGRPC(watch.dial(grpc.WithPerRPCCredentials(svc))))
	eventually(t, "the key set", func() bool { return !v.Health().KeysMissing })

	tok := e.login("alice@example.com", "alice-password", "").GetAccessToken()
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, interceptors.ErrStale) {
		t.Fatalf("Verify before the first revocation snapshot = %v, want ErrStale", err)
	}
	h := v.Health()
	if !h.RevocationsMissing || !h.Stale || h.Serving() {
		t.Fatalf("Health before the first snapshot = %+v, want revocations missing, stale, not serving", h)
	}
	client := sibling(t, v, policy())
	_, uerr, serr := call(t, client, bearer(ctxT(t), tok))
	wantCode(t, "unary before sync", uerr, codes.Unavailable, "out of date")
	wantCode(t, "stream before sync", serr, codes.Unavailable, "out of date")

	watch.up()
	eventually(t, "the first snapshot", func() bool { return v.Health().Serving() })
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("Verify after the snapshot: %v", err)
	}
	if resp, err := client.UnaryCall(bearer(ctxT(t), tok), &testpb.SimpleRequest{}); err != nil || resp.GetUsername() == "" {
		t.Fatalf("UnaryCall after the snapshot = %v, %v", resp, err)
	}
}
