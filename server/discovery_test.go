package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/server"
)

func getDiscovery(t *testing.T, h http.Handler, host string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, server.DiscoveryPath, nil)
	if host != "" {
		req.Host = host
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var doc map[string]any
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
			t.Fatalf("discovery is not JSON: %v\n%s", err, rec.Body.String())
		}
	}
	return rec, doc
}

// TestDiscoveryDocument: issuer, jwks_uri and ES256, and none of the
// endpoints Latch does not have.
func TestDiscoveryDocument(t *testing.T) {
	e := newEnv(t, baseConfig())
	rec, doc := getDiscovery(t, e.srv.HTTPHandler(), "evil.example")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" ||
		rec.Header().Get("Cache-Control") != "public, max-age=300" {
		t.Fatalf("GET discovery: %d %v", rec.Code, rec.Header())
	}
	if doc["issuer"] != "https://latch.test" {
		t.Errorf("issuer = %v", doc["issuer"])
	}
	// From the issuer, never from the Host header.
	if doc["jwks_uri"] != "https://latch.test/.well-known/jwks.json" {
		t.Errorf("jwks_uri = %v", doc["jwks_uri"])
	}
	if algs, _ := doc["id_token_signing_alg_values_supported"].([]any); !slices.Equal(algs, []any{"ES256"}) {
		t.Errorf("id_token_signing_alg_values_supported = %v", doc["id_token_signing_alg_values_supported"])
	}
	for _, absent := range []string{"authorization_endpoint", "token_endpoint", "userinfo_endpoint", "introspection_endpoint",
		"revocation_endpoint", "registration_endpoint", "response_types_supported", "grant_types_supported", "scopes_supported"} {
		if _, ok := doc[absent]; ok {
			t.Errorf("discovery claims %s, which Latch does not have", absent)
		}
	}
	methods, _ := doc["latch_grpc_methods"].(map[string]any)
	if methods["introspect"] != "/latch.v1.AuthService/Introspect" || methods["jwks"] != "/latch.v1.AuthService/GetJWKS" {
		t.Errorf("latch_grpc_methods = %v", methods)
	}
}

func TestDiscoveryIssuerForms(t *testing.T) {
	for issuer, want := range map[string]string{
		"https://latch.example/":       "https://latch.example/.well-known/jwks.json",
		"https://latch.example/tenant": "https://latch.example/tenant/.well-known/jwks.json",
		"http://127.0.0.1:7301":        "http://127.0.0.1:7301/.well-known/jwks.json",
		"latch":                        "",
		"urn:latch":                    "",
		"https://latch.example/?q=1":   "",
	} {
		cfg := baseConfig()
		cfg.Issuer = issuer
		e := newEnv(t, cfg)
		rec, doc := getDiscovery(t, e.srv.HTTPHandler(), "")
		switch {
		case want == "" && rec.Code != http.StatusNotFound:
			t.Errorf("issuer %q: %d, want 404 (no jwks_uri can be derived)", issuer, rec.Code)
		case want != "" && doc["jwks_uri"] != want:
			t.Errorf("issuer %q: jwks_uri = %v, want %s", issuer, doc["jwks_uri"], want)
		}
	}
}

// TestJWKSConditionalRequests: If-None-Match in its weak, list and "*"
// forms answers 304; another tag answers 200 with the body.
func TestJWKSConditionalRequests(t *testing.T) {
	e := newEnv(t, baseConfig())
	h := e.srv.HTTPHandler()
	first := httptest.NewRecorder()
	h.ServeHTTP(first, httptest.NewRequest(http.MethodGet, server.JWKSPath, nil))
	etag := first.Header().Get("ETag")
	if etag == "" || etag[0] != '"' {
		t.Fatalf("ETag = %q, want a strong quoted tag", etag)
	}
	for inm, want := range map[string]int{
		etag: 304, "W/" + etag: 304, `"other", ` + etag: 304, "*": 304,
		`"other"`: 200, "": 200, etag[:len(etag)-2] + `x"`: 200,
	} {
		req := httptest.NewRequest(http.MethodGet, server.JWKSPath, nil)
		if inm != "" {
			req.Header.Set("If-None-Match", inm)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("If-None-Match %q: %d, want %d", inm, rec.Code, want)
		}
		if want == 304 && (rec.Body.Len() != 0 || rec.Header().Get("ETag") != etag || rec.Header().Get("Cache-Control") == "") {
			t.Errorf("304 must carry the ETag and Cache-Control and no body: %v %q", rec.Header(), rec.Body.String())
		}
		if want == 200 && rec.Body.String() != first.Body.String() {
			t.Errorf("If-None-Match %q: body differs", inm)
		}
	}
}

// TestSidecarFlow is what Istio does with only an issuer: fetch the
// discovery document from the issuer's URL, follow jwks_uri, and verify a
// token with those keys (here with the interceptors' HTTP key fetcher),
// all over real HTTP.
func TestSidecarFlow(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig()
	cfg.Issuer = "http://" + lis.Addr().String()
	e := newEnv(t, cfg)
	hs := &http.Server{Handler: e.srv.HTTPHandler()}
	go func() { _ = hs.Serve(lis) }()
	t.Cleanup(func() { _ = hs.Shutdown(context.Background()) })

	resp, err := http.Get(cfg.Issuer + server.DiscoveryPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var doc server.Discovery
	if err := json.Unmarshal(body, &doc); err != nil || doc.Issuer != cfg.Issuer {
		t.Fatalf("discovery: %v %s", err, body)
	}
	e.addUser("alice@example.com", "alice-password")
	tok := e.login("alice@example.com", "alice-password").GetAccessToken()
	v, err := interceptors.NewVerifier(ctxT(t), interceptors.Config{Issuer: doc.Issuer, Audience: []string{"orders"},
		Keys: interceptors.JWKSURL(doc.JWKSURI)}, interceptors.WithClock(e.clock.now))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.Verify(ctxT(t), tok); err != nil {
		t.Fatalf("token does not verify with the keys discovery points to: %v", err)
	}
}

// TestDiscoveryUnderIssuerPath: with an issuer that has a path, Latch
// serves the discovery document where OpenID Connect Discovery looks for it
// (issuer + /.well-known/openid-configuration) and the JWKS at the jwks_uri
// it names, so that a sidecar given only the issuer verifies tokens with no
// path-rewriting proxy in between; the root paths keep working.
func TestDiscoveryUnderIssuerPath(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig()
	cfg.Issuer = "http://" + lis.Addr().String() + "/tenant-a/"
	e := newEnv(t, cfg)
	hs := &http.Server{Handler: e.srv.HTTPHandler()}
	go func() { _ = hs.Serve(lis) }()
	t.Cleanup(func() { _ = hs.Shutdown(context.Background()) })

	resp, err := http.Get(strings.TrimSuffix(cfg.Issuer, "/") + server.DiscoveryPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var doc server.Discovery
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &doc) != nil || doc.Issuer != cfg.Issuer {
		t.Fatalf("discovery under the issuer's path: %d %s", resp.StatusCode, body)
	}
	e.addUser("alice@example.com", "alice-password")
	tok := e.login("alice@example.com", "alice-password").GetAccessToken()
	v, err := interceptors.NewVerifier(ctxT(t), interceptors.Config{Issuer: doc.Issuer, Audience: []string{"orders"},
		Keys: interceptors.JWKSURL(doc.JWKSURI)}, interceptors.WithClock(e.clock.now))
	if err != nil {
		t.Fatalf("keys from jwks_uri %s: %v", doc.JWKSURI, err)
	}
	defer v.Close()
	if _, err := v.Verify(ctxT(t), tok); err != nil {
		t.Fatalf("token does not verify with the keys at jwks_uri: %v", err)
	}
	for _, root := range []string{server.JWKSPath, server.DiscoveryPath} {
		r, err := http.Get("http://" + lis.Addr().String() + root)
		if err != nil || r.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %v %v", root, r.StatusCode, err)
		}
		if r != nil {
			r.Body.Close()
		}
	}
}

// TestDiscoveryIssuerPathNotARoute: an issuer whose path cannot be a
// literal route (dot segments, "//", wildcard braces, escapes) gets no
// extra routes, and building the handler does not panic.
func TestDiscoveryIssuerPathNotARoute(t *testing.T) {
	for _, issuer := range []string{"https://latch.example/a/../b", "https://latch.example/a/./b", "https://latch.example//a",
		"https://latch.example/{x}", "https://latch.example/a%2Fb", "https://latch.example/a b"} {
		cfg := baseConfig()
		cfg.Issuer = issuer
		e := newEnv(t, cfg)
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("issuer %q: HTTPHandler panicked: %v", issuer, p)
				}
			}()
			rec := httptest.NewRecorder()
			e.srv.HTTPHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, server.JWKSPath, nil))
			if rec.Code != http.StatusOK {
				t.Errorf("issuer %q: GET %s = %d", issuer, server.JWKSPath, rec.Code)
			}
		}()
	}
}
