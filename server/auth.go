package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/server/password"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// Field limits. Oversized fields are refused before any work is done.
const (
	maxEmailLength    = 254
	maxAudienceLength = 256
)

// Login implements latchv1.AuthServiceServer.
func (s *Server) Login(ctx context.Context, req *latchv1.LoginRequest) (*latchv1.LoginResponse, error) {
	pair, err := s.login(ctx, req)
	s.metrics.login(loginOutcome(err))
	if err != nil {
		return nil, s.toStatus(ctx, "Login", err)
	}
	return &latchv1.LoginResponse{Tokens: pair}, nil
}

func (s *Server) login(ctx context.Context, req *latchv1.LoginRequest) (*latchv1.TokenPair, error) {
	email := NormalizeEmail(req.GetEmail())
	pw := req.GetPassword()
	switch {
	case !utf8.ValidString(req.GetEmail()):
		return nil, invalidArg("email is not UTF-8")
	case email == "":
		return nil, invalidArg("email is required")
	case len(email) > maxEmailLength || !utf8.ValidString(email):
		return nil, invalidArg("email " + msgTooLongInField + " (254 bytes) or not UTF-8")
	case pw == "":
		return nil, invalidArg("password is required")
	case len(pw) > password.MaxLength:
		return nil, invalidArg("password " + msgTooLongInField + " (1024 bytes)")
	case !utf8.ValidString(pw):
		return nil, invalidArg("password is not UTF-8")
	}
	aud, err := s.audience(req.GetAudience())
	if err != nil {
		return nil, err
	}

	addr := peerAddress(ctx)
	acctKey, addrKey := "acct:"+email, "addr:"+addr
	if ok, wait := s.accounts.Allow(acctKey); !ok {
		s.metrics.limited(LimiterLoginAccount)
		s.log.LogAttrs(ctx, slog.LevelWarn, "login refused", slog.String("event", "login_rate_limited"),
			slog.String("limit", "account"), slog.String("peer", addr))
		return nil, rateLimited(wait)
	}
	if ok, wait := s.addrs.Allow(addrKey); !ok {
		s.metrics.limited(LimiterLoginAddress)
		s.log.LogAttrs(ctx, slog.LevelWarn, "login refused", slog.String("event", "login_rate_limited"),
			slog.String("limit", "address"), slog.String("peer", addr))
		return nil, rateLimited(wait)
	}

	user, found, err := s.checkPassword(ctx, email, pw)
	if err != nil {
		return nil, err
	}
	if !found {
		s.accounts.Fail(acctKey)
		s.addrs.Fail(addrKey)
		return nil, failure(codes.Unauthenticated, msgBadLogin)
	}
	s.accounts.Reset(acctKey)

	now := s.now()
	sess, refresh, err := s.newSession(ctx, user.ID, aud, now)
	if err != nil {
		return nil, err
	}
	if user, err = s.recheckUser(ctx, user, sess, now); err != nil {
		return nil, err
	}
	pair, err := s.tokenPair(sess, user, refresh, now)
	if err != nil {
		return nil, err
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "login", slog.String("event", "login_succeeded"),
		slog.String("user_id", user.ID), slog.String("session_id", sess.ID), slog.String("peer", addr))
	return pair, nil
}

// checkPassword looks the user up and checks pw, spending the same work
// whether or not the email exists. found is false for an unknown email, a
// wrong password or a disabled user, each logged with its reason.
func (s *Server) checkPassword(ctx context.Context, email, pw string) (storage.User, bool, error) {
	user, err := s.store.GetUserByEmail(ctx, email)
	if errors.Is(err, storage.ErrNotFound) {
		if err := s.hasher.VerifyDummy(ctx, pw); err != nil {
			return storage.User{}, false, fmt.Errorf("dummy verify: %w", err)
		}
		s.loginFailed(ctx, "unknown_email", "")
		return storage.User{}, false, nil
	}
	if err != nil {
		return storage.User{}, false, fmt.Errorf("get user by email: %w", err)
	}
	ok, rehash, err := s.hasher.Verify(ctx, pw, user.PasswordHash)
	if err != nil {
		return storage.User{}, false, fmt.Errorf("verify password of user %s: %w", user.ID, err)
	}
	switch {
	case !ok:
		s.loginFailed(ctx, "wrong_password", user.ID)
		return storage.User{}, false, nil
	case user.Disabled:
		s.loginFailed(ctx, "user_disabled", user.ID)
		return storage.User{}, false, nil
	}
	if rehash {
		if h, ok := s.upgradeHash(ctx, user.ID, user.PasswordHash, pw); ok {
			user.PasswordHash = h
		}
	}
	return user, true, nil
}

func (s *Server) loginFailed(ctx context.Context, reason, userID string) {
	s.log.LogAttrs(ctx, slog.LevelInfo, "login failed", slog.String("event", "login_failed"),
		slog.String("reason", reason), slog.String("user_id", userID), slog.String("peer", peerAddress(ctx)))
}

// upgradeHash rewrites a user's hash with the current parameters after a
// successful login, only if the stored hash is still the one that was
// verified (a password set meanwhile by an administrator is never
// overwritten). It returns the new hash when it was stored. A failure is
// logged and the login still succeeds.
func (s *Server) upgradeHash(ctx context.Context, userID, verified, pw string) (string, bool) {
	h, err := s.hasher.Hash(ctx, pw)
	swapped := false
	if err == nil {
		_, err = s.store.UpdateUser(ctx, userID, func(u *storage.User) error {
			if swapped = u.PasswordHash == verified; swapped {
				u.PasswordHash = h
				u.UpdatedAt = s.now()
			}
			return nil
		})
	}
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "password rehash failed", slog.String("event", "password_rehash_failed"),
			slog.String("user_id", userID), slog.String("error", err.Error()))
		return "", false
	}
	if !swapped {
		return "", false
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "password rehashed", slog.String("event", "password_rehashed"), slog.String("user_id", userID))
	return h, true
}

func (s *Server) audience(requested string) (string, error) {
	if requested == "" {
		return s.cfg.Audiences[0], nil
	}
	if len(requested) > maxAudienceLength || !slices.Contains(s.cfg.Audiences, requested) {
		return "", invalidArg("audience is not one of the configured audiences")
	}
	return requested, nil
}

func (s *Server) newSession(ctx context.Context, userID, aud string, now time.Time) (storage.Session, string, error) {
	sid, err := tokens.NewID(s.rand)
	if err != nil {
		return storage.Session{}, "", fmt.Errorf("session id: %w", err)
	}
	refresh, minted, err := tokens.NewRefreshToken(s.rand, s.refreshKeys.minting(), sid, 0)
	if err != nil {
		return storage.Session{}, "", fmt.Errorf("refresh token: %w", err)
	}
	sess := storage.Session{
		ID: sid, UserID: userID, Audience: aud, CurrentHash: minted.Digest,
		CreatedAt: now, LastRotatedAt: now,
		IdleExpiresAt: now.Add(s.cfg.RefreshIdleTTL), AbsoluteExpiresAt: now.Add(s.cfg.RefreshMaxAge),
	}
	if err := s.store.CreateSession(ctx, sess); err != nil {
		return storage.Session{}, "", fmt.Errorf("create session: %w", err)
	}
	return sess, refresh, nil
}

// tokenPair mints the access token for sess and packs it with refresh. The
// access token never outlives its session's absolute lifetime.
func (s *Server) tokenPair(sess storage.Session, user storage.User, refresh string, now time.Time) (*latchv1.TokenPair, error) {
	jti, err := tokens.NewID(s.rand)
	if err != nil {
		return nil, fmt.Errorf("jti: %w", err)
	}
	exp := now.Add(s.cfg.AccessTTL)
	if sess.AbsoluteExpiresAt.Before(exp) {
		exp = sess.AbsoluteExpiresAt
	}
	at, err := s.keys.signer().Sign(tokens.Claims{
		Issuer: s.cfg.Issuer, Subject: user.ID, Audience: []string{sess.Audience},
		ExpiresAt: exp, NotBefore: now, IssuedAt: now, ID: jti, SessionID: sess.ID, Roles: user.Roles,
	})
	if err != nil {
		return nil, fmt.Errorf("sign access token: %w", err)
	}
	return &latchv1.TokenPair{
		AccessToken:      at,
		RefreshToken:     refresh,
		TokenType:        "Bearer",
		ExpiresIn:        int64(exp.Sub(now).Truncate(time.Second) / time.Second),
		RefreshExpiresIn: int64(sess.ExpiresAt().Sub(now).Truncate(time.Second) / time.Second),
		SessionId:        sess.ID,
	}, nil
}

// Refresh implements latchv1.AuthServiceServer.
func (s *Server) Refresh(ctx context.Context, req *latchv1.RefreshRequest) (*latchv1.RefreshResponse, error) {
	key := "refresh:" + peerAddress(ctx)
	if err := s.allowProbe(ctx, key); err != nil {
		s.metrics.refresh(RefreshRateLimited)
		return nil, s.toStatus(ctx, "Refresh", err)
	}
	pair, err := s.refresh(ctx, req.GetRefreshToken())
	s.metrics.refresh(refreshOutcome(err))
	if err != nil {
		if ce := (*clientError)(nil); errors.As(err, &ce) && ce.code == codes.Unauthenticated {
			s.probes.Fail(key)
		}
		return nil, s.toStatus(ctx, "Refresh", err)
	}
	return &latchv1.RefreshResponse{Tokens: pair}, nil
}

func (s *Server) refresh(ctx context.Context, presented string) (*latchv1.TokenPair, error) {
	if presented == "" {
		return nil, invalidArg("refresh_token is required")
	}
	// A token that does not parse, or whose MAC does not verify, is
	// unknown: nothing it names is trusted, so it never revokes a session.
	parsed, err := s.parseRefresh(ctx, presented)
	if err != nil {
		s.refreshFailed(ctx, refreshParseFailure(err), storage.Session{})
		return nil, failure(codes.Unauthenticated, msgBadRefresh)
	}
	next, minted, err := tokens.NewRefreshToken(s.rand, s.refreshKeys.minting(), parsed.SessionID, parsed.Generation+1)
	if err != nil {
		return nil, fmt.Errorf("refresh token: %w", err)
	}
	now := s.now()
	sess, err := s.store.RotateRefreshToken(ctx, storage.Rotation{
		SessionID: parsed.SessionID, Generation: parsed.Generation,
		Presented: parsed.Digest, Next: minted.Digest, Now: now,
		IdleTTL: s.cfg.RefreshIdleTTL, ReuseGrace: s.cfg.RefreshReuseGrace,
	})
	switch {
	case errors.Is(err, storage.ErrRefreshTokenReused):
		// The store has already committed the revocation of the session
		// (and returns it, as bolt and etcd do; else it is looked up).
		reused := s.sessionFor(ctx, sess, parsed.SessionID)
		if reused.ID != "" {
			s.publishSession(reused)
		}
		s.log.LogAttrs(ctx, slog.LevelWarn, "refresh token reuse detected; session revoked",
			slog.String("event", "refresh_reuse_detected"), slog.String("session_id", reused.ID),
			slog.String("user_id", reused.UserID), slog.String("peer", peerAddress(ctx)))
		return nil, withOutcome(failure(codes.Unauthenticated, msgBadRefresh), RefreshReuseDetected)
	case errors.Is(err, storage.ErrNotFound):
		s.refreshFailed(ctx, "unknown", storage.Session{})
		return nil, failure(codes.Unauthenticated, msgBadRefresh)
	case errors.Is(err, storage.ErrSessionRevoked):
		s.refreshFailed(ctx, "revoked", s.sessionFor(ctx, sess, parsed.SessionID))
		return nil, failure(codes.Unauthenticated, msgBadRefresh)
	case errors.Is(err, storage.ErrSessionExpired):
		s.refreshFailed(ctx, "expired", s.sessionFor(ctx, sess, parsed.SessionID))
		return nil, failure(codes.Unauthenticated, msgBadRefresh)
	case err != nil:
		return nil, fmt.Errorf("rotate refresh token: %w", err)
	}
	user, err := s.store.GetUser(ctx, sess.UserID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && user.Disabled) {
		if rerr := s.store.RevokeSession(ctx, sess.ID, storage.ReasonUserChanged, now); rerr != nil && !errors.Is(rerr, storage.ErrNotFound) {
			return nil, fmt.Errorf("revoke session of missing or disabled user: %w", rerr)
		}
		s.publishSession(sess)
		s.refreshFailed(ctx, "user_disabled_or_deleted", sess)
		return nil, failure(codes.Unauthenticated, msgBadRefresh)
	}
	if err != nil {
		return nil, fmt.Errorf("get user: %w", err)
	}
	pair, err := s.tokenPair(sess, user, next, now)
	if err != nil {
		return nil, err
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "refresh", slog.String("event", "refresh_succeeded"),
		slog.String("user_id", user.ID), slog.String("session_id", sess.ID))
	return pair, nil
}

// sessionFor returns sess, or when a failed rotation returned none, the
// session sid (for the audit record; zero if unknown).
func (s *Server) sessionFor(ctx context.Context, sess storage.Session, sid string) storage.Session {
	if sess.ID != "" {
		return sess
	}
	found, err := s.store.GetSession(ctx, sid)
	if err != nil {
		return storage.Session{}
	}
	return found
}

func (s *Server) refreshFailed(ctx context.Context, reason string, sess storage.Session) {
	s.log.LogAttrs(ctx, slog.LevelInfo, "refresh failed", slog.String("event", "refresh_failed"),
		slog.String("reason", reason), slog.String("session_id", sess.ID), slog.String("user_id", sess.UserID),
		slog.String("peer", peerAddress(ctx)))
}

// Revoke implements latchv1.AuthServiceServer.
func (s *Server) Revoke(ctx context.Context, req *latchv1.RevokeRequest) (*latchv1.RevokeResponse, error) {
	if err := s.revoke(ctx, req.GetToken(), req.GetTokenTypeHint()); err != nil {
		return nil, s.toStatus(ctx, "Revoke", err)
	}
	return &latchv1.RevokeResponse{}, nil
}

func (s *Server) revoke(ctx context.Context, tok string, hint latchv1.TokenTypeHint) error {
	if tok == "" {
		return invalidArg("token is required")
	}
	for _, kind := range tryOrder(tok, hint) {
		var done bool
		var err error
		if kind == kindRefresh {
			done, err = s.revokeRefresh(ctx, tok)
		} else {
			done, err = s.revokeAccess(ctx, tok)
		}
		if err != nil || done {
			return err
		}
	}
	// RFC 7009 §2.2: an invalid token is answered like a revoked one.
	s.log.LogAttrs(ctx, slog.LevelInfo, "revoke matched no token", slog.String("event", "revoke_no_match"),
		slog.String("peer", peerAddress(ctx)))
	return nil
}

// revokeRefresh ends the session that issued tok, if any. Any refresh token
// Latch minted for the session (its MAC verifies), current or already
// rotated, revokes it: it proves possession of a token of that session, and
// RFC 7009 lets a client end the whole grant with any of its refresh
// tokens. A token whose MAC does not verify matches nothing.
func (s *Server) revokeRefresh(ctx context.Context, tok string) (bool, error) {
	parsed, err := s.parseRefresh(ctx, tok)
	if err != nil {
		return false, nil
	}
	sess, err := s.store.GetSession(ctx, parsed.SessionID)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("find session: %w", err)
	}
	if err := s.store.RevokeSession(ctx, sess.ID, storage.ReasonRevoked, s.now()); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return false, fmt.Errorf("revoke session: %w", err)
	}
	s.publishSession(sess)
	s.metrics.Revoked(RevokedSession, 1)
	s.log.LogAttrs(ctx, slog.LevelInfo, "session revoked", slog.String("event", "session_revoked"),
		slog.String("session_id", sess.ID), slog.String("user_id", sess.UserID))
	return true, nil
}

// revokeAccess denies tok's jti until tok expires. Invalid or expired tokens
// need nothing.
func (s *Server) revokeAccess(ctx context.Context, tok string) (bool, error) {
	c, err := s.verifyAccess(ctx, tok)
	if err != nil {
		return false, nil
	}
	if err := s.store.DenyAccessToken(ctx, c.ID, c.ExpiresAt); err != nil {
		return false, fmt.Errorf("deny access token: %w", err)
	}
	s.publishJTI(c.ID, c.ExpiresAt)
	s.metrics.Revoked(RevokedAccess, 1)
	s.log.LogAttrs(ctx, slog.LevelInfo, "access token revoked", slog.String("event", "access_token_revoked"),
		slog.String("jti", c.ID), slog.String("session_id", c.SessionID), slog.String("user_id", c.Subject))
	return true, nil
}

// Introspect implements latchv1.AuthServiceServer.
func (s *Server) Introspect(ctx context.Context, req *latchv1.IntrospectRequest) (*latchv1.IntrospectResponse, error) {
	resp, err := s.introspect(ctx, req)
	if err != nil {
		return nil, s.toStatus(ctx, "Introspect", err)
	}
	return resp, nil
}

func (s *Server) introspect(ctx context.Context, req *latchv1.IntrospectRequest) (*latchv1.IntrospectResponse, error) {
	var key string
	var pre *checkedAccess
	if s.cfg.IntrospectOpen {
		key = "introspect:" + peerAddress(ctx)
	} else {
		var err error
		if key, pre, err = s.authorizeIntrospector(ctx, req); err != nil {
			return nil, err
		}
	}
	tok := req.GetToken()
	if tok == "" {
		return nil, invalidArg("token is required")
	}
	if err := s.allowProbe(ctx, key); err != nil {
		return nil, err
	}
	resp, err := s.introspectToken(ctx, req, pre)
	if err == nil && !resp.GetActive() {
		s.probes.Fail(key)
	}
	return resp, err
}

// checkedAccess is the outcome of the target access-token check that
// authorizeIntrospector made in the caller check's storage read.
type checkedAccess struct {
	claims tokens.Claims
	active bool
}

// authorizeIntrospector is authorizeCaller(ctx, RoleIntrospect) that, when
// the caller's token verifies and carries the role and the target looks
// like an access token, verifies the target too and checks both tokens'
// revocation state in ONE storage read (storage.DenyList's
// AccessTokensRevoked) instead of two. The caller's outcome, its codes and
// its probe accounting are authorizeCaller's. It returns the caller's
// probe-budget key for the target ("introspect:<subject>"); target is nil
// when the target was not checked here.
func (s *Server) authorizeIntrospector(ctx context.Context, req *latchv1.IntrospectRequest) (key string, target *checkedAccess, err error) {
	probeKey, tok, err := s.callerToken(ctx)
	if err != nil {
		return "", nil, err
	}
	c, err := s.verifyAccess(ctx, tok)
	if err != nil {
		_, err = s.checkCaller(ctx, probeKey, tokens.Claims{}, false, RoleIntrospect)
		return "", nil, err
	}
	key = "introspect:" + c.Subject
	target = s.verifyTargetAhead(ctx, key, c, req)
	if target == nil || target.claims.ID == "" {
		revoked, err := s.TokenRevoked(ctx, c)
		if err != nil {
			return "", nil, err
		}
		if _, err = s.checkCaller(ctx, probeKey, c, !revoked, RoleIntrospect); err != nil {
			return "", nil, err
		}
		return key, target, nil
	}
	refs := [2]storage.AccessTokenRef{{JTI: c.ID, SessionID: c.SessionID}, {JTI: target.claims.ID, SessionID: target.claims.SessionID}}
	revoked, err := s.store.AccessTokensRevoked(ctx, refs[:], s.now())
	if err != nil {
		return "", nil, fmt.Errorf("access token revocation check: %w", err)
	}
	if len(revoked) != len(refs) {
		return "", nil, fmt.Errorf("access token revocation check: %d answers for %d tokens", len(revoked), len(refs))
	}
	target.active = !revoked[1]
	if _, err = s.checkCaller(ctx, probeKey, c, !revoked[0], RoleIntrospect); err != nil {
		return "", nil, err
	}
	return key, target, nil
}

// verifyTargetAhead verifies Introspect's target token before the caller's
// revocation check, so both can share one storage read, but only when
// nothing would stop the call before the target check anyway: the caller's
// verified claims carry the role, a token is present, the caller has probe
// budget left and the target is tried as an access token first. It returns
// nil when it did not check; a result with empty claims for a target that
// did not verify.
func (s *Server) verifyTargetAhead(ctx context.Context, key string, caller tokens.Claims, req *latchv1.IntrospectRequest) *checkedAccess {
	tok := req.GetToken()
	if tok == "" || !slices.Contains(caller.Roles, RoleIntrospect) || tryOrder(tok, req.GetTokenTypeHint())[0] != kindAccess {
		return nil
	}
	if ok, _ := s.probes.Allow(key); !ok {
		return nil
	}
	tc, err := s.verifyAccess(ctx, tok)
	if err != nil {
		return &checkedAccess{}
	}
	return &checkedAccess{claims: tc}
}

// allowProbe refuses a caller that has spent its budget of invalid tokens.
func (s *Server) allowProbe(ctx context.Context, key string) error {
	if ok, wait := s.probes.Allow(key); !ok {
		s.metrics.limited("probe_" + key[:strings.IndexByte(key, ':')])
		s.log.LogAttrs(ctx, slog.LevelWarn, "token probing refused", slog.String("event", "probe_rate_limited"),
			slog.String("limit", key[:strings.IndexByte(key, ':')]), slog.String("peer", peerAddress(ctx)))
		return probeLimited(wait)
	}
	return nil
}

// introspectToken answers for req's token; pre, when not nil, is the
// access-token check already made for it (see authorizeIntrospector).
func (s *Server) introspectToken(ctx context.Context, req *latchv1.IntrospectRequest, pre *checkedAccess) (*latchv1.IntrospectResponse, error) {
	tok := req.GetToken()
	for _, kind := range tryOrder(tok, req.GetTokenTypeHint()) {
		var resp *latchv1.IntrospectResponse
		var err error
		switch {
		case kind == kindRefresh:
			resp, err = s.introspectRefresh(ctx, tok)
		case pre != nil:
			if pre.active {
				resp = accessResponse(pre.claims)
			}
		default:
			resp, err = s.introspectAccess(ctx, tok)
		}
		if err != nil || resp != nil {
			return resp, err
		}
	}
	return &latchv1.IntrospectResponse{Active: false}, nil
}

// verifyAccess is the strict verifier behind a cache of tokens that already
// verified with the current keys (revocation is not cached: callers check
// it every time).
func (s *Server) verifyAccess(ctx context.Context, tok string) (tokens.Claims, error) {
	if len(tok) > tokens.MaxTokenLength || s.verified == nil {
		return s.verifier.Verify(ctx, tok)
	}
	// The ring's KeyEpoch, as for the interceptors' caches over KeySource:
	// an entry cached under it dies with the first key change.
	key, epoch := tokens.CacheKey(tok), s.keys.KeyEpoch()
	if c, ok := s.verified.Get(key, s.now(), epoch); ok {
		return c, nil
	}
	c, err := s.verifier.Verify(ctx, tok)
	if err != nil {
		return tokens.Claims{}, err
	}
	s.verified.Put(key, c, epoch)
	return c, nil
}

// activeAccessClaims verifies tok strictly and checks that neither its jti nor
// its session has been revoked. ok is false for any token that is not active.
func (s *Server) activeAccessClaims(ctx context.Context, tok string) (tokens.Claims, bool, error) {
	c, err := s.verifyAccess(ctx, tok)
	if err != nil {
		return tokens.Claims{}, false, nil
	}
	revoked, err := s.TokenRevoked(ctx, c)
	if err != nil {
		return tokens.Claims{}, false, err
	}
	return c, !revoked, nil
}

func (s *Server) introspectAccess(ctx context.Context, tok string) (*latchv1.IntrospectResponse, error) {
	c, ok, err := s.activeAccessClaims(ctx, tok)
	if err != nil || !ok {
		return nil, err
	}
	return accessResponse(c), nil
}

// accessResponse is Introspect's answer for an active access token.
func accessResponse(c tokens.Claims) *latchv1.IntrospectResponse {
	return &latchv1.IntrospectResponse{
		Active: true, Sub: c.Subject, SessionId: c.SessionID, Roles: c.Roles,
		Exp: c.ExpiresAt.Unix(), Iat: c.IssuedAt.Unix(), Nbf: unixOrZero(c.NotBefore), Jti: c.ID,
		Iss: c.Issuer, Aud: c.Audience, TokenType: "access_token",
	}
}

// introspectRefresh answers for a refresh token: active only when it is
// its live session's current token (a rotated one is inactive, though
// Revoke still accepts it).
func (s *Server) introspectRefresh(ctx context.Context, tok string) (*latchv1.IntrospectResponse, error) {
	parsed, err := s.parseRefresh(ctx, tok)
	if err != nil {
		return nil, nil
	}
	sess, err := s.store.GetSession(ctx, parsed.SessionID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get session: %w", err)
	}
	if !isCurrent(sess, parsed) || !sess.Live(s.now()) {
		return nil, nil
	}
	user, err := s.store.GetUser(ctx, sess.UserID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && user.Disabled) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get user: %w", err)
	}
	return &latchv1.IntrospectResponse{
		Active: true, Sub: sess.UserID, SessionId: sess.ID, Roles: user.Roles,
		Exp: sess.ExpiresAt().Unix(), Iat: sess.LastRotatedAt.Unix(), Nbf: sess.LastRotatedAt.Unix(),
		Iss: s.cfg.Issuer, Aud: []string{sess.Audience}, TokenType: "refresh_token",
	}, nil
}

// authorizeCaller checks the caller's own access token, sent as
// "authorization: Bearer <token>" metadata, and that it carries role.
func (s *Server) authorizeCaller(ctx context.Context, role string) (tokens.Claims, error) {
	probeKey, tok, err := s.callerToken(ctx)
	if err != nil {
		return tokens.Claims{}, err
	}
	c, active, err := s.activeAccessClaims(ctx, tok)
	if err != nil {
		return tokens.Claims{}, err
	}
	return s.checkCaller(ctx, probeKey, c, active, role)
}

// callerToken returns the caller's bearer token and the probe-budget key
// its failures count against.
func (s *Server) callerToken(ctx context.Context) (probeKey, tok string, err error) {
	// A caller credential is itself a token to check: bad ones count
	// against the address's probe budget.
	probeKey = "caller:" + peerAddress(ctx)
	if err := s.allowProbe(ctx, probeKey); err != nil {
		return "", "", err
	}
	vals := metadata.ValueFromIncomingContext(ctx, "authorization")
	if len(vals) == 0 {
		return "", "", failure(codes.Unauthenticated, msgNoCredential)
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if len(vals) != 1 || !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || len(tok) > tokens.MaxTokenLength {
		return "", "", failure(codes.Unauthenticated, msgBadScheme)
	}
	return probeKey, tok, nil
}

// checkCaller turns the caller token's check (its claims c, and whether it
// is active) into authorizeCaller's outcome.
func (s *Server) checkCaller(ctx context.Context, probeKey string, c tokens.Claims, active bool, role string) (tokens.Claims, error) {
	if !active {
		s.probes.Fail(probeKey)
		s.log.LogAttrs(ctx, slog.LevelInfo, "caller credential rejected", slog.String("event", "caller_unauthenticated"),
			slog.String("peer", peerAddress(ctx)))
		return tokens.Claims{}, failure(codes.Unauthenticated, msgBadCredential)
	}
	if !slices.Contains(c.Roles, role) {
		s.log.LogAttrs(ctx, slog.LevelInfo, "caller lacks role", slog.String("event", "caller_permission_denied"),
			slog.String("user_id", c.Subject), slog.String("role", role))
		return tokens.Claims{}, failure(codes.PermissionDenied, msgNoIntrospect)
	}
	return c, nil
}

// GetJWKS implements latchv1.AuthServiceServer.
func (s *Server) GetJWKS(ctx context.Context, _ *latchv1.GetJWKSRequest) (*latchv1.GetJWKSResponse, error) {
	set := s.keys.jwks()
	resp := &latchv1.GetJWKSResponse{Keys: make([]*latchv1.JSONWebKey, 0, len(set.Keys))}
	for _, k := range set.Keys {
		resp.Keys = append(resp.Keys, &latchv1.JSONWebKey{
			Kty: k.Kty, Crv: k.Crv, X: k.X, Y: k.Y, Kid: k.Kid, Alg: k.Alg, Use: k.Use,
		})
	}
	return resp, nil
}

type tokenKind int

const (
	kindAccess tokenKind = iota
	kindRefresh
)

// tryOrder is the order in which a token is tried as each kind: the hinted
// kind first; without a hint, a JWT shape (dots) is tried as an access token
// first. Both kinds are always tried (RFC 7009 §2.1, RFC 7662 §2.1).
func tryOrder(tok string, hint latchv1.TokenTypeHint) [2]tokenKind {
	switch {
	case hint == latchv1.TokenTypeHint_TOKEN_TYPE_HINT_REFRESH_TOKEN:
		return [2]tokenKind{kindRefresh, kindAccess}
	case hint == latchv1.TokenTypeHint_TOKEN_TYPE_HINT_ACCESS_TOKEN, strings.Contains(tok, "."):
		return [2]tokenKind{kindAccess, kindRefresh}
	default:
		return [2]tokenKind{kindRefresh, kindAccess}
	}
}

// NormalizeEmail returns the form of an email that users are stored and
// looked up by: surrounding spaces trimmed, lower-cased.
func NormalizeEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

// peerAddress is the client's IP address without port, for rate limits and
// logs ("unknown" when the transport has none).
func peerAddress(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
		return host
	}
	return p.Addr.String()
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
