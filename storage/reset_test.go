package storage_test

import (
	"errors"
	"testing"
	"time"

	"github.com/latchauth/latch/storage"
)

// TestSessionResetByAdminKeepsNothing: an administrator's reset, which
// applies to a disabled user, may not keep or rotate a session.
func TestSessionResetByAdminKeepsNothing(t *testing.T) {
	r := storage.SessionReset{UserID: "u1", Reason: storage.ReasonUserChanged, Now: time.Unix(1, 0),
		NewPasswordHash: "h", ByAdmin: true}
	if err := r.Validate(); err != nil {
		t.Fatalf("admin reset without a kept session: %v", err)
	}
	r.Keep = "s1"
	if err := r.Validate(); !errors.Is(err, storage.ErrInvalidArgument) {
		t.Fatalf("admin reset keeping a session: %v, want ErrInvalidArgument", err)
	}
}
