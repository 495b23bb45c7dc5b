package server_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
)

// payloadOf decodes the claims of a compact JWS without verifying it.
func payloadOf(t *testing.T, jws string) map[string]any {
	t.Helper()
	parts := strings.Split(jws, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %d parts", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestAccessTokensCarryClientID: every minted access token carries RFC 9068
// §2.2's client_id, the audience its session was logged in for, and keeps
// it when a Refresh asks for Latch's own audience. Latch's verifier accepts
// the tokens and exposes the claim.
func TestAccessTokensCarryClientID(t *testing.T) {
	e := newEnv(t, baseConfig())
	e.addUser("alice@example.com", "alice-password", "user")
	for _, tc := range []struct{ loginAud, wantClient string }{
		{"billing", "billing"},
		{"", "orders"}, // the default audience
		{"https://latch.test", "https://latch.test"},
	} {
		tp := e.loginFor("alice@example.com", "alice-password", tc.loginAud)
		if got := payloadOf(t, tp.GetAccessToken())["client_id"]; got != tc.wantClient {
			t.Errorf("login for %q: client_id = %v, want %q", tc.loginAud, got, tc.wantClient)
		}
		if tc.loginAud != "https://latch.test" { // the relying parties' verifier
			c, err := e.srv.Verifier().Verify(ctxT(t), tp.GetAccessToken())
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if c.ClientID != tc.wantClient {
				t.Errorf("login for %q: Claims.ClientID = %q, want %q", tc.loginAud, c.ClientID, tc.wantClient)
			}
		}
		resp, err := e.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken(), Audience: "https://latch.test"})
		if err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		p := payloadOf(t, resp.GetTokens().GetAccessToken())
		if p["aud"] != "https://latch.test" || p["client_id"] != tc.wantClient {
			t.Errorf("refresh for the issuer of a %q session: aud = %v, client_id = %v, want client_id %q", tc.loginAud, p["aud"], p["client_id"], tc.wantClient)
		}
	}
}
