package server_test

import (
	"testing"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/storage"
	"google.golang.org/grpc/codes"
)

// TestAdminGetUserEmailNotUTF8: GetUser by an email that is not UTF-8 is
// INVALID_ARGUMENT, even when lower-casing it (which turns the bad byte into
// U+FFFD) would name a stored user.
func TestAdminGetUserEmailNotUTF8(t *testing.T) {
	a := newAdminEnv(t)
	if err := a.store.CreateUser(ctxT(t), storage.User{ID: "u-fffd", Email: "al\uFFFDice@example.com"}); err != nil {
		t.Fatal(err)
	}
	ctx := a.adminCtx

	resp, err := a.admin.GetUser(ctx, &latchv1.GetUserRequest{Lookup: &latchv1.GetUserRequest_Email{Email: "AL\xffice@example.com"}})
	wantStatus(t, err, codes.InvalidArgument, "email is not UTF-8")
	if resp.GetUser() != nil {
		t.Errorf("invalid UTF-8 email found user %v", resp.GetUser())
	}
	// Control: the stored address itself is found.
	if resp, err := a.admin.GetUser(ctx, &latchv1.GetUserRequest{Lookup: &latchv1.GetUserRequest_Email{Email: "al\uFFFDice@example.com"}}); err != nil || resp.GetUser().GetId() != "u-fffd" {
		t.Errorf("GetUser(stored address) = %v, %v", resp.GetUser(), err)
	}
}
