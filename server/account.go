package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
)

// Client-visible messages of AccountService.
const (
	msgWrongPassword  = "current password is incorrect"
	msgSessionEnded   = "the caller's session has ended; log in again"
	msgPasswordRaced  = "the password was changed by another request meanwhile; nothing was changed"
	maxDeviceName     = 64
	userAgentMetadata = "user-agent"
)

// accountServer implements latchv1.AccountServiceServer over a Server. The
// access table (authz.go) admits a caller with any valid token for Latch's
// own audience; every method acts on that token's subject and session only.
type accountServer struct {
	latchv1.UnimplementedAccountServiceServer
	s *Server
}

var _ latchv1.AccountServiceServer = (*accountServer)(nil)

// audit logs one change a person made to their own account, with its
// stable event name. Attributes are ids, counts and flags, never a secret.
func (a *accountServer) audit(ctx context.Context, event, msg string, caller tokens.Claims, attrs ...slog.Attr) {
	attrs = append([]slog.Attr{slog.String("event", event), slog.String("user_id", caller.Subject),
		slog.String("session_id", caller.SessionID), slog.String("peer", a.s.clientAddr(ctx).String())}, attrs...)
	a.s.log.LogAttrs(ctx, slog.LevelInfo, msg, attrs...)
}

// revoked announces sessions the caller ended to WatchRevocations streams
// (and so to verifiers that follow them), counts them and logs them in one
// record. Their number is bounded by the account's live-session cap.
func (a *accountServer) revoked(ctx context.Context, caller tokens.Claims, reason string, sessions ...storage.Session) {
	ids := a.s.announce(RevokedSession, sessions...)
	a.audit(ctx, "account_sessions_revoked", "sessions revoked by their owner", caller,
		slog.String("reason", reason), slog.Int("count", len(sessions)), slog.Any("session_ids", ids))
}

// ListMySessions implements latchv1.AccountServiceServer.
func (a *accountServer) ListMySessions(ctx context.Context, _ *latchv1.ListMySessionsRequest) (*latchv1.ListMySessionsResponse, error) {
	return serveCaller(ctx, a.s, func(caller tokens.Claims) (*latchv1.ListMySessionsResponse, error) {
		all, err := a.s.store.ListUserSessions(ctx, caller.Subject)
		if err != nil {
			return nil, fmt.Errorf("list own sessions: %w", err)
		}
		now := a.s.now()
		live := slices.DeleteFunc(all, func(sess storage.Session) bool { return !sess.Live(now) }) // newest first
		return &latchv1.ListMySessionsResponse{CurrentSessionId: caller.SessionID,
			Sessions: sessionsProto(live[:min(len(live), maxListedSessions)], now)}, nil
	})
}

// RevokeMySession implements latchv1.AccountServiceServer.
func (a *accountServer) RevokeMySession(ctx context.Context, req *latchv1.RevokeMySessionRequest) (*latchv1.RevokeMySessionResponse, error) {
	return serveCaller(ctx, a.s, func(caller tokens.Claims) (*latchv1.RevokeMySessionResponse, error) {
		now := a.s.now().UTC()
		sess, changed, err := a.s.revokeSessionID(ctx, req.GetSessionId(), caller.Subject, storage.ReasonSignedOut, now)
		if err != nil {
			return nil, err
		}
		if changed {
			a.revoked(ctx, caller, storage.ReasonSignedOut, sess)
		}
		return &latchv1.RevokeMySessionResponse{Session: sessionProto(sess, now)}, nil
	})
}

// RevokeMySessions implements latchv1.AccountServiceServer.
func (a *accountServer) RevokeMySessions(ctx context.Context, req *latchv1.RevokeMySessionsRequest) (*latchv1.RevokeMySessionsResponse, error) {
	return serveCaller(ctx, a.s, func(caller tokens.Claims) (*latchv1.RevokeMySessionsResponse, error) {
		r := storage.SessionReset{UserID: caller.Subject, Reason: storage.ReasonSignedOut, Now: a.s.now().UTC()}
		if !req.GetIncludeCurrent() {
			r.Keep = caller.SessionID
		}
		_, revoked, err := a.s.store.ResetSessions(ctx, r)
		if err != nil {
			return nil, resetFailure(err)
		}
		a.revoked(ctx, caller, storage.ReasonSignedOut, revoked...)
		return &latchv1.RevokeMySessionsResponse{Revoked: sessionsProto(revoked, r.Now)}, nil
	})
}

// resetFailure maps a refused ResetSessions of the caller's own account:
// the caller's session or account ended while the call ran (its token was
// valid when the call began), or the password changed meanwhile.
func resetFailure(err error) error {
	switch {
	case errors.Is(err, storage.ErrSessionRevoked), errors.Is(err, storage.ErrSessionExpired),
		errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrUserDisabled):
		return failure(codes.FailedPrecondition, msgSessionEnded)
	case errors.Is(err, storage.ErrConflict):
		return failure(codes.FailedPrecondition, msgPasswordRaced)
	}
	return fmt.Errorf("reset own sessions: %w", err)
}

// ChangeMyPassword implements latchv1.AccountServiceServer.
func (a *accountServer) ChangeMyPassword(ctx context.Context, req *latchv1.ChangeMyPasswordRequest) (*latchv1.ChangeMyPasswordResponse, error) {
	return serveCaller(ctx, a.s, func(caller tokens.Claims) (*latchv1.ChangeMyPasswordResponse, error) {
		return a.changeMyPassword(ctx, caller, req)
	})
}

// changeMyPassword checks the caller's current password as Login does,
// stores the new hash and ends the account's other sessions in one
// ResetSessions, and rotates the caller's own session unless the request
// ends it too.
func (a *accountServer) changeMyPassword(ctx context.Context, caller tokens.Claims, req *latchv1.ChangeMyPasswordRequest) (*latchv1.ChangeMyPasswordResponse, error) {
	current := req.GetCurrentPassword()
	switch {
	case current == "":
		return nil, invalidArg("current_password is required")
	case len(current) > password.MaxLength:
		return nil, invalidArg("current_password " + msgTooLongInField + " (1024 bytes)")
	}
	if err := checkUTF8(reqField{"current_password", current}); err != nil {
		return nil, err
	}
	if err := checkNewPassword(req.GetNewPassword()); err != nil {
		return nil, invalidArg("new_" + msgBadPassword)
	}
	s := a.s
	user, err := s.store.GetUser(ctx, caller.Subject)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, failure(codes.FailedPrecondition, msgSessionEnded)
	}
	if err != nil {
		return nil, fmt.Errorf("get own user: %w", err)
	}

	// The current password is checked as Login checks it: charged to the
	// same buckets (this address, the account's shared failure budget and
	// its login rate) before it is hashed, and a right one gives back only
	// the failure token.
	addr := s.clientAddr(ctx)
	charges := s.loginCharges(user.Email, user, "", addr)
	ticket, err := s.takeLogin(ctx, charges, addr)
	if err != nil {
		return nil, err
	}
	defer ticket.slot.Release() // a panic in the check must not keep the slot
	ok, _, err := ticket.slot.Verify(current, user.PasswordHash)
	ticket.slot.Release() // before the new password is hashed in a slot of its own
	if err != nil {
		return nil, fmt.Errorf("verify password of user %s: %w", user.ID, err)
	}
	if !ok || user.Disabled {
		reason := "wrong_password"
		if ok {
			reason = "user_disabled"
		}
		a.audit(ctx, "account_password_change_failed", "password change refused", caller, slog.String("reason", reason))
		return nil, failure(codes.Unauthenticated, msgWrongPassword)
	}
	s.refund(ctx, ticket)

	hash, err := s.hasher.Hash(ctx, req.GetNewPassword())
	if err != nil {
		return nil, fmt.Errorf("hash password: %w", err)
	}
	now := s.now().UTC()
	r := storage.SessionReset{UserID: user.ID, Reason: storage.ReasonUserChanged, Now: now,
		NewPasswordHash: hash, VerifiedPasswordHash: user.PasswordHash}
	var refresh string
	if !req.GetEndCurrentSession() {
		cur, err := s.store.GetSession(ctx, caller.SessionID)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, failure(codes.FailedPrecondition, msgSessionEnded)
		}
		if err != nil {
			return nil, fmt.Errorf("get own session: %w", err)
		}
		next, minted, err := tokens.NewRefreshToken(s.rand, s.refreshKeys.minting(), cur.ID, cur.Generation+1)
		if err != nil {
			return nil, fmt.Errorf("refresh token: %w", err)
		}
		refresh = next
		r.Keep, r.KeepNext, r.IdleTTL = cur.ID, minted.Digest, s.cfg.RefreshIdleTTL
		r.KeepAddr = sessionAddr(addr)
	}
	kept, revoked, err := s.store.ResetSessions(ctx, r)
	if err != nil {
		return nil, resetFailure(err)
	}
	a.audit(ctx, "account_password_changed", "password changed by its owner", caller,
		slog.Bool("end_current_session", req.GetEndCurrentSession()), slog.Int("revoked_sessions", len(revoked)))
	a.revoked(ctx, caller, storage.ReasonUserChanged, revoked...)
	resp := &latchv1.ChangeMyPasswordResponse{RevokedSessions: int32(len(revoked))}
	if kept.ID != "" {
		user.PasswordHash = hash
		if resp.Tokens, err = s.tokenPair(kept, user, refresh, kept.Audience, now); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// userAgent is the client's gRPC user-agent as a session records it:
// every value joined, invalid UTF-8 and control characters replaced by
// U+FFFD, cut to storage.MaxClientInfoLength bytes on a rune boundary. It
// is descriptive only and never a reason to refuse a request.
func userAgent(ctx context.Context) string {
	ua := strings.Join(metadata.ValueFromIncomingContext(ctx, userAgentMetadata), " ")
	ua = strings.ToValidUTF8(ua, "\uFFFD")
	ua = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return utf8.RuneError
		}
		return r
	}, ua)
	return truncateUTF8(ua, storage.MaxClientInfoLength)
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// checkDeviceName refuses a device name longer than 64 bytes, not UTF-8 or
// holding a control character: it is shown to the account's owner as given.
func checkDeviceName(name string) error {
	switch {
	case len(name) > maxDeviceName:
		return invalidArg("device_name " + msgTooLongInField + " (64 bytes)")
	case !utf8.ValidString(name):
		return invalidArg("device_name is not UTF-8")
	case strings.ContainsFunc(name, unicode.IsControl):
		return invalidArg("device_name contains a control character")
	}
	return nil
}

// sessionAddr is a client address as a session records it: empty when the
// transport gave none.
func sessionAddr(a clientAddress) string {
	if !a.ip.IsValid() {
		return ""
	}
	return a.ip.String()
}
