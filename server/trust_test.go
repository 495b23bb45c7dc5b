package server_test

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

func bearer(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
}

// A token minted for a relying party's audience never acts on Latch: not
// as an administrator, not as an introspector, not as a revocation
// watcher. The same account, logged in for Latch's own audience (the
// issuer), may.
func TestRelyingPartyTokensDoNotActOnLatch(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("root@example.com", "root-password", server.RoleAdmin)
	e.addUser("svc@example.com", "svc-password", server.RoleIntrospect)
	admin := latchv1.NewAdminServiceClient(e.conn)
	issuer := e.srv.Config().Issuer

	for _, aud := range []string{"", "orders", "billing"} {
		rootRP := e.loginFor("root@example.com", "root-password", aud)
		_, err := admin.ListUsers(bearer(ctxT(t), rootRP.GetAccessToken()), &latchv1.ListUsersRequest{})
		wantStatus(t, err, codes.Unauthenticated, "")
		_, err = admin.CreateUser(bearer(ctxT(t), rootRP.GetAccessToken()), &latchv1.CreateUserRequest{
			Email: "evil@example.com", Password: "evil-password", Roles: []string{server.RoleAdmin}})
		wantStatus(t, err, codes.Unauthenticated, "")

		svcRP := e.loginFor("svc@example.com", "svc-password", aud)
		_, err = e.client.Introspect(bearer(ctxT(t), svcRP.GetAccessToken()), &latchv1.IntrospectRequest{Token: svcRP.GetAccessToken()})
		wantStatus(t, err, codes.Unauthenticated, "invalid caller credential")
		w, err := e.client.WatchRevocations(bearer(ctxT(t), svcRP.GetAccessToken()), &latchv1.WatchRevocationsRequest{})
		if err == nil {
			_, err = w.Recv()
		}
		wantStatus(t, err, codes.Unauthenticated, "invalid caller credential")
	}
	if _, err := e.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "root@example.com", Password: "root-password"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.GetUserByEmail(ctxT(t), "evil@example.com"); err == nil {
		t.Fatal("a relying party's token created an administrator")
	}

	root := e.loginFor("root@example.com", "root-password", issuer)
	if _, err := admin.ListUsers(bearer(ctxT(t), root.GetAccessToken()), &latchv1.ListUsersRequest{}); err != nil {
		t.Fatalf("admin with a token for Latch's own audience: %v", err)
	}
	svc := e.loginFor("svc@example.com", "svc-password", issuer)
	target := e.loginFor("root@example.com", "root-password", "orders")
	resp, err := e.client.Introspect(bearer(ctxT(t), svc.GetAccessToken()), &latchv1.IntrospectRequest{Token: target.GetAccessToken()})
	if err != nil || !resp.GetActive() {
		t.Fatalf("introspector with a token for Latch's own audience: %v, %v", resp, err)
	}
	// Introspect describes relying parties' tokens only: a token for
	// Latch's own audience is inactive there.
	resp, err = e.client.Introspect(bearer(ctxT(t), svc.GetAccessToken()), &latchv1.IntrospectRequest{Token: root.GetAccessToken()})
	if err != nil || resp.GetActive() {
		t.Errorf("Introspect of a token for Latch's own audience: %v, %v; want inactive", resp, err)
	}
}

// The issuer can never be configured as a relying party's audience.
func TestIssuerIsNotARelyingPartyAudience(t *testing.T) {
	cfg := baseConfig()
	cfg.Audiences = append(cfg.Audiences, cfg.Issuer)
	err := cfg.Defaults().Validate()
	if err == nil || !strings.Contains(err.Error(), "Latch's own audience") {
		t.Fatalf("Validate = %v, want the issuer refused as an audience", err)
	}
}

// A device's session obtains a token for Latch's own audience by Refresh,
// without a second login and without a second session; it may not hop to
// another relying party's audience, and a refused audience changes nothing.
func TestRefreshForLatchsOwnAudience(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("svc@example.com", "svc-password", server.RoleIntrospect)
	issuer := e.srv.Config().Issuer
	tp := e.loginFor("svc@example.com", "svc-password", "orders")

	_, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken(), Audience: "billing"})
	wantStatus(t, err, codes.InvalidArgument, "")
	_, err = e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken(), Audience: "somewhere-else"})
	wantStatus(t, err, codes.InvalidArgument, "")

	// The refused requests consumed nothing: the token still rotates.
	self, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken(), Audience: issuer})
	if err != nil {
		t.Fatalf("Refresh for Latch's own audience: %v", err)
	}
	c, err := e.srv.Verifier().Verify(ctxT(t), self.GetTokens().GetAccessToken())
	if err == nil {
		t.Fatalf("relying-party verifier accepted a token for Latch's own audience: %+v", c)
	}
	if self.GetTokens().GetSessionId() != tp.GetSessionId() {
		t.Errorf("session %q, want the device's own session %q", self.GetTokens().GetSessionId(), tp.GetSessionId())
	}
	resp, err := e.client.Introspect(bearer(ctxT(t), self.GetTokens().GetAccessToken()), &latchv1.IntrospectRequest{Token: tp.GetAccessToken()})
	if err != nil || !resp.GetActive() {
		t.Fatalf("Introspect with the refreshed token for Latch's audience: %v, %v", resp, err)
	}
	// The session keeps its own audience for the next refresh.
	next, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: self.GetTokens().GetRefreshToken()})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := e.srv.Verifier().Verify(ctxT(t), next.GetTokens().GetAccessToken()); err != nil || c.Audience[0] != "orders" {
		t.Errorf("next refresh: claims %+v, %v; want audience orders", c, err)
	}
}

// Garbage refresh tokens and caller credentials from one address are
// charged to that address and refused once its budget is spent, but a
// valid refresh token, a valid caller and an authenticated introspector
// asking about garbage are never refused because of them.
func TestValidCredentialsAreNeverRefusedForOthersFailures(t *testing.T) {
	cfg := baseConfig()
	cfg.ProbeBurst, cfg.ProbeRefill = 5, time.Hour
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password")
	caller := e.introspector()
	alice := e.login("alice@example.com", "alice-password")

	for i := range 40 {
		_, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: "garbage-refresh-token"})
		if i < 5 {
			wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
		} else {
			wantStatus(t, err, codes.ResourceExhausted, "too many invalid tokens; retry later")
		}
		_, err = e.client.Introspect(bearer(ctxT(t), "garbage.caller.token"), &latchv1.IntrospectRequest{Token: "x"})
		if i >= 5 {
			wantStatus(t, err, codes.ResourceExhausted, "too many invalid tokens; retry later")
		}
		// An authenticated introspector asking about garbage is answered,
		// never throttled.
		resp, err := e.client.Introspect(caller, &latchv1.IntrospectRequest{Token: "garbage-target"})
		if err != nil || resp.GetActive() {
			t.Fatalf("introspection %d of a garbage target: %v, %v; want inactive", i, resp, err)
		}
	}
	if _, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: alice.GetRefreshToken()}); err != nil {
		t.Fatalf("valid refresh from the same address: %v", err)
	}
	resp, err := e.client.Introspect(caller, &latchv1.IntrospectRequest{Token: alice.GetAccessToken()})
	if err != nil || !resp.GetActive() {
		t.Fatalf("valid introspection from the same address: %v, %v", resp, err)
	}
	w, err := e.client.WatchRevocations(caller, &latchv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Header(); err != nil {
		t.Fatalf("valid revocation watcher from the same address: %v", err)
	}
}

// A revocation stream lives as long as its caller's credential: revoking
// the caller's session, or disabling its user, ends the stream with
// UNAUTHENTICATED.
func TestWatchEndsWhenTheCallerIsRevoked(t *testing.T) {
	for _, how := range []string{"revoke session", "disable user"} {
		t.Run(how, func(t *testing.T) {
			e := newEnv(t, baseConfig())
			u := e.addUser("svc@example.com", "svc-password", server.RoleIntrospect)
			e.addUser("root@example.com", "root-password", server.RoleAdmin)
			tp := e.loginFor("svc@example.com", "svc-password", e.srv.Config().Issuer)
			w, err := e.client.WatchRevocations(bearer(ctxT(t), tp.GetAccessToken()), &latchv1.WatchRevocationsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Header(); err != nil {
				t.Fatal(err)
			}
			switch how {
			case "revoke session":
				if _, err := e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: tp.GetRefreshToken()}); err != nil {
					t.Fatal(err)
				}
			case "disable user":
				root := e.loginFor("root@example.com", "root-password", e.srv.Config().Issuer)
				admin := latchv1.NewAdminServiceClient(e.conn)
				disabled := true
				if _, err := admin.UpdateUser(bearer(ctxT(t), root.GetAccessToken()), &latchv1.UpdateUserRequest{UserId: u.ID, Disabled: &disabled}); err != nil {
					t.Fatal(err)
				}
			}
			for {
				_, err := w.Recv()
				if err == nil {
					continue // the caller's own revocation event comes first
				}
				wantStatus(t, err, codes.Unauthenticated, "caller credential revoked; reconnect with a valid access token")
				break
			}
		})
	}
}

// A Refresh whose reply was lost is retried with the same token by
// default: the retry gets a working successor, the lost successor stops
// working, and the session lives on. An older token is still reuse.
func TestLostRefreshReplyIsRetriedByDefault(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("alice@example.com", "alice-password")
	tp := e.login("alice@example.com", "alice-password")
	lost, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Second)
	retry, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
	if err != nil {
		t.Fatalf("retry of the immediately previous token within the default window: %v", err)
	}
	_, err = e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: lost.GetTokens().GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
	// Presenting the lost successor was reuse: the session is gone.
	_, err = e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: retry.GetTokens().GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
}

// Behind trusted proxies every client is charged under its own address
// from x-forwarded-for; an untrusted peer's x-forwarded-for is ignored;
// IPv6 clients are bucketed by /64.
func TestTrustedProxiesResolveTheClient(t *testing.T) {
	cfg := baseConfig()
	cfg.AddressBurst, cfg.AddressRefill = 3, time.Hour
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32"), netip.MustParsePrefix("10.0.0.0/8")}
	e := newEnv(t, cfg)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := server.NewGRPCServer(e.srv, slog.New(slog.DiscardHandler))
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	proxy := clientFrom(t, lis.Addr().String(), "127.0.0.2")
	direct := clientFrom(t, lis.Addr().String(), "127.0.0.3")
	login := func(c latchv1.AuthServiceClient, xff ...string) error {
		ctx := ctxT(t)
		for _, v := range xff {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-forwarded-for", v)
		}
		_, err := c.Login(ctx, &latchv1.LoginRequest{Email: "nobody" + xffKey(xff) + "@example.com", Password: "guess"})
		return err
	}
	// One client behind the proxy spends its own budget...
	for range 3 {
		wantStatus(t, login(proxy, "203.0.113.7"), codes.Unauthenticated, "")
	}
	wantStatus(t, login(proxy, "203.0.113.7"), codes.ResourceExhausted, "")
	// ... and a spoofed left-most entry does not dodge it: the right-most
	// untrusted entry (the one the proxy saw) is the client.
	wantStatus(t, login(proxy, "198.51.100.1, 203.0.113.7"), codes.ResourceExhausted, "")
	wantStatus(t, login(proxy, "203.0.113.7, 10.1.2.3"), codes.ResourceExhausted, "")
	// Another client behind the same proxy is not affected.
	if err := login(proxy, "203.0.113.8"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("another client behind the proxy: %v, want its own budget", err)
	}
	// IPv6: one /64 is one client.
	for range 3 {
		_ = login(proxy, "2001:db8:1:2::1")
	}
	wantStatus(t, login(proxy, "2001:db8:1:2:ffff::9"), codes.ResourceExhausted, "")
	if err := login(proxy, "2001:db8:1:3::1"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("another /64: %v, want its own budget", err)
	}
	// Log lines name the client, not the proxy.
	for _, want := range []string{`"peer":"203.0.113.7"`, `"peer":"2001:db8:1:2::1"`} {
		if !strings.Contains(e.logs.String(), want) {
			t.Errorf("no log record with %s", want)
		}
	}
	// A peer that is not a trusted proxy cannot choose its address.
	for i := range 3 {
		wantStatus(t, login(direct, "192.0.2."+string(rune('1'+i))), codes.Unauthenticated, "")
	}
	wantStatus(t, login(direct, "192.0.2.99"), codes.ResourceExhausted, "")
}

// xffKey makes each test login's email distinct, so that only the address
// budget is in play.
func xffKey(xff []string) string {
	return strings.NewReplacer(",", "", " ", "", ":", "", ".", "").Replace(strings.Join(xff, "")) + time.Now().Format("150405.000000000")
}
