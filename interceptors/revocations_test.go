package interceptors_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/interceptors/clientcreds"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
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
	gs := server.NewGRPCServer(s.e.Server, slog.New(slog.DiscardHandler))
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
	e.AddUser("alice@example.com", "alice-password", "orders:read")
	e.AddUser("svc@example.com", "svc-password", server.RoleIntrospect)
	svc, err := clientcreds.Login(ctxT(t), e.conn, "svc@example.com", "svc-password", issuer, clientcreds.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	watch := newSwitchableLatch(t, e)
	v := newVerifier(t, e, interceptors.WithLazyStart(), interceptors.WithRevocations(watch.dial(grpc.WithPerRPCCredentials(svc)), nil))
	eventually(t, "the key set", func() bool { return !v.Status().KeysMissing })

	tok := e.Login("alice@example.com", "alice-password", "").GetAccessToken()
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, interceptors.ErrStale) {
		t.Fatalf("Verify before the first revocation snapshot = %v, want ErrStale", err)
	}
	h := v.Status()
	if !h.RevocationsMissing || !h.Stale || h.Serving() {
		t.Fatalf("Health before the first snapshot = %+v, want revocations missing, stale, not serving", h)
	}
	client := sibling(t, v, policy())
	_, uerr, serr := call(t, client, bearer(ctxT(t), tok))
	wantCode(t, "unary before sync", uerr, codes.Unavailable, "out of date")
	wantCode(t, "stream before sync", serr, codes.Unavailable, "out of date")

	watch.up()
	eventually(t, "the first snapshot", func() bool { return v.Status().Serving() })
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("Verify after the snapshot: %v", err)
	}
	if resp, err := client.UnaryCall(bearer(ctxT(t), tok), &testpb.SimpleRequest{}); err != nil || resp.GetUsername() == "" {
		t.Fatalf("UnaryCall after the snapshot = %v, %v", resp, err)
	}
}

// TestRevocationFollowerRenewsRefusedToken: when Latch refuses the
// follower's own token on WatchRevocations (its session was revoked), the
// follower renews it through its credentials (here by logging in again,
// since the refresh token died with the session) and is back in sync
// without the lag growing and without waiting for the token to expire.
// When the follower's user is disabled, the credentials cannot recover and
// the Verifier's health says so.
//
// The stream is made to present the revoked token by restarting the
// gRPC server in front of Latch after the revocation; a Latch that ends
// open streams of revoked sessions by itself takes the same path.
func TestRevocationFollowerRenewsRefusedToken(t *testing.T) {
	e := newLatch(t)
	e.AddUser("alice@example.com", "alice-password", "orders:read")
	e.AddUser("svc@example.com", "svc-password", server.RoleIntrospect)
	pw := &pwSource{pw: "svc-password"}
	creds, err := clientcreds.Login(ctxT(t), e.conn, "svc@example.com", "svc-password", issuer,
		clientcreds.WithInsecure(), clientcreds.WithClock(e.Clock.Now),
		clientcreds.WithRelogin(clientcreds.PasswordLogin(e.conn, "svc@example.com", issuer, pw.get)))
	if err != nil {
		t.Fatal(err)
	}
	watch := newSwitchableLatch(t, e)
	watch.up()
	v := newVerifier(t, e, interceptors.WithRevocations(watch.dial(), creds))
	tok := e.Login("alice@example.com", "alice-password", "").GetAccessToken()
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}

	svcSession := sessionOf(t, v, creds)
	if _, _, err := e.Store.RevokeSession(ctxT(t), svcSession, "test", e.Clock.Now()); err != nil {
		t.Fatal(err)
	}
	watch.down()
	eventually(t, "the stream to drop", func() bool { return !v.Status().RevocationsConnected })
	watch.up()
	// The test clock stands still, so the lag cannot grow here; what
	// matters is that the stream is back without the token expiring.
	eventually(t, "the follower back on the stream", func() bool { return v.Status().RevocationsConnected && v.Status().Serving() })
	if pw.logins.Load() != 1 {
		t.Fatalf("%d logins, want 1", pw.logins.Load())
	}
	if s := sessionOf(t, v, creds); s == svcSession {
		t.Fatal("the follower is still on its revoked session")
	}
	// It follows revocations again.
	if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: tok}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the revocation", func() bool {
		_, err := v.Verify(context.Background(), tok)
		return errors.Is(err, interceptors.ErrRevoked)
	})

	// Disabled: the new login is refused too; health reports it.
	svc, err := e.Store.GetUserByEmail(ctxT(t), "svc@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Store.UpdateUser(ctxT(t), svc.ID, func(u *storage.User) error { u.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Store.RevokeSession(ctxT(t), sessionOf(t, v, creds), "test", e.Clock.Now()); err != nil {
		t.Fatal(err)
	}
	watch.down()
	watch.up()
	eventually(t, "the credentials failure in health", func() bool {
		h := v.Status()
		return h.CredentialsFailing && !h.Serving()
	})
}
