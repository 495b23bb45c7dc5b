package extauthz_test

import (
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/latchauth/latch/server/extauthz"
	"github.com/latchauth/latch/tokens"
)

// TestIdentityHeaderAliasesRemoved: a client cannot plant an identity
// under another spelling of the header names that CGI-style upstreams
// (WSGI, Rack, PHP) read as the same variable: "x_latch_sub" and
// "x-latch-sub" are both HTTP_X_LATCH_SUB there. Every spelling is removed,
// on public and on authenticated requests, for custom names too.
func TestIdentityHeaderAliasesRemoved(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice@example.com", "alice-password", "orders:read")
	tok := e.login("alice@example.com", "alice-password", "orders").GetAccessToken()
	spoof := map[string]string{"x_latch_sub": "admin", "x_latch-roles": "admin"}
	authed := bearer(tok)
	for k, v := range spoof {
		authed[k] = v
	}
	want := []string{"x_latch_sub", "x-latch_sub", "x_latch-sub", "x_latch_sid", "x-latch_sid", "x_latch-sid",
		"x_latch_roles", "x-latch_roles", "x_latch-roles"}
	for name, req := range map[string]map[string]string{"public": spoof, "authenticated": authed} {
		path := "/api/orders/1"
		if name == "public" {
			path = "/healthz"
		}
		resp, err := e.check.Check(ctxT(t), request("GET", path, req))
		if err != nil || resp.GetOkResponse() == nil {
			t.Fatalf("%s: Check = %v, %v", name, resp, err)
		}
		for _, w := range want {
			if !slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), w) {
				t.Errorf("%s: %s not removed (headers_to_remove %v)", name, w, resp.GetOkResponse().GetHeadersToRemove())
			}
		}
	}

	custom := newEnv(t, extauthz.WithHeaderNames("x-user", "x_session", "roles"))
	resp, err := custom.check.Check(ctxT(t), request("GET", "/healthz", nil))
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("custom names: %v, %v", resp, err)
	}
	got := resp.GetOkResponse().GetHeadersToRemove()
	for _, w := range []string{"x_user", "x-session", "x-user", "x_session", "roles"} {
		if !slices.Contains(got, w) {
			t.Errorf("custom names: %s not removed (%v)", w, got)
		}
	}
}

// TestPublicRequestLosesAuthorization: without WithKeepAuthorization the
// bearer token does not reach the upstream on a public path either (a
// client that sends its token everywhere must not leak it to an upstream
// that is not meant to see tokens); with it, it does.
func TestPublicRequestLosesAuthorization(t *testing.T) {
	for _, keep := range []bool{false, true} {
		e := newEnv(t, extauthz.WithKeepAuthorization(keep))
		resp, err := e.check.Check(ctxT(t), request("GET", "/healthz", bearer("whatever-the-client-sent")))
		if err != nil || resp.GetOkResponse() == nil {
			t.Fatalf("public Check = %v, %v", resp, err)
		}
		if removed := slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), "authorization"); removed == keep {
			t.Errorf("keep=%v: authorization removed=%v on a public path", keep, removed)
		}
	}
}

// TestRoleWithSeparatorRefused: a (correctly signed) token whose role
// holds the separator of the roles header is refused: forwarded, the
// upstream would read "orders:read,admin" as two roles, admin among them;
// so is one that cannot travel as a header value.
func TestRoleWithSeparatorRefused(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice@example.com", "alice-password", "orders:read")
	sid := e.login("alice@example.com", "alice-password", "orders").GetSessionId() // a live session
	for _, roles := range [][]string{{"orders:read,admin"}, {"orders:read", ""}, {"orders:read", "x\r\nx-latch-sub: root"}} {
		tok := e.forge(func(c *tokens.Claims) { c.SessionID, c.Roles = sid, roles })
		resp, err := e.check.Check(ctxT(t), request("GET", "/api/me", bearer(tok)))
		if err != nil {
			t.Fatal(err)
		}
		wantDenied(t, resp, 401, codes.Unauthenticated, challengeInvalid)
	}
}
