package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/latchauth/latch/internal/password"
	"google.golang.org/grpc/codes"
)

// TestOutcomes: every error a Login or Refresh can end with lands in the
// outcome its metric documents, wrapped or not.
func TestOutcomes(t *testing.T) {
	login := map[error]string{
		nil:                                      LoginSuccess,
		failure(codes.Unauthenticated, "x"):      LoginInvalidCredentials,
		invalidArg("x"):                          LoginInvalidRequest,
		rateLimited(1):                           LoginRateLimited,
		fmt.Errorf("hash: %w", password.ErrBusy): LoginBusy,
		errors.New("disk on fire"):               LoginError,
		context.Canceled:                         LoginError,
	}
	for err, want := range login {
		if got := loginOutcome(err); got != want {
			t.Errorf("loginOutcome(%v) = %q, want %q", err, got, want)
		}
	}
	refresh := map[error]string{
		nil:                                 RefreshRotated,
		failure(codes.Unauthenticated, "x"): RefreshInvalid,
		withOutcome(failure(codes.Unauthenticated, "x"), RefreshReuseDetected): RefreshReuseDetected,
		invalidArg("x"):            RefreshBadRequest,
		errors.New("disk on fire"): RefreshError,
	}
	for err, want := range refresh {
		if got := refreshOutcome(err); got != want {
			t.Errorf("refreshOutcome(%v) = %q, want %q", err, got, want)
		}
	}
}
