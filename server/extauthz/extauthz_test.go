package extauthz_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/internal/verifier"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/server/extauthz"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"github.com/latchauth/latch/tokens"
)

const issuer = "https://latch.test"

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
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

// countingKeys wraps Latch's key source and counts lookups, so that a test
// can tell a cached verification from a full one.
type countingKeys struct {
	verifier.EpochKeySource
	lookups atomic.Int64
	fail    atomic.Bool // fault injection: the key store is down
}

func (c *countingKeys) PublicKey(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	c.lookups.Add(1)
	if c.fail.Load() {
		return nil, storage.ErrNotFound // any storage failure; the message must not reach Envoy
	}
	return c.EpochKeySource.PublicKey(ctx, kid)
}

// env is a real Latch (bbolt in a temp dir, gRPC over bufconn) and its
// ext_authz server, built as `latch serve --ext-authz-addr` builds it,
// with a Check client over bufconn.
type env struct {
	t        testing.TB
	store    storage.Store
	srv      *server.Server
	latch    latchv1.AuthServiceClient
	check    authv3.AuthorizationClient
	ea       *extauthz.Server
	keys     *countingKeys
	failRevs atomic.Bool // fault injection: the revocation read fails
	logs     *syncBuffer
	hasher   *password.Hasher
}

func dial(t testing.TB, lis *bufconn.Listener) *grpc.ClientConn {
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func newEnv(t testing.TB, opts ...extauthz.Option) *env {
	t.Helper()
	return newEnvWith(t, nil, opts...)
}

// newEnvWith is newEnv with extra options for the Verifier.
func newEnvWith(t testing.TB, vopts []interceptors.Option, opts ...extauthz.Option) *env {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "latch.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	hasher, err := password.NewHasher(password.Params{Memory: 64, Time: 1, Threads: 1, SaltLength: 16, KeyLength: 32}, 4)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(ctxT(t), st, hasher, server.Config{Issuer: issuer, Audiences: []string{"orders", "billing"}})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: st, srv: srv, hasher: hasher, logs: &syncBuffer{}}
	latchLis := bufconn.Listen(1 << 20)
	gs := server.NewGRPCServer(srv, slog.New(slog.DiscardHandler))
	go func() { _ = gs.Serve(latchLis) }()
	t.Cleanup(gs.Stop)
	e.latch = latchv1.NewAuthServiceClient(dial(t, latchLis))

	policy, err := extauthz.LoadPolicy("testdata/policy.yaml", issuer)
	if err != nil {
		t.Fatal(err)
	}
	e.keys = &countingKeys{EpochKeySource: srv.KeySource().(verifier.EpochKeySource)}
	v, err := interceptors.NewVerifier(ctxT(t), interceptors.Config{Issuer: issuer, Audience: policy.Audiences()},
		append([]interceptors.Option{verifier.WithKeySource(e.keys),
			verifier.WithRevocationCheck(func(ctx context.Context, c interceptors.Claims) (bool, error) {
				if e.failRevs.Load() {
					return false, storage.ErrNotFound // any storage failure; the message must not reach Envoy
				}
				return srv.TokenRevoked(ctx, c)
			})}, vopts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	ea, err := extauthz.New(v, policy, append([]extauthz.Option{
		extauthz.WithLogger(slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	e.ea = ea
	lis := bufconn.Listen(1 << 20)
	eas := grpc.NewServer()
	ea.Register(eas)
	go func() { _ = eas.Serve(lis) }()
	t.Cleanup(eas.Stop)
	e.check = authv3.NewAuthorizationClient(dial(t, lis))
	return e
}

func (e *env) addUser(email, pw string, roles ...string) {
	e.t.Helper()
	h, err := e.hasher.Hash(ctxT(e.t), pw)
	if err != nil {
		e.t.Fatal(err)
	}
	id, _ := tokens.NewID(rand.Reader)
	if err := e.store.CreateUser(ctxT(e.t), storage.User{ID: id, Email: email, PasswordHash: h, Roles: roles}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) login(email, pw, aud string) *latchv1.TokenPair {
	e.t.Helper()
	resp, err := e.latch.Login(ctxT(e.t), &latchv1.LoginRequest{Email: email, Password: pw, Audience: aud})
	if err != nil {
		e.t.Fatalf("Login: %v", err)
	}
	return resp.GetTokens()
}

// forge signs claims with Latch's real key: correctly signed tokens with
// wrong claims.
func (e *env) forge(mut func(*tokens.Claims)) string {
	e.t.Helper()
	keys, err := e.store.ListSigningKeys(ctxT(e.t))
	if err != nil {
		e.t.Fatalf("keys: %v", err)
	}
	var s *tokens.Signer
	for _, k := range keys {
		if k.State == storage.KeyActive {
			priv, err := tokens.ParsePrivateKey(k.PrivateKey)
			if err != nil {
				e.t.Fatal(err)
			}
			s, _ = tokens.NewSigner(priv)
		}
	}
	if s == nil {
		e.t.Fatal("no active signing key")
	}
	now := time.Now()
	c := tokens.Claims{Issuer: issuer, Subject: "u-forged", Audience: []string{"orders"}, IssuedAt: now,
		ExpiresAt: now.Add(10 * time.Minute), ID: "jti-forged", SessionID: "sid-forged", Roles: []string{"orders:read"}}
	mut(&c)
	tok, err := s.Sign(c)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// request is what Envoy sends for an HTTP (or gRPC) request.
func request(method, path string, headers map[string]string) *authv3.CheckRequest {
	h := map[string]string{":authority": "orders.local", "x-request-id": "req-1"}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Id: "req-1", Method: method, Path: path, Host: "orders.local",
			Scheme: "http", Protocol: "HTTP/1.1", Headers: h},
	}}}
}

func bearer(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }

func header(opts []*corev3.HeaderValueOption, name string) (string, bool) {
	for _, o := range opts {
		if o.GetHeader().GetKey() == name {
			return o.GetHeader().GetValue(), true
		}
	}
	return "", false
}

// wantDenied checks a denial: HTTP status, gRPC code, challenge, and that
// nothing but fixed text reaches the client.
func wantDenied(t *testing.T, resp *authv3.CheckResponse, httpStatus int, code codes.Code, challenge string) {
	t.Helper()
	if got := codes.Code(resp.GetStatus().GetCode()); got != code {
		t.Errorf("gRPC code = %v, want %v", got, code)
	}
	d := resp.GetDeniedResponse()
	if d == nil {
		t.Fatalf("not denied: %v", resp)
	}
	if got := int(d.GetStatus().GetCode()); got != httpStatus {
		t.Errorf("HTTP status = %d, want %d", got, httpStatus)
	}
	got, ok := header(d.GetHeaders(), "www-authenticate")
	if challenge == "" && ok {
		t.Errorf("WWW-Authenticate %q, want none", got)
	}
	if challenge != "" && got != challenge {
		t.Errorf("WWW-Authenticate = %q, want %q", got, challenge)
	}
	for _, detail := range []string{"expired", "audience", "revoked", "signature", "malformed", "role", "orders:", "not found", "storage"} {
		if strings.Contains(d.GetBody(), detail) || strings.Contains(resp.GetStatus().GetMessage(), detail) {
			t.Errorf("client sees detail %q: body %q, message %q", detail, d.GetBody(), resp.GetStatus().GetMessage())
		}
	}
}

const (
	challengeNone    = `Bearer realm="latch"`
	challengeInvalid = `Bearer realm="latch", error="invalid_token"`
	challengeScope   = `Bearer realm="latch", error="insufficient_scope"`
)

// TestCheckMatrix runs the auth matrix through Check over real gRPC with
// Envoy's own types: HTTP and gRPC upstream requests alike.
func TestCheckMatrix(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice@example.com", "alice-password", "orders:read")
	e.addUser("bob@example.com", "bob-password", "billing:read")
	alice := e.login("alice@example.com", "alice-password", "orders")
	bob := e.login("bob@example.com", "bob-password", "orders")
	revokedJTI := e.login("alice@example.com", "alice-password", "orders")
	revokedSession := e.login("alice@example.com", "alice-password", "orders")
	ctx := ctxT(t)
	if _, err := e.latch.Revoke(ctx, &latchv1.RevokeRequest{Token: revokedJTI.GetAccessToken()}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.latch.Revoke(ctx, &latchv1.RevokeRequest{Token: revokedSession.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	foreignKey, _ := tokens.GenerateKey(rand.Reader)
	foreignSigner, _ := tokens.NewSigner(foreignKey)
	foreign, _ := foreignSigner.Sign(tokens.Claims{Issuer: issuer, Subject: "x", Audience: []string{"orders"}, IssuedAt: time.Now(),
		ExpiresAt: time.Now().Add(time.Minute), ID: "j", SessionID: "s", Roles: []string{"orders:read"}})

	type tc struct {
		name      string
		req       *authv3.CheckRequest
		http      int // 200 = allowed
		code      codes.Code
		challenge string
	}
	get := func(path string, h map[string]string) *authv3.CheckRequest { return request("GET", path, h) }
	grpcReq := func(method string, h map[string]string) *authv3.CheckRequest {
		h2 := map[string]string{"content-type": "application/grpc", "te": "trailers"}
		for k, v := range h {
			h2[k] = v
		}
		r := request("POST", method, h2)
		r.Attributes.Request.Http.Protocol = "HTTP/2"
		return r
	}
	cases := []tc{
		{"valid HTTP", get("/api/orders/42?expand=items", bearer(alice.GetAccessToken())), 200, codes.OK, ""},
		{"valid gRPC", grpcReq("/orders.v1.Orders/GetOrder", bearer(alice.GetAccessToken())), 200, codes.OK, ""},
		{"any valid token", get("/api/me", bearer(bob.GetAccessToken())), 200, codes.OK, ""},
		{"no token", get("/api/orders/42", nil), 401, codes.Unauthenticated, challengeNone},
		{"no token gRPC", grpcReq("/orders.v1.Orders/GetOrder", nil), 401, codes.Unauthenticated, challengeNone},
		{"basic scheme", get("/api/orders/42", map[string]string{"authorization": "Basic YWxpY2U6cHc="}), 401, codes.Unauthenticated, challengeNone},
		{"empty bearer", get("/api/orders/42", map[string]string{"authorization": "Bearer "}), 401, codes.Unauthenticated, challengeInvalid},
		{"joined headers", get("/api/orders/42", map[string]string{"authorization": "Bearer " + alice.GetAccessToken() + ",Bearer x"}), 401, codes.Unauthenticated, challengeInvalid},
		{"oversized", get("/api/orders/42", bearer(strings.Repeat("a", 9000))), 401, codes.Unauthenticated, challengeInvalid},
		{"malformed", get("/api/orders/42", bearer("not-a-jwt")), 401, codes.Unauthenticated, challengeInvalid},
		{"refresh token as bearer", get("/api/orders/42", bearer(alice.GetRefreshToken())), 401, codes.Unauthenticated, challengeInvalid},
		{"foreign key", get("/api/orders/42", bearer(foreign)), 401, codes.Unauthenticated, challengeInvalid},
		{"expired", get("/api/orders/42", bearer(e.forge(func(c *tokens.Claims) {
			c.IssuedAt, c.ExpiresAt = c.IssuedAt.Add(-time.Hour), c.IssuedAt.Add(-30*time.Minute)
		}))), 401, codes.Unauthenticated, challengeInvalid},
		{"wrong audience", get("/api/orders/42", bearer(e.login("alice@example.com", "alice-password", "billing").GetAccessToken())), 401, codes.Unauthenticated, challengeInvalid},
		{"wrong issuer", get("/api/orders/42", bearer(e.forge(func(c *tokens.Claims) { c.Issuer = "https://evil.test" }))), 401, codes.Unauthenticated, challengeInvalid},
		{"revoked jti", get("/api/orders/42", bearer(revokedJTI.GetAccessToken())), 401, codes.Unauthenticated, challengeInvalid},
		{"revoked session", get("/api/orders/42", bearer(revokedSession.GetAccessToken())), 401, codes.Unauthenticated, challengeInvalid},
		{"missing role HTTP", get("/api/orders/42", bearer(bob.GetAccessToken())), 403, codes.PermissionDenied, challengeScope},
		{"missing role by method", request("DELETE", "/api/orders/42", bearer(alice.GetAccessToken())), 403, codes.PermissionDenied, challengeScope},
		{"missing role gRPC exact", grpcReq("/orders.v1.Orders/CancelOrder", bearer(alice.GetAccessToken())), 403, codes.PermissionDenied, challengeScope},
		{"public path", get("/healthz", nil), 200, codes.OK, ""},
		{"public prefix", get("/public/logo.png", nil), 200, codes.OK, ""},
		{"public gRPC health", grpcReq("/grpc.health.v1.Health/Check", nil), 200, codes.OK, ""},
		{"unmatched path with a token", get("/admin", bearer(alice.GetAccessToken())), 403, codes.PermissionDenied, ""},
		{"unmatched path without a token", get("/admin", nil), 401, codes.Unauthenticated, challengeNone},
		{"unmatched gRPC service", grpcReq("/billing.v1.Billing/Pay", bearer(alice.GetAccessToken())), 403, codes.PermissionDenied, ""},
		{"prefix is not a segment match", get("/healthzz", nil), 401, codes.Unauthenticated, challengeNone},
		{"dot segments", get("/public/../api/orders/42", nil), 400, codes.InvalidArgument, ""},
		{"encoded slash", get("/public%2F..%2Fadmin", nil), 400, codes.InvalidArgument, ""},
		{"double slash", get("//api/orders/42", bearer(alice.GetAccessToken())), 400, codes.InvalidArgument, ""},
		{"no HTTP attributes", &authv3.CheckRequest{}, 400, codes.InvalidArgument, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := e.check.Check(ctx, c.req)
			if err != nil {
				t.Fatalf("Check: %v (refusals must be answers, never errors)", err)
			}
			if c.http != 200 {
				wantDenied(t, resp, c.http, c.code, c.challenge)
				return
			}
			if got := codes.Code(resp.GetStatus().GetCode()); got != codes.OK || resp.GetOkResponse() == nil {
				t.Fatalf("want OK, got code %v, %v", got, resp.GetDeniedResponse())
			}
		})
	}
	if logs := e.logs.String(); strings.Contains(logs, alice.GetAccessToken()) || strings.Contains(logs, alice.GetRefreshToken()) {
		t.Fatal("a token reached the log")
	}
	for _, want := range []string{`"reason":"token revoked"`, `"reason":"token expired"`, `"reason":"wrong audience"`,
		`"reason":"token lacks a required role"`, `"reason":"no policy rule admits the path"`, `"reason":"non-canonical path"`} {
		if !strings.Contains(e.logs.String(), want) {
			t.Errorf("no ext_authz_denied record with %s", want)
		}
	}
}

// TestAllowedHeaders: an allowed request carries the token's identity to
// the upstream, overwriting whatever the client sent under those names,
// and loses its authorization header unless asked to keep it.
func TestAllowedHeaders(t *testing.T) {
	for _, keep := range []bool{false, true} {
		e := newEnv(t, extauthz.WithKeepAuthorization(keep))
		e.addUser("alice@example.com", "alice-password", "orders:read", "orders:write")
		pair := e.login("alice@example.com", "alice-password", "orders")
		claims, err := e.srv.Verifier().Verify(ctxT(t), pair.GetAccessToken())
		if err != nil {
			t.Fatal(err)
		}
		h := bearer(pair.GetAccessToken())
		h["x-latch-sub"] = "admin" // spoofing attempt
		h["x-latch-roles"] = "admin"
		resp, err := e.check.Check(ctxT(t), request("POST", "/api/orders/42", h))
		if err != nil || resp.GetOkResponse() == nil {
			t.Fatalf("Check = %v, %v", resp, err)
		}
		ok := resp.GetOkResponse()
		for name, want := range map[string]string{"x-latch-sub": claims.Subject, "x-latch-sid": claims.SessionID,
			"x-latch-roles": "orders:read,orders:write"} {
			got, found := header(ok.GetHeaders(), name)
			if !found || got != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
		for _, o := range ok.GetHeaders() {
			if o.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
				t.Errorf("%s is appended, so a client-sent value would survive", o.GetHeader().GetKey())
			}
		}
		if removed := slices.Contains(ok.GetHeadersToRemove(), "authorization"); removed == keep {
			t.Errorf("keep=%v: authorization removed=%v", keep, removed)
		}
		if md := resp.GetDynamicMetadata().GetFields(); md["sub"].GetStringValue() != claims.Subject || md["jti"].GetStringValue() != claims.ID {
			t.Errorf("dynamic metadata = %v", md)
		}

		// Public: client-sent identity headers are removed, nothing set.
		resp, err = e.check.Check(ctxT(t), request("GET", "/healthz", map[string]string{"x-latch-sub": "admin"}))
		if err != nil || resp.GetOkResponse() == nil {
			t.Fatalf("public Check = %v, %v", resp, err)
		}
		for _, name := range []string{"x-latch-sub", "x-latch-sid", "x-latch-roles"} {
			if !slices.Contains(resp.GetOkResponse().GetHeadersToRemove(), name) {
				t.Errorf("public request keeps a client-sent %s", name)
			}
		}
		if len(resp.GetOkResponse().GetHeaders()) != 0 {
			t.Errorf("public request got identity headers: %v", resp.GetOkResponse().GetHeaders())
		}
	}
}

func TestHeaderNamesOption(t *testing.T) {
	e := newEnv(t, extauthz.WithHeaderNames("x-user", "x-session", "x-roles"))
	e.addUser("alice@example.com", "alice-password", "orders:read")
	resp, err := e.check.Check(ctxT(t), request("GET", "/api/orders/1", bearer(e.login("alice@example.com", "alice-password", "orders").GetAccessToken())))
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("Check = %v, %v", resp, err)
	}
	for _, name := range []string{"x-user", "x-session", "x-roles"} {
		if v, ok := header(resp.GetOkResponse().GetHeaders(), name); !ok || v == "" {
			t.Errorf("header %s missing", name)
		}
	}
	if _, ok := header(resp.GetOkResponse().GetHeaders(), "x-latch-sub"); ok {
		t.Error("default name still used")
	}
	for _, bad := range [][3]string{{"X-Upper", "b", "c"}, {"a", "a", "c"}, {"authorization", "b", "c"}, {":path", "b", "c"}, {"a b", "b", "c"}} {
		if _, err := extauthz.New(nil, nil, extauthz.WithHeaderNames(bad[0], bad[1], bad[2])); err == nil {
			t.Errorf("WithHeaderNames%q accepted", bad)
		}
	}
}

// TestRawHeaderMap: with Envoy's encode_raw_headers the token comes in
// header_map, and two authorization headers are refused.
func TestRawHeaderMap(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice@example.com", "alice-password", "orders:read")
	tok := e.login("alice@example.com", "alice-password", "orders").GetAccessToken()
	raw := func(vals ...string) *authv3.CheckRequest {
		r := request("GET", "/api/orders/1", nil)
		r.Attributes.Request.Http.Headers = nil
		hm := &corev3.HeaderMap{}
		for _, v := range vals {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: "Authorization", RawValue: []byte(v)})
		}
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: ":path", RawValue: []byte("/api/orders/1")})
		r.Attributes.Request.Http.HeaderMap = hm
		return r
	}
	resp, err := e.check.Check(ctxT(t), raw("Bearer "+tok))
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("raw header map: %v, %v", resp, err)
	}
	resp, err = e.check.Check(ctxT(t), raw("Bearer "+tok, "Bearer "+tok))
	if err != nil {
		t.Fatal(err)
	}
	wantDenied(t, resp, 401, codes.Unauthenticated, challengeInvalid)
}

// TestCachedAllowHonoursRevocation: the second Check of a token is served
// from the verified-token cache (no key lookup), yet a revocation made
// after it is seen by the very next Check.
func TestCachedAllowHonoursRevocation(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice@example.com", "alice-password", "orders:read")
	pair := e.login("alice@example.com", "alice-password", "orders")
	req := request("GET", "/api/orders/1", bearer(pair.GetAccessToken()))
	for i := range 2 {
		resp, err := e.check.Check(ctxT(t), req)
		if err != nil || resp.GetOkResponse() == nil {
			t.Fatalf("Check %d = %v, %v", i, resp, err)
		}
	}
	if got := e.keys.lookups.Load(); got != 1 {
		t.Fatalf("%d key lookups for two Checks of one token, want 1 (second from the cache)", got)
	}
	if _, err := e.latch.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: pair.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	resp, err := e.check.Check(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	wantDenied(t, resp, 401, codes.Unauthenticated, challengeInvalid)
}

// TestKeyStoreFailureFailsClosed: when the key lookup fails (the store
// behind the key ring, not the token), Check answers 503 (UNAVAILABLE,
// worth a retry), not 401 invalid_token, which tells the client to drop a
// good token; and allows the same request once the store is back.
func TestKeyStoreFailureFailsClosed(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice@example.com", "alice-password", "orders:read")
	req := request("GET", "/api/orders/1", bearer(e.login("alice@example.com", "alice-password", "orders").GetAccessToken()))
	e.keys.fail.Store(true)
	resp, err := e.check.Check(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	wantDenied(t, resp, 503, codes.Unavailable, "")
	e.keys.fail.Store(false)
	if resp, err := e.check.Check(ctxT(t), req); err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("after recovery: %v, %v", resp, err)
	}
}

// TestRevocationStoreFailureFailsClosed: when the revocation read fails,
// Check answers 503 (UNAVAILABLE), never an allow and never the error.
func TestRevocationStoreFailureFailsClosed(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice@example.com", "alice-password", "orders:read")
	req := request("GET", "/api/orders/1", bearer(e.login("alice@example.com", "alice-password", "orders").GetAccessToken()))
	e.failRevs.Store(true)
	resp, err := e.check.Check(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	wantDenied(t, resp, 503, codes.Unavailable, "")
	e.failRevs.Store(false)
	if resp, err := e.check.Check(ctxT(t), req); err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("after recovery: %v, %v", resp, err)
	}
}

// TestSetPolicy: a new policy applies to the next Check; one with other
// audiences is refused and the old one stays.
func TestSetPolicy(t *testing.T) {
	e := newEnv(t)
	ea := e.ea
	e.addUser("alice@example.com", "alice-password", "orders:read")
	req := request("GET", "/api/me", bearer(e.login("alice@example.com", "alice-password", "orders").GetAccessToken()))
	if resp, err := e.check.Check(ctxT(t), req); err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("before: %v, %v", resp, err)
	}
	stricter, err := extauthz.ParsePolicy([]byte("audiences: [orders]\nrules: [{path: /api/me, roles: [admin]}]"), issuer)
	if err != nil {
		t.Fatal(err)
	}
	if err := ea.SetPolicy(stricter); err != nil {
		t.Fatal(err)
	}
	resp, err := e.check.Check(ctxT(t), req)
	if err != nil {
		t.Fatal(err)
	}
	wantDenied(t, resp, 403, codes.PermissionDenied, challengeScope)
	other, _ := extauthz.ParsePolicy([]byte("audiences: [billing]\nrules: [{path: /api/me, roles: []}]"), issuer)
	if err := ea.SetPolicy(other); err == nil || !strings.Contains(err.Error(), "audiences") {
		t.Fatalf("SetPolicy with other audiences = %v, want a refusal", err)
	}
	if resp, _ := e.check.Check(ctxT(t), req); resp.GetDeniedResponse() == nil {
		t.Fatal("a refused policy replaced the current one")
	}
}

// TestStaleVerifierFailsClosed: ext_authz over a Verifier that fetches
// Latch's JWKS over HTTP (ext_authz outside Latch) answers 503 once the keys
// are older than the bound, and health reports it.
func TestStaleVerifierFailsClosed(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice@example.com", "alice-password", "orders:read")
	jwks := httptest.NewServer(e.srv.HTTPHandler())
	t.Cleanup(jwks.Close)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	v, err := interceptors.NewVerifier(ctxT(t), interceptors.Config{Issuer: issuer, Audience: []string{"orders"},
		Keys: interceptors.JWKSURL(jwks.URL + server.JWKSPath)}, interceptors.WithClock(clock),
		interceptors.WithMaxKeyAge(time.Minute), interceptors.WithRefreshInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	policy, _ := extauthz.LoadPolicy("testdata/policy.yaml", issuer)
	ea, err := extauthz.New(v, policy, extauthz.WithRealm("orders-api"))
	if err != nil {
		t.Fatal(err)
	}
	req := request("GET", "/api/orders/1", bearer(e.login("alice@example.com", "alice-password", "orders").GetAccessToken()))
	if resp, _ := ea.Check(ctxT(t), req); resp.GetOkResponse() == nil {
		t.Fatalf("fresh: %v", resp)
	}
	resp, _ := ea.Check(ctxT(t), request("GET", "/api/orders/1", nil))
	wantDenied(t, resp, 401, codes.Unauthenticated, `Bearer realm="orders-api"`)

	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	resp, _ = ea.Check(ctxT(t), req)
	wantDenied(t, resp, 503, codes.Unavailable, "")
	if v.Status().Serving() {
		t.Error("health still SERVING while stale")
	}
}

// TestClaimsUnfitForHeaders: a (correctly signed) token whose subject
// cannot travel as a header value is refused, not forwarded mangled.
func TestClaimsUnfitForHeaders(t *testing.T) {
	e := newEnv(t)
	e.addUser("alice@example.com", "alice-password", "orders:read")
	sid := e.login("alice@example.com", "alice-password", "orders").GetSessionId() // a live session
	tok := e.forge(func(c *tokens.Claims) { c.Subject, c.SessionID = "u1\r\nx-latch-roles: admin", sid })
	resp, err := e.check.Check(ctxT(t), request("GET", "/api/orders/1", bearer(tok)))
	if err != nil {
		t.Fatal(err)
	}
	wantDenied(t, resp, 401, codes.Unauthenticated, challengeInvalid)
	if !strings.Contains(e.logs.String(), `"reason":"claims not representable as headers"`) {
		t.Errorf("refused for another reason:\n%s", e.logs.String())
	}
}

func TestOptionErrors(t *testing.T) {
	for name, opt := range map[string]extauthz.Option{
		"realm with quote": extauthz.WithRealm(`a"b`),
		"empty realm":      extauthz.WithRealm(""),
		"nil logger":       extauthz.WithLogger(nil),
	} {
		if _, err := extauthz.New(nil, nil, opt); err == nil || !strings.Contains(err.Error(), "With") {
			t.Errorf("%s: New = %v, want the option's error", name, err)
		}
	}
}

// TestMetrics: every decision is counted by decision and HTTP status, and
// timed.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, extauthz.WithMetrics(reg))
	e.addUser("alice@example.com", "alice-password", "orders:read")
	tok := e.login("alice@example.com", "alice-password", "orders").GetAccessToken()
	for _, r := range []*authv3.CheckRequest{
		request("GET", "/api/orders/1", bearer(tok)), request("GET", "/healthz", nil),
		request("GET", "/api/orders/1", nil), request("GET", "/admin", bearer(tok)), request("GET", "//x", nil),
	} {
		if _, err := e.check.Check(ctxT(t), r); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]float64{"allowed/200": 2, "denied/401": 1, "denied/403": 1, "denied/400": 1, "denied/503": 0}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	var timed uint64
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch f.GetName() {
			case "latch_ext_authz_checks_total":
				got[labels["decision"]+"/"+labels["code"]] = m.GetCounter().GetValue()
			case "latch_ext_authz_check_duration_seconds":
				timed += m.GetHistogram().GetSampleCount()
			}
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("checks{%s} = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
	if timed != 5 {
		t.Errorf("%d decisions timed, want 5", timed)
	}
	if _, err := extauthz.New(nil, nil, extauthz.WithMetrics(reg)); err == nil {
		t.Error("registering the metrics twice on one registry succeeded")
	}
}

// TestCheckRefusesLatchAudience: a token naming Latch's own audience (its
// issuer URL) is refused even when it also names an audience the policy
// admits and the Verifier accepts, so that no upstream behind ext_authz
// ever receives a token that can act on Latch.
func TestCheckRefusesLatchAudience(t *testing.T) {
	for _, keep := range []bool{false, true} {
		e := newEnv(t, extauthz.WithKeepAuthorization(keep))
		e.addUser("alice@example.com", "alice-password", "orders:read")
		real, err := e.srv.Verifier().Verify(ctxT(t), e.login("alice@example.com", "alice-password", "orders").GetAccessToken())
		if err != nil {
			t.Fatal(err)
		}
		// The same token for orders alone passes: only the audience differs.
		if resp, err := e.check.Check(ctxT(t), request("GET", "/api/me", bearer(e.forge(func(c *tokens.Claims) {
			c.Subject, c.SessionID = real.Subject, real.SessionID
		})))); err != nil || resp.GetOkResponse() == nil {
			t.Fatalf("control token for orders only: %v, %v", resp, err)
		}
		for name, aud := range map[string][]string{
			"issuer and orders": {"orders", issuer},
			"issuer first":      {issuer, "orders"},
		} {
			t.Run(fmt.Sprintf("%s keep=%v", name, keep), func(t *testing.T) {
				tok := e.forge(func(c *tokens.Claims) { c.Subject, c.SessionID, c.Audience = real.Subject, real.SessionID, aud })
				for _, req := range []*authv3.CheckRequest{
					request("GET", "/api/orders/1", bearer(tok)), // a rule with roles
					request("GET", "/api/me", bearer(tok)),       // any valid token
				} {
					resp, err := e.check.Check(ctxT(t), req)
					if err != nil {
						t.Fatalf("Check: %v", err)
					}
					wantDenied(t, resp, 401, codes.Unauthenticated, challengeInvalid)
				}
			})
		}
		if !strings.Contains(e.logs.String(), `"reason":"token names Latch's own audience"`) {
			t.Errorf("no ext_authz_denied record says why:\n%s", e.logs.String())
		}
	}
}
