package extauthz

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/internal/verifier"
	"github.com/latchauth/latch/tokens"
)

// FuzzCheck feeds Check arbitrary methods, paths and authorization
// headers (what a client controls through Envoy): it never panics, always
// answers, denies with one of the documented statuses, and allows only
// canonical paths, and non-public ones only with the valid token.
func FuzzCheck(f *testing.F) {
	key, _ := tokens.GenerateKey(rand.Reader)
	set, _ := tokens.NewKeySet(&key.PublicKey)
	signer, _ := tokens.NewSigner(key)
	now := time.Now()
	valid, _ := signer.Sign(tokens.Claims{Issuer: "https://latch.test", Subject: "u1", Audience: []string{"orders"},
		IssuedAt: now, ExpiresAt: now.Add(time.Hour), ID: "j1", SessionID: "s1", Roles: []string{"orders:read"}})
	v, err := interceptors.NewVerifier(context.Background(), interceptors.Config{Issuer: "https://latch.test", Audience: []string{"orders"}},
		verifier.WithKeySource(set))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(v.Close)
	p, err := LoadPolicy("testdata/policy.yaml", testIssuer)
	if err != nil {
		f.Fatal(err)
	}
	s, err := New(v, p)
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][3]string{
		{"GET", "/api/orders/1", "Bearer " + valid}, {"GET", "/healthz", ""}, {"POST", "/orders.v1.Orders/CancelOrder", "Bearer " + valid},
		{"GET", "/public/../api/orders/1", "Bearer x"}, {"GET", "/api/orders/1?x=%2F", "bearer  " + valid + " "},
		{"DELETE", "//api", "Basic abc"}, {"GET", "/api/me", "Bearer " + valid + ",Bearer " + valid},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	allowedStatus := map[int32]bool{400: true, 401: true, 403: true, 503: true}
	f.Fuzz(func(t *testing.T, method, path, authz string) {
		h := map[string]string{}
		if authz != "" {
			h["authorization"] = authz
		}
		resp, err := s.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Headers: h}}}})
		if err != nil || resp == nil {
			t.Fatalf("Check = %v, %v", resp, err)
		}
		if d := resp.GetDeniedResponse(); d != nil {
			if !allowedStatus[int32(d.GetStatus().GetCode())] || resp.GetStatus().GetCode() == 0 {
				t.Fatalf("denied with HTTP %d, gRPC %d", d.GetStatus().GetCode(), resp.GetStatus().GetCode())
			}
			return
		}
		if resp.GetOkResponse() == nil || resp.GetStatus().GetCode() != 0 {
			t.Fatalf("neither allowed nor denied: %v", resp)
		}
		clean := path
		for i := range path {
			if path[i] == '?' {
				clean = path[:i]
				break
			}
		}
		if !CanonicalPath(clean) {
			t.Fatalf("allowed a non-canonical path %q", path)
		}
		if r := p.match(method, clean); r == nil || !r.public {
			if !strings.Contains(authz, valid) || len(resp.GetOkResponse().GetHeaders()) == 0 {
				t.Fatalf("allowed %s %q without the one valid token", method, path)
			}
		}
	})
}
