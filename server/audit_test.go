package server_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"google.golang.org/grpc/codes"
)

// records parses the JSON log lines whose event is event.
func records(t *testing.T, logs, event string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(logs, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["event"] == event {
			out = append(out, rec)
		}
	}
	return out
}

// TestAuditEvents drives each security-relevant flow and checks that it
// leaves a structured record with its stable event name and the ids an
// auditor needs, and that no record holds a password or token.
func TestAuditEvents(t *testing.T) {
	cfg := baseConfig()
	cfg.PersonLimits.FailureBurst = 1
	e := newOpsEnv(t, opsConfig{cfg: cfg, srvOpts: []server.Option{server.WithMetrics(server.NewMetrics())}})
	const pw = "alice-password"
	alice := e.addUser("alice@example.com", pw)
	ctx := ctxT(t)

	tp := e.login("alice@example.com", pw)
	_, err := e.client.Login(ctx, &latchv1.LoginRequest{Email: "alice@example.com", Password: "wrong-password"})
	wantStatus(t, err, codes.Unauthenticated, "")
	_, err = e.client.Login(ctx, &latchv1.LoginRequest{Email: "alice@example.com", Password: "wrong-password"})
	wantStatus(t, err, codes.ResourceExhausted, "")
	r, err := e.client.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
	if err != nil {
		t.Fatal(err)
	}
	// A replay after the retry window for the previous token is reuse.
	e.clock.Advance(server.DefaultRefreshReuseGrace + time.Second)
	_, err = e.client.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "")
	_, err = e.client.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: r.GetTokens().GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "")
	bob := e.addUser("bob@example.com", "bob-password")
	tb := e.login("bob@example.com", "bob-password")
	for _, tok := range []string{tb.GetAccessToken(), tb.GetRefreshToken(), "not-a-token"} {
		if _, err := e.client.Revoke(ctx, &latchv1.RevokeRequest{Token: tok}); err != nil {
			t.Fatal(err)
		}
	}

	logs := e.logs.String()
	checks := []struct {
		event  string
		fields map[string]string // field → value ("" = present, any value)
	}{
		{"login_succeeded", map[string]string{"user_id": alice.ID, "session_id": tp.GetSessionId(), "peer": ""}},
		{"login_failed", map[string]string{"user_id": alice.ID, "reason": "wrong_password", "peer": ""}},
		{"login_rate_limited", map[string]string{"limit": server.LimiterLoginAccount, "peer": ""}},
		{"refresh_succeeded", map[string]string{"user_id": alice.ID, "session_id": tp.GetSessionId()}},
		{"refresh_reuse_detected", map[string]string{"user_id": alice.ID, "session_id": tp.GetSessionId(), "peer": ""}},
		{"refresh_failed", map[string]string{"session_id": tp.GetSessionId(), "reason": "revoked"}},
		{"access_token_revoked", map[string]string{"user_id": bob.ID, "session_id": tb.GetSessionId(), "jti": ""}},
		{"session_revoked", map[string]string{"user_id": bob.ID, "session_id": tb.GetSessionId()}},
		{"revoke_no_match", map[string]string{"peer": ""}},
	}
	for _, c := range checks {
		recs := records(t, logs, c.event)
		if len(recs) == 0 {
			t.Errorf("no %s record", c.event)
			continue
		}
		var matched bool
		for _, rec := range recs {
			ok := true
			for f, want := range c.fields {
				got, present := rec[f].(string)
				if !present || got == "" || (want != "" && got != want) {
					ok = false
				}
			}
			matched = matched || ok
		}
		if !matched {
			t.Errorf("%s records %v lack fields %v", c.event, recs, c.fields)
		}
	}
	checkNoSecrets(t, logs, pw, "wrong-password", "bob-password", tp.GetAccessToken(), tp.GetRefreshToken(),
		r.GetTokens().GetRefreshToken(), r.GetTokens().GetAccessToken(), tb.GetAccessToken(), tb.GetRefreshToken())
}

func checkNoSecrets(t *testing.T, logs string, secrets ...string) {
	t.Helper()
	for i, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("logs hold secret #%d", i)
		}
	}
}
