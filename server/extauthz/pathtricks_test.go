package extauthz_test

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/latchauth/latch/server/extauthz"
)

// TestPathTricksFailClosed: a request written so that an upstream serves a
// protected resource while the policy would see another path (Tomcat/Spring
// path parameters, percent-encoded letters, a trailing slash, letter case
// in the path or the method, HEAD on a GET handler) is refused, never let through a public
// rule or `default: authenticated`. All but the query, fragment and
// public-not-widened cases were allowed before CanonicalPath and
// Policy.match closed them.
func TestPathTricksFailClosed(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice@example.com", "alice-password", "orders:read")
	alice := bearer(e.login("alice@example.com", "alice-password", "orders").GetAccessToken())
	p, err := extauthz.ParsePolicy([]byte(`
audiences: [orders]
default: authenticated
rules:
  - {prefix: /public/, public: true}
  - {path: /admin, roles: [admin]}
  - {prefix: /ops/, roles: [admin]}
  - {prefix: /api/orders/, roles: [orders:read]}
  - {prefix: /api/orders/, http_methods: [DELETE], roles: [orders:write]}
  - {path: /reports, http_methods: [GET], roles: [admin]}
  - {path: /reports, roles: []}
`), issuer)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ea.SetPolicy(p); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		req    *authv3.CheckRequest
		status int
		code   codes.Code
		ch     string
	}{
		{"dot-dot with path parameter after a public prefix", request("GET", "/public/..;/admin", nil), 400, codes.InvalidArgument, ""},
		{"path parameter on a protected path", request("GET", "/admin;jsessionid=1", alice), 400, codes.InvalidArgument, ""},
		{"encoded semicolon", request("GET", "/admin%3Bx", alice), 400, codes.InvalidArgument, ""},
		{"encoded letter", request("GET", "/%61dmin", alice), 400, codes.InvalidArgument, ""},
		{"encoded letter in a public prefix", request("GET", "/%70ublic/x", nil), 400, codes.InvalidArgument, ""},
		{"encoded tilde", request("GET", "/public/%7Eroot", nil), 400, codes.InvalidArgument, ""},
		{"double encoding", request("GET", "/public/%252e%252e/admin", nil), 400, codes.InvalidArgument, ""},
		{"encoded NUL", request("GET", "/admin%00.html", alice), 400, codes.InvalidArgument, ""},
		{"encoded line feed", request("GET", "/admin%0a", alice), 400, codes.InvalidArgument, ""},
		{"malformed escape", request("GET", "/admin%zz", alice), 400, codes.InvalidArgument, ""},
		{"truncated escape", request("GET", "/admin%4", alice), 400, codes.InvalidArgument, ""},
		{"trailing slash on an exact path", request("GET", "/admin/", alice), 403, codes.PermissionDenied, challengeScope},
		{"prefix without its slash", request("GET", "/ops", alice), 403, codes.PermissionDenied, challengeScope},
		{"lower-case method", request("delete", "/api/orders/1", alice), 403, codes.PermissionDenied, challengeScope},
		{"mixed-case method", request("Delete", "/api/orders/1", alice), 403, codes.PermissionDenied, challengeScope},
		{"HEAD on a GET rule", request("HEAD", "/reports", alice), 403, codes.PermissionDenied, challengeScope},
		{"upper-case exact path", request("GET", "/ADMIN", alice), 403, codes.PermissionDenied, challengeScope},
		{"mixed-case exact path with a slash", request("GET", "/Admin/", alice), 403, codes.PermissionDenied, challengeScope},
		{"upper-case prefix", request("GET", "/OPS/restart", alice), 403, codes.PermissionDenied, challengeScope},
		{"upper-case prefix without its slash", request("GET", "/Ops", alice), 403, codes.PermissionDenied, challengeScope},
		{"public rules are not widened by case", request("GET", "/PUBLIC/x", nil), 401, codes.Unauthenticated, challengeNone},
		{"query hides nothing", request("GET", "/admin?x=/public/", alice), 403, codes.PermissionDenied, challengeScope},
		{"fragment", request("GET", "/public/x#/../../admin", nil), 400, codes.InvalidArgument, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := e.check.Check(ctxT(t), c.req)
			if err != nil {
				t.Fatal(err)
			}
			wantDenied(t, resp, c.status, c.code, c.ch)
		})
	}
	// What the aliases must not break: the forms the rules name still pass.
	for _, req := range []*authv3.CheckRequest{
		request("GET", "/public/a%20b", nil), request("GET", "/public/caf%C3%A9", nil), request("GET", "/reports/x", alice),
		request("POST", "/reports", alice), request("GET", "/api/orders/1", alice), request("get", "/api/orders/1", alice),
	} {
		resp, err := e.check.Check(ctxT(t), req)
		if err != nil || resp.GetOkResponse() == nil {
			h := req.GetAttributes().GetRequest().GetHttp()
			t.Errorf("%s %s: %v, %v; want allowed", h.GetMethod(), h.GetPath(), resp.GetDeniedResponse(), err)
		}
	}
}

// TestPseudoPathMustAgree: a CheckRequest whose :path header differs from
// its path field (in the headers map or Envoy's raw header_map) is refused
// with 400, whichever of the two a policy would have let through.
func TestPseudoPathMustAgree(t *testing.T) {
	e := newEnv(t)
	mismatched := request("GET", "/healthz", map[string]string{":path": "/api/orders/1"})
	raw := request("GET", "/healthz", nil)
	raw.Attributes.Request.Http.Headers = nil
	raw.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":path", RawValue: []byte("/healthz")}, {Key: ":path", RawValue: []byte("/admin")}}}
	for name, req := range map[string]*authv3.CheckRequest{"headers map": mismatched, "raw header map": raw} {
		resp, err := e.check.Check(ctxT(t), req)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) { wantDenied(t, resp, 400, codes.InvalidArgument, "") })
	}
	for _, req := range []*authv3.CheckRequest{
		request("GET", "/healthz", map[string]string{":path": "/healthz"}), request("GET", "/healthz?x=1", map[string]string{":path": "/healthz?x=1"}),
		request("GET", "/healthz", nil),
	} {
		if resp, err := e.check.Check(ctxT(t), req); err != nil || resp.GetOkResponse() == nil {
			t.Errorf("agreeing :path refused: %v, %v", resp.GetDeniedResponse(), err)
		}
	}
}
