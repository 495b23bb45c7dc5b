package server

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// RoleAdmin is the role every AdminService method requires.
const RoleAdmin = "admin"

// Limits of administration requests. Larger values are refused with
// INVALID_ARGUMENT before any work is done.
const (
	defaultPageSize = 50
	maxPageSize     = 500
	maxIDLength     = 128 // user and session ids (Latch's own are 22 bytes)
	maxRoles        = 32
	maxRoleLength   = 64
	maxPageToken    = 1024
	// maxListedSessions bounds ListSessions' answer (a service account
	// logging in for every job can pile up sessions).
	maxListedSessions = 1000
)

// Client-visible messages of AdminService. Like every message of Latch they
// name what is wrong, never a secret.
const (
	msgUserNotFound    = "user not found"
	msgSessionNotFound = "session not found"
	msgEmailTaken      = "a user with this email already exists"
	msgNotAdmin        = "caller is not an enabled administrator"
	msgBadPageToken    = "page_token is not one this service issued"
	msgBadPassword     = "password must be 8 to 1024 bytes of UTF-8"
	msgSelfLockout     = "an administrator cannot disable, demote or delete themself; ask another administrator"
)

// adminServer implements latchv1.AdminServiceServer over a Server: its
// store, password hasher and policy, clock, revocation broadcaster and
// logger. NewGRPCServer serves it behind the access table (authz.go), which
// admits only callers who hold role admin in their token and, in storage,
// now.
type adminServer struct {
	latchv1.UnimplementedAdminServiceServer
	s *Server
}

var _ latchv1.AdminServiceServer = (*adminServer)(nil)

// storeErr is a failed storage call's error: NOT_FOUND with notFound for
// storage.ErrNotFound, ALREADY_EXISTS for a taken email, else err wrapped
// with what was being done.
func storeErr(err error, notFound, what string) error {
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return failure(codes.NotFound, notFound)
	case errors.Is(err, storage.ErrAlreadyExists):
		return failure(codes.AlreadyExists, msgEmailTaken)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// audit logs one administrative change with its stable event name and the
// acting admin. Attributes are ids, counts and flags, never a secret.
func (a *adminServer) audit(ctx context.Context, event, msg string, caller tokens.Claims, attrs ...slog.Attr) {
	attrs = append([]slog.Attr{slog.String("event", event), slog.String("actor", caller.Subject),
		slog.String("peer", a.s.clientAddr(ctx).String())}, attrs...)
	a.s.log.LogAttrs(ctx, slog.LevelInfo, msg, attrs...)
}

// --- validation ---

func checkID(field, id string) error {
	switch {
	case id == "":
		return invalidArg(field + " is required")
	case len(id) > maxIDLength:
		return invalidArg(field + " " + msgTooLongInField + " (128 bytes)")
	}
	if err := checkUTF8(reqField{field, id}); err != nil {
		return err
	}
	if strings.ContainsFunc(id, unicode.IsControl) {
		// Latch's ids are printable; a control character (NUL among them,
		// which no backend stores) cannot name anything.
		return invalidArg(field + " contains a control character")
	}
	return nil
}

// parseEmail checks an email a request names (UTF-8, present, at most 254
// bytes) and returns its normalised form. UTF-8 is checked before
// normalising: lower-casing turns invalid UTF-8 into U+FFFD, which would
// name another address.
func parseEmail(raw string) (string, error) {
	if !utf8.ValidString(raw) {
		return "", errors.New("email is not UTF-8")
	}
	switch email := NormalizeEmail(raw); {
	case email == "":
		return "", errors.New("email is required")
	case len(email) > maxEmailLength:
		return "", errors.New("email " + msgTooLongInField + " (254 bytes)")
	default:
		return email, nil
	}
}

// ParseNewEmail normalises an email that is about to be stored (by an
// administrator, the admin bootstrap or `latch user add`) and checks that it
// is one plain address: no display name, no list, at most 254 bytes. It is
// the one email policy for new accounts; its error messages name only the
// rule that failed.
func ParseNewEmail(raw string) (string, error) {
	email, err := parseEmail(raw)
	if err != nil {
		return "", err
	}
	if addr, err := mail.ParseAddress(email); err != nil || addr.Address != email {
		return "", errors.New("email is not a plain address like name@example.com")
	}
	return email, nil
}

// ParseRoles checks roles for a new or updated account (at most 32, each 1
// to 64 of [A-Za-z0-9._:-]) and returns them sorted without duplicates. It
// is the one role policy for AdminService and `latch user add`.
func ParseRoles(roles []string) ([]string, error) {
	if len(roles) > maxRoles {
		return nil, fmt.Errorf("at most %d roles", maxRoles)
	}
	for _, r := range roles {
		if r == "" || len(r) > maxRoleLength || strings.ContainsFunc(r, func(c rune) bool {
			return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._:-", c))
		}) {
			return nil, errors.New("each role must be 1 to 64 of the characters A-Z a-z 0-9 . _ : -")
		}
	}
	out := slices.Clone(roles)
	slices.Sort(out)
	return slices.Compact(out), nil
}

func checkNewPassword(pw string) error {
	if !utf8.ValidString(pw) || password.CheckLength(pw) != nil {
		return errors.New(msgBadPassword)
	}
	return nil
}

// asInvalid is a validation error as INVALID_ARGUMENT with its message; a
// client error stays as it is.
func asInvalid(err error) error {
	if ce := (*clientError)(nil); errors.As(err, &ce) {
		return err
	}
	return invalidArg(err.Error())
}

// Page tokens are opaque to clients: a version prefix and the last id of
// the previous page, base64url. They carry no secret, and a tampered one
// only starts the listing elsewhere, which an admin may do anyway.
const pageTokenPrefix = "u1:"

func encodePageToken(afterID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + afterID))
}

func decodePageToken(tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	// encoding/base64 skips '\r' and '\n' even in Strict mode: refuse them
	// so that one page has one token.
	if len(tok) > maxPageToken || strings.ContainsAny(tok, "\r\n") {
		return "", invalidArg(msgBadPageToken)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(tok)
	after, ok := strings.CutPrefix(string(raw), pageTokenPrefix)
	if err != nil || !ok || after == "" {
		return "", invalidArg(msgBadPageToken)
	}
	return after, nil
}

// --- conversions (never a password hash or refresh digest) ---

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func userProto(u storage.User) *latchv1.User {
	return &latchv1.User{Id: u.ID, Email: u.Email, Roles: slices.Clone(u.Roles), Disabled: u.Disabled,
		CreateTime: ts(u.CreatedAt), UpdateTime: ts(u.UpdatedAt)}
}

func sessionProto(sess storage.Session, now time.Time) *latchv1.Session {
	state := latchv1.SessionState_SESSION_STATE_LIVE
	switch {
	case sess.Revoked():
		state = latchv1.SessionState_SESSION_STATE_REVOKED
	case !sess.Live(now):
		state = latchv1.SessionState_SESSION_STATE_EXPIRED
	}
	return &latchv1.Session{Id: sess.ID, UserId: sess.UserID, Audience: sess.Audience, State: state,
		Generation: sess.Generation, CreateTime: ts(sess.CreatedAt), LastRotateTime: ts(sess.LastRotatedAt),
		ExpireTime: ts(sess.ExpiresAt()), RevokeTime: ts(sess.RevokedAt), RevokeReason: sess.RevokeReason,
		UserAgent: sess.UserAgent, DeviceName: sess.DeviceName, LoginAddress: sess.LoginAddr, LastAddress: sess.LastAddr}
}

func sessionsProto(ss []storage.Session, now time.Time) []*latchv1.Session {
	out := make([]*latchv1.Session, len(ss))
	for i, sess := range ss {
		out[i] = sessionProto(sess, now)
	}
	return out
}

var keyStateProto = map[storage.KeyState]latchv1.SigningKeyState{
	storage.KeyNext:    latchv1.SigningKeyState_SIGNING_KEY_STATE_NEXT,
	storage.KeyActive:  latchv1.SigningKeyState_SIGNING_KEY_STATE_ACTIVE,
	storage.KeyRetired: latchv1.SigningKeyState_SIGNING_KEY_STATE_RETIRED,
}

func jwkProto(j tokens.JWK) *latchv1.JSONWebKey {
	return &latchv1.JSONWebKey{Kty: j.Kty, Crv: j.Crv, X: j.X, Y: j.Y, Kid: j.Kid, Alg: j.Alg, Use: j.Use}
}

func keysProto(keys []KeyInfo) []*latchv1.SigningKey {
	out := make([]*latchv1.SigningKey, len(keys))
	for i, k := range keys {
		out[i] = &latchv1.SigningKey{
			Kid: k.ID, State: keyStateProto[k.State], PublicKey: jwkProto(k.PublicJWK),
			CreateTime: ts(k.CreatedAt), ActivateTime: ts(k.ActivatedAt), RetireTime: ts(k.RetiredAt),
			ScheduledActivateTime: ts(k.ActivatesAt), RemoveTime: ts(k.RemovedAt),
		}
	}
	return out
}

// revokeUser revokes every live session of user id for reason and
// announces them.
func (a *adminServer) revokeUser(ctx context.Context, caller tokens.Claims, id, reason string, now time.Time) ([]storage.Session, error) {
	sessions, err := a.s.store.RevokeUserSessions(ctx, id, reason, now)
	if err != nil {
		return nil, fmt.Errorf("revoke user sessions: %w", err)
	}
	a.revoked(ctx, caller, id, reason, sessions)
	return sessions, nil
}

// revoked announces sessions an administrator revoked to WatchRevocations
// streams (and so to verifiers that follow them), and logs them.
func (a *adminServer) revoked(ctx context.Context, caller tokens.Claims, userID, reason string, sessions []storage.Session) {
	ids := a.s.announce(RevokedAdmin, sessions...)
	if len(sessions) > 0 {
		a.audit(ctx, "admin_sessions_revoked", "sessions revoked", caller, slog.String("user_id", userID),
			slog.String("reason", reason), slog.Int("count", len(sessions)), slog.Any("session_ids", ids))
	}
}

// --- handlers ---

// CreateUser implements latchv1.AdminServiceServer.
func (a *adminServer) CreateUser(ctx context.Context, req *latchv1.CreateUserRequest) (*latchv1.CreateUserResponse, error) {
	return serveCaller(ctx, a.s, func(caller tokens.Claims) (*latchv1.CreateUserResponse, error) {
		email, emailErr := ParseNewEmail(req.GetEmail())
		roles, rolesErr := ParseRoles(req.GetRoles())
		if err := cmp.Or(emailErr, checkNewPassword(req.GetPassword()), rolesErr); err != nil {
			return nil, asInvalid(err)
		}
		// A taken email is refused before the hash is spent on it (CreateUser
		// below still catches a race).
		if _, err := a.s.store.GetUserByEmail(ctx, email); err == nil {
			return nil, failure(codes.AlreadyExists, msgEmailTaken)
		} else if !errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("get user by email: %w", err)
		}
		u, err := AddUser(ctx, a.s.store, a.s.hasher, a.s.rand, a.s.now(), email, req.GetPassword(), roles, req.GetDisabled())
		if err != nil {
			return nil, storeErr(err, msgUserNotFound, "create user")
		}
		a.audit(ctx, "admin_user_created", "user created", caller, slog.String("user_id", u.ID),
			slog.Any("roles", u.Roles), slog.Bool("disabled", u.Disabled))
		return &latchv1.CreateUserResponse{User: userProto(u)}, nil
	})
}

// AddUser hashes pw with hasher and stores in store a new user with a fresh
// id made from rand, created at now. email must already be normalised
// (ParseNewEmail) and roles checked (ParseRoles); a taken email is
// storage.ErrAlreadyExists. It is the one way Latch creates accounts:
// through AdminService, the admin bootstrap and `latch user add`.
func AddUser(ctx context.Context, store storage.UserStore, hasher *password.Hasher, rand io.Reader, now time.Time,
	email, pw string, roles []string, disabled bool) (storage.User, error) {
	id, err := tokens.NewID(rand)
	if err != nil {
		return storage.User{}, fmt.Errorf("user id: %w", err)
	}
	hash, err := hasher.Hash(ctx, pw)
	if err != nil {
		return storage.User{}, fmt.Errorf("hash password: %w", err)
	}
	now = now.UTC()
	u := storage.User{ID: id, Email: email, PasswordHash: hash, Roles: roles, Disabled: disabled, CreatedAt: now, UpdatedAt: now}
	if err := store.CreateUser(ctx, u); err != nil {
		return storage.User{}, fmt.Errorf("create user: %w", err)
	}
	return u, nil
}

// GetUser implements latchv1.AdminServiceServer.
func (a *adminServer) GetUser(ctx context.Context, req *latchv1.GetUserRequest) (*latchv1.GetUserResponse, error) {
	return serveCaller(ctx, a.s, func(tokens.Claims) (*latchv1.GetUserResponse, error) {
		var u storage.User
		switch l := req.GetLookup().(type) {
		case *latchv1.GetUserRequest_UserId:
			if err := checkID("user_id", l.UserId); err != nil {
				return nil, err
			}
			var err error
			if u, err = a.s.store.GetUser(ctx, l.UserId); err != nil {
				return nil, storeErr(err, msgUserNotFound, "get user")
			}
		case *latchv1.GetUserRequest_Email:
			email, err := parseEmail(l.Email)
			if err != nil {
				return nil, asInvalid(err)
			}
			if u, err = a.s.store.GetUserByEmail(ctx, email); err != nil {
				return nil, storeErr(err, msgUserNotFound, "get user by email")
			}
		default:
			return nil, invalidArg("user_id or email is required")
		}
		return &latchv1.GetUserResponse{User: userProto(u)}, nil
	})
}

// ListUsers implements latchv1.AdminServiceServer.
func (a *adminServer) ListUsers(ctx context.Context, req *latchv1.ListUsersRequest) (*latchv1.ListUsersResponse, error) {
	return serveCaller(ctx, a.s, func(tokens.Claims) (*latchv1.ListUsersResponse, error) {
		size := int(req.GetPageSize())
		if size < 0 {
			return nil, invalidArg("page_size must not be negative")
		}
		size = min(cmp.Or(size, defaultPageSize), maxPageSize)
		after, err := decodePageToken(req.GetPageToken())
		if err != nil {
			return nil, err
		}
		// One more than asked for tells whether another page follows, so
		// the last page never comes with a token to an empty one.
		users, err := a.s.store.ListUsers(ctx, after, size+1)
		if err != nil {
			return nil, fmt.Errorf("list users: %w", err)
		}
		resp := &latchv1.ListUsersResponse{}
		if len(users) > size {
			users = users[:size]
			resp.NextPageToken = encodePageToken(users[size-1].ID)
		}
		for _, u := range users {
			resp.Users = append(resp.Users, userProto(u))
		}
		return resp, nil
	})
}

// UpdateUser implements latchv1.AdminServiceServer.
func (a *adminServer) UpdateUser(ctx context.Context, req *latchv1.UpdateUserRequest) (*latchv1.UpdateUserResponse, error) {
	return serveCaller(ctx, a.s, func(caller tokens.Claims) (*latchv1.UpdateUserResponse, error) {
		id := req.GetUserId()
		if err := checkID("user_id", id); err != nil {
			return nil, err
		}
		if req.Roles == nil && req.Disabled == nil && req.Email == nil {
			return nil, invalidArg("nothing to change: set roles, disabled or email")
		}
		var roles []string
		var email string
		var rolesErr, emailErr error
		if req.Roles != nil {
			roles, rolesErr = ParseRoles(req.GetRoles().GetRoles())
		}
		if req.Email != nil {
			email, emailErr = ParseNewEmail(req.GetEmail())
		}
		if err := cmp.Or(rolesErr, emailErr); err != nil {
			return nil, asInvalid(err)
		}
		if id == caller.Subject && (req.GetDisabled() || (req.Roles != nil && !slices.Contains(roles, RoleAdmin))) {
			return nil, failure(codes.FailedPrecondition, msgSelfLockout)
		}
		now := a.s.now().UTC()
		var changed []string
		u, err := a.s.store.UpdateUser(ctx, id, func(u *storage.User) error {
			changed = changed[:0] // the store may call fn again
			if req.Roles != nil && !slices.Equal(u.Roles, roles) {
				u.Roles = slices.Clone(roles)
				changed = append(changed, "roles")
			}
			if req.Disabled != nil && u.Disabled != req.GetDisabled() {
				u.Disabled = req.GetDisabled()
				changed = append(changed, "disabled")
			}
			if req.Email != nil && u.Email != email {
				u.Email = email
				changed = append(changed, "email")
			}
			if len(changed) > 0 {
				u.UpdatedAt = now
			}
			return nil
		})
		if err != nil {
			return nil, storeErr(err, msgUserNotFound, "update user")
		}
		a.audit(ctx, "admin_user_updated", "user updated", caller, slog.String("user_id", u.ID),
			slog.Any("changed", changed), slog.Any("roles", u.Roles), slog.Bool("disabled", u.Disabled))
		resp := &latchv1.UpdateUserResponse{User: userProto(u)}
		// Disabling ends every session, also one a Login racing this call
		// may have created after an earlier disable (the call is idempotent).
		if req.GetDisabled() {
			revoked, err := a.revokeUser(ctx, caller, id, storage.ReasonUserChanged, now)
			if err != nil {
				return nil, err
			}
			resp.RevokedSessions = int32(len(revoked))
		}
		return resp, nil
	})
}

// SetPassword implements latchv1.AdminServiceServer.
func (a *adminServer) SetPassword(ctx context.Context, req *latchv1.SetPasswordRequest) (*latchv1.SetPasswordResponse, error) {
	return serveCaller(ctx, a.s, func(caller tokens.Claims) (*latchv1.SetPasswordResponse, error) {
		id := req.GetUserId()
		if err := cmp.Or(checkID("user_id", id), checkNewPassword(req.GetPassword())); err != nil {
			return nil, asInvalid(err)
		}
		// An unknown user is refused before the hash is spent on it.
		u, err := a.s.store.GetUser(ctx, id)
		if err != nil {
			return nil, storeErr(err, msgUserNotFound, "get user")
		}
		hash, err := a.s.hasher.Hash(ctx, req.GetPassword())
		if err != nil {
			return nil, fmt.Errorf("hash password: %w", err)
		}
		now := a.s.now().UTC()
		var revoked []storage.Session
		if req.GetKeepSessions() {
			u, err = a.s.store.UpdateUser(ctx, id, func(u *storage.User) error {
				u.PasswordHash, u.UpdatedAt = hash, now
				return nil
			})
		} else {
			// The new hash and the revocations are one durable step: no
			// crash leaves the new password with the old sessions live.
			// The answer is the user as read above with that change: a
			// read after the commit could fail and report it as not done.
			_, revoked, err = a.s.store.ResetSessions(ctx, storage.SessionReset{UserID: id, Reason: storage.ReasonUserChanged,
				Now: now, NewPasswordHash: hash, ByAdmin: true})
			u.PasswordHash, u.UpdatedAt = hash, now
		}
		if err != nil {
			return nil, storeErr(err, msgUserNotFound, "set password")
		}
		a.audit(ctx, "admin_password_set", "password set", caller, slog.String("user_id", id),
			slog.Bool("keep_sessions", req.GetKeepSessions()))
		if !req.GetKeepSessions() {
			a.revoked(ctx, caller, id, storage.ReasonUserChanged, revoked)
		}
		return &latchv1.SetPasswordResponse{User: userProto(u), RevokedSessions: int32(len(revoked))}, nil
	})
}

// DeleteUser implements latchv1.AdminServiceServer.
func (a *adminServer) DeleteUser(ctx context.Context, req *latchv1.DeleteUserRequest) (*latchv1.DeleteUserResponse, error) {
	return serveCaller(ctx, a.s, func(caller tokens.Claims) (*latchv1.DeleteUserResponse, error) {
		id := req.GetUserId()
		if err := checkID("user_id", id); err != nil {
			return nil, err
		}
		if id == caller.Subject {
			return nil, failure(codes.FailedPrecondition, msgSelfLockout)
		}
		revoked, err := a.s.store.DeleteUser(ctx, id, a.s.now().UTC())
		if err != nil {
			return nil, storeErr(err, msgUserNotFound, "delete user")
		}
		a.audit(ctx, "admin_user_deleted", "user deleted", caller, slog.String("user_id", id), slog.Int("revoked_sessions", len(revoked)))
		a.revoked(ctx, caller, id, storage.ReasonUserChanged, revoked)
		return &latchv1.DeleteUserResponse{RevokedSessions: int32(len(revoked))}, nil
	})
}

// ListSessions implements latchv1.AdminServiceServer.
func (a *adminServer) ListSessions(ctx context.Context, req *latchv1.ListSessionsRequest) (*latchv1.ListSessionsResponse, error) {
	return serveCaller(ctx, a.s, func(tokens.Claims) (*latchv1.ListSessionsResponse, error) {
		id := req.GetUserId()
		if err := a.userExists(ctx, id); err != nil {
			return nil, err
		}
		sessions, err := a.s.store.ListUserSessions(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("list user sessions: %w", err)
		}
		total := len(sessions)
		sessions = sessions[:min(total, maxListedSessions)] // newest first
		return &latchv1.ListSessionsResponse{Sessions: sessionsProto(sessions, a.s.now()), Total: int32(total)}, nil
	})
}

// userExists checks the id and that the user exists (NOT_FOUND if not).
func (a *adminServer) userExists(ctx context.Context, id string) error {
	if err := checkID("user_id", id); err != nil {
		return err
	}
	if _, err := a.s.store.GetUser(ctx, id); err != nil {
		return storeErr(err, msgUserNotFound, "get user")
	}
	return nil
}

// RevokeSession implements latchv1.AdminServiceServer.
func (a *adminServer) RevokeSession(ctx context.Context, req *latchv1.RevokeSessionRequest) (*latchv1.RevokeSessionResponse, error) {
	return serveCaller(ctx, a.s, func(caller tokens.Claims) (*latchv1.RevokeSessionResponse, error) {
		id, now := req.GetSessionId(), a.s.now().UTC()
		sess, changed, err := a.s.revokeSessionID(ctx, id, "", storage.ReasonAdmin, now)
		if err != nil {
			return nil, err
		}
		if changed {
			a.s.announce(RevokedAdmin, sess)
		}
		a.audit(ctx, "admin_session_revoked", "session revoked", caller, slog.String("session_id", id),
			slog.String("user_id", sess.UserID), slog.String("reason", sess.RevokeReason), slog.Bool("changed", changed))
		return &latchv1.RevokeSessionResponse{Session: sessionProto(sess, now)}, nil
	})
}

// RevokeUserSessions implements latchv1.AdminServiceServer.
func (a *adminServer) RevokeUserSessions(ctx context.Context, req *latchv1.RevokeUserSessionsRequest) (*latchv1.RevokeUserSessionsResponse, error) {
	return serveCaller(ctx, a.s, func(caller tokens.Claims) (*latchv1.RevokeUserSessionsResponse, error) {
		id := req.GetUserId()
		if err := a.userExists(ctx, id); err != nil {
			return nil, err
		}
		now := a.s.now().UTC()
		revoked, err := a.revokeUser(ctx, caller, id, storage.ReasonAdmin, now)
		if err != nil {
			return nil, err
		}
		if len(revoked) == 0 {
			a.audit(ctx, "admin_sessions_revoked", "sessions revoked", caller, slog.String("user_id", id),
				slog.String("reason", storage.ReasonAdmin), slog.Int("count", 0))
		}
		return &latchv1.RevokeUserSessionsResponse{Revoked: sessionsProto(revoked, now)}, nil
	})
}

// RotateSigningKey implements latchv1.AdminServiceServer.
func (a *adminServer) RotateSigningKey(ctx context.Context, req *latchv1.RotateSigningKeyRequest) (*latchv1.RotateSigningKeyResponse, error) {
	return serveCaller(ctx, a.s, func(caller tokens.Claims) (*latchv1.RotateSigningKeyResponse, error) {
		keys, err := a.s.RotateSigningKey(ctx, req.GetImmediate())
		if err != nil {
			return nil, fmt.Errorf("rotate signing key: %w", err)
		}
		var active string
		if i := slices.IndexFunc(keys, func(k KeyInfo) bool { return k.State == storage.KeyActive }); i >= 0 {
			active = keys[i].ID
		}
		a.audit(ctx, "admin_signing_key_rotated", "signing key rotation requested", caller,
			slog.Bool("immediate", req.GetImmediate()), slog.String("active_kid", active), slog.Int("keys", len(keys)))
		return &latchv1.RotateSigningKeyResponse{Keys: keysProto(keys)}, nil
	})
}

// ListSigningKeys implements latchv1.AdminServiceServer.
func (a *adminServer) ListSigningKeys(ctx context.Context, _ *latchv1.ListSigningKeysRequest) (*latchv1.ListSigningKeysResponse, error) {
	return serveCaller(ctx, a.s, func(tokens.Claims) (*latchv1.ListSigningKeysResponse, error) {
		keys, err := a.s.ListSigningKeys(ctx)
		if err != nil {
			return nil, fmt.Errorf("list signing keys: %w", err)
		}
		return &latchv1.ListSigningKeysResponse{Keys: keysProto(keys)}, nil
	})
}

// recheckUser reads the user again after Login stored their new session.
// An administrator may have set a new password while the password was being
// checked; their revocation of the user's sessions may then have run before
// this session existed. Reading after the session is stored closes that
// gap: either the revocation saw the session, or this read sees the change,
// and the session is revoked here. (A deletion or disabling that commits
// before the session makes CreateSession refuse it; one that commits after
// revokes it in storage. The checks below for those stay as a second line.) The login then fails like any other refused login. verified is the
// user as the password check read it (with its hash after any upgrade); it
// returns the user as stored now (current roles).
func (s *Server) recheckUser(ctx context.Context, verified storage.User, sess storage.Session, now time.Time) (storage.User, error) {
	u, err := s.store.GetUser(ctx, verified.ID)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return storage.User{}, fmt.Errorf("recheck user: %w", err)
	}
	reason := ""
	switch {
	case err != nil:
		reason = "user_deleted_during_login"
	case u.Disabled:
		reason = "user_disabled_during_login"
	case u.PasswordHash != verified.PasswordHash:
		reason = "password_changed_during_login"
	default:
		return u, nil
	}
	if _, err := s.revokeSession(ctx, sess, storage.ReasonUserChanged, "", now); err != nil {
		return storage.User{}, fmt.Errorf("user changed during login: %w", err)
	}
	s.loginFailed(ctx, reason, verified.ID)
	return storage.User{}, failure(codes.Unauthenticated, msgBadLogin)
}
