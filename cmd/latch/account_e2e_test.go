package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// grpcurlWith is grpcurl with extra grpcurl flags (such as -user-agent).
func grpcurlWith(t *testing.T, ctx context.Context, flags []string, addr string, headers []string, method string, body any) grpcResult {
	t.Helper()
	args := append([]string{"-plaintext", "-max-time", "20"}, flags...)
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	args = append(args, "-d", string(b), addr, method)
	cmd := exec.CommandContext(ctx, grpcurlPath(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	r := grpcResult{raw: stdout.String(), stderr: stderr.String(), err: err}
	if err == nil && strings.HasPrefix(strings.TrimSpace(r.raw), "{") {
		if jerr := json.Unmarshal(stdout.Bytes(), &r.out); jerr != nil {
			t.Fatalf("grpcurl %s: output is not JSON: %v\n%s", method, jerr, r.raw)
		}
	}
	return r
}

const (
	svcListMine      = "latch.v1.AccountService/ListMySessions"
	svcRevokeMine    = "latch.v1.AccountService/RevokeMySession"
	svcRevokeAllMine = "latch.v1.AccountService/RevokeMySessions"
	svcChangeMine    = "latch.v1.AccountService/ChangeMyPassword"
	svcGetOrder      = "latch.example.orders.v1.OrdersService/GetOrder"
)

// TestEndToEndSelfService drives the self-service steps of
// docs/getting-started.md against the real binary with grpcurl: two
// devices log in and list each other with their descriptions; one signs the
// other out, whose refresh and access tokens stop working (Introspect, and a
// sibling service's interceptors after the revocation event); another
// person's session cannot be told apart from an unknown one; a sibling
// audience's token is refused; a wrong current password is charged to the
// login limits; a password change ends the other sessions and keeps, or
// ends, the current one.
func TestEndToEndSelfService(t *testing.T) {
	ctx := testCtx(t, 4*time.Minute)
	bin := latchBinary(t)
	db := filepath.Join(t.TempDir(), "latch.db")
	const anaPW, boPW, svcPW = "ana-password-1", "bo-password-11", "svc-password-111"
	for _, u := range []struct{ email, pw, role string }{
		{"ana@example.com", anaPW, "orders:read"},
		{"bo@example.com", boPW, "orders:read"},
		{"svc@example.com", svcPW, "introspect"},
	} {
		if out, err := userAdd(ctx, bin, db, u.email, u.pw, u.role); err != nil {
			t.Fatalf("user add %s: %v\n%s", u.email, err, out)
		}
	}
	latch := startLatch(t, ctx, db)
	addr := latch.grpcAddr
	orders := startExample(t, ctx, addr, []string{"LATCH_EXAMPLE_PASSWORD=" + svcPW}, "--revocations-email", "svc@example.com")

	login := func(email, pw, ua, device string) pair {
		t.Helper()
		return tokensOf(t, mustOK(t, grpcurlWith(t, ctx, []string{"-user-agent", ua}, addr, nil, svcLogin,
			map[string]string{"email": email, "password": pw, "audience": "orders", "device_name": device}), "Login "+email))
	}
	// selfToken asks the session for a Latch-audience access token, as an
	// application does for its user: no second login.
	selfToken := func(p *pair) []string {
		t.Helper()
		next := tokensOf(t, mustOK(t, grpcurl(t, ctx, addr, nil, svcRefresh,
			map[string]string{"refresh_token": p.refresh, "audience": "https://latch.test"}), "Refresh for Latch"))
		if next.sid != p.sid {
			t.Fatalf("Latch-audience token of session %s, want %s", next.sid, p.sid)
		}
		p.refresh = next.refresh
		return []string{"authorization: Bearer " + next.access}
	}
	svc := tokensOf(t, mustOK(t, grpcurl(t, ctx, addr, nil, svcLogin,
		map[string]string{"email": "svc@example.com", "password": svcPW, "audience": "https://latch.test"}), "login svc"))
	introspect := func(tok string) bool {
		t.Helper()
		out := mustOK(t, grpcurl(t, ctx, addr, []string{"authorization: Bearer " + svc.access}, svcIntrospect, map[string]string{"token": tok}), "Introspect")
		return out["active"] == true
	}

	phone := login("ana@example.com", anaPW, "ana-phone/2.1", "Ana's phone")
	laptop := login("ana@example.com", anaPW, "ana-laptop/7.0", "")
	phoneSelf := selfToken(&phone)

	t.Run("the list shows both devices and marks the current one", func(t *testing.T) {
		out := mustOK(t, grpcurl(t, ctx, addr, phoneSelf, svcListMine, map[string]string{}), "ListMySessions")
		if out["currentSessionId"] != phone.sid {
			t.Errorf("currentSessionId = %v, want the phone's %s", out["currentSessionId"], phone.sid)
		}
		sessions, _ := out["sessions"].([]any)
		byID := map[string]map[string]any{}
		for _, s := range sessions {
			m := s.(map[string]any)
			byID[m["id"].(string)] = m
		}
		p, l := byID[phone.sid], byID[laptop.sid]
		if len(byID) != 2 || p == nil || l == nil {
			t.Fatalf("sessions = %v, want the phone's and the laptop's", sessions)
		}
		if p["deviceName"] != "Ana's phone" || !strings.Contains(p["userAgent"].(string), "ana-phone/2.1") ||
			p["loginAddress"] != "127.0.0.1" || p["lastAddress"] != "127.0.0.1" {
			t.Errorf("phone session = %v, want its device name, user-agent and loopback addresses", p)
		}
		if !strings.Contains(l["userAgent"].(string), "ana-laptop/7.0") || l["deviceName"] != nil {
			t.Errorf("laptop session = %v, want its user-agent and no device name", l)
		}
	})

	t.Run("a sibling service lists the sign-ins on the person's behalf", func(t *testing.T) {
		auth := []string{"authorization: Bearer " + phone.access} // the orders-audience token the service is called with
		out := mustOK(t, grpcurl(t, ctx, orders, auth, "latch.example.orders.v1.OrdersService/ListSignIns",
			map[string]string{"refresh_token": phone.refresh}), "ListSignIns")
		next, _ := out["refreshToken"].(string)
		if next == "" || next == phone.refresh || !strings.Contains(fmt.Sprint(out["signIns"]), "Ana's phone") ||
			!strings.Contains(fmt.Sprint(out["signIns"]), "current:true") {
			t.Fatalf("ListSignIns = %v, want the devices, the current one marked, and a new refresh token", out)
		}
		phone.refresh = next
		wantCode(t, grpcurl(t, ctx, orders, auth, "latch.example.orders.v1.OrdersService/ListSignIns",
			map[string]string{"refresh_token": laptop.refresh}), "PermissionDenied", "", "another session's refresh token")
	})

	t.Run("a token for a sibling audience is refused", func(t *testing.T) {
		wantCode(t, grpcurl(t, ctx, addr, []string{"authorization: Bearer " + phone.access}, svcListMine, map[string]string{}),
			"Unauthenticated", "invalid caller credential", "orders-audience token")
		wantCode(t, grpcurl(t, ctx, addr, []string{"authorization: Bearer " + phone.access}, svcRevokeMine,
			map[string]string{"session_id": laptop.sid}), "Unauthenticated", "invalid caller credential", "orders-audience token")
	})

	t.Run("another person's session answers as an unknown one", func(t *testing.T) {
		bo := login("bo@example.com", boPW, "bo/1", "")
		others := grpcurl(t, ctx, addr, phoneSelf, svcRevokeMine, map[string]string{"session_id": bo.sid})
		unknown := grpcurl(t, ctx, addr, phoneSelf, svcRevokeMine, map[string]string{"session_id": "AAAAAAAAAAAAAAAAAAAAAA"})
		wantCode(t, others, "NotFound", "session not found", "another person's session")
		if others.stderr != unknown.stderr || others.raw != unknown.raw {
			t.Errorf("another person's session: %q; unknown: %q; want identical answers", others.stderr, unknown.stderr)
		}
		if !introspect(bo.access) {
			t.Error("another person's session was revoked")
		}
	})

	t.Run("signing a device out ends its tokens", func(t *testing.T) {
		if r := grpcurl(t, ctx, orders, []string{"authorization: Bearer " + laptop.access}, svcGetOrder, map[string]string{"order_id": "o-1"}); r.err != nil {
			t.Fatalf("GetOrder with the laptop's token before sign-out: %s", r.stderr)
		}
		out := mustOK(t, grpcurl(t, ctx, addr, phoneSelf, svcRevokeMine, map[string]string{"session_id": laptop.sid}), "RevokeMySession")
		if s, _ := out["session"].(map[string]any); s["state"] != "SESSION_STATE_REVOKED" || s["revokeReason"] != "signed_out" {
			t.Errorf("RevokeMySession = %v, want revoked, reason signed_out", out)
		}
		wantCode(t, grpcurl(t, ctx, addr, nil, svcRefresh, map[string]string{"refresh_token": laptop.refresh}),
			"Unauthenticated", "invalid refresh token", "signed-out refresh token")
		if introspect(laptop.access) {
			t.Error("Introspect: the signed-out session's access token is active")
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := grpcurl(t, ctx, orders, []string{"authorization: Bearer " + laptop.access}, svcGetOrder, map[string]string{"order_id": "o-1"})
			if r.code() == "Unauthenticated" && strings.Contains(r.message(), "revoked") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the sibling service still accepts the signed-out token after 10 s: %s %s", r.raw, r.stderr)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !introspect(phone.access) {
			t.Error("the phone's own session ended")
		}
	})

	t.Run("a wrong current password is charged to the login limits", func(t *testing.T) {
		bo := login("bo@example.com", boPW, "bo/2", "")
		boSelf := selfToken(&bo)
		for range 10 { // a person's failure budget
			wantCode(t, grpcurl(t, ctx, addr, boSelf, svcChangeMine,
				map[string]string{"current_password": "guess-guess", "new_password": "bo-new-password"}),
				"Unauthenticated", "current password is incorrect", "wrong current password")
		}
		wantCode(t, grpcurl(t, ctx, addr, nil, svcLogin, map[string]string{"email": "bo@example.com", "password": boPW}),
			"ResourceExhausted", "too many login attempts; retry later", "Login after the failure budget is spent")
	})

	t.Run("changing the password ends the other sessions and keeps the current one", func(t *testing.T) {
		tablet := login("ana@example.com", anaPW, "ana-tablet/1", "tablet")
		out := mustOK(t, grpcurl(t, ctx, addr, phoneSelf, svcChangeMine,
			map[string]string{"current_password": anaPW, "new_password": "ana-new-password"}), "ChangeMyPassword")
		kept := tokensOf(t, out)
		if kept.sid != phone.sid || out["revokedSessions"] != float64(1) {
			t.Fatalf("ChangeMyPassword = %v, want the phone's session kept and one other revoked", out)
		}
		if introspect(tablet.access) {
			t.Error("the other session's access token is still active")
		}
		wantCode(t, grpcurl(t, ctx, addr, nil, svcRefresh, map[string]string{"refresh_token": tablet.refresh}),
			"Unauthenticated", "invalid refresh token", "the other session's refresh token")
		wantCode(t, grpcurl(t, ctx, addr, nil, svcLogin, map[string]string{"email": "ana@example.com", "password": anaPW}),
			"Unauthenticated", "invalid email or password", "the old password")
		phone = tokensOf(t, mustOK(t, grpcurl(t, ctx, addr, nil, svcRefresh, map[string]string{"refresh_token": kept.refresh}), "Refresh with the new token"))
		phoneSelf = selfToken(&phone)

		out = mustOK(t, grpcurl(t, ctx, addr, phoneSelf, svcChangeMine, map[string]any{
			"current_password": "ana-new-password", "new_password": "ana-third-password", "end_current_session": true}), "ChangeMyPassword ending the session")
		if out["tokens"] != nil {
			t.Errorf("ChangeMyPassword(end_current_session) returned tokens: %v", out)
		}
		if introspect(phone.access) {
			t.Error("the current session is still active after end_current_session")
		}
		mustOK(t, grpcurl(t, ctx, addr, nil, svcLogin, map[string]string{"email": "ana@example.com", "password": "ana-third-password"}), "Login with the new password")
	})

	t.Run("signing out everywhere else, and the replaced refresh token is a reused one", func(t *testing.T) {
		p := login("ana@example.com", "ana-third-password", "ana-phone/2.1", "Ana's phone")
		pSelf := selfToken(&p)
		q := login("ana@example.com", "ana-third-password", "ana-laptop/7.0", "")
		out := mustOK(t, grpcurl(t, ctx, addr, pSelf, svcRevokeAllMine, map[string]any{}), "RevokeMySessions")
		if raw := out["revoked"]; !strings.Contains(fmt.Sprint(raw), q.sid) || strings.Contains(fmt.Sprint(raw), p.sid) || introspect(q.access) || !introspect(p.access) {
			t.Fatalf("RevokeMySessions = %v, want the other session revoked and this one kept", out)
		}
		before := p.refresh
		out = mustOK(t, grpcurl(t, ctx, addr, pSelf, svcChangeMine,
			map[string]string{"current_password": "ana-third-password", "new_password": "ana-fourth-password"}), "ChangeMyPassword")
		kept := tokensOf(t, out)
		wantCode(t, grpcurl(t, ctx, addr, nil, svcRefresh, map[string]string{"refresh_token": before}),
			"Unauthenticated", "invalid refresh token", "the refresh token replaced by the change")
		if introspect(kept.access) {
			t.Error("presenting the replaced refresh token did not revoke the session")
		}
		wantCode(t, grpcurl(t, ctx, addr, pSelf, svcRevokeAllMine, map[string]any{"include_current": true}),
			"Unauthenticated", "invalid caller credential", "a token of the session that reuse revoked")
	})
	checkLogsHoldNoSecrets(t, latch.logText(), anaPW, boPW, "ana-new-password", phone.refresh)
}
