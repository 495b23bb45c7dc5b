package server_test

import (
	"fmt"
	"strings"
	"testing"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/tokens"
	"github.com/latchauth/latch/tokens/tokenstest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestAttackCorpusAgainstServer sends every token of the shared attack
// corpus (tokens/tokenstest, built with Latch's own signing key, issuer,
// clock and leeway) to the server three ways: built for a relying party's
// audience to Introspect (an attack must be inactive with no other field; a
// genuine token active) and to Revoke (always OK, RFC 7009), and built for
// Latch's own audience as Introspect's caller credential (an attack is
// UNAUTHENTICATED). A genuine token crossing over is refused both ways: for
// the relying party's audience as a caller credential, and for Latch's own
// audience on Introspect (inactive). Tokens too large for a request are
// refused with RESOURCE_EXHAUSTED before any parsing.
func TestAttackCorpusAgainstServer(t *testing.T) {
	cfg := baseConfig()
	cfg.ProbeBurst = 1 << 30
	e := newEnv(t, cfg)
	caller := e.introspector()
	alice := e.addUser("alice@example.com", "alice-password", server.RoleIntrospect)
	session := e.login("alice@example.com", "alice-password")

	priv, err := tokens.ParsePrivateKey(activeKey(t, e.store).PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	k := tokenstest.NewKit(t, priv)
	k.Issuer, k.Audience, k.Now, k.Leeway = "https://latch.test", "orders", e.clock.Now(), e.srv.Config().Leeway
	k.Subject, k.SessionID, k.Roles = alice.ID, session.GetSessionId(), []string{server.RoleIntrospect}
	self := *k
	self.Audience = e.srv.Config().Issuer

	for i, a := range tokenstest.Corpus() {
		t.Run(a.Name, func(t *testing.T) {
			k.JTI = fmt.Sprintf("jti-%d", i) // rows never share a revocation
			self.JTI = k.JTI
			tok := a.Token(t, k)
			if tok == "" {
				_, err := e.client.Introspect(caller, &latchv1.IntrospectRequest{Token: tok})
				wantStatus(t, err, codes.InvalidArgument, "token is required")
				return
			}
			if len(tok) > server.MaxRecvMsgSize-1024 {
				_, err := e.client.Introspect(caller, &latchv1.IntrospectRequest{Token: tok})
				wantStatus(t, err, codes.ResourceExhausted, "")
				return
			}
			resp, err := e.client.Introspect(caller, &latchv1.IntrospectRequest{Token: tok,
				TokenTypeHint: latchv1.TokenTypeHint_TOKEN_TYPE_HINT_ACCESS_TOKEN})
			if err != nil {
				t.Fatalf("Introspect: %v", err)
			}
			if a.Want == nil {
				if !resp.GetActive() || resp.GetSub() != alice.ID {
					t.Fatalf("genuine token (%s) introspects as %v", a.Source, resp)
				}
			} else if resp.GetActive() || resp.GetSub() != "" || resp.GetJti() != "" || resp.GetExp() != 0 {
				t.Fatalf("attack (%s) introspects as %v, want only active=false", a.Source, resp)
			}

			// As the caller's own credential, built for Latch's own audience.
			callerTok := a.Token(t, &self)
			ctx := metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+callerTok)
			_, err = e.client.Introspect(ctx, &latchv1.IntrospectRequest{Token: "x"})
			switch {
			case a.Want == nil:
				wantStatus(t, err, codes.OK, "")
				// A genuine token never crosses audiences: the relying
				// party's token is no caller credential, and Latch's own
				// token is inactive to Introspect.
				_, err = e.client.Introspect(metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+tok),
					&latchv1.IntrospectRequest{Token: "x"})
				wantStatus(t, err, codes.Unauthenticated, "invalid caller credential")
				if resp := e.introspect(caller, callerTok); resp.GetActive() {
					t.Errorf("a token for Latch's own audience introspects as %v, want inactive", resp)
				}
			case len(callerTok) > tokens.MaxTokenLength || strings.ContainsAny(callerTok, "\n\r\x00"):
				// Refused by gRPC itself (header size or characters).
				if status.Code(err) == codes.OK {
					t.Fatal("credential accepted")
				}
			default:
				wantStatus(t, err, codes.Unauthenticated, "")
			}

			if a.Want != nil {
				_, err = e.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: tok})
				wantStatus(t, err, codes.OK, "")
			}
		})
	}
	// None of the attacks' revocations touched the genuine session.
	if resp := e.introspect(caller, session.GetAccessToken()); !resp.GetActive() {
		t.Fatal("the genuine session's token is no longer active after the corpus ran")
	}
}
