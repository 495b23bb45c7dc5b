package extauthz_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/server/extauthz"
	"github.com/latchauth/latch/tokens"
)

// An ext_authz server over a Verifier, deciding two requests as Envoy
// would send them. Latch builds the Verifier over its own key ring and
// store (latch serve --ext-authz-addr); here a static key set stands in.
func ExampleNew() {
	policy, err := extauthz.ParsePolicy([]byte(`
audiences: [orders]
rules:
  - path: /healthz
    public: true
  - prefix: /api/orders/
    roles: [orders:read]
`), "https://latch.example")
	if err != nil {
		log.Fatal(err)
	}
	key, _ := tokens.GenerateKey(rand.Reader)
	keys, _ := tokens.NewKeySet(&key.PublicKey)
	jwks, _ := json.Marshal(keys.JWKS()) // what Latch publishes; JWKSFromGRPC or JWKSURL fetch it
	v, err := interceptors.NewVerifier(context.Background(), interceptors.Config{
		Issuer:   policy.Issuer(),
		Audience: policy.Audiences(),
		Keys:     interceptors.StaticJWKS(jwks),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer v.Close()
	srv, err := extauthz.New(v, policy)
	if err != nil {
		log.Fatal(err)
	}

	signer, _ := tokens.NewSigner(key)
	now := time.Now()
	tok, _ := signer.Sign(tokens.Claims{Issuer: "https://latch.example", Subject: "u_1", Audience: []string{"orders"},
		IssuedAt: now, ExpiresAt: now.Add(15 * time.Minute), ID: "jti_1", SessionID: "sid_1", Roles: []string{"orders:read"}})
	check := func(path, authorization string) {
		h := map[string]string{}
		if authorization != "" {
			h["authorization"] = authorization
		}
		resp, _ := srv.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: path, Headers: h}}}})
		if d := resp.GetDeniedResponse(); d != nil {
			fmt.Println(path, d.GetStatus().GetCode(), d.GetBody())
			return
		}
		fmt.Println(path, "allowed", len(resp.GetOkResponse().GetHeaders()), "identity headers")
	}
	check("/api/orders/1", "Bearer "+tok)
	check("/api/orders/1", "")
	check("/healthz", "")
	check("/admin", "Bearer "+tok)
	// Output:
	// /api/orders/1 allowed 3 identity headers
	// /api/orders/1 Unauthorized {"error":"unauthorized"}
	// /healthz allowed 0 identity headers
	// /admin Forbidden {"error":"forbidden"}
}
