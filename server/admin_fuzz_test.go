package server_test

import (
	"context"
	"strings"
	"testing"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// FuzzAdminRequestValidation drives every AdminService method that takes
// input with arbitrary field values, as an administrator, over gRPC through
// the real interceptor chain on a real bbolt store. Whatever arrives: no panic, never INTERNAL (an administrator's
// typo is not the server's fault), only the codes the contract lists, and no
// message that repeats the password it was given.
func FuzzAdminRequestValidation(f *testing.F) {
	f.Add("bob@example.com", "bob-password-1", "user", "u1", "", int32(0), false)
	f.Add("Eve <eve@example.com>", "short", "has space", "", "dTE6", int32(-1), true)
	f.Add(strings.Repeat("e", 300)+"@example.com", strings.Repeat("p", 1100), strings.Repeat("r", 65), strings.Repeat("i", 200), "!!", int32(1<<30), true)
	f.Add("al\xffice@example.com", "pa\x00ss-word", "\x00", "id\xff", "u1:\xff", int32(3), false)
	f.Add("root@example.com", "root-password", "admin", "admin-id", "", int32(1), true)

	// The acting administrator has an id no input names, so that no input
	// revokes its own credential; "admin-id" is another administrator, a
	// target like "u1".
	e := newEnv(f, baseConfig())
	e.addUser("root@example.com", adminPW, server.RoleAdmin)
	for _, u := range []storage.User{{ID: "admin-id", Email: "other-admin@example.com", Roles: []string{server.RoleAdmin}}, {ID: "u1", Email: "u1@example.com"}} {
		if err := e.store.CreateUser(context.Background(), u); err != nil {
			f.Fatal(err)
		}
	}
	a := latchv1.NewAdminServiceClient(e.conn)
	tok := e.loginSelf("root@example.com", adminPW).GetAccessToken()

	allowed := map[codes.Code]bool{codes.OK: true, codes.InvalidArgument: true, codes.NotFound: true,
		codes.AlreadyExists: true, codes.FailedPrecondition: true, codes.ResourceExhausted: true}
	f.Fuzz(func(t *testing.T, email, pw, role, id, pageToken string, pageSize int32, flag bool) {
		ctx := bearerCtx(t, tok)
		check := func(rpc string, err error) {
			t.Helper()
			st := status.Convert(err)
			if !allowed[st.Code()] {
				t.Fatalf("%s answered %v %q", rpc, st.Code(), st.Message())
			}
			if len(pw) >= 4 && strings.Contains(st.Message(), pw) {
				t.Fatalf("%s repeats the password in %q", rpc, st.Message())
			}
		}
		_, err := a.CreateUser(ctx, &latchv1.CreateUserRequest{Email: email, Password: pw, Roles: []string{role}, Disabled: flag})
		check("CreateUser", err)
		_, err = a.GetUser(ctx, &latchv1.GetUserRequest{Lookup: &latchv1.GetUserRequest_UserId{UserId: id}})
		check("GetUser(id)", err)
		_, err = a.GetUser(ctx, &latchv1.GetUserRequest{Lookup: &latchv1.GetUserRequest_Email{Email: email}})
		check("GetUser(email)", err)
		_, err = a.ListUsers(ctx, &latchv1.ListUsersRequest{PageSize: pageSize, PageToken: pageToken})
		check("ListUsers", err)
		req := &latchv1.UpdateUserRequest{UserId: id, Roles: &latchv1.RoleList{Roles: []string{role}}}
		if flag {
			req.Email, req.Disabled = proto.String(email), proto.Bool(true)
		}
		_, err = a.UpdateUser(ctx, req)
		check("UpdateUser", err)
		_, err = a.SetPassword(ctx, &latchv1.SetPasswordRequest{UserId: id, Password: pw, KeepSessions: flag})
		check("SetPassword", err)
		_, err = a.ListSessions(ctx, &latchv1.ListSessionsRequest{UserId: id})
		check("ListSessions", err)
		_, err = a.RevokeSession(ctx, &latchv1.RevokeSessionRequest{SessionId: id})
		check("RevokeSession", err)
		_, err = a.RevokeUserSessions(ctx, &latchv1.RevokeUserSessionsRequest{UserId: id})
		check("RevokeUserSessions", err)
		if id != "u1" { // keep the fixture user for the next inputs
			_, err = a.DeleteUser(ctx, &latchv1.DeleteUserRequest{UserId: id})
			check("DeleteUser", err)
		}
	})
}
