// Package storage defines, in the words of the domain, the state Latch keeps:
// users, sessions (refresh-token families), denied access-token ids and
// signing keys. Backends (storage/bolt, and future ones) implement Store and
// prove it by passing the conformance suite in storage/storagetest.
//
// Every method takes a context first, returns domain structs (never protobuf
// types), and reports domain failures with the sentinel errors below, wrapped
// with context and matched with errors.Is. Every write is durable (fsynced)
// when the method returns.
//
// # Revoked sessions
//
// A revoked session matters only while an access token carrying its sid
// can still be accepted: until the longest access-token lifetime plus the
// verifiers' leeway has passed since the revocation, for no token of it is
// minted afterwards. Backends therefore take a retention setting
// (bolt.WithRevokedSessionRetention, etcd.WithRevokedSessionRetention).
// Until RevokedAt + retention a revoked session stays stored as it is:
// ListRevocations reports it, AccessTokenRevoked says revoked, its refresh
// tokens fail with ErrSessionRevoked, ListUserSessions lists it. After
// that (or after its expiry, if that comes first: Session.RetainedUntil)
// the store deletes it with its indexes (storage/bolt at the next sweep,
// storage/etcd through its lease), whichever call revoked it
// (RevokeSession, RevokeUserSessions, DeleteUser, a reuse detection in
// RotateRefreshToken). From then on its refresh tokens are unknown
// (ErrNotFound) and AccessTokenRevoked still says revoked (its session is
// gone). So what one account leaves stored is bounded by its login rate
// times the retention, not times the session lifetime.
//
// The retention must be at least the longest access-token lifetime plus
// leeway ever used with the store (the server's Config.AccessTTL +
// Config.Leeway): a session deleted while a token of it can still verify
// drops out of ListRevocations, the snapshot that revocation watchers
// start from. Zero, the default, keeps a revoked session until its own
// expiry.
package storage

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Backends wrap them; callers match them with errors.Is.
var (
	// ErrNotFound reports that the named row does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrAlreadyExists reports that a row with the same unique key exists.
	ErrAlreadyExists = errors.New("storage: already exists")
	// ErrUserDisabled reports that the user a session would belong to is
	// disabled: CreateSession stores no session for it.
	ErrUserDisabled = errors.New("storage: user disabled")
	// ErrSessionRevoked reports that a session exists but has been revoked.
	ErrSessionRevoked = errors.New("storage: session revoked")
	// ErrSessionExpired reports that a session exists but its idle or
	// absolute lifetime has passed.
	ErrSessionExpired = errors.New("storage: session expired")
	// ErrRefreshTokenReused reports that a refresh token that had already
	// been exchanged was presented again. When a backend returns it, the
	// session has already been revoked durably.
	ErrRefreshTokenReused = errors.New("storage: refresh token reused")
	// ErrInvalidArgument reports a value a backend cannot store (for
	// example an empty id).
	ErrInvalidArgument = errors.New("storage: invalid argument")
	// ErrUnavailable reports that a networked backend (storage/etcd) could
	// not be reached or could not answer in time; the request may be
	// retried. The server answers UNAVAILABLE without the detail.
	ErrUnavailable = errors.New("storage: backend unavailable")
	// ErrNoSpace reports a write refused because the backend has reached
	// its space quota (etcd's NOSPACE alarm); reads still work. A backend
	// returns it together with ErrUnavailable (errors.Is matches both):
	// the write may succeed once an operator has freed space.
	ErrNoSpace = errors.New("storage: out of space")
	// ErrConflict reports that a row changed since the caller read the
	// value its request depends on (ResetSessions' verified password
	// hash); nothing was written.
	ErrConflict = errors.New("storage: changed concurrently")
)

// TokenHash is the SHA-256 digest of a refresh token's body (see
// tokens.RefreshToken). Only digests are stored, never refresh tokens.
type TokenHash [32]byte

// IsZero reports whether h is the zero digest (no token).
func (h TokenHash) IsZero() bool { return h == TokenHash{} }

// User is a person or service account that can log in.
type User struct {
	// ID is the opaque, immutable user id (the access token's sub).
	ID string
	// Email is the normalised (trimmed, lower-cased) email, unique.
	Email string
	// PasswordHash is a PHC string ($argon2id$... or a bcrypt hash).
	PasswordHash string
	// Roles are copied into access tokens.
	Roles []string
	// Disabled users cannot log in or refresh.
	Disabled bool
	// CreatedAt and UpdatedAt are set by the caller.
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Revocation reasons recorded on sessions.
const (
	ReasonRevoked      = "revoked"       // revoked by the holder (Revoke RPC)
	ReasonReuse        = "reuse"         // a rotated refresh token was presented again
	ReasonAdmin        = "admin"         // revoked by an administrator
	ReasonUserChanged  = "user_changed"  // password changed or user disabled/deleted
	ReasonSessionLimit = "session_limit" // the oldest beyond the account's live-session cap
	ReasonSignedOut    = "signed_out"    // ended by its owner from a session of theirs
	ReasonRestored     = "restored"      // created before a restored backup's fence (latch sessions revoke)
)

// Session is a refresh-token family: one login and all its rotations. It
// keeps the digests of two tokens at most, whatever the number of
// rotations: refresh tokens carry their session id and generation under a
// server MAC, so an older token of the family is recognised by its
// generation, without its digest.
type Session struct {
	// ID is the opaque session id (the access token's sid).
	ID string
	// UserID owns the session.
	UserID string
	// Audience is the audience chosen at login, kept for every refresh.
	Audience string
	// CurrentHash is the digest of the only refresh token that may be
	// exchanged now.
	CurrentHash TokenHash
	// PreviousHash is the digest of the token exchanged at the last
	// rotation, and PreviousRotatedAt when; they serve the optional
	// reuse grace period.
	PreviousHash      TokenHash
	PreviousRotatedAt time.Time
	// Generation counts rotations (grace retries included); it starts at 0
	// at login. A refresh token carries the generation of the token it
	// replaced plus one (0 at login), so the current token carries at most
	// Generation, and every token the session has replaced carries less.
	Generation uint64
	// CreatedAt is the login time; LastRotatedAt the time the current
	// refresh token was issued.
	CreatedAt     time.Time
	LastRotatedAt time.Time
	// IdleExpiresAt is renewed by each rotation; AbsoluteExpiresAt never
	// moves. The session ends at the earlier of the two.
	IdleExpiresAt     time.Time
	AbsoluteExpiresAt time.Time
	// RevokedAt is zero while the session is live; RevokeReason says why it
	// ended.
	RevokedAt    time.Time
	RevokeReason string
	// UserAgent and DeviceName describe the client that logged in (its
	// gRPC user-agent and the name it gave its device), and LoginAddr and
	// LastAddr the client address at login and at the last rotation. They
	// are descriptive, for the session's owner and administrators; the
	// server bounds them (MaxClientInfoLength) before storing them, and
	// they are deleted with the session.
	UserAgent  string
	DeviceName string
	LoginAddr  string
	LastAddr   string
}

// MaxClientInfoLength bounds each of a session's descriptive fields
// (Session.UserAgent, DeviceName, LoginAddr, LastAddr) in bytes, so that
// what a session stores does not depend on what a client sends.
const MaxClientInfoLength = 256

// ExpiresAt is the moment the session ends if nothing revokes it.
func (s Session) ExpiresAt() time.Time {
	if s.AbsoluteExpiresAt.Before(s.IdleExpiresAt) {
		return s.AbsoluteExpiresAt
	}
	return s.IdleExpiresAt
}

// Revoked reports whether the session has been revoked.
func (s Session) Revoked() bool { return !s.RevokedAt.IsZero() }

// RetainedUntil is when a store that keeps revoked sessions for retention
// (see "Revoked sessions" in the package documentation) may delete the session: at its expiry, or,
// once it is revoked and retention is positive, at RevokedAt + retention
// if that comes first.
func (s Session) RetainedUntil(retention time.Duration) time.Time {
	end := s.ExpiresAt()
	if retention > 0 && s.Revoked() {
		if r := s.RevokedAt.Add(retention); r.Before(end) {
			return r
		}
	}
	return end
}

// Live reports whether the session is neither revoked nor expired at now.
func (s Session) Live(now time.Time) bool {
	return !s.Revoked() && now.Before(s.ExpiresAt())
}

// KeyState is a signing key's place in its life cycle:
// next → active → retired → removed.
type KeyState string

// Key states.
const (
	// KeyNext keys are published but do not sign yet.
	KeyNext KeyState = "next"
	// KeyActive is the one key that signs new tokens.
	KeyActive KeyState = "active"
	// KeyRetired keys no longer sign but stay published until every token
	// they signed has expired.
	KeyRetired KeyState = "retired"
)

// SigningKey is an ES256 (P-256) key pair and its life-cycle state.
type SigningKey struct {
	// ID is the RFC 7638 thumbprint of the public key (the JWT kid).
	ID string
	// PrivateKey is the PKCS #8 DER encoding of the private key, possibly
	// sealed by a key-encryption key; storage treats it as opaque bytes.
	PrivateKey []byte
	// PublicKey is the PKIX DER encoding of the public key.
	PublicKey []byte
	// State is the life-cycle state.
	State KeyState
	// CreatedAt, ActivatedAt and RetiredAt record transitions; zero when
	// the transition has not happened.
	CreatedAt   time.Time
	ActivatedAt time.Time
	RetiredAt   time.Time
}

// RefreshKey is a secret that MACs refresh tokens (HMAC-SHA256), shared
// by every process of one store, in the same life cycle as signing keys:
// a next key is known to every process before it becomes the active one,
// the one that mints; a retired key still verifies the tokens it minted
// until none of their sessions can be live.
type RefreshKey struct {
	// ID is the key's id, carried by every token it minted
	// (tokens.ValidRefreshKeyID).
	ID string
	// Secret is the 32-byte secret, possibly sealed by a key-encryption
	// key; storage treats it as opaque bytes.
	Secret []byte
	// State is next, active or retired.
	State KeyState
	// CreatedAt, ActivatedAt and RetiredAt record transitions; zero when
	// the transition has not happened.
	CreatedAt   time.Time
	ActivatedAt time.Time
	RetiredAt   time.Time
}

// RefreshKeyStore keeps the refresh-token MAC secrets. It is part of
// Store.
type RefreshKeyStore interface {
	// ListRefreshKeys returns every stored refresh key, in no particular
	// order.
	ListRefreshKeys(ctx context.Context) ([]RefreshKey, error)
	// UpdateRefreshKeys reads every stored refresh key, calls fn with them
	// and stores what fn returns as the complete new set, in one durable
	// transaction: keys fn drops are deleted, others are written. fn may be
	// called more than once (a backend may retry on a conflicting
	// concurrent write), so it must depend only on its argument. If fn
	// returns an error nothing is written and the error is returned. A set
	// ValidateRefreshKeys refuses is ErrInvalidArgument. It returns the
	// stored set.
	UpdateRefreshKeys(ctx context.Context, fn func([]RefreshKey) ([]RefreshKey, error)) ([]RefreshKey, error)
}

// UserStore keeps users.
type UserStore interface {
	// CreateUser stores a new user; ErrAlreadyExists if the id or the
	// email is taken.
	CreateUser(ctx context.Context, u User) error
	// GetUser returns the user with the id; ErrNotFound if none.
	GetUser(ctx context.Context, id string) (User, error)
	// GetUserByEmail returns the user with the normalised email;
	// ErrNotFound if none.
	GetUserByEmail(ctx context.Context, email string) (User, error)
	// UpdateUser reads the user, calls fn on a copy and stores the result in
	// one transaction. If fn returns an error nothing is written and the
	// error is returned. fn must not change the id; changing the email
	// keeps the email index in step (ErrAlreadyExists if taken). fn may be
	// called more than once (a networked backend retries on a conflicting
	// concurrent write), so it must depend only on the user it is given.
	UpdateUser(ctx context.Context, id string, fn func(*User) error) (User, error)
	// CountUsers returns the number of users.
	CountUsers(ctx context.Context) (int, error)
}

// SessionStore keeps sessions and the digests of their current refresh
// tokens.
type SessionStore interface {
	// CreateSession stores a new session whose CurrentHash is its first
	// refresh token; ErrAlreadyExists if the id is taken. The session's
	// owner must exist and be enabled, checked in the transaction that
	// stores the session: ErrNotFound if no user has s.UserID,
	// ErrUserDisabled if that user is disabled, and nothing is stored. So
	// a session is never stored after a DeleteUser, or an UpdateUser that
	// disables its owner, has committed; and DeleteUser and
	// RevokeUserSessions revoke every session of the user committed before
	// them, so no session outlives them live.
	CreateSession(ctx context.Context, s Session) error
	// GetSession returns the session with the id; ErrNotFound if none.
	GetSession(ctx context.Context, id string) (Session, error)
	// RotateRefreshToken exchanges the refresh token of session
	// r.SessionID whose digest is presented for the one whose digest is
	// next, in one durable transaction, following Rotation.Apply. It
	// returns the updated session on success. On reuse it revokes the
	// session, commits, and then returns ErrRefreshTokenReused (with the
	// revoked session). Other failures: ErrNotFound (no such session, or
	// a token no rotation of it delivered), ErrSessionRevoked,
	// ErrSessionExpired (with the session as stored). Of any number of
	// concurrent calls with the same presented digest, at most one
	// succeeds. It writes the session record alone: the store's size does
	// not grow with rotations.
	RotateRefreshToken(ctx context.Context, r Rotation) (Session, error)
	// RevokeSession marks the session revoked with the reason, durably, and
	// returns it as stored afterwards with whether this call changed it, so
	// that the caller can announce the revocation it committed without
	// reading the session again. Revoking a revoked session succeeds with
	// changed false, writes nothing and returns the session as it is: it
	// keeps its first reason and time, and no revocation is committed (or
	// seen by RevocationFeed watchers) again. Of concurrent calls for one
	// live session exactly one reports changed. ErrNotFound if no such
	// session.
	RevokeSession(ctx context.Context, id, reason string, now time.Time) (sess Session, changed bool, err error)
}

// DenyList keeps the ids (jti) of access tokens revoked before their expiry.
type DenyList interface {
	// DenyAccessToken records jti as revoked until expiresAt, durably, and
	// reports whether it changed anything. Denying a jti already denied
	// until expiresAt or later succeeds with changed false and writes
	// nothing; a later expiresAt extends the denial (changed true). Of
	// concurrent calls with one jti and expiry exactly one reports changed.
	DenyAccessToken(ctx context.Context, jti string, expiresAt time.Time) (changed bool, err error)
	// AccessTokenRevoked reports, in one read, whether the access token
	// with this jti and session id is revoked at now: its jti is denied, or
	// its session is revoked, past its absolute expiry, or gone.
	//
	// The session's idle expiry is not consulted, so that a rotation need
	// not write what this check reads. It cannot matter for a token that
	// is itself unexpired: access tokens are minted only when a session is
	// created or rotated, when its idle expiry becomes the mint time plus
	// the idle lifetime; the server refuses an idle lifetime shorter than
	// the access-token lifetime; and the idle expiry only moves forward.
	// (A verifier's exp leeway can stretch a token past its exp by up to
	// tokens.MaxLeeway; with an idle lifetime less than that longer than
	// the access lifetime, such a token may pass here for at most that
	// leeway after its session idled out, as it passes local verification.)
	AccessTokenRevoked(ctx context.Context, jti, sessionID string, now time.Time) (bool, error)
	// ListRevocations returns every revocation that still matters at now:
	// each denied jti whose expiry is after now, and each revoked session
	// whose expiry is after now, in no particular order. It is the snapshot
	// that revocation watchers start from.
	ListRevocations(ctx context.Context, now time.Time) ([]Revocation, error)
}

// Revocation is one revocation that verifiers must honour: a denied access
// token (JTI set) or a revoked session (SessionID set).
type Revocation struct {
	JTI       string
	SessionID string
	// ExpiresAt is when the denied token, or the session, expires.
	ExpiresAt time.Time
}

// KeyStore keeps signing keys.
type KeyStore interface {
	// ListSigningKeys returns every stored key, in no particular order.
	ListSigningKeys(ctx context.Context) ([]SigningKey, error)
	// InitSigningKey makes sure one key is active: if an active key exists
	// it is returned and candidate is discarded; otherwise candidate is
	// stored as active and returned. Concurrent callers agree on one key.
	InitSigningKey(ctx context.Context, candidate SigningKey) (SigningKey, error)
}

// UserAdmin is what administration needs beyond UserStore. It is part of
// Store.
type UserAdmin interface {
	// ListUsers returns up to limit users whose id sorts after afterID
	// (byte order), in ascending id order; afterID "" starts at the first.
	// A page shorter than limit is the last. limit must be positive.
	ListUsers(ctx context.Context, afterID string, limit int) ([]User, error)
	// DeleteUser removes the user and its email index and, in the same
	// transaction, revokes every live session of the user with
	// ReasonUserChanged at now. It returns the sessions it revoked (as
	// stored, now revoked). ErrNotFound if no such user. (What storage/etcd
	// guarantees for many sessions: see RevokeUserSessions.)
	DeleteUser(ctx context.Context, id string, now time.Time) ([]Session, error)
}

// SessionAdmin is what administration needs beyond SessionStore. It is part
// of Store.
type SessionAdmin interface {
	// ListUserSessions returns every stored session of the user (live,
	// revoked or expired but not yet swept), newest first. An unknown user
	// has no sessions (empty result, no error).
	ListUserSessions(ctx context.Context, userID string) ([]Session, error)
	// RevokeUserSessions revokes, in one durable transaction, every session
	// of the user that is live at now, with the reason. It returns the
	// sessions it revoked (as stored, now revoked); sessions already revoked
	// or expired are left as they are and not returned.
	//
	// storage/bolt always keeps the one transaction. storage/etcd keeps it
	// when the sessions fit in one etcd Txn (--max-txn-ops); beyond that it
	// takes several, and guarantees: from its first write (a per-user
	// fence) no session the user had then can be rotated, even if the call
	// then fails; when it returns nil every session live at now is revoked.
	// Until it returns, access tokens of sessions it has not reached yet
	// still pass AccessTokenRevoked, and a session that a concurrent
	// rotation attempt revoked through the fence is not in the result. The
	// same holds for DeleteUser, which deletes the user with the last Txn.
	RevokeUserSessions(ctx context.Context, userID, reason string, now time.Time) ([]Session, error)
	// CountLiveSessions returns the number of sessions live at now (for the
	// sessions-live gauge). It may scan; callers call it rarely.
	CountLiveSessions(ctx context.Context, now time.Time) (int, error)
	// ResetSessions applies r in one durable step: every session of
	// r.UserID live at r.Now except r.Keep is revoked with r.Reason, r.Keep
	// is rotated when r.KeepNext is set, and the user's password hash is
	// replaced when r.NewPasswordHash is set. It returns the kept session
	// as stored (zero when r.Keep is "") and the sessions it revoked.
	// Nothing is written, and the error says why, when: the user does not
	// exist (ErrNotFound) or is disabled (ErrUserDisabled, unless
	// r.ByAdmin); r.Keep is not a session of the user (ErrNotFound) or is
	// not live (ErrSessionRevoked, ErrSessionExpired); or the stored
	// password hash is no longer r.VerifiedPasswordHash (ErrConflict,
	// unless r.ByAdmin). Once it has returned, no
	// session it revoked can be rotated, and no refresh token r.Keep issued
	// before (its current one included) can be exchanged: presenting one is
	// reuse (RotateRefreshToken revokes the session).
	//
	// The guarantees of RevokeUserSessions for many sessions hold here
	// too: storage/etcd, when the sessions do not fit in one Txn, commits
	// the password, the rotation of r.Keep and the user's fence in its
	// first Txn, so from then on no other session of the user can be
	// rotated, and revokes the rest a Txn-full at a time.
	ResetSessions(ctx context.Context, r SessionReset) (kept Session, revoked []Session, err error)
}

// SessionReset is what ResetSessions does to one user's account.
type SessionReset struct {
	// UserID is the account.
	UserID string
	// Reason is recorded on every session revoked.
	Reason string
	// Now is the time of the change.
	Now time.Time
	// Keep names the one session of the user that stays live (the caller's
	// own); empty revokes every live session.
	Keep string
	// KeepNext, when not zero, rotates Keep: it becomes Keep's only valid
	// refresh token (digest), with Keep's generation plus one, and its idle
	// expiry is renewed by IdleTTL; the previous digest is dropped, so no
	// grace retry applies to the token it replaces. KeepAddr, when not
	// empty, becomes Keep's LastAddr.
	KeepNext TokenHash
	IdleTTL  time.Duration
	KeepAddr string
	// NewPasswordHash, when not empty, replaces the user's password hash,
	// provided the stored hash is still VerifiedPasswordHash (the one the
	// caller checked the current password against); UpdatedAt becomes Now.
	NewPasswordHash      string
	VerifiedPasswordHash string
	// ByAdmin marks an administrator's reset rather than the owner's: it
	// applies to a disabled user too, and NewPasswordHash replaces the
	// stored hash whatever it is (VerifiedPasswordHash is not needed).
	ByAdmin bool
}

// Validate reports a reset that no backend should attempt.
func (r SessionReset) Validate() error {
	switch {
	case !ValidID(r.UserID) || r.Reason == "" || r.Now.IsZero():
		return fmt.Errorf("session reset without user, reason or time: %w", ErrInvalidArgument)
	case r.Keep != "" && !ValidID(r.Keep):
		return fmt.Errorf("session reset keeping an invalid session id: %w", ErrInvalidArgument)
	case !r.KeepNext.IsZero() && (r.Keep == "" || r.IdleTTL <= 0):
		return fmt.Errorf("session reset rotating no session or without idle lifetime: %w", ErrInvalidArgument)
	case r.ByAdmin && r.Keep != "":
		// An administrator's reset ends every session: it applies to a
		// disabled user, whose sessions must not be kept or rotated.
		return fmt.Errorf("session reset by an administrator keeping a session: %w", ErrInvalidArgument)
	case r.NewPasswordHash != "" && r.VerifiedPasswordHash == "" && !r.ByAdmin:
		return fmt.Errorf("session reset setting a password without the verified one: %w", ErrInvalidArgument)
	}
	return nil
}

// ApplyKeep decides what happens to r.Keep, the session k (already checked
// to belong to r.UserID), and returns it as it must be stored: an error if
// it is not live at r.Now (ErrSessionRevoked, ErrSessionExpired), else k
// rotated to r.KeepNext when that is set, or k unchanged.
func (r SessionReset) ApplyKeep(k Session) (Session, error) {
	if err := k.notLive(r.Now); err != nil || r.KeepNext.IsZero() {
		return k, err
	}
	// No grace retry applies to the token the reset replaces.
	k.PreviousHash, k.PreviousRotatedAt = TokenHash{}, time.Time{}
	return k.rotated(r.KeepNext, r.Now, r.IdleTTL, r.KeepAddr), nil
}

// ApplyPassword returns u with r's new password hash, or ErrConflict when
// u's hash is no longer the verified one, ErrUserDisabled when u is
// disabled (neither for a reset ByAdmin). Without a new hash it only checks
// that u is enabled.
func (r SessionReset) ApplyPassword(u User) (User, error) {
	switch {
	case u.Disabled && !r.ByAdmin:
		return u, ErrUserDisabled
	case r.NewPasswordHash == "":
		return u, nil
	case u.PasswordHash != r.VerifiedPasswordHash && !r.ByAdmin:
		return u, ErrConflict
	}
	u.PasswordHash, u.UpdatedAt = r.NewPasswordHash, r.Now
	return u, nil
}

// KeyAdmin changes the signing-key set. It is part of Store.
type KeyAdmin interface {
	// UpdateSigningKeys reads every stored key, calls fn with them (in no
	// particular order) and stores what fn returns as the complete new key
	// set, in one durable transaction: keys fn drops are deleted, others are
	// written. fn may be called more than once (a backend may retry on a
	// conflicting concurrent write), so it must depend only on its argument.
	// If fn returns an error nothing is written and the error is returned.
	// A result with more than one active key, two keys with one id, or a key
	// without id or key material or with an unknown state is refused with
	// ErrInvalidArgument (ValidateSigningKeys checks exactly this). It
	// returns the stored set.
	UpdateSigningKeys(ctx context.Context, fn func([]SigningKey) ([]SigningKey, error)) ([]SigningKey, error)
}

// Sweeper deletes rows that can no longer matter.
type Sweeper interface {
	// DeleteExpired deletes at most limit rows that expired before now:
	// sessions past their expiry, or revoked sessions past their
	// retention (Session.RetainedUntil; see "Revoked sessions" in the
	// package documentation), with
	// their indexes, and denied jtis past their token's expiry. Its result counts the rows it deleted and the
	// sessions it re-filed (together at most limit), and says whether
	// expired rows may be left. A backend may index a session under a
	// lower bound of its expiry (storage/bolt does, so that rotations need
	// not move it): meeting a session that ends later, it re-files it at
	// its real expiry, which counts in Refiled, not Deleted.
	DeleteExpired(ctx context.Context, now time.Time, limit int) (SweepResult, error)
}

// SweepResult is what a sweep did: one DeleteExpired call, or the sum of
// a SweepOnce pass.
type SweepResult struct {
	// Deleted counts the rows deleted: expired sessions (each with its
	// indexes) and expired denied jtis.
	Deleted int
	// Refiled counts the sessions found to end later than the backend had
	// indexed them, and filed again at their real expiry; they were not
	// deleted. A backend that indexes exact expiries reports 0.
	Refiled int
	// More reports that the sweep stopped on a bound (the limit, a
	// backend's own bound, or a cancelled context) and expired rows may be
	// left.
	More bool
}

// Store is everything Latch keeps.
type Store interface {
	UserStore
	SessionStore
	DenyList
	KeyStore
	KeyAdmin
	RefreshKeyStore
	Sweeper
	UserAdmin
	SessionAdmin
	// Close releases the store.
	Close() error
}

// Bucket names a token bucket and gives its shape: it holds at most Burst
// tokens and gets one back every Refill.
type Bucket struct {
	Key    string
	Burst  int
	Refill time.Duration
}

// Valid reports whether b can limit anything: a key, a positive burst and
// a positive refill.
func (b Bucket) Valid() bool { return b.Key != "" && b.Burst >= 1 && b.Refill > 0 }

// SharedLimits is implemented by stores that several Latch processes share
// (storage/etcd), so that a budget (an account's failed-login budget, say)
// holds across all of them instead of once per process. A store that only
// one process uses (storage/bolt) does not implement it: that process keeps
// its budgets in memory.
//
// A bucket's state lives only while it holds less than its burst: a bucket
// never charged, or refilled since, is full and costs no storage, so the
// space taken is bounded by the rate of charges to distinct keys times the
// time a bucket takes to refill, plus however long a backend keeps a full
// bucket's state before deleting it (storage/etcd: its lease's slack and
// rounding, up to about 10 minutes). Times are the callers' clocks: processes
// whose clocks differ by d see a bucket d/Refill tokens apart.
type SharedLimits interface {
	// TakeTokens takes one token from each bucket at now, atomically across
	// every process sharing the store: either every bucket holds a whole
	// token and each gives one, or nothing is taken and refused lists the
	// keys of the buckets that had none, with retryAfter how long until
	// all of them hold one again. A key named twice is charged twice. A
	// bucket that is not Valid is ErrInvalidArgument and nothing is taken.
	TakeTokens(ctx context.Context, now time.Time, buckets ...Bucket) (refused []string, retryAfter time.Duration, err error)
	// ReturnToken gives back one token that a TakeTokens took from b
	// (never beyond its burst), for example after the attempt it paid for
	// turned out right.
	ReturnToken(ctx context.Context, now time.Time, b Bucket) error
}

// RevocationFeed is implemented by stores that several Latch processes
// share (storage/etcd), so that each process learns of revocations the
// others commit. A store that only one process uses (storage/bolt) does not
// implement it: that process publishes its own revocations.
type RevocationFeed interface {
	// WatchRevocations calls ready once the feed is established, and then
	// fn, from one goroutine, for each revocation (a denied jti or a
	// revoked session) committed by any process after ready was called,
	// until ctx is done; it then returns ctx.Err(). When the feed is
	// interrupted (the backend restarts, compacts its history or loses
	// quorum) it resumes on its own, calling fn for every revocation that
	// still matters if it cannot tell what it missed, so nothing committed
	// in the gap is lost; fn must therefore tolerate duplicates. It
	// returns early only for a failure it cannot recover from.
	WatchRevocations(ctx context.Context, ready func(), fn func(Revocation)) error
}

// SpaceChecker is implemented by a store whose writes a shared quota can
// stop (storage/etcd), so that a server can report it before a write fails.
type SpaceChecker interface {
	// CheckSpace returns an error wrapping ErrNoSpace while the backend
	// refuses writes for lack of space, nil while it accepts them, and any
	// other error when it cannot tell.
	CheckSpace(ctx context.Context) error
}
