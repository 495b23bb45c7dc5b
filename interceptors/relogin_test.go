package interceptors_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/interceptors/clientcreds"
	"github.com/latchauth/latch/storage"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
)

// sessionOf returns the session id of the token creds hold now.
func sessionOf(t *testing.T, _ *interceptors.Verifier, creds *clientcreds.Credentials) string {
	t.Helper()
	tok, err := creds.Token(ctxT(t))
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	// The token may be for Latch's own audience, which a sibling's
	// verifier refuses: read its sid without verifying it (Latch minted it).
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("credentials hold a token of %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		SID string `json:"sid"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.SID == "" {
		t.Fatalf("token payload without sid: %v", err)
	}
	return claims.SID
}

// pwSource is a password source the test can change, counting logins.
type pwSource struct {
	mu     sync.Mutex
	pw     string
	logins atomic.Int64
}

func (p *pwSource) get(context.Context) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.logins.Add(1)
	return p.pw, nil
}

// TestCredentialsLogInAgainAfterSessionEnds: when Latch refuses the
// refresh token because the session was revoked, credentials with WithRelogin
// log in again and calls through them continue; many concurrent callers
// cause one Refresh and one login.
func TestCredentialsLogInAgainAfterSessionEnds(t *testing.T) {
	e := newLatch(t)
	e.AddUser("svc@example.com", "svc-password", "orders:read")
	v := newVerifier(t, e)
	client := sibling(t, v, policy())
	pw := &pwSource{pw: "svc-password"}
	creds, err := clientcreds.Login(ctxT(t), e.conn, "svc@example.com", "svc-password", "",
		clientcreds.WithInsecure(), clientcreds.WithClock(e.Clock.Now),
		clientcreds.WithRelogin(clientcreds.PasswordLogin(e.conn, "svc@example.com", "", pw.get)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.UnaryCall(ctxT(t), &testpb.SimpleRequest{}, grpc.PerRPCCredentials(creds)); err != nil {
		t.Fatal(err)
	}
	first := sessionOf(t, v, creds)
	if _, _, err := e.Store.RevokeSession(ctxT(t), first, "test", e.Clock.Now()); err != nil {
		t.Fatal(err)
	}
	e.Clock.Advance(15*time.Minute - 30*time.Second) // the refresh is due
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := client.UnaryCall(ctxT(t), &testpb.SimpleRequest{}, grpc.PerRPCCredentials(creds)); err != nil {
				t.Errorf("call after the session was revoked: %v", err)
			}
		})
	}
	wg.Wait()
	if second := sessionOf(t, v, creds); second == first {
		t.Fatal("still on the revoked session")
	}
	if r, l := e.refresh.Load(), pw.logins.Load(); r != 1 || l != 1 {
		t.Fatalf("%d Refresh calls and %d logins for 16 concurrent callers, want 1 and 1", r, l)
	}
	if err := creds.Failure(); err != nil {
		t.Fatalf("Failure after a successful re-login: %v", err)
	}
}

// TestCredentialsSessionEndedIsFatal: without WithRelogin, a refused refresh
// token ends the credentials: calls fail UNAUTHENTICATED with
// ErrSessionEnded, Latch is not asked again, and Failure reports it.
// With a WithRelogin that Latch refuses (account disabled), Failure
// reports it too, until a later attempt (after the backoff) succeeds.
func TestCredentialsSessionEndedIsFatal(t *testing.T) {
	e := newLatch(t)
	e.AddUser("svc@example.com", "svc-password", "orders:read")
	// The test clock runs hours ahead of the key fetches; key age is not
	// what this test checks.
	v := newVerifier(t, e, interceptors.WithFailOpen())
	client := sibling(t, v, policy())

	t.Run("no relogin", func(t *testing.T) {
		creds, err := clientcreds.Login(ctxT(t), e.conn, "svc@example.com", "svc-password", "",
			clientcreds.WithInsecure(), clientcreds.WithClock(e.Clock.Now))
		if err != nil {
			t.Fatal(err)
		}
		if err := creds.Failure(); err != nil {
			t.Fatalf("fresh credentials: %v", err)
		}
		if _, _, err := e.Store.RevokeSession(ctxT(t), sessionOf(t, v, creds), "test", e.Clock.Now()); err != nil {
			t.Fatal(err)
		}
		before := e.refresh.Load()
		e.Clock.Advance(15*time.Minute - 30*time.Second)
		for range 3 {
			_, err := client.UnaryCall(ctxT(t), &testpb.SimpleRequest{}, grpc.PerRPCCredentials(creds))
			wantCode(t, "call with ended credentials", err, codes.Unauthenticated, "session ended")
			if _, err := creds.Token(ctxT(t)); !errors.Is(err, clientcreds.ErrSessionEnded) {
				t.Fatalf("Token = %v, want ErrSessionEnded", err)
			}
			e.Clock.Advance(time.Hour) // no backoff brings a dead refresh token back
		}
		if n := e.refresh.Load() - before; n != 1 {
			t.Fatalf("%d Refresh calls with a dead refresh token, want 1", n)
		}
		if err := creds.Failure(); !errors.Is(err, clientcreds.ErrSessionEnded) {
			t.Fatalf("Failure = %v, want ErrSessionEnded", err)
		}
	})

	t.Run("relogin refused", func(t *testing.T) {
		pw := &pwSource{pw: "svc-password"}
		creds, err := clientcreds.Login(ctxT(t), e.conn, "svc@example.com", "svc-password", "",
			clientcreds.WithInsecure(), clientcreds.WithClock(e.Clock.Now), clientcreds.WithRetryBackoff(time.Second, time.Minute),
			clientcreds.WithRelogin(clientcreds.PasswordLogin(e.conn, "svc@example.com", "", pw.get)))
		if err != nil {
			t.Fatal(err)
		}
		sid := sessionOf(t, v, creds)
		var user storage.User
		if s, err := e.Store.GetSession(ctxT(t), sid); err != nil {
			t.Fatal(err)
		} else if user, err = e.Store.GetUser(ctxT(t), s.UserID); err != nil {
			t.Fatal(err)
		}
		setDisabled := func(d bool) {
			if _, err := e.Store.UpdateUser(ctxT(t), user.ID, func(u *storage.User) error { u.Disabled = d; return nil }); err != nil {
				t.Fatal(err)
			}
		}
		setDisabled(true)
		if _, _, err := e.Store.RevokeSession(ctxT(t), sid, "test", e.Clock.Now()); err != nil {
			t.Fatal(err)
		}
		e.Clock.Advance(15 * time.Minute)
		_, err = client.UnaryCall(ctxT(t), &testpb.SimpleRequest{}, grpc.PerRPCCredentials(creds))
		wantCode(t, "call while the login is refused", err, codes.Unauthenticated, "session ended")
		if err := creds.Failure(); !errors.Is(err, clientcreds.ErrSessionEnded) {
			t.Fatalf("login refused: Failure = %v, want ErrSessionEnded", err)
		}
		// Within the backoff nobody logs in again.
		logins := pw.logins.Load()
		if _, err := creds.Token(ctxT(t)); err == nil || pw.logins.Load() != logins {
			t.Fatalf("Token within the backoff = %v after %d more logins, want an error and none", err, pw.logins.Load()-logins)
		}
		setDisabled(false)
		e.Clock.Advance(time.Second)
		if _, err := client.UnaryCall(ctxT(t), &testpb.SimpleRequest{}, grpc.PerRPCCredentials(creds)); err != nil {
			t.Fatalf("call once the account is enabled again: %v", err)
		}
		if err := creds.Failure(); err != nil {
			t.Fatalf("recovered: Failure = %v, want nil", err)
		}
	})
}

// TestCredentialsTransientRefreshFailureKeepsRefreshToken: while Latch is
// unreachable, an expired token fails fast (UNAVAILABLE) and the refresh is
// retried after the backoff with the same refresh token, which then
// succeeds: nothing was lost and no login was needed.
func TestCredentialsTransientRefreshFailureKeepsRefreshToken(t *testing.T) {
	e := newLatch(t)
	e.AddUser("svc@example.com", "svc-password", "orders:read")
	v := newVerifier(t, e)
	pw := &pwSource{pw: "svc-password"}
	sw := newSwitchableLatch(t, e)
	sw.up()
	conn := sw.dial()
	creds, err := clientcreds.Login(ctxT(t), conn, "svc@example.com", "svc-password", "",
		clientcreds.WithInsecure(), clientcreds.WithClock(e.Clock.Now), clientcreds.WithRetryBackoff(time.Second, 4*time.Second),
		clientcreds.WithRelogin(clientcreds.PasswordLogin(conn, "svc@example.com", "", pw.get)))
	if err != nil {
		t.Fatal(err)
	}
	sid := sessionOf(t, v, creds)
	sw.down()
	e.Clock.Advance(15 * time.Minute)
	for range 3 {
		_, err := creds.Token(ctxT(t))
		if status.Code(err) != codes.Unavailable || errors.Is(err, clientcreds.ErrSessionEnded) {
			t.Fatalf("Token while Latch is down = %v, want UNAVAILABLE", err)
		}
		if creds.Failure() != nil {
			t.Fatal("a transient failure is reported as fatal")
		}
		e.Clock.Advance(4 * time.Second) // past the longest backoff
	}
	sw.up()
	for st := conn.GetState(); st != connectivity.Ready; st = conn.GetState() {
		conn.Connect()
		if !conn.WaitForStateChange(ctxT(t), st) {
			t.Fatal("no connection to Latch once it is back")
		}
	}
	if got := sessionOf(t, v, creds); got != sid {
		t.Fatalf("session %s after recovery, want the same %s (refresh token kept)", got, sid)
	}
	if pw.logins.Load() != 0 {
		t.Fatal("logged in again after a transient failure")
	}
}
