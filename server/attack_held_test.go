package server_test

import (
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// A thief holding the previous refresh token uses it inside the grace
// window after the owner rotated: the thief's session lasts only until the
// owner's next refresh, which revokes the session and the thief's access
// token with it.
func TestGraceThiefLosesOnOwnersNextRefresh(t *testing.T) {
	cfg := baseConfig()
	cfg.IntrospectOpen = true
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password")
	t0 := e.login("alice@example.com", "alice-password")
	t1 := e.refresh(t0.GetRefreshToken()) // owner
	e.clock.Advance(3 * time.Second)
	stolen := e.refresh(t0.GetRefreshToken()) // thief, inside 5 s
	e.clock.Advance(10 * time.Second)
	// The owner comes back with its T1, which the thief replaced: reuse.
	_, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: t1.GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
	_, err = e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: stolen.GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
	r, err := e.client.Introspect(ctxT(t), &latchv1.IntrospectRequest{Token: stolen.GetAccessToken()})
	if err != nil || r.GetActive() {
		t.Fatalf("thief's access token after the session was revoked: %v %v", r, err)
	}
}

// Spoofing attempts through a trusted proxy never move the client off the
// address the proxy saw.
func TestForwardedForSpoofing(t *testing.T) {
	cfg := baseConfig()
	cfg.AddressBurst, cfg.AddressRefill = 1, time.Hour
	cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
	e := newEnv(t, cfg)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := server.NewGRPCServer(e.srv, slog.New(slog.DiscardHandler))
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	proxy := clientFrom(t, lis.Addr().String(), "127.0.0.2")
	n := 0
	login := func(xff ...string) codes.Code {
		ctx := ctxT(t)
		for _, v := range xff {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-forwarded-for", v)
		}
		n++
		_, err := proxy.Login(ctx, &latchv1.LoginRequest{Email: "u" + string(rune('a'+n)) + "@x.example", Password: "p"})
		return status.Code(err)
	}
	if c := login("203.0.113.7"); c != codes.Unauthenticated {
		t.Fatalf("first: %v", c)
	}
	for name, xff := range map[string][]string{
		"spoofed separate header first": {"198.51.100.1", "203.0.113.7"},
		"mapped":                        {"::ffff:203.0.113.7"},
		"spaces":                        {"  203.0.113.7  "},
		"garbage left":                  {"garbage, 198.51.100.9 ,203.0.113.7"},
		"zone left":                     {"fe80::1%eth0, 203.0.113.7"},
		"port left":                     {"198.51.100.3:80, 203.0.113.7"},
	} {
		if c := login(xff...); c != codes.ResourceExhausted {
			t.Errorf("%s: %v, want the client 203.0.113.7's spent budget", name, c)
		}
	}
}
