package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"github.com/latchauth/latch/storage/etcd"
	"github.com/latchauth/latch/storage/etcd/etcdtest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// adminEnv is a server with an administrator logged in.
type adminEnv struct {
	*env
	admin    latchv1.AdminServiceClient
	adminID  string
	adminCtx context.Context // carries the admin's access token
	adminTP  *latchv1.TokenPair
}

const adminPW = "admin-password-1"

func newAdminEnv(t *testing.T, wrappers ...wrap) *adminEnv {
	t.Helper()
	return newAdminEnvCfg(t, baseConfig(), wrappers...)
}

func newAdminEnvCfg(t *testing.T, cfg server.Config, wrappers ...wrap) *adminEnv {
	t.Helper()
	e := newEnv(t, cfg, wrappers...)
	u := e.addUser("root@example.com", adminPW, server.RoleAdmin)
	tp := e.loginSelf("root@example.com", adminPW)
	return &adminEnv{env: e, admin: latchv1.NewAdminServiceClient(e.conn), adminID: u.ID,
		adminCtx: bearerCtx(t, tp.GetAccessToken()), adminTP: tp}
}

func bearerCtx(t testing.TB, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+tok)
}

// createUser creates a user through AdminService.
func (a *adminEnv) createUser(email, pw string, roles ...string) *latchv1.User {
	a.t.Helper()
	resp, err := a.admin.CreateUser(a.adminCtx, &latchv1.CreateUserRequest{Email: email, Password: pw, Roles: roles})
	if err != nil {
		a.t.Fatalf("CreateUser(%s): %v", email, err)
	}
	return resp.GetUser()
}

// active reports whether Introspect (with an introspect credential) finds
// the access token active.
func (a *adminEnv) active(ictx context.Context, tok string) bool {
	a.t.Helper()
	return a.introspect(ictx, tok).GetActive()
}

// adminMethods are AdminService's methods from its descriptor.
func adminMethods() (protoreflect.ServiceDescriptor, []protoreflect.MethodDescriptor) {
	sd := latchv1.File_latch_v1_admin_proto.Services().ByName("AdminService")
	var ms []protoreflect.MethodDescriptor
	for i := range sd.Methods().Len() {
		ms = append(ms, sd.Methods().Get(i))
	}
	return sd, ms
}

func invoke(ctx context.Context, e *env, sd protoreflect.ServiceDescriptor, m protoreflect.MethodDescriptor) error {
	return e.conn.Invoke(ctx, fmt.Sprintf("/%s/%s", sd.FullName(), m.Name()),
		dynamicpb.NewMessage(m.Input()), dynamicpb.NewMessage(m.Output()))
}

// TestAdminEveryMethodImplemented calls every method of AdminService's
// descriptor as an administrator and fails if any answers Unimplemented.
func TestAdminEveryMethodImplemented(t *testing.T) {
	a := newAdminEnv(t)
	sd, ms := adminMethods()
	if len(ms) != 11 {
		t.Fatalf("AdminService has %d methods, want the 11 of the contract", len(ms))
	}
	for _, m := range ms {
		t.Run(string(m.Name()), func(t *testing.T) {
			if err := invoke(a.adminCtx, a.env, sd, m); status.Code(err) == codes.Unimplemented {
				t.Errorf("%s is unimplemented", m.FullName())
			}
		})
	}
}

// TestAdminAuthMatrix: every method of AdminService refuses callers without
// a valid token (UNAUTHENTICATED) and callers whose token or account lacks
// role admin (PERMISSION_DENIED), before any handler runs or state changes.
func TestAdminAuthMatrix(t *testing.T) {
	cfg := baseConfig()
	cfg.ProbeBurst = 10_000 // this test presents ~100 bad credentials from one address
	a := newAdminEnvCfg(t, cfg)
	a.addUser("alice@example.com", "alice-password", "user", server.RoleIntrospect)
	alice := a.loginSelf("alice@example.com", "alice-password")
	// The admin's own token for a relying party's audience: a token a
	// sibling service receives can never administer Latch.
	relyingParty := a.login("root@example.com", adminPW)
	revoked := a.loginSelf("root@example.com", adminPW)
	if _, err := a.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: revoked.GetAccessToken()}); err != nil {
		t.Fatal(err)
	}
	loggedOut := a.loginSelf("root@example.com", adminPW)
	if _, err := a.client.Revoke(ctxT(t), &latchv1.RevokeRequest{Token: loggedOut.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	// An admin whose role was taken away (directly in storage, as `latch
	// user` would) still holds a token that says admin.
	demoted := a.addUser("demoted@example.com", "demoted-password", server.RoleAdmin)
	demotedTP := a.loginSelf("demoted@example.com", "demoted-password")
	if _, err := a.store.UpdateUser(ctxT(t), demoted.ID, func(u *storage.User) error { u.Roles = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	// An admin disabled directly in storage, without revoking their sessions.
	disabled := a.addUser("disabled@example.com", "disabled-password", server.RoleAdmin)
	disabledTP := a.loginSelf("disabled@example.com", "disabled-password")
	if _, err := a.store.UpdateUser(ctxT(t), disabled.ID, func(u *storage.User) error { u.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	deleted := a.addUser("deleted@example.com", "deleted-password", server.RoleAdmin)
	deletedTP := a.loginSelf("deleted@example.com", "deleted-password")
	if _, err := a.store.DeleteUser(ctxT(t), deleted.ID, a.clock.Now()); err != nil { // revokes the session
		t.Fatal(err)
	}
	tampered := a.adminTP.GetAccessToken()[:len(a.adminTP.GetAccessToken())-4] + "AAAA"
	usersBefore, _ := a.store.CountUsers(ctxT(t))

	sd, ms := adminMethods()
	cases := []struct {
		name string
		ctx  func() context.Context
		code codes.Code
	}{
		{"no token", func() context.Context { return ctxT(t) }, codes.Unauthenticated},
		{"malformed", func() context.Context { return bearerCtx(t, "not.a.jwt") }, codes.Unauthenticated},
		{"wrong scheme", func() context.Context {
			return metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Basic "+a.adminTP.GetAccessToken())
		}, codes.Unauthenticated},
		{"bad signature", func() context.Context { return bearerCtx(t, tampered) }, codes.Unauthenticated},
		{"refresh token", func() context.Context { return bearerCtx(t, a.adminTP.GetRefreshToken()) }, codes.Unauthenticated},
		{"relying party's audience", func() context.Context { return bearerCtx(t, relyingParty.GetAccessToken()) }, codes.Unauthenticated},
		{"revoked access token", func() context.Context { return bearerCtx(t, revoked.GetAccessToken()) }, codes.Unauthenticated},
		{"revoked session", func() context.Context { return bearerCtx(t, loggedOut.GetAccessToken()) }, codes.Unauthenticated},
		{"deleted admin", func() context.Context { return bearerCtx(t, deletedTP.GetAccessToken()) }, codes.Unauthenticated},
		{"lacks role admin", func() context.Context { return bearerCtx(t, alice.GetAccessToken()) }, codes.PermissionDenied},
		{"demoted admin", func() context.Context { return bearerCtx(t, demotedTP.GetAccessToken()) }, codes.PermissionDenied},
		{"disabled admin", func() context.Context { return bearerCtx(t, disabledTP.GetAccessToken()) }, codes.PermissionDenied},
	}
	for _, tc := range cases {
		for _, m := range ms {
			t.Run(tc.name+"/"+string(m.Name()), func(t *testing.T) {
				wantStatus(t, invoke(tc.ctx(), a.env, sd, m), tc.code, "")
			})
		}
	}
	t.Run("expired", func(t *testing.T) {
		a.clock.Advance(16 * time.Minute)
		for _, m := range ms {
			wantStatus(t, invoke(a.adminCtx, a.env, sd, m), codes.Unauthenticated, "")
		}
	})
	if n, _ := a.store.CountUsers(ctxT(t)); n != usersBefore {
		t.Errorf("refused calls changed the users: %d, want %d", n, usersBefore)
	}
	for _, ev := range []string{"admin_permission_denied", "admin_unauthenticated"} {
		if !strings.Contains(a.logs.String(), `"event":"`+ev+`"`) {
			t.Errorf("no %s event logged", ev)
		}
	}
	// The admin interceptors apply to AdminService only: AuthService keeps
	// its own rules (Introspect's own message for a missing role).
	_, err := a.client.Introspect(bearerCtx(t, a.loginSelf("root@example.com", adminPW).GetAccessToken()),
		&latchv1.IntrospectRequest{Token: alice.GetAccessToken()})
	wantStatus(t, err, codes.PermissionDenied, `caller token lacks role "introspect"`)
	if _, err := a.client.GetJWKS(ctxT(t), &latchv1.GetJWKSRequest{}); err != nil {
		t.Errorf("GetJWKS without a token: %v", err)
	}
}

func TestAdminCreateGetListUsers(t *testing.T) {
	a := newAdminEnv(t)
	u := a.createUser("  Bob@Example.COM ", "bob-password-1", "user", "orders:read", "user")
	if u.GetId() == "" || u.GetEmail() != "bob@example.com" || !slices.Equal(u.GetRoles(), []string{"orders:read", "user"}) ||
		u.GetDisabled() || u.GetCreateTime() == nil {
		t.Fatalf("created user = %v", u)
	}
	// The new user can log in at once, with the roles given.
	tp := a.login("bob@example.com", "bob-password-1")
	ictx := a.introspector()
	if got := a.introspect(ictx, tp.GetAccessToken()); !got.GetActive() || got.GetSub() != u.GetId() || !slices.Equal(got.GetRoles(), u.GetRoles()) {
		t.Fatalf("new user's token: %v", got)
	}

	byID, err := a.admin.GetUser(a.adminCtx, &latchv1.GetUserRequest{Lookup: &latchv1.GetUserRequest_UserId{UserId: u.GetId()}})
	if err != nil || !proto.Equal(byID.GetUser(), u) {
		t.Fatalf("GetUser(id) = %v, %v; want %v", byID.GetUser(), err, u)
	}
	byEmail, err := a.admin.GetUser(a.adminCtx, &latchv1.GetUserRequest{Lookup: &latchv1.GetUserRequest_Email{Email: "BOB@example.com"}})
	if err != nil || byEmail.GetUser().GetId() != u.GetId() {
		t.Fatalf("GetUser(email) = %v, %v", byEmail.GetUser(), err)
	}
	_, err = a.admin.GetUser(a.adminCtx, &latchv1.GetUserRequest{Lookup: &latchv1.GetUserRequest_UserId{UserId: "nobody"}})
	wantStatus(t, err, codes.NotFound, "user not found")
	_, err = a.admin.GetUser(a.adminCtx, &latchv1.GetUserRequest{Lookup: &latchv1.GetUserRequest_Email{Email: "nobody@example.com"}})
	wantStatus(t, err, codes.NotFound, "user not found")

	_, err = a.admin.CreateUser(a.adminCtx, &latchv1.CreateUserRequest{Email: "BOB@example.com", Password: "another-password"})
	wantStatus(t, err, codes.AlreadyExists, "a user with this email already exists")

	// Pagination: 2 + 6 users, pages of 3, every user exactly once, in id order.
	for i := range 6 {
		a.createUser(fmt.Sprintf("u%d@example.com", i), "some-password")
	}
	var ids []string
	token, pages := "", 0
	for {
		resp, err := a.admin.ListUsers(a.adminCtx, &latchv1.ListUsersRequest{PageSize: 3, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, u := range resp.GetUsers() {
			ids = append(ids, u.GetId())
		}
		if token = resp.GetNextPageToken(); token == "" {
			if len(resp.GetUsers()) == 0 {
				t.Fatal("the last page is empty: a token was issued for nothing")
			}
			break
		}
	}
	if len(ids) != 9 || pages != 3 || !slices.IsSorted(ids) || len(slices.Compact(slices.Clone(ids))) != 9 {
		t.Fatalf("paged %d users in %d pages: %v; want 9 distinct in id order in 3 pages", len(ids), pages, ids)
	}
	all, err := a.admin.ListUsers(a.adminCtx, &latchv1.ListUsersRequest{PageSize: 100000})
	if err != nil || len(all.GetUsers()) != 9 || all.GetNextPageToken() != "" {
		t.Fatalf("ListUsers with an oversized page = %d users, token %q, %v", len(all.GetUsers()), all.GetNextPageToken(), err)
	}
	def, err := a.admin.ListUsers(a.adminCtx, &latchv1.ListUsersRequest{})
	if err != nil || len(def.GetUsers()) != 9 {
		t.Fatalf("ListUsers with the default page = %d users, %v", len(def.GetUsers()), err)
	}
	// No response carries a credential.
	for _, m := range []proto.Message{all, byID, byEmail} {
		js := protojson.Format(m)
		if strings.Contains(js, "argon2") || strings.Contains(js, "password") {
			t.Fatalf("a response carries a password hash: %s", js)
		}
	}
}

// TestAdminDisableUser: a disabled user cannot log in or refresh, their
// access tokens are inactive at once, and enabling them lets them log in
// again.
func TestAdminDisableUser(t *testing.T) {
	a := newAdminEnv(t)
	u := a.createUser("bob@example.com", "bob-password-1", "user")
	ictx := a.introspector()
	tp1 := a.login("bob@example.com", "bob-password-1")
	tp2 := a.login("bob@example.com", "bob-password-1")

	resp, err := a.admin.UpdateUser(a.adminCtx, &latchv1.UpdateUserRequest{UserId: u.GetId(), Disabled: proto.Bool(true)})
	if err != nil || !resp.GetUser().GetDisabled() || resp.GetRevokedSessions() != 2 {
		t.Fatalf("disable = %v, %v; want disabled with 2 sessions revoked", resp, err)
	}
	for _, tp := range []*latchv1.TokenPair{tp1, tp2} {
		if a.active(ictx, tp.GetAccessToken()) {
			t.Error("a disabled user's access token is active on Introspect")
		}
		if a.active(ictx, tp.GetRefreshToken()) {
			t.Error("a disabled user's refresh token is active on Introspect")
		}
		_, err := a.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
		wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
	}
	_, err = a.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "bob@example.com", Password: "bob-password-1"})
	wantStatus(t, err, codes.Unauthenticated, "invalid email or password")

	resp, err = a.admin.UpdateUser(a.adminCtx, &latchv1.UpdateUserRequest{UserId: u.GetId(), Disabled: proto.Bool(false)})
	if err != nil || resp.GetUser().GetDisabled() || resp.GetRevokedSessions() != 0 {
		t.Fatalf("enable = %v, %v", resp, err)
	}
	tp3 := a.login("bob@example.com", "bob-password-1")
	if !a.active(ictx, tp3.GetAccessToken()) {
		t.Error("an enabled user's new token is inactive")
	}
	if a.active(ictx, tp1.GetAccessToken()) {
		t.Error("enabling a user brought a revoked session back")
	}
}

// racingStore runs change (as an administrator racing the login would)
// between the password check and the creation of the user's session.
type racingStore struct {
	storage.Store
	user   string
	change func(ctx context.Context, s storage.Store, userID string) error
}

func (r *racingStore) CreateSession(ctx context.Context, s storage.Session) error {
	if s.UserID == r.user {
		if err := r.change(ctx, r.Store, s.UserID); err != nil {
			return err
		}
	}
	return r.Store.CreateSession(ctx, s)
}

// TestLoginRacingAdmin: a user disabled, deleted or given a new password
// (each revoking their sessions) while their login was checking the old
// password does not get a live session.
func TestLoginRacingAdmin(t *testing.T) {
	revokeAll := func(ctx context.Context, s storage.Store, id string) error {
		_, err := s.RevokeUserSessions(ctx, id, storage.ReasonUserChanged, time.Now())
		return err
	}
	for name, change := range map[string]func(context.Context, storage.Store, string) error{
		"disabled": func(ctx context.Context, s storage.Store, id string) error {
			if _, err := s.UpdateUser(ctx, id, func(u *storage.User) error { u.Disabled = true; return nil }); err != nil {
				return err
			}
			return revokeAll(ctx, s, id)
		},
		"deleted": func(ctx context.Context, s storage.Store, id string) error {
			_, err := s.DeleteUser(ctx, id, time.Now())
			return err
		},
		"password set": func(ctx context.Context, s storage.Store, id string) error {
			if _, err := s.UpdateUser(ctx, id, func(u *storage.User) error { u.PasswordHash = "$argon2id$new"; return nil }); err != nil {
				return err
			}
			return revokeAll(ctx, s, id)
		},
	} {
		t.Run(name, func(t *testing.T) {
			rs := &racingStore{change: change}
			a := newAdminEnv(t, func(s storage.Store) storage.Store { rs.Store = s; return rs })
			u := a.addUser("bob@example.com", "bob-password-1", "user")
			rs.user = u.ID
			_, err := a.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "bob@example.com", Password: "bob-password-1"})
			wantStatus(t, err, codes.Unauthenticated, "invalid email or password")
			// Deleted or disabled: the store refused the session. New
			// password: the login stored it and revoked it on its recheck.
			sessions, err := a.store.ListUserSessions(ctxT(t), u.ID)
			if err != nil {
				t.Fatal(err)
			}
			if want := map[string]int{"password set": 1}[name]; len(sessions) != want {
				t.Fatalf("%d sessions stored; want %d", len(sessions), want)
			}
			for _, sess := range sessions {
				if sess.Live(a.clock.Now()) {
					t.Fatal("a login racing an administrator left a live session")
				}
			}
		})
	}
}

// TestRehashNeverOverwritesANewPassword: the hash upgrade after a login
// replaces only the hash it verified; a password an administrator set in
// between stays.
func TestRehashNeverOverwritesANewPassword(t *testing.T) {
	a := newAdminEnv(t)
	p := fastParams()
	p.Memory = 32 // older parameters: a successful login upgrades the hash
	old, err := password.NewHasher(p, 1)
	if err != nil {
		t.Fatal(err)
	}
	h, err := old.Hash(ctxT(t), "bob-password-1")
	if err != nil {
		t.Fatal(err)
	}
	u := a.addUser("bob@example.com", "placeholder-pw", "user")
	if _, err := a.store.UpdateUser(ctxT(t), u.ID, func(u *storage.User) error { u.PasswordHash = h; return nil }); err != nil {
		t.Fatal(err)
	}
	// The administrator's new password lands after the login read the old
	// hash and before the upgrade: model it by upgrading against a stale
	// verified hash.
	if _, err := a.admin.SetPassword(a.adminCtx, &latchv1.SetPasswordRequest{UserId: u.ID, Password: "bob-password-2"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := server.UpgradeHashForTest(ctxT(t), a.srv, u.ID, h, "bob-password-1"); ok {
		t.Fatal("the upgrade replaced a hash it had not verified")
	}
	a.login("bob@example.com", "bob-password-2")
	_, err = a.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "bob@example.com", Password: "bob-password-1"})
	wantStatus(t, err, codes.Unauthenticated, "invalid email or password")
}

func TestAdminUpdateUser(t *testing.T) {
	a := newAdminEnv(t)
	u := a.createUser("bob@example.com", "bob-password-1", "user")
	a.createUser("carol@example.com", "carol-password")
	ictx := a.introspector()
	tp := a.login("bob@example.com", "bob-password-1")

	a.clock.Advance(time.Minute)
	resp, err := a.admin.UpdateUser(a.adminCtx, &latchv1.UpdateUserRequest{UserId: u.GetId(),
		Roles: &latchv1.RoleList{Roles: []string{"orders:write", "user"}}, Email: proto.String("Robert@Example.com")})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.GetUser()
	if got.GetEmail() != "robert@example.com" || !slices.Equal(got.GetRoles(), []string{"orders:write", "user"}) ||
		!got.GetUpdateTime().AsTime().After(got.GetCreateTime().AsTime()) || resp.GetRevokedSessions() != 0 {
		t.Fatalf("UpdateUser = %v", resp)
	}
	// Roles reach tokens at the next refresh; the session stays live.
	r, err := a.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
	if err != nil {
		t.Fatal(err)
	}
	if roles := a.introspect(ictx, r.GetTokens().GetAccessToken()).GetRoles(); !slices.Equal(roles, []string{"orders:write", "user"}) {
		t.Errorf("roles after refresh = %v", roles)
	}
	// The new email logs in, the old one no longer does.
	a.login("robert@example.com", "bob-password-1")
	_, err = a.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "bob@example.com", Password: "bob-password-1"})
	wantStatus(t, err, codes.Unauthenticated, "invalid email or password")

	_, err = a.admin.UpdateUser(a.adminCtx, &latchv1.UpdateUserRequest{UserId: u.GetId(), Email: proto.String("carol@example.com")})
	wantStatus(t, err, codes.AlreadyExists, "a user with this email already exists")
	_, err = a.admin.UpdateUser(a.adminCtx, &latchv1.UpdateUserRequest{UserId: "nobody", Disabled: proto.Bool(true)})
	wantStatus(t, err, codes.NotFound, "user not found")
	// Removing every role is allowed.
	if resp, err := a.admin.UpdateUser(a.adminCtx, &latchv1.UpdateUserRequest{UserId: u.GetId(), Roles: &latchv1.RoleList{}}); err != nil || len(resp.GetUser().GetRoles()) != 0 {
		t.Fatalf("remove every role = %v, %v", resp, err)
	}

	// An admin cannot lock themself out; another admin can act on them.
	for name, req := range map[string]*latchv1.UpdateUserRequest{
		"disable self": {UserId: a.adminID, Disabled: proto.Bool(true)},
		"demote self":  {UserId: a.adminID, Roles: &latchv1.RoleList{Roles: []string{"user"}}},
	} {
		_, err := a.admin.UpdateUser(a.adminCtx, req)
		wantStatus(t, err, codes.FailedPrecondition, "")
		if st, _ := status.FromError(err); !strings.Contains(st.Message(), "another administrator") {
			t.Errorf("%s: message %q does not say what to do", name, st.Message())
		}
	}
	if resp, err := a.admin.UpdateUser(a.adminCtx, &latchv1.UpdateUserRequest{UserId: a.adminID,
		Roles: &latchv1.RoleList{Roles: []string{server.RoleAdmin, "ops"}}}); err != nil || !slices.Contains(resp.GetUser().GetRoles(), "ops") {
		t.Fatalf("an admin adding a role to themself = %v, %v", resp, err)
	}
}

func TestAdminSetPassword(t *testing.T) {
	a := newAdminEnv(t)
	u := a.createUser("bob@example.com", "bob-password-1", "user")
	ictx := a.introspector()
	tp := a.login("bob@example.com", "bob-password-1")

	resp, err := a.admin.SetPassword(a.adminCtx, &latchv1.SetPasswordRequest{UserId: u.GetId(), Password: "bob-password-2"})
	if err != nil || resp.GetRevokedSessions() != 1 {
		t.Fatalf("SetPassword = %v, %v; want 1 session revoked", resp, err)
	}
	if a.active(ictx, tp.GetAccessToken()) {
		t.Error("access token active after SetPassword")
	}
	_, err = a.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
	_, err = a.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "bob@example.com", Password: "bob-password-1"})
	wantStatus(t, err, codes.Unauthenticated, "invalid email or password")
	tp2 := a.login("bob@example.com", "bob-password-2")

	resp, err = a.admin.SetPassword(a.adminCtx, &latchv1.SetPasswordRequest{UserId: u.GetId(), Password: "bob-password-3", KeepSessions: true})
	if err != nil || resp.GetRevokedSessions() != 0 {
		t.Fatalf("SetPassword keep_sessions = %v, %v", resp, err)
	}
	if !a.active(ictx, tp2.GetAccessToken()) {
		t.Error("keep_sessions revoked the session")
	}
	if _, err := a.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp2.GetRefreshToken()}); err != nil {
		t.Errorf("refresh after SetPassword keep_sessions: %v", err)
	}
	a.login("bob@example.com", "bob-password-3")

	_, err = a.admin.SetPassword(a.adminCtx, &latchv1.SetPasswordRequest{UserId: "nobody", Password: "whatever-password"})
	wantStatus(t, err, codes.NotFound, "user not found")
}

func TestAdminDeleteUser(t *testing.T) {
	a := newAdminEnv(t)
	u := a.createUser("bob@example.com", "bob-password-1", "user")
	ictx := a.introspector()
	tp := a.login("bob@example.com", "bob-password-1")
	other := a.login("introspector@example.com", "introspector-pw")

	resp, err := a.admin.DeleteUser(a.adminCtx, &latchv1.DeleteUserRequest{UserId: u.GetId()})
	if err != nil || resp.GetRevokedSessions() != 1 {
		t.Fatalf("DeleteUser = %v, %v; want 1 session revoked", resp, err)
	}
	if a.active(ictx, tp.GetAccessToken()) {
		t.Error("a deleted user's access token is active")
	}
	if !a.active(ictx, other.GetAccessToken()) {
		t.Error("another user's session was revoked")
	}
	_, err = a.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
	wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
	_, err = a.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "bob@example.com", Password: "bob-password-1"})
	wantStatus(t, err, codes.Unauthenticated, "invalid email or password")
	_, err = a.admin.GetUser(a.adminCtx, &latchv1.GetUserRequest{Lookup: &latchv1.GetUserRequest_UserId{UserId: u.GetId()}})
	wantStatus(t, err, codes.NotFound, "user not found")
	_, err = a.admin.DeleteUser(a.adminCtx, &latchv1.DeleteUserRequest{UserId: u.GetId()})
	wantStatus(t, err, codes.NotFound, "user not found")

	// The email is free for a new, different user.
	again := a.createUser("bob@example.com", "new-bob-password")
	if again.GetId() == u.GetId() {
		t.Fatal("the new user reused the deleted user's id")
	}
	_, err = a.admin.DeleteUser(a.adminCtx, &latchv1.DeleteUserRequest{UserId: a.adminID})
	wantStatus(t, err, codes.FailedPrecondition, "")
}

func TestAdminSessions(t *testing.T) {
	a := newAdminEnv(t)
	u := a.createUser("bob@example.com", "bob-password-1", "user")
	ictx := a.introspector()
	carol := a.login("introspector@example.com", "introspector-pw")
	tp1 := a.login("bob@example.com", "bob-password-1")
	a.clock.Advance(time.Second)
	tp2 := a.login("bob@example.com", "bob-password-1")
	a.clock.Advance(time.Second)
	tp3 := a.login("bob@example.com", "bob-password-1")

	// A watcher must learn of every administrative revocation.
	wctx, cancel := context.WithCancel(ictx)
	defer cancel()
	watch, err := a.client.WatchRevocations(wctx, &latchv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Header(); err != nil {
		t.Fatal(err)
	}

	list, err := a.admin.ListSessions(a.adminCtx, &latchv1.ListSessionsRequest{UserId: u.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if list.GetTotal() != 3 {
		t.Fatalf("ListSessions total = %d, want 3", list.GetTotal())
	}
	if got := sessionIDs(list.GetSessions()); !slices.Equal(got, []string{tp3.GetSessionId(), tp2.GetSessionId(), tp1.GetSessionId()}) {
		t.Fatalf("ListSessions = %v, want newest first", got)
	}
	for _, s := range list.GetSessions() {
		if s.GetState() != latchv1.SessionState_SESSION_STATE_LIVE || s.GetUserId() != u.GetId() || s.GetAudience() != "orders" ||
			s.GetRevokeTime() != nil || s.GetExpireTime() == nil {
			t.Fatalf("listed session %v", s)
		}
	}

	one, err := a.admin.RevokeSession(a.adminCtx, &latchv1.RevokeSessionRequest{SessionId: tp1.GetSessionId()})
	if err != nil || one.GetSession().GetState() != latchv1.SessionState_SESSION_STATE_REVOKED || one.GetSession().GetRevokeReason() != "admin" {
		t.Fatalf("RevokeSession = %v, %v", one, err)
	}
	if ev := recv(t, watch); ev.GetSessionId() != tp1.GetSessionId() {
		t.Fatalf("watcher got %v, want the revoked session %s", ev, tp1.GetSessionId())
	}
	if a.active(ictx, tp1.GetAccessToken()) || !a.active(ictx, tp2.GetAccessToken()) {
		t.Fatal("RevokeSession did not revoke exactly its session")
	}
	_, err = a.admin.RevokeSession(a.adminCtx, &latchv1.RevokeSessionRequest{SessionId: "nope"})
	wantStatus(t, err, codes.NotFound, "session not found")

	all, err := a.admin.RevokeUserSessions(a.adminCtx, &latchv1.RevokeUserSessionsRequest{UserId: u.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	got := sessionIDs(all.GetRevoked())
	slices.Sort(got)
	want := []string{tp2.GetSessionId(), tp3.GetSessionId()}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("RevokeUserSessions revoked %v, want only the live ones %v", got, want)
	}
	seen := map[string]bool{}
	for range 2 {
		seen[recv(t, watch).GetSessionId()] = true
	}
	if !seen[tp2.GetSessionId()] || !seen[tp3.GetSessionId()] {
		t.Fatalf("watcher saw %v, want both sessions", seen)
	}
	for _, tp := range []*latchv1.TokenPair{tp2, tp3} {
		if a.active(ictx, tp.GetAccessToken()) {
			t.Error("access token active after log-out-everywhere")
		}
		_, err := a.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
		wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
	}
	if !a.active(ictx, carol.GetAccessToken()) {
		t.Error("another user's session was revoked")
	}
	again, err := a.admin.RevokeUserSessions(a.adminCtx, &latchv1.RevokeUserSessionsRequest{UserId: u.GetId()})
	if err != nil || len(again.GetRevoked()) != 0 {
		t.Fatalf("second RevokeUserSessions = %v, %v; want none", again, err)
	}
	list, err = a.admin.ListSessions(a.adminCtx, &latchv1.ListSessionsRequest{UserId: u.GetId()})
	if err != nil || len(list.GetSessions()) != 3 {
		t.Fatalf("ListSessions after revocation = %v, %v", list, err)
	}
	for _, s := range list.GetSessions() {
		if s.GetState() != latchv1.SessionState_SESSION_STATE_REVOKED || s.GetRevokeTime() == nil {
			t.Fatalf("session after revocation: %v", s)
		}
	}
	for _, call := range []func() error{
		func() error {
			_, err := a.admin.ListSessions(a.adminCtx, &latchv1.ListSessionsRequest{UserId: "nobody"})
			return err
		},
		func() error {
			_, err := a.admin.RevokeUserSessions(a.adminCtx, &latchv1.RevokeUserSessionsRequest{UserId: "nobody"})
			return err
		},
	} {
		wantStatus(t, call(), codes.NotFound, "user not found")
	}
	js := protojson.Format(list)
	for _, secret := range []string{tp1.GetRefreshToken(), tp2.GetRefreshToken(), "digest", "hash"} {
		if strings.Contains(js, secret) {
			t.Fatalf("ListSessions leaks %q: %s", secret, js)
		}
	}
}

func sessionIDs(ss []*latchv1.Session) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.GetId()
	}
	return out
}

// snapshot is everything administration can change, for no-change checks.
func (a *adminEnv) snapshot() string {
	a.t.Helper()
	users, err := a.store.ListUsers(ctxT(a.t), "", 1000)
	if err != nil {
		a.t.Fatal(err)
	}
	var b strings.Builder
	for _, u := range users {
		sessions, err := a.store.ListUserSessions(ctxT(a.t), u.ID)
		if err != nil {
			a.t.Fatal(err)
		}
		data, _ := json.Marshal(struct {
			U storage.User
			S []storage.Session
		}{u, sessions})
		b.Write(data)
	}
	return b.String()
}

// TestAdminBadInput: malformed requests are INVALID_ARGUMENT with a message
// that says what is wrong, and change nothing.
func TestAdminBadInput(t *testing.T) {
	a := newAdminEnv(t)
	u := a.createUser("bob@example.com", "bob-password-1", "user")
	a.login("bob@example.com", "bob-password-1")
	before := a.snapshot()
	long := strings.Repeat("x", 200)
	c := a.admin
	ctx := a.adminCtx
	cases := map[string]func() error{
		"create: no email": func() error {
			_, err := c.CreateUser(ctx, &latchv1.CreateUserRequest{Password: "long-enough-pw"})
			return err
		},
		"create: display-name email": func() error {
			_, err := c.CreateUser(ctx, &latchv1.CreateUserRequest{Email: "Eve <eve@example.com>", Password: "long-enough-pw"})
			return err
		},
		"create: two addresses": func() error {
			_, err := c.CreateUser(ctx, &latchv1.CreateUserRequest{Email: "a@example.com, b@example.com", Password: "long-enough-pw"})
			return err
		},
		"create: not an address": func() error {
			_, err := c.CreateUser(ctx, &latchv1.CreateUserRequest{Email: "eve", Password: "long-enough-pw"})
			return err
		},
		"create: long email": func() error {
			_, err := c.CreateUser(ctx, &latchv1.CreateUserRequest{Email: strings.Repeat("e", 250) + "@example.com", Password: "long-enough-pw"})
			return err
		},
		"create: short password": func() error {
			_, err := c.CreateUser(ctx, &latchv1.CreateUserRequest{Email: "eve@example.com", Password: "short"})
			return err
		},
		"create: long password": func() error {
			_, err := c.CreateUser(ctx, &latchv1.CreateUserRequest{Email: "eve@example.com", Password: strings.Repeat("p", 1025)})
			return err
		},
		"create: bad role": func() error {
			_, err := c.CreateUser(ctx, &latchv1.CreateUserRequest{Email: "eve@example.com", Password: "long-enough-pw", Roles: []string{"has space"}})
			return err
		},
		"create: too many roles": func() error {
			roles := make([]string, 33)
			for i := range roles {
				roles[i] = fmt.Sprintf("r%d", i)
			}
			_, err := c.CreateUser(ctx, &latchv1.CreateUserRequest{Email: "eve@example.com", Password: "long-enough-pw", Roles: roles})
			return err
		},
		"get: no lookup": func() error { _, err := c.GetUser(ctx, &latchv1.GetUserRequest{}); return err },
		"get: empty id": func() error {
			_, err := c.GetUser(ctx, &latchv1.GetUserRequest{Lookup: &latchv1.GetUserRequest_UserId{}})
			return err
		},
		"get: long id": func() error {
			_, err := c.GetUser(ctx, &latchv1.GetUserRequest{Lookup: &latchv1.GetUserRequest_UserId{UserId: long}})
			return err
		},
		"get: empty email": func() error {
			_, err := c.GetUser(ctx, &latchv1.GetUserRequest{Lookup: &latchv1.GetUserRequest_Email{Email: "  "}})
			return err
		},
		"list: negative size": func() error {
			_, err := c.ListUsers(ctx, &latchv1.ListUsersRequest{PageSize: -1})
			return err
		},
		"list: forged token": func() error {
			_, err := c.ListUsers(ctx, &latchv1.ListUsersRequest{PageToken: "not-a-token!"})
			return err
		},
		"list: token of another kind": func() error {
			_, err := c.ListUsers(ctx, &latchv1.ListUsersRequest{PageToken: "eHl6"})
			return err
		},
		"update: no id": func() error {
			_, err := c.UpdateUser(ctx, &latchv1.UpdateUserRequest{Disabled: proto.Bool(true)})
			return err
		},
		"update: nothing to change": func() error {
			_, err := c.UpdateUser(ctx, &latchv1.UpdateUserRequest{UserId: u.GetId()})
			return err
		},
		"update: bad role": func() error {
			_, err := c.UpdateUser(ctx, &latchv1.UpdateUserRequest{UserId: u.GetId(), Roles: &latchv1.RoleList{Roles: []string{""}}})
			return err
		},
		"update: bad email with a valid change": func() error {
			_, err := c.UpdateUser(ctx, &latchv1.UpdateUserRequest{UserId: u.GetId(), Disabled: proto.Bool(true), Email: proto.String("nope")})
			return err
		},
		"set password: short": func() error {
			_, err := c.SetPassword(ctx, &latchv1.SetPasswordRequest{UserId: u.GetId(), Password: "1234567"})
			return err
		},
		"set password: no id": func() error {
			_, err := c.SetPassword(ctx, &latchv1.SetPasswordRequest{Password: "long-enough-pw"})
			return err
		},
		"delete: no id":        func() error { _, err := c.DeleteUser(ctx, &latchv1.DeleteUserRequest{}); return err },
		"delete: long id":      func() error { _, err := c.DeleteUser(ctx, &latchv1.DeleteUserRequest{UserId: long}); return err },
		"list sessions: no id": func() error { _, err := c.ListSessions(ctx, &latchv1.ListSessionsRequest{}); return err },
		"revoke session: no id": func() error {
			_, err := c.RevokeSession(ctx, &latchv1.RevokeSessionRequest{})
			return err
		},
		"revoke session: long id": func() error {
			_, err := c.RevokeSession(ctx, &latchv1.RevokeSessionRequest{SessionId: long})
			return err
		},
		"revoke user sessions: no id": func() error {
			_, err := c.RevokeUserSessions(ctx, &latchv1.RevokeUserSessionsRequest{})
			return err
		},
	}
	for name, call := range cases {
		t.Run(name, func(t *testing.T) {
			err := call()
			wantStatus(t, err, codes.InvalidArgument, "")
			if st, _ := status.FromError(err); st.Message() == "" || strings.Contains(st.Message(), "long-enough-pw") {
				t.Errorf("message %q: want what is wrong, and no secret", st.Message())
			}
		})
	}
	if after := a.snapshot(); after != before {
		t.Errorf("refused requests changed the state:\nbefore %s\nafter  %s", before, after)
	}
	a.login("bob@example.com", "bob-password-1") // password unchanged
}

// TestAdminAuditLog: every change is logged with a stable event and the
// acting admin; no record holds a password, hash or token.
func TestAdminAuditLog(t *testing.T) {
	a := newAdminEnv(t)
	u := a.createUser("bob@example.com", "created-password-1", "user")
	tp := a.login("bob@example.com", "created-password-1")
	steps := []func() error{
		func() error {
			_, err := a.admin.UpdateUser(a.adminCtx, &latchv1.UpdateUserRequest{UserId: u.GetId(), Roles: &latchv1.RoleList{Roles: []string{"x"}}})
			return err
		},
		func() error {
			_, err := a.admin.SetPassword(a.adminCtx, &latchv1.SetPasswordRequest{UserId: u.GetId(), Password: "changed-password-2"})
			return err
		},
		func() error {
			_, err := a.admin.RevokeSession(a.adminCtx, &latchv1.RevokeSessionRequest{SessionId: tp.GetSessionId()})
			return err
		},
		func() error {
			a.login("bob@example.com", "changed-password-2")
			_, err := a.admin.RevokeUserSessions(a.adminCtx, &latchv1.RevokeUserSessionsRequest{UserId: u.GetId()})
			return err
		},
		func() error {
			_, err := a.admin.UpdateUser(a.adminCtx, &latchv1.UpdateUserRequest{UserId: u.GetId(), Disabled: proto.Bool(true)})
			return err
		},
		func() error {
			_, err := a.admin.DeleteUser(a.adminCtx, &latchv1.DeleteUserRequest{UserId: u.GetId()})
			return err
		},
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	events := map[string][]map[string]any{}
	for line := range strings.SplitSeq(strings.TrimSpace(a.logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if ev, ok := rec["event"].(string); ok && strings.HasPrefix(ev, "admin_") {
			events[ev] = append(events[ev], rec)
		}
	}
	for _, ev := range []string{"admin_user_created", "admin_user_updated", "admin_password_set", "admin_session_revoked",
		"admin_sessions_revoked", "admin_user_deleted"} {
		if len(events[ev]) == 0 {
			t.Errorf("no %s event in the log", ev)
		}
		for _, rec := range events[ev] {
			if rec["actor"] != a.adminID {
				t.Errorf("%s: actor = %v, want the admin's id %s", ev, rec["actor"], a.adminID)
			}
			if ev != "admin_session_revoked" && rec["user_id"] != u.GetId() {
				t.Errorf("%s: user_id = %v, want %s", ev, rec["user_id"], u.GetId())
			}
		}
	}
	logs := a.logs.String()
	for name, secret := range map[string]string{
		"created password": "created-password-1", "changed password": "changed-password-2", "admin password": adminPW,
		"admin token": a.adminTP.GetAccessToken(), "admin token signature": strings.Split(a.adminTP.GetAccessToken(), ".")[2],
		"refresh token": tp.GetRefreshToken(), "password hash": "$argon2id$",
	} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain the %s", name)
		}
	}
}

// failingUserAdmin makes the store fail the administration writes.
type failingUserAdmin struct {
	storage.Store
}

func (f *failingUserAdmin) RevokeUserSessions(context.Context, string, string, time.Time) ([]storage.Session, error) {
	return nil, errors.New("disk on fire at /var/secret/path")
}

func (f *failingUserAdmin) RevokeSession(context.Context, string, string, time.Time) (storage.Session, bool, error) {
	return storage.Session{}, false, errors.New("disk on fire at /var/secret/path")
}

// TestAdminInternalErrorsLeakNothing: a storage failure of AdminService or
// AccountService is INTERNAL with a fixed message; the detail goes to the
// log only, in a record naming the full gRPC method.
func TestAdminInternalErrorsLeakNothing(t *testing.T) {
	a := newAdminEnv(t, func(s storage.Store) storage.Store { return &failingUserAdmin{Store: s} })
	u := a.createUser("bob@example.com", "bob-password-1")
	_, err := a.admin.RevokeUserSessions(a.adminCtx, &latchv1.RevokeUserSessionsRequest{UserId: u.GetId()})
	wantStatus(t, err, codes.Internal, "internal error")
	bob := a.loginSelf("bob@example.com", "bob-password-1")
	_, err = latchv1.NewAccountServiceClient(a.conn).RevokeMySession(bearerCtx(t, bob.GetAccessToken()),
		&latchv1.RevokeMySessionRequest{SessionId: bob.GetSessionId()})
	wantStatus(t, err, codes.Internal, "internal error")
	logs := a.logs.String()
	for _, method := range []string{"/latch.v1.AdminService/RevokeUserSessions", "/latch.v1.AccountService/RevokeMySession"} {
		if !strings.Contains(logs, `"event":"internal_error","method":"`+method+`","error":"`) {
			t.Errorf("no internal_error record with method %s and its detail in %s", method, logs)
		}
	}
}

// TestBootstrapAdmin: the first admin is created only while no enabled admin
// exists; an existing account is never taken over; the password is never
// logged.
func TestBootstrapAdmin(t *testing.T) {
	e := newEnv(t, baseConfig())
	ctx := ctxT(t)
	got, err := e.srv.BootstrapAdmin(ctx, " Root@Example.com", "bootstrap-password")
	if err != nil || got != server.BootstrapCreated {
		t.Fatalf("first BootstrapAdmin = %v, %v; want created", got, err)
	}
	u, err := e.store.GetUserByEmail(ctx, "root@example.com")
	if err != nil || !slices.Equal(u.Roles, []string{server.RoleAdmin}) || u.Disabled {
		t.Fatalf("bootstrapped user = %+v, %v", u, err)
	}
	tp := e.loginSelf("root@example.com", "bootstrap-password")
	if _, err := latchv1.NewAdminServiceClient(e.conn).ListUsers(bearerCtx(t, tp.GetAccessToken()), &latchv1.ListUsersRequest{}); err != nil {
		t.Fatalf("the bootstrapped admin cannot administer: %v", err)
	}
	// A restart with the same flag, or another email, changes nothing.
	for _, email := range []string{"root@example.com", "other@example.com"} {
		if got, err := e.srv.BootstrapAdmin(ctx, email, "another-password"); err != nil || got != server.BootstrapAdminExists {
			t.Fatalf("BootstrapAdmin(%s) with an admin = %v, %v; want admin exists", email, got, err)
		}
	}
	if n, _ := e.store.CountUsers(ctx); n != 1 {
		t.Fatalf("%d users after repeated bootstraps, want 1", n)
	}
	e.login("root@example.com", "bootstrap-password") // password unchanged

	// With the only admin disabled, a free email gets a new admin, but a
	// taken one is left alone.
	if _, err := e.store.UpdateUser(ctx, u.ID, func(u *storage.User) error { u.Disabled = true; return nil }); err != nil {
		t.Fatal(err)
	}
	e.addUser("bob@example.com", "bob-password-1", "user")
	if got, err := e.srv.BootstrapAdmin(ctx, "bob@example.com", "takeover-password"); err != nil || got != server.BootstrapEmailTaken {
		t.Fatalf("BootstrapAdmin over an existing account = %v, %v; want email taken", got, err)
	}
	if bob, _ := e.store.GetUserByEmail(ctx, "bob@example.com"); slices.Contains(bob.Roles, server.RoleAdmin) {
		t.Fatal("bootstrap took over an existing account")
	}
	e.login("bob@example.com", "bob-password-1")
	if got, err := e.srv.BootstrapAdmin(ctx, "root2@example.com", "bootstrap-password-2"); err != nil || got != server.BootstrapCreated {
		t.Fatalf("BootstrapAdmin with only a disabled admin = %v, %v; want created", got, err)
	}
	for _, bad := range []struct{ email, pw string }{{"not-an-email", "long-enough-pw"}, {"x@example.com", "short"}} {
		if _, err := e.srv.BootstrapAdmin(ctx, bad.email, bad.pw); err == nil {
			t.Errorf("BootstrapAdmin(%q, %q) succeeded", bad.email, bad.pw)
		}
	}
	logs := e.logs.String()
	for _, secret := range []string{"bootstrap-password", "another-password", "takeover-password"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain the password %q", secret)
		}
	}
	for _, outcome := range []string{"created", "admin_exists", "email_taken"} {
		if !strings.Contains(logs, `"event":"admin_bootstrap","outcome":"`+outcome+`"`) {
			t.Errorf("no admin_bootstrap event with outcome %s", outcome)
		}
	}
}

// TestAdminProbeLimit: invalid credentials sent to AdminService are charged
// to the address's caller budget, shared with Introspect's callers: past it,
// every invalid credential from that address is refused with
// RESOURCE_EXHAUSTED, while a valid admin token from the same address is
// still served, and valid calls spend nothing.
func TestAdminProbeLimit(t *testing.T) {
	cfg := baseConfig()
	cfg.ProbeBurst = 5
	a := newAdminEnvCfg(t, cfg)
	// Valid calls do not spend the budget.
	for range 10 {
		if _, err := a.admin.ListUsers(a.adminCtx, &latchv1.ListUsersRequest{}); err != nil {
			t.Fatalf("valid admin call: %v", err)
		}
	}
	for i := range 5 {
		_, err := a.admin.ListUsers(bearerCtx(t, "not.a.jwt"), &latchv1.ListUsersRequest{})
		wantStatus(t, err, codes.Unauthenticated, "")
		if t.Failed() {
			t.Fatalf("call %d", i)
		}
	}
	_, err := a.admin.ListUsers(bearerCtx(t, "not.a.jwt"), &latchv1.ListUsersRequest{})
	wantStatus(t, err, codes.ResourceExhausted, "too many invalid tokens; retry later")
	if !strings.Contains(a.logs.String(), `"event":"probe_rate_limited"`) {
		t.Error("no probe_rate_limited event logged")
	}
	// The budget is the address's, shared with Introspect's callers.
	_, err = a.client.Introspect(bearerCtx(t, "not.a.jwt"), &latchv1.IntrospectRequest{Token: "x"})
	wantStatus(t, err, codes.ResourceExhausted, "too many invalid tokens; retry later")
	// A valid admin token from the same address is still served.
	for range 3 {
		if _, err := a.admin.ListUsers(a.adminCtx, &latchv1.ListUsersRequest{}); err != nil {
			t.Fatalf("valid admin call after the budget was spent: %v", err)
		}
	}
	// ...and served calls give nothing back: invalid ones stay refused.
	_, err = a.admin.ListUsers(bearerCtx(t, "not.a.jwt"), &latchv1.ListUsersRequest{})
	wantStatus(t, err, codes.ResourceExhausted, "too many invalid tokens; retry later")
	// The budget refills: one invalid credential is answered as such again.
	a.clock.Advance(time.Second)
	_, err = a.admin.ListUsers(bearerCtx(t, "not.a.jwt"), &latchv1.ListUsersRequest{})
	wantStatus(t, err, codes.Unauthenticated, "")
}

// revocationOutage fails the revocation check, as an unreachable backend
// would.
type revocationOutage struct {
	storage.Store
	fail bool
}

func (r *revocationOutage) AccessTokenRevoked(ctx context.Context, jti, sid string, now time.Time) (bool, error) {
	if r.fail {
		return false, fmt.Errorf("read error at /var/secret/path: %w", storage.ErrUnavailable)
	}
	return r.Store.AccessTokenRevoked(ctx, jti, sid, now)
}

// TestAdminFailsClosedWithoutRevocationState: when whether the caller's
// token is revoked cannot be read, AdminService refuses (UNAVAILABLE); it
// never treats the token as valid.
func TestAdminFailsClosedWithoutRevocationState(t *testing.T) {
	ro := &revocationOutage{}
	a := newAdminEnv(t, func(s storage.Store) storage.Store { ro.Store = s; return ro })
	ro.fail = true
	_, err := a.admin.ListUsers(a.adminCtx, &latchv1.ListUsersRequest{})
	wantStatus(t, err, codes.Unavailable, "")
	if st, _ := status.FromError(err); strings.Contains(st.Message(), "secret") {
		t.Errorf("message leaks the inner error: %q", st.Message())
	}
	ro.fail = false
	if _, err := a.admin.ListUsers(a.adminCtx, &latchv1.ListUsersRequest{}); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
}

func keyIDs(keys []*latchv1.SigningKey, state latchv1.SigningKeyState) []string {
	var out []string
	for _, k := range keys {
		if k.GetState() == state {
			out = append(out, k.GetKid())
		}
	}
	return out
}

// kidOf returns the kid header of an access token.
func kidOf(t *testing.T, tok string) string {
	t.Helper()
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal([]byte(decodeSegment(t, strings.Split(tok, ".")[0])), &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

// TestAdminSigningKeys: ListSigningKeys describes the published keys (public
// parts only, the same as the JWKS); RotateSigningKey refuses to activate a
// next key published too recently (FAILED_PRECONDITION, nothing changed),
// activates it once it has been published long enough, and with immediate
// makes a brand-new key sign at once.
func TestAdminSigningKeys(t *testing.T) {
	a := newAdminEnv(t)
	list, err := a.admin.ListSigningKeys(a.adminCtx, &latchv1.ListSigningKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	active := keyIDs(list.GetKeys(), latchv1.SigningKeyState_SIGNING_KEY_STATE_ACTIVE)
	next := keyIDs(list.GetKeys(), latchv1.SigningKeyState_SIGNING_KEY_STATE_NEXT)
	if len(active) != 1 || len(next) != 1 || list.GetKeys()[0].GetKid() != active[0] {
		t.Fatalf("keys = %v; want one active (first) and one next", list.GetKeys())
	}
	if kidOf(t, a.adminTP.GetAccessToken()) != active[0] {
		t.Fatal("the active key in ListSigningKeys does not sign")
	}
	jwks, err := a.client.GetJWKS(ctxT(t), &latchv1.GetJWKSRequest{})
	if err != nil {
		t.Fatal(err)
	}
	published := map[string]*latchv1.JSONWebKey{}
	for _, k := range jwks.GetKeys() {
		published[k.GetKid()] = k
	}
	for _, k := range list.GetKeys() {
		if !proto.Equal(k.GetPublicKey(), published[k.GetKid()]) || k.GetCreateTime() == nil {
			t.Fatalf("key %s: %v, want its published JWK %v", k.GetKid(), k, published[k.GetKid()])
		}
	}
	if k := list.GetKeys()[1]; k.GetScheduledActivateTime() == nil || k.GetActivateTime() != nil {
		t.Fatalf("next key %v: want a scheduled activation and no activation", k)
	}

	// Too early: refused, with when, and nothing changes.
	_, err = a.admin.RotateSigningKey(a.adminCtx, &latchv1.RotateSigningKeyRequest{})
	wantStatus(t, err, codes.FailedPrecondition, "")
	if st, _ := status.FromError(err); !strings.Contains(st.Message(), "may be activated from") {
		t.Errorf("message %q does not say when", st.Message())
	}
	if again, _ := a.admin.ListSigningKeys(a.adminCtx, &latchv1.ListSigningKeysRequest{}); !proto.Equal(again, list) {
		t.Fatalf("a refused rotation changed the keys:\n%v\n%v", list, again)
	}

	// Once the next key has been published long enough, it takes over.
	a.clock.Advance(a.srv.Config().KeyPublishLead + a.srv.Config().KeyReloadInterval + time.Second)
	ctx := bearerCtx(t, a.loginSelf("root@example.com", adminPW).GetAccessToken())
	rot, err := a.admin.RotateSigningKey(ctx, &latchv1.RotateSigningKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := keyIDs(rot.GetKeys(), latchv1.SigningKeyState_SIGNING_KEY_STATE_ACTIVE); !slices.Equal(got, next) {
		t.Fatalf("active after rotation = %v, want the former next key %v", got, next)
	}
	if got := keyIDs(rot.GetKeys(), latchv1.SigningKeyState_SIGNING_KEY_STATE_RETIRED); !slices.Equal(got, active) {
		t.Fatalf("retired after rotation = %v, want the former active key %v", got, active)
	}
	if kid := kidOf(t, a.login("root@example.com", adminPW).GetAccessToken()); kid != next[0] {
		t.Fatalf("new tokens signed by %s, want %s", kid, next[0])
	}
	// Tokens of the retired key still administer.
	if _, err := a.admin.ListUsers(ctx, &latchv1.ListUsersRequest{}); err != nil {
		t.Fatalf("a token of the retired key: %v", err)
	}

	// Emergency: a brand-new key signs at once.
	imm, err := a.admin.RotateSigningKey(ctx, &latchv1.RotateSigningKeyRequest{Immediate: true})
	if err != nil {
		t.Fatal(err)
	}
	newActive := keyIDs(imm.GetKeys(), latchv1.SigningKeyState_SIGNING_KEY_STATE_ACTIVE)
	if len(newActive) != 1 || slices.Contains(append(active, next...), newActive[0]) {
		t.Fatalf("active after an immediate rotation = %v, want a key never seen before", newActive)
	}
	if kid := kidOf(t, a.login("root@example.com", adminPW).GetAccessToken()); kid != newActive[0] {
		t.Fatalf("after an immediate rotation new tokens are signed by %s, want %s", kid, newActive[0])
	}
	js := protojson.Format(imm)
	if strings.Contains(js, `"d"`) || strings.Contains(js, "PRIVATE") {
		t.Fatalf("a key description carries private material: %s", js)
	}
	if n := strings.Count(a.logs.String(), `"event":"admin_signing_key_rotated"`); n != 2 {
		t.Errorf("%d admin_signing_key_rotated events, want 2", n)
	}
}

// TestAdminRevocationsCounted: sessions an administrator ends are counted
// in latch_revocations_total{kind="admin"}, once each.
func TestAdminRevocationsCounted(t *testing.T) {
	o := newOpsEnv(t, opsConfig{srvOpts: []server.Option{server.WithMetrics(server.NewMetrics())}})
	o.addUser("root@example.com", adminPW, server.RoleAdmin)
	bob := o.addUser("bob@example.com", "bob-password-1", "user")
	admin := latchv1.NewAdminServiceClient(o.conn)
	ctx := bearerCtx(t, o.loginSelf("root@example.com", adminPW).GetAccessToken())
	one := o.login("bob@example.com", "bob-password-1")
	o.login("bob@example.com", "bob-password-1")
	o.login("bob@example.com", "bob-password-1")
	for range 2 { // the second revocation of one session changes nothing
		if _, err := admin.RevokeSession(ctx, &latchv1.RevokeSessionRequest{SessionId: one.GetSessionId()}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := admin.RevokeUserSessions(ctx, &latchv1.RevokeUserSessionsRequest{UserId: bob.ID}); err != nil {
		t.Fatal(err)
	}
	o.login("bob@example.com", "bob-password-1")
	if _, err := admin.UpdateUser(ctx, &latchv1.UpdateUserRequest{UserId: bob.ID, Disabled: proto.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	if got, _ := sample(scrape(t, o), "latch_revocations_total", map[string]string{"kind": server.RevokedAdmin}); got != 4 {
		t.Fatalf("latch_revocations_total{kind=admin} = %v, want 4 (1 + 2 + 1)", got)
	}
}

// TestBootstrapAdminConcurrent: replicas sharing one store bootstrap at
// once; exactly one admin is created and every replica reports that an
// admin exists or that it created it.
func TestBootstrapAdminConcurrent(t *testing.T) {
	e := newEnv(t, baseConfig())
	const n = 8
	results := make([]server.BootstrapResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { results[i], errs[i] = e.srv.BootstrapAdmin(ctxT(t), "root@example.com", "bootstrap-password") })
	}
	wg.Wait()
	created := 0
	for i := range n {
		switch {
		case errs[i] != nil:
			t.Fatalf("bootstrap %d: %v", i, errs[i])
		case results[i] == server.BootstrapCreated:
			created++
		case results[i] != server.BootstrapAdminExists:
			t.Errorf("bootstrap %d = %v, want created or admin exists", i, results[i])
		}
	}
	if n, _ := e.store.CountUsers(ctxT(t)); created != 1 || n != 1 {
		t.Fatalf("%d bootstraps created, %d users; want exactly one", created, n)
	}
}

// TestAdminListSessionsBounded: a user with more than 1000 sessions gets
// the 1000 newest and the total.
func TestAdminListSessionsBounded(t *testing.T) {
	a := newAdminEnv(t)
	u := a.addUser("svc@example.com", "svc-password-1", "user")
	base := a.clock.Now()
	sessions := make([]storage.Session, 1001)
	for i := range sessions {
		sessions[i] = storage.Session{ID: fmt.Sprintf("s%04d", i), UserID: u.ID, Audience: "orders",
			CurrentHash: storage.TokenHash{byte(i), byte(i >> 8), 1}, CreatedAt: base.Add(time.Duration(i) * time.Second),
			IdleExpiresAt: base.Add(time.Hour), AbsoluteExpiresAt: base.Add(2 * time.Hour)}
	}
	if err := a.store.(*bolt.Store).ImportSessions(ctxT(t), sessions); err != nil { // one commit
		t.Fatal(err)
	}
	resp, err := a.admin.ListSessions(a.adminCtx, &latchv1.ListSessionsRequest{UserId: u.ID})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetTotal() != 1001 || len(resp.GetSessions()) != 1000 || resp.GetSessions()[0].GetId() != "s1000" || resp.GetSessions()[999].GetId() != "s0001" {
		t.Fatalf("ListSessions = %d sessions (first %s), total %d; want the 1000 newest of 1001",
			len(resp.GetSessions()), resp.GetSessions()[0].GetId(), resp.GetTotal())
	}
}

// revocationFailingStore fails every write that revokes a user's sessions,
// as a crash at that point would end the call.
type revocationFailingStore struct{ storage.Store }

var errRevocationFailed = errors.New("injected: revocation write failed")

func (f revocationFailingStore) RevokeUserSessions(context.Context, string, string, time.Time) ([]storage.Session, error) {
	return nil, errRevocationFailed
}

func (f revocationFailingStore) ResetSessions(context.Context, storage.SessionReset) (storage.Session, []storage.Session, error) {
	return storage.Session{}, nil, errRevocationFailed
}

// TestAdminSetPasswordIsOneStep: SetPassword stores the new password and
// revokes the user's sessions in one durable step. When the revocation
// cannot be written, the old password still works and the sessions stay
// live: never a new password with the old sessions alive.
func TestAdminSetPasswordIsOneStep(t *testing.T) {
	a := newAdminEnv(t, func(s storage.Store) storage.Store { return revocationFailingStore{s} })
	u := a.createUser("bob@example.com", "bob-password-1", "user")
	ictx := a.introspector()
	tp := a.login("bob@example.com", "bob-password-1")

	_, err := a.admin.SetPassword(a.adminCtx, &latchv1.SetPasswordRequest{UserId: u.GetId(), Password: "bob-password-2"})
	wantStatus(t, err, codes.Internal, "internal error")
	if !a.active(ictx, tp.GetAccessToken()) {
		t.Error("the session was revoked although SetPassword failed")
	}
	if _, err := a.client.Login(ctxT(t), &latchv1.LoginRequest{Email: "bob@example.com", Password: "bob-password-2"}); err == nil {
		t.Error("the new password works, and the old sessions are still live")
	}
	a.login("bob@example.com", "bob-password-1")
}

// TestAdminSetPasswordRevokesAndAnnounces: on bbolt and on etcd,
// SetPassword (of an enabled and of a disabled user) revokes every live
// session, announces each to WatchRevocations, logs the audit events, and
// the new password works where the old one no longer does.
func TestAdminSetPasswordRevokesAndAnnounces(t *testing.T) {
	for _, backend := range []string{"bbolt", "etcd"} {
		t.Run(backend, func(t *testing.T) {
			var wrappers []wrap
			if backend == "etcd" {
				srv := etcdtest.Start(t)
				wrappers = append(wrappers, func(b storage.Store) storage.Store {
					b.Close()
					s, err := etcd.Open(ctxT(t), etcd.Config{Endpoints: srv.Endpoints(), Prefix: "/setpw/"})
					if err != nil {
						t.Fatal(err)
					}
					return s
				})
			}
			a := newAdminEnv(t, wrappers...)
			ictx := a.introspector()
			watch, err := a.client.WatchRevocations(ictx, &latchv1.WatchRevocationsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := watch.Header(); err != nil {
				t.Fatal(err)
			}
			for i, disable := range []bool{false, true} {
				email := fmt.Sprintf("user%d@example.com", i)
				u := a.createUser(email, "old-password-1", "user")
				tps := []*latchv1.TokenPair{a.login(email, "old-password-1"), a.login(email, "old-password-1")}
				if disable { // in the store only: its sessions stay live, and are the reset's to revoke
					if _, err := a.store.UpdateUser(ctxT(t), u.GetId(), func(u *storage.User) error { u.Disabled = true; return nil }); err != nil {
						t.Fatal(err)
					}
				}
				resp, err := a.admin.SetPassword(a.adminCtx, &latchv1.SetPasswordRequest{UserId: u.GetId(), Password: "new-password-1"})
				if err != nil || resp.GetRevokedSessions() != 2 || resp.GetUser().GetId() != u.GetId() || resp.GetUser().GetDisabled() != disable {
					t.Fatalf("SetPassword (disabled %v) = %v, %v; want the user and 2 sessions revoked", disable, resp, err)
				}
				announced := map[string]bool{}
				for range tps {
					announced[recv(t, watch).GetSessionId()] = true
				}
				for _, tp := range tps {
					if !announced[tp.GetSessionId()] {
						t.Errorf("session %s not announced to WatchRevocations (got %v)", tp.GetSessionId(), announced)
					}
					if a.active(ictx, tp.GetAccessToken()) {
						t.Error("access token active after SetPassword")
					}
					_, err := a.client.Refresh(ctxT(t), &latchv1.RefreshRequest{RefreshToken: tp.GetRefreshToken()})
					wantStatus(t, err, codes.Unauthenticated, "invalid refresh token")
				}
				if disable {
					if _, err := a.admin.UpdateUser(a.adminCtx, &latchv1.UpdateUserRequest{UserId: u.GetId(), Disabled: proto.Bool(false)}); err != nil {
						t.Fatal(err)
					}
				}
				_, err = a.client.Login(ctxT(t), &latchv1.LoginRequest{Email: email, Password: "old-password-1"})
				wantStatus(t, err, codes.Unauthenticated, "invalid email or password")
				a.login(email, "new-password-1")
			}
			for _, ev := range []string{`"event":"admin_password_set"`, `"event":"admin_sessions_revoked"`} {
				if strings.Count(a.logs.String(), ev) != 2 {
					t.Errorf("log holds %d records %s, want 2:\n%s", strings.Count(a.logs.String(), ev), ev, a.logs.String())
				}
			}
		})
	}
}
