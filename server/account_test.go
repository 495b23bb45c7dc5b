package server_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/latchtest"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/dynamicpb"
)

// device is one signed-in device of a person: its own connection (with its
// own user-agent) and the tokens of its session.
type device struct {
	auth    latchv1.AuthServiceClient
	account latchv1.AccountServiceClient
	tokens  *latchv1.TokenPair // the session's audience ("orders")
}

// signIn logs in from a new connection with user-agent ua and device name.
func signIn(t *testing.T, l *latchtest.Latch, email, pw, ua, name string) *device {
	t.Helper()
	conn := l.Dial(grpc.WithUserAgent(ua))
	d := &device{auth: latchv1.NewAuthServiceClient(conn), account: latchv1.NewAccountServiceClient(conn)}
	resp, err := d.auth.Login(latchtest.Context(t), &latchv1.LoginRequest{Email: email, Password: pw, DeviceName: name})
	if err != nil {
		t.Fatalf("Login(%s): %v", email, err)
	}
	d.tokens = resp.GetTokens()
	return d
}

// self returns a context carrying a Latch-audience access token of d's
// session, obtained as an application would: Refresh with audience = the
// issuer. d's refresh token moves on with it.
func (d *device) self(t *testing.T) context.Context {
	t.Helper()
	resp, err := d.auth.Refresh(latchtest.Context(t), &latchv1.RefreshRequest{RefreshToken: d.tokens.GetRefreshToken(), Audience: latchtest.Issuer})
	if err != nil {
		t.Fatalf("Refresh for Latch's audience: %v", err)
	}
	d.tokens.RefreshToken = resp.GetTokens().GetRefreshToken()
	return latchtest.Bearer(latchtest.Context(t), resp.GetTokens().GetAccessToken())
}

func introspector(t *testing.T, l *latchtest.Latch) context.Context {
	t.Helper()
	l.AddUser("introspector@example.com", "introspector-pw", server.RoleIntrospect)
	return latchtest.Bearer(latchtest.Context(t), l.LoginSelf("introspector@example.com", "introspector-pw").GetAccessToken())
}

func active(t *testing.T, l *latchtest.Latch, ictx context.Context, tok string) bool {
	t.Helper()
	resp, err := l.Client.Introspect(ictx, &latchv1.IntrospectRequest{Token: tok})
	if err != nil {
		t.Fatalf("Introspect: %v", err)
	}
	return resp.GetActive()
}

// Every method of AccountService's descriptor is implemented.
func TestAccountEveryMethodImplemented(t *testing.T) {
	l := latchtest.Start(t, latchtest.Options{})
	l.AddUser("ana@example.com", "ana-password")
	ctx := signIn(t, l, "ana@example.com", "ana-password", "app/1", "").self(t)
	sd := latchv1.File_latch_v1_account_proto.Services().ByName("AccountService")
	if sd.Methods().Len() != 4 {
		t.Fatalf("AccountService has %d methods, want 4", sd.Methods().Len())
	}
	for i := range sd.Methods().Len() {
		m := sd.Methods().Get(i)
		err := l.Conn.Invoke(ctx, "/"+string(sd.FullName())+"/"+string(m.Name()), dynamicpb.NewMessage(m.Input()), dynamicpb.NewMessage(m.Output()))
		if status.Code(err) == codes.Unimplemented {
			t.Errorf("%s is unimplemented", m.FullName())
		}
	}
}

// Two devices log in; the list shows both with their descriptions, marks
// the calling token's session, and leaves out other people's sessions and
// ended ones.
func TestAccountListMySessions(t *testing.T) {
	l := latchtest.Start(t, latchtest.Options{})
	l.AddUser("ana@example.com", "ana-password")
	l.AddUser("bo@example.com", "bo-password")
	phone := signIn(t, l, "ana@example.com", "ana-password", "phone-app/2.1", "Ana's phone")
	laptop := signIn(t, l, "ana@example.com", "ana-password", "laptop-app/7", "")
	signIn(t, l, "bo@example.com", "bo-password", "bo-app/1", "Bo's phone")
	ended := signIn(t, l, "ana@example.com", "ana-password", "old/1", "old")
	if _, err := l.Client.Revoke(latchtest.Context(t), &latchv1.RevokeRequest{Token: ended.tokens.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}

	resp, err := phone.account.ListMySessions(phone.self(t), &latchv1.ListMySessionsRequest{})
	if err != nil {
		t.Fatalf("ListMySessions: %v", err)
	}
	if resp.GetCurrentSessionId() != phone.tokens.GetSessionId() {
		t.Errorf("current_session_id = %q, want the phone's %q", resp.GetCurrentSessionId(), phone.tokens.GetSessionId())
	}
	got := map[string]*latchv1.Session{}
	for _, s := range resp.GetSessions() {
		got[s.GetId()] = s
	}
	if len(got) != 2 || got[phone.tokens.GetSessionId()] == nil || got[laptop.tokens.GetSessionId()] == nil {
		t.Fatalf("listed %v, want exactly the phone's and the laptop's live sessions", resp.GetSessions())
	}
	p, lp := got[phone.tokens.GetSessionId()], got[laptop.tokens.GetSessionId()]
	if p.GetDeviceName() != "Ana's phone" || !strings.HasPrefix(p.GetUserAgent(), "phone-app/2.1") || p.GetState() != latchv1.SessionState_SESSION_STATE_LIVE {
		t.Errorf("phone session = %v, want its device name and user-agent, live", p)
	}
	if lp.GetDeviceName() != "" || !strings.HasPrefix(lp.GetUserAgent(), "laptop-app/7") {
		t.Errorf("laptop session = %v, want no device name and its user-agent", lp)
	}
	if p.GetLastRotateTime() == nil || p.GetCreateTime() == nil || p.GetExpireTime() == nil {
		t.Errorf("phone session lacks times: %v", p)
	}
	if strings.Contains(resp.String(), phone.tokens.GetRefreshToken()) {
		t.Error("a refresh token is in the listing")
	}
}

// A token minted for a relying party's audience, or none, is refused by
// every AccountService method before it acts.
func TestAccountRefusesSiblingAudience(t *testing.T) {
	l := latchtest.Start(t, latchtest.Options{})
	l.AddUser("ana@example.com", "ana-password")
	phone := signIn(t, l, "ana@example.com", "ana-password", "phone/1", "")
	other := signIn(t, l, "ana@example.com", "ana-password", "other/1", "")
	sibling := latchtest.Bearer(latchtest.Context(t), phone.tokens.GetAccessToken()) // audience "orders"
	for name, call := range map[string]func(context.Context) error{
		"ListMySessions": func(ctx context.Context) error {
			_, err := phone.account.ListMySessions(ctx, &latchv1.ListMySessionsRequest{})
			return err
		},
		"RevokeMySession": func(ctx context.Context) error {
			_, err := phone.account.RevokeMySession(ctx, &latchv1.RevokeMySessionRequest{SessionId: other.tokens.GetSessionId()})
			return err
		},
		"RevokeMySessions": func(ctx context.Context) error {
			_, err := phone.account.RevokeMySessions(ctx, &latchv1.RevokeMySessionsRequest{IncludeCurrent: true})
			return err
		},
		"ChangeMyPassword": func(ctx context.Context) error {
			_, err := phone.account.ChangeMyPassword(ctx, &latchv1.ChangeMyPasswordRequest{CurrentPassword: "ana-password", NewPassword: "new-password-1"})
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			wantStatus(t, call(sibling), codes.Unauthenticated, "invalid caller credential")
			wantStatus(t, call(latchtest.Context(t)), codes.Unauthenticated, "")
		})
	}
	if s, err := l.Store.GetSession(latchtest.Context(t), other.tokens.GetSessionId()); err != nil || s.Revoked() {
		t.Fatalf("other session after refused calls: %+v, %v; want live", s, err)
	}
	u, _ := l.Store.GetUserByEmail(latchtest.Context(t), "ana@example.com")
	if ok, _, _ := l.Hasher.Verify(latchtest.Context(t), "ana-password", u.PasswordHash); !ok {
		t.Fatal("password changed by a refused call")
	}
}

// Signing one device out from another ends its refresh token and its
// access tokens at once; another person's session id is answered exactly
// as an unknown one and stays live.
func TestAccountRevokeMySession(t *testing.T) {
	l := latchtest.Start(t, latchtest.Options{})
	ictx := introspector(t, l)
	l.AddUser("ana@example.com", "ana-password")
	l.AddUser("bo@example.com", "bo-password")
	phone := signIn(t, l, "ana@example.com", "ana-password", "phone/1", "phone")
	laptop := signIn(t, l, "ana@example.com", "ana-password", "laptop/1", "laptop")
	bo := signIn(t, l, "bo@example.com", "bo-password", "bo/1", "")
	watch, err := l.Client.WatchRevocations(ictx, &latchv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := phone.self(t)

	_, unknownErr := phone.account.RevokeMySession(ctx, &latchv1.RevokeMySessionRequest{SessionId: "AAAAAAAAAAAAAAAAAAAAAA"})
	_, othersErr := phone.account.RevokeMySession(ctx, &latchv1.RevokeMySessionRequest{SessionId: bo.tokens.GetSessionId()})
	wantStatus(t, unknownErr, codes.NotFound, "session not found")
	wantStatus(t, othersErr, codes.NotFound, "session not found")
	if status.Convert(unknownErr).Proto().String() != status.Convert(othersErr).Proto().String() {
		t.Errorf("another person's session answers %v, an unknown one %v; want the same", othersErr, unknownErr)
	}
	if !active(t, l, ictx, bo.tokens.GetAccessToken()) {
		t.Fatal("another person's session was revoked")
	}
	for _, bad := range []string{"", strings.Repeat("a", 129), "a\x00b", "\xff"} {
		_, err := phone.account.RevokeMySession(ctx, &latchv1.RevokeMySessionRequest{SessionId: bad})
		wantStatus(t, err, codes.InvalidArgument, "")
	}

	resp, err := phone.account.RevokeMySession(ctx, &latchv1.RevokeMySessionRequest{SessionId: laptop.tokens.GetSessionId()})
	if err != nil {
		t.Fatalf("RevokeMySession: %v", err)
	}
	if s := resp.GetSession(); s.GetState() != latchv1.SessionState_SESSION_STATE_REVOKED || s.GetRevokeReason() != storage.ReasonSignedOut {
		t.Errorf("answer %v, want revoked with reason %q", s, storage.ReasonSignedOut)
	}
	if active(t, l, ictx, laptop.tokens.GetAccessToken()) {
		t.Error("the signed-out session's access token is still active")
	}
	if _, err := laptop.auth.Refresh(latchtest.Context(t), &latchv1.RefreshRequest{RefreshToken: laptop.tokens.GetRefreshToken()}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Refresh of the signed-out session: %v, want UNAUTHENTICATED", err)
	}
	for ev := recv(t, watch); ev.GetSessionId() != laptop.tokens.GetSessionId(); ev = recv(t, watch) {
	}
	// Again: succeeds, keeps the first revocation, announces nothing new.
	again, err := phone.account.RevokeMySession(ctx, &latchv1.RevokeMySessionRequest{SessionId: laptop.tokens.GetSessionId()})
	if err != nil || !again.GetSession().GetRevokeTime().AsTime().Equal(resp.GetSession().GetRevokeTime().AsTime()) {
		t.Fatalf("second RevokeMySession = %v, %v; want the first revocation", again, err)
	}
	if !active(t, l, ictx, phone.tokens.GetAccessToken()) {
		t.Error("the calling session was revoked")
	}
	logs := l.Logs.String()
	if !strings.Contains(logs, `"event":"account_sessions_revoked"`) || strings.Contains(logs, laptop.tokens.GetRefreshToken()) {
		t.Error("no account_sessions_revoked audit record, or a refresh token in the log")
	}
}

// RevokeMySessions ends every other session and keeps the caller's, or
// ends them all with include_current.
func TestAccountRevokeMySessions(t *testing.T) {
	l := latchtest.Start(t, latchtest.Options{})
	ictx := introspector(t, l)
	l.AddUser("ana@example.com", "ana-password")
	phone := signIn(t, l, "ana@example.com", "ana-password", "phone/1", "")
	var others []*device
	for range 3 {
		others = append(others, signIn(t, l, "ana@example.com", "ana-password", "other/1", ""))
	}
	ctx := phone.self(t)
	resp, err := phone.account.RevokeMySessions(ctx, &latchv1.RevokeMySessionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetRevoked()) != 3 {
		t.Fatalf("revoked %d sessions, want the 3 others", len(resp.GetRevoked()))
	}
	for _, d := range others {
		if active(t, l, ictx, d.tokens.GetAccessToken()) {
			t.Error("another session's access token is still active")
		}
	}
	if !active(t, l, ictx, phone.tokens.GetAccessToken()) {
		t.Fatal("the caller's own session ended without include_current")
	}
	resp, err = phone.account.RevokeMySessions(ctx, &latchv1.RevokeMySessionsRequest{IncludeCurrent: true})
	if err != nil || len(resp.GetRevoked()) != 1 || resp.GetRevoked()[0].GetId() != phone.tokens.GetSessionId() {
		t.Fatalf("RevokeMySessions(include_current) = %v, %v; want the caller's session", resp, err)
	}
	if active(t, l, ictx, phone.tokens.GetAccessToken()) {
		t.Error("the caller's session is still active after include_current")
	}
	_, err = phone.account.ListMySessions(ctx, &latchv1.ListMySessionsRequest{})
	wantStatus(t, err, codes.Unauthenticated, "")
}

// Changing the password keeps and rotates the current session, ends every
// other one, and makes the current session's earlier refresh token a
// reused one; the old password stops working.
func TestAccountChangeMyPassword(t *testing.T) {
	l := latchtest.Start(t, latchtest.Options{})
	ictx := introspector(t, l)
	l.AddUser("ana@example.com", "ana-password")
	phone := signIn(t, l, "ana@example.com", "ana-password", "phone/1", "")
	laptop := signIn(t, l, "ana@example.com", "ana-password", "laptop/1", "")
	ctx := phone.self(t)
	before := phone.tokens.GetRefreshToken()

	for name, req := range map[string]*latchv1.ChangeMyPasswordRequest{
		"no current":      {NewPassword: "new-password-1"},
		"short new":       {CurrentPassword: "ana-password", NewPassword: "short"},
		"long current":    {CurrentPassword: strings.Repeat("x", 1025), NewPassword: "new-password-1"},
		"non-UTF-8 new":   {CurrentPassword: "ana-password", NewPassword: "new-pass\xff"},
		"non-UTF-8 given": {CurrentPassword: "ana\xff", NewPassword: "new-password-1"},
	} {
		_, err := phone.account.ChangeMyPassword(ctx, req)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want INVALID_ARGUMENT", name, err)
		}
	}
	_, err := phone.account.ChangeMyPassword(ctx, &latchv1.ChangeMyPasswordRequest{CurrentPassword: "wrong-password", NewPassword: "new-password-1"})
	wantStatus(t, err, codes.Unauthenticated, "current password is incorrect")
	if !active(t, l, ictx, laptop.tokens.GetAccessToken()) {
		t.Fatal("a refused change ended a session")
	}

	resp, err := phone.account.ChangeMyPassword(ctx, &latchv1.ChangeMyPasswordRequest{CurrentPassword: "ana-password", NewPassword: "new-password-1"})
	if err != nil {
		t.Fatalf("ChangeMyPassword: %v", err)
	}
	if resp.GetRevokedSessions() != 1 || resp.GetTokens().GetSessionId() != phone.tokens.GetSessionId() {
		t.Fatalf("answer %v, want 1 revoked and the phone's session's new tokens", resp)
	}
	if active(t, l, ictx, laptop.tokens.GetAccessToken()) {
		t.Error("the other session's access token is still active")
	}
	if _, err := laptop.auth.Refresh(latchtest.Context(t), &latchv1.RefreshRequest{RefreshToken: laptop.tokens.GetRefreshToken()}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("other session's Refresh: %v, want UNAUTHENTICATED", err)
	}
	if !active(t, l, ictx, resp.GetTokens().GetAccessToken()) || !active(t, l, ictx, phone.tokens.GetAccessToken()) {
		t.Error("the current session's access tokens are not active")
	}
	if _, err := l.Client.Login(latchtest.Context(t), &latchv1.LoginRequest{Email: "ana@example.com", Password: "ana-password"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Login with the old password: %v, want UNAUTHENTICATED", err)
	}
	l.Login("ana@example.com", "new-password-1", "")
	next, err := phone.auth.Refresh(latchtest.Context(t), &latchv1.RefreshRequest{RefreshToken: resp.GetTokens().GetRefreshToken()})
	if err != nil {
		t.Fatalf("Refresh with the new refresh token: %v", err)
	}
	// The token the session had before the change is a reused one now.
	if _, err := phone.auth.Refresh(latchtest.Context(t), &latchv1.RefreshRequest{RefreshToken: before}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Refresh with the replaced token: %v, want UNAUTHENTICATED", err)
	}
	if active(t, l, ictx, next.GetTokens().GetAccessToken()) {
		t.Error("presenting the replaced refresh token did not revoke the session (reuse)")
	}
	logs := l.Logs.String()
	for _, secret := range []string{"ana-password", "new-password-1", before, resp.GetTokens().GetRefreshToken()} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds a secret (%.8s...)", secret)
		}
	}
	if !strings.Contains(logs, `"event":"account_password_changed"`) || !strings.Contains(logs, `"event":"account_password_change_failed"`) {
		t.Error("password change events missing from the audit log")
	}
}

// With end_current_session every session ends, the current one included,
// and no tokens come back.
func TestAccountChangeMyPasswordEndsCurrent(t *testing.T) {
	l := latchtest.Start(t, latchtest.Options{})
	ictx := introspector(t, l)
	l.AddUser("ana@example.com", "ana-password")
	phone := signIn(t, l, "ana@example.com", "ana-password", "phone/1", "")
	signIn(t, l, "ana@example.com", "ana-password", "laptop/1", "")
	resp, err := phone.account.ChangeMyPassword(phone.self(t), &latchv1.ChangeMyPasswordRequest{
		CurrentPassword: "ana-password", NewPassword: "new-password-1", EndCurrentSession: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetTokens() != nil || resp.GetRevokedSessions() != 2 {
		t.Fatalf("answer %v, want no tokens and 2 sessions revoked", resp)
	}
	if active(t, l, ictx, phone.tokens.GetAccessToken()) {
		t.Error("the current session is still active")
	}
}

// A wrong current password is charged to the account's login failure
// budget: once it is spent, Login refuses even the right password.
func TestAccountWrongPasswordChargedToLogin(t *testing.T) {
	cfg := latchtest.DefaultConfig()
	cfg.PersonLimits = server.AccountLimits{FailureBurst: 3, FailureRefill: time.Hour}
	l := latchtest.Start(t, latchtest.Options{Config: cfg})
	l.AddUser("ana@example.com", "ana-password")
	phone := signIn(t, l, "ana@example.com", "ana-password", "phone/1", "")
	ctx := phone.self(t)
	for range 3 {
		_, err := phone.account.ChangeMyPassword(ctx, &latchv1.ChangeMyPasswordRequest{CurrentPassword: "guess", NewPassword: "new-password-1"})
		wantStatus(t, err, codes.Unauthenticated, "current password is incorrect")
	}
	_, err := phone.account.ChangeMyPassword(ctx, &latchv1.ChangeMyPasswordRequest{CurrentPassword: "ana-password", NewPassword: "new-password-1"})
	wantStatus(t, err, codes.ResourceExhausted, "too many login attempts; retry later")
	_, err = l.Client.Login(latchtest.Context(t), &latchv1.LoginRequest{Email: "ana@example.com", Password: "ana-password"})
	wantStatus(t, err, codes.ResourceExhausted, "too many login attempts; retry later")
}

// Refreshes of another session racing a password change from many
// goroutines: once the change has returned, that session is dead whatever
// won the races, and none of its access tokens is active.
func TestAccountChangeMyPasswordRacesRefresh(t *testing.T) {
	l := latchtest.Start(t, latchtest.Options{})
	ictx := introspector(t, l)
	l.AddUser("ana@example.com", "ana-password")
	phone := signIn(t, l, "ana@example.com", "ana-password", "phone/1", "")
	ctx := phone.self(t)
	const n = 8
	thieves := make([]*device, n)
	for i := range thieves {
		thieves[i] = signIn(t, l, "ana@example.com", "ana-password", "thief/1", "")
	}
	var (
		mu     sync.Mutex
		issued []string // access tokens handed out to the racing refreshes
		wg     sync.WaitGroup
	)
	start := make(chan struct{})
	for _, d := range thieves {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			rt := d.tokens.GetRefreshToken()
			for range 10 {
				resp, err := d.auth.Refresh(latchtest.Context(t), &latchv1.RefreshRequest{RefreshToken: rt})
				if err != nil {
					return
				}
				rt = resp.GetTokens().GetRefreshToken()
				mu.Lock()
				issued = append(issued, resp.GetTokens().GetAccessToken())
				mu.Unlock()
			}
		}()
	}
	close(start)
	if _, err := phone.account.ChangeMyPassword(ctx, &latchv1.ChangeMyPasswordRequest{CurrentPassword: "ana-password", NewPassword: "new-password-1"}); err != nil {
		t.Fatalf("ChangeMyPassword: %v", err)
	}
	wg.Wait()
	for _, d := range thieves {
		s, err := l.Store.GetSession(latchtest.Context(t), d.tokens.GetSessionId())
		if err != nil || !s.Revoked() {
			t.Fatalf("racing session %s = %+v, %v; want revoked", d.tokens.GetSessionId(), s, err)
		}
	}
	for _, tok := range issued {
		if active(t, l, ictx, tok) {
			t.Fatal("an access token minted by a racing refresh is active after the change")
		}
	}
}

// Login records the device name and a bounded, sanitised user-agent; a bad
// device name is refused and stores nothing, a bad user-agent never is.
func TestLoginClientDescription(t *testing.T) {
	l := latchtest.Start(t, latchtest.Options{})
	u := l.AddUser("ana@example.com", "ana-password")
	for name, dev := range map[string]string{"long": strings.Repeat("n", 65), "control": "my\nphone", "not UTF-8": "ph\xffone"} {
		_, err := l.Client.Login(latchtest.Context(t), &latchv1.LoginRequest{Email: "ana@example.com", Password: "ana-password", DeviceName: dev})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s device name: %v, want INVALID_ARGUMENT", name, err)
		}
	}
	if ss, _ := l.Store.ListUserSessions(latchtest.Context(t), u.ID); len(ss) != 0 {
		t.Fatalf("refused logins stored %d sessions", len(ss))
	}
	ua := "evil-agent/" + strings.Repeat("a", 400)
	d := signIn(t, l, "ana@example.com", "ana-password", ua, strings.Repeat("n", 64))
	s, err := l.Store.GetSession(latchtest.Context(t), d.tokens.GetSessionId())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.UserAgent) > storage.MaxClientInfoLength || strings.ContainsRune(s.UserAgent, '\x01') || !strings.HasPrefix(s.UserAgent, "evil") {
		t.Errorf("stored user-agent %q (%d bytes), want sanitised and at most %d bytes", s.UserAgent, len(s.UserAgent), storage.MaxClientInfoLength)
	}
	if s.DeviceName != strings.Repeat("n", 64) {
		t.Errorf("device name %q not stored", s.DeviceName)
	}
}
