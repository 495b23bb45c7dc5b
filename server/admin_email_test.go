package server_test

import (
	"context"
	"testing"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc/codes"
)

// TestAdminGetUserEmailNotUTF8: GetUser by an email that is not UTF-8 is
// INVALID_ARGUMENT, even when lower-casing it (which turns the bad byte into
// U+FFFD) would name a stored user.
func TestAdminGetUserEmailNotUTF8(t *testing.T) {
	e := newEnv(t, baseConfig())
	admin := e.addUser("root@example.com", "root-password", server.RoleAdmin)
	if err := e.store.CreateUser(ctxT(t), storage.User{ID: "u-fffd", Email: "al\uFFFDice@example.com"}); err != nil {
		t.Fatal(err)
	}
	a := server.NewAdminServer(e.srv)
	ctx := interceptors.ContextWithClaims(context.Background(), tokens.Claims{Subject: admin.ID, Roles: []string{server.RoleAdmin}})

	resp, err := a.GetUser(ctx, &latchv1.GetUserRequest{Lookup: &latchv1.GetUserRequest_Email{Email: "AL\xffice@example.com"}})
	wantStatus(t, err, codes.InvalidArgument, "email is not UTF-8")
	if resp.GetUser() != nil {
		t.Errorf("invalid UTF-8 email found user %v", resp.GetUser())
	}
	// Control: the stored address itself is found.
	if resp, err := a.GetUser(ctx, &latchv1.GetUserRequest{Lookup: &latchv1.GetUserRequest_Email{Email: "al\uFFFDice@example.com"}}); err != nil || resp.GetUser().GetId() != "u-fffd" {
		t.Errorf("GetUser(stored address) = %v, %v", resp.GetUser(), err)
	}
}
