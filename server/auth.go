package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc/codes"
)

// Field limits. Oversized fields are refused before any work is done.
const (
	maxEmailLength    = 254
	maxAudienceLength = 256
)

// Login implements latchv1.AuthServiceServer.
func (s *Server) Login(ctx context.Context, req *latchv1.LoginRequest) (*latchv1.LoginResponse, error) {
	resp, err := s.login(ctx, req)
	s.metrics.login(loginOutcome(err))
	if err != nil {
		return nil, s.toStatus(ctx, "Login", err)
	}
	return resp, nil
}

func (s *Server) login(ctx context.Context, req *latchv1.LoginRequest) (*latchv1.LoginResponse, error) {
	email, err := parseEmail(req.GetEmail())
	if err != nil {
		return nil, asInvalid(err)
	}
	pw := req.GetPassword()
	if err := checkUTF8(reqField{"password", pw}, reqField{"audience", req.GetAudience()}); err != nil {
		return nil, err
	}
	switch {
	case pw == "":
		return nil, invalidArg("password is required")
	case len(pw) > password.MaxLength:
		return nil, invalidArg("password " + msgTooLongInField + " (1024 bytes)")
	case len(req.GetDeviceProof()) > tokens.MaxDeviceProofLength:
		return nil, invalidArg("device_proof " + msgTooLongInField)
	}
	if err := checkDeviceName(req.GetDeviceName()); err != nil {
		return nil, err
	}
	aud, err := s.loginAudience(req.GetAudience())
	if err != nil {
		return nil, err
	}

	// The account is looked up before anything is charged, because which
	// buckets an attempt is charged to depends on it (its class, its device
	// proofs); an unknown email is charged exactly as a person's account.
	addr := s.clientAddr(ctx)
	user, err := s.store.GetUserByEmail(ctx, email)
	found := err == nil
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("get user by email: %w", err)
	}
	device := ""
	if found {
		device = s.knownDevice(user.ID, req.GetDeviceProof())
	}
	charges := s.loginCharges(email, user, device, addr)
	ticket, err := s.takeLogin(ctx, charges, addr)
	if err != nil {
		return nil, err
	}
	defer ticket.slot.Release()

	user, ok, err := s.checkPassword(ctx, ticket.slot, user, found, pw)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, failure(codes.Unauthenticated, msgBadLogin)
	}
	// A right password gives back the token this attempt took from the
	// account's (or device's) failure budget, and only that one: the
	// address's and the login-rate budgets keep it.
	s.refund(ctx, ticket)

	now := s.now()
	sess, refresh, err := s.newSession(ctx, storage.Session{UserID: user.ID, Audience: aud,
		UserAgent: userAgent(ctx), DeviceName: req.GetDeviceName(), LoginAddr: sessionAddr(addr), LastAddr: sessionAddr(addr)}, now)
	if err != nil {
		return nil, err
	}
	if user, err = s.recheckUser(ctx, user, sess, now); err != nil {
		return nil, err
	}
	s.capSessions(ctx, user, sess)
	pair, err := s.tokenPair(sess, user, refresh, aud, now)
	if err != nil {
		return nil, err
	}
	proof, err := s.newDeviceProof(user.ID, now)
	if err != nil {
		return nil, err
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "login", slog.String("event", "login_succeeded"),
		slog.String("user_id", user.ID), slog.String("session_id", sess.ID), slog.String("peer", addr.String()),
		slog.Bool("known_device", device != ""))
	return &latchv1.LoginResponse{Tokens: pair, DeviceProof: proof}, nil
}

// checkPassword checks pw against user (found is false for an unknown
// email) in slot, which it releases, spending the same work whether or not
// the email exists. ok is
// false for an unknown email, a wrong password or a disabled user, each
// logged with its reason. It returns the user with its hash upgraded when
// the stored parameters were weaker than the current ones.
func (s *Server) checkPassword(ctx context.Context, slot *password.Slot, user storage.User, found bool, pw string) (storage.User, bool, error) {
	if !found {
		err := slot.VerifyDummy(pw)
		slot.Release()
		if err != nil {
			return storage.User{}, false, fmt.Errorf("dummy verify: %w", err)
		}
		s.loginFailed(ctx, "unknown_email", "")
		return storage.User{}, false, nil
	}
	ok, rehash, err := slot.Verify(pw, user.PasswordHash)
	slot.Release() // before upgradeHash, which hashes in a slot of its own
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
		slog.String("reason", reason), slog.String("user_id", userID), slog.String("peer", s.clientAddr(ctx).String()))
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

// loginAudience returns the audience a Login asks for: one of the configured
// audiences (the first when none is asked for) or Latch's own, the issuer.
func (s *Server) loginAudience(requested string) (string, error) {
	switch {
	case requested == "":
		return s.cfg.Audiences[0], nil
	case len(requested) > maxAudienceLength:
		return "", invalidArg("audience " + msgTooLongInField + " (256 bytes)")
	case requested == s.cfg.Issuer || slices.Contains(s.cfg.Audiences, requested):
		return requested, nil
	}
	return "", invalidArg("audience is neither one of the configured audiences nor Latch's own (the issuer)")
}

// newSession stores a new session for template's user, audience and client
// description, with a fresh id and first refresh token, created at now.
func (s *Server) newSession(ctx context.Context, template storage.Session, now time.Time) (storage.Session, string, error) {
	userID := template.UserID
	sid, err := tokens.NewID(s.rand)
	if err != nil {
		return storage.Session{}, "", fmt.Errorf("session id: %w", err)
	}
	refresh, minted, err := tokens.NewRefreshToken(s.rand, s.refreshKeys.minting(), sid, 0)
	if err != nil {
		return storage.Session{}, "", fmt.Errorf("refresh token: %w", err)
	}
	sess := template
	sess.ID, sess.CurrentHash = sid, minted.Digest
	sess.CreatedAt, sess.LastRotatedAt = now, now
	sess.IdleExpiresAt, sess.AbsoluteExpiresAt = now.Add(s.cfg.RefreshIdleTTL), now.Add(s.cfg.RefreshMaxAge)
	err = s.store.CreateSession(ctx, sess)
	if gone, disabled := errors.Is(err, storage.ErrNotFound), errors.Is(err, storage.ErrUserDisabled); gone || disabled {
		// An administrator deleted or disabled the user after the password
		// check; the store refused the session in the transaction that
		// would have stored it. The login fails like any refused login.
		reason := "user_deleted_during_login"
		if disabled {
			reason = "user_disabled_during_login"
		}
		s.loginFailed(ctx, reason, userID)
		return storage.Session{}, "", failure(codes.Unauthenticated, msgBadLogin)
	}
	if err != nil {
		return storage.Session{}, "", fmt.Errorf("create session: %w", err)
	}
	return sess, refresh, nil
}

// tokenPair mints the access token for sess, for audience aud, and packs it
// with refresh. Its client_id is the session's own audience, the client
// the person logged in to, whatever audience this token is for. The access token never outlives its session's absolute
// lifetime.
func (s *Server) tokenPair(sess storage.Session, user storage.User, refresh, aud string, now time.Time) (*latchv1.TokenPair, error) {
	jti, err := tokens.NewID(s.rand)
	if err != nil {
		return nil, fmt.Errorf("jti: %w", err)
	}
	exp := now.Add(s.cfg.AccessTTL)
	if sess.AbsoluteExpiresAt.Before(exp) {
		exp = sess.AbsoluteExpiresAt
	}
	at, err := s.keys.signer().Sign(tokens.Claims{
		Issuer: s.cfg.Issuer, Subject: user.ID, Audience: []string{aud},
		ExpiresAt: exp, NotBefore: now, IssuedAt: now, ID: jti, SessionID: sess.ID, Roles: user.Roles,
		ClientID: sess.Audience,
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
	pair, err := s.refresh(ctx, req.GetRefreshToken(), req.GetAudience())
	if ce := (*clientError)(nil); errors.As(err, &ce) && ce.code == codes.Unauthenticated {
		// Only a failing refresh token is charged to its address's budget,
		// and only a failing one is refused once that is spent.
		if limited := s.chargeFailure(ctx, bucketRefresh, LimiterProbeRefresh, err); limited != err {
			s.metrics.refresh(RefreshRateLimited)
			return nil, s.toStatus(ctx, "Refresh", limited)
		}
	}
	s.metrics.refresh(refreshOutcome(err))
	if err != nil {
		return nil, s.toStatus(ctx, "Refresh", err)
	}
	return &latchv1.RefreshResponse{Tokens: pair}, nil
}

func (s *Server) refresh(ctx context.Context, presented, requestedAud string) (*latchv1.TokenPair, error) {
	if presented == "" {
		return nil, invalidArg("refresh_token is required")
	}
	if len(requestedAud) > maxAudienceLength {
		return nil, invalidArg("audience " + msgTooLongInField + " (256 bytes)")
	}
	if err := checkUTF8(reqField{"audience", requestedAud}); err != nil {
		return nil, err
	}
	// A token that does not parse, or whose MAC does not verify, is
	// unknown: nothing it names is trusted, so it never revokes a session.
	parsed, err := s.parseRefresh(ctx, presented)
	if err != nil {
		s.refreshFailed(ctx, refreshParseFailure(err), storage.Session{})
		return nil, failure(codes.Unauthenticated, msgBadRefresh)
	}
	if err := s.checkRefreshAudience(ctx, parsed.SessionID, requestedAud); err != nil {
		return nil, err
	}
	next, minted, err := tokens.NewRefreshToken(s.rand, s.refreshKeys.minting(), parsed.SessionID, parsed.Generation+1)
	if err != nil {
		return nil, fmt.Errorf("refresh token: %w", err)
	}
	now := s.now()
	sess, err := s.store.RotateRefreshToken(ctx, storage.Rotation{
		SessionID: parsed.SessionID, Generation: parsed.Generation,
		Presented: parsed.Digest, Next: minted.Digest, Now: now,
		IdleTTL: s.cfg.RefreshIdleTTL, ReuseGrace: max(s.cfg.RefreshReuseGrace, 0),
		Addr: sessionAddr(s.clientAddr(ctx)),
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
			slog.String("user_id", reused.UserID), slog.String("peer", s.clientAddr(ctx).String()))
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
		if _, err := s.revokeSession(ctx, sess, storage.ReasonUserChanged, "", now); err != nil {
			return nil, fmt.Errorf("missing or disabled user: %w", err)
		}
		s.refreshFailed(ctx, "user_disabled_or_deleted", sess)
		return nil, failure(codes.Unauthenticated, msgBadRefresh)
	}
	if err != nil {
		return nil, fmt.Errorf("get user: %w", err)
	}
	aud := sess.Audience
	if requestedAud != "" {
		aud = requestedAud
	}
	pair, err := s.tokenPair(sess, user, next, aud, now)
	if err != nil {
		return nil, err
	}
	// Debug, not info: a rotation happens for every live session every
	// access-token lifetime, and latch_refreshes_total counts them. The
	// events an operator acts on (refresh_failed, refresh_reuse_detected)
	// stay at info and warn.
	s.log.LogAttrs(ctx, slog.LevelDebug, "refresh", slog.String("event", "refresh_succeeded"),
		slog.String("user_id", user.ID), slog.String("session_id", sess.ID))
	return pair, nil
}

// checkRefreshAudience refuses, before anything is rotated, a requested
// audience that is neither Latch's own nor the session's (sid, named by a
// refresh token whose MAC verified). Only an audience other than those
// needs the session read first; an unknown session passes here and fails
// in the rotation as any unknown token does.
func (s *Server) checkRefreshAudience(ctx context.Context, sid, requested string) error {
	if requested == "" || requested == s.cfg.Issuer {
		return nil
	}
	if !slices.Contains(s.cfg.Audiences, requested) {
		return invalidArg("audience is neither the session's nor Latch's own (the issuer)")
	}
	sess, err := s.store.GetSession(ctx, sid)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("find session: %w", err)
	case sess.Audience != requested:
		return invalidArg("audience is neither the session's nor Latch's own (the issuer)")
	}
	return nil
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
		slog.String("peer", s.clientAddr(ctx).String()))
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
	done, err := tryKinds(tok, hint, func(tok string) (bool, error) { return s.revokeAccess(ctx, tok) },
		func(tok string) (bool, error) { return s.revokeRefresh(ctx, tok) })
	if err != nil || done {
		return err
	}
	// RFC 7009 §2.2: an invalid token is answered like a revoked one.
	s.log.LogAttrs(ctx, slog.LevelInfo, "revoke matched no token", slog.String("event", "revoke_no_match"),
		slog.String("peer", s.clientAddr(ctx).String()))
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
	changed, err := s.revokeSession(ctx, sess, storage.ReasonRevoked, RevokedSession, s.now())
	if err != nil {
		return false, err
	}
	if !changed {
		// Already revoked (or swept): RFC 7009 answers OK all the same,
		// and there is nothing new to announce or count.
		s.log.LogAttrs(ctx, slog.LevelDebug, "session already revoked", slog.String("event", "session_revoke_repeated"),
			slog.String("session_id", sess.ID), slog.String("user_id", sess.UserID))
		return true, nil
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "session revoked", slog.String("event", "session_revoked"),
		slog.String("session_id", sess.ID), slog.String("user_id", sess.UserID))
	return true, nil
}

// revokeAccess denies tok's jti until tok expires. Invalid or expired tokens
// need nothing.
func (s *Server) revokeAccess(ctx context.Context, tok string) (bool, error) {
	c, err := s.verifyAccess(ctx, tok)
	if err != nil {
		c, err = s.verifySelf(ctx, tok) // a token for Latch's own audience
	}
	if err != nil {
		return false, nil
	}
	changed, err := s.store.DenyAccessToken(ctx, c.ID, c.ExpiresAt)
	if err != nil {
		return false, fmt.Errorf("deny access token: %w", err)
	}
	if !changed {
		s.log.LogAttrs(ctx, slog.LevelDebug, "access token already revoked", slog.String("event", "access_token_revoke_repeated"),
			slog.String("jti", c.ID), slog.String("session_id", c.SessionID), slog.String("user_id", c.Subject))
		return true, nil
	}
	s.revs.publish(revocationEvent(storage.Revocation{JTI: c.ID, ExpiresAt: c.ExpiresAt}))
	s.metrics.Revoked(RevokedAccess, 1)
	s.log.LogAttrs(ctx, slog.LevelInfo, "access token revoked", slog.String("event", "access_token_revoked"),
		slog.String("jti", c.ID), slog.String("session_id", c.SessionID), slog.String("user_id", c.Subject))
	return true, nil
}

// Introspect implements latchv1.AuthServiceServer. The access table has
// authorized the caller (role introspect) unless introspection is open. An
// authenticated introspector is never throttled for inactive answers:
// caller authentication is what stops scanning (RFC 7662 section 4), and
// expired tokens are everyday traffic. Only tokens for the relying parties'
// audiences are described: a token for Latch's own audience is inactive
// here, so that no relying party trusting Introspect can be made to accept
// one.
func (s *Server) Introspect(ctx context.Context, req *latchv1.IntrospectRequest) (*latchv1.IntrospectResponse, error) {
	if req.GetToken() == "" {
		return nil, s.toStatus(ctx, "Introspect", invalidArg("token is required"))
	}
	resp, err := tryKinds(req.GetToken(), req.GetTokenTypeHint(), func(tok string) (*latchv1.IntrospectResponse, error) {
		return s.introspectAccess(ctx, tok)
	}, func(tok string) (*latchv1.IntrospectResponse, error) { return s.introspectRefresh(ctx, tok) })
	if err == nil && resp == nil {
		resp = &latchv1.IntrospectResponse{Active: false}
		// Open introspection is a validity oracle for anyone: its inactive
		// answers are charged to the asking address.
		if s.cfg.IntrospectOpen {
			err = s.chargeFailure(ctx, bucketInspect, LimiterProbeIntrospect, nil)
		}
	}
	if err != nil {
		return nil, s.toStatus(ctx, "Introspect", err)
	}
	return resp, nil
}

// verifyAccess verifies an access token for one of the relying parties'
// audiences (Config.Audiences).
func (s *Server) verifyAccess(ctx context.Context, tok string) (tokens.Claims, error) {
	return s.verifyCached(ctx, s.verifier, s.verified, tok)
}

// verifySelf verifies an access token for Latch's own audience (the
// issuer): the only tokens Latch's own APIs accept from their callers.
func (s *Server) verifySelf(ctx context.Context, tok string) (tokens.Claims, error) {
	return s.verifyCached(ctx, s.selfVerifier, s.verifiedSelf, tok)
}

// verifyCached is v behind cache, a cache of tokens that already verified
// with v and the current keys (revocation is not cached: callers check it
// every time). Each verifier has its own cache, so a token that one of them
// accepted can never be taken from the cache by the other.
func (s *Server) verifyCached(ctx context.Context, v *tokens.Verifier, cache *tokens.VerifyCache, tok string) (tokens.Claims, error) {
	if len(tok) > tokens.MaxTokenLength || cache == nil {
		return v.Verify(ctx, tok)
	}
	// The ring's KeyEpoch, as for the interceptors' caches over KeySource:
	// an entry cached under it dies with the first key change.
	key, epoch := tokens.CacheKey(tok), s.keys.KeyEpoch()
	if c, ok := cache.Get(key, s.now(), epoch); ok {
		return c, nil
	}
	c, err := v.Verify(ctx, tok)
	if err != nil {
		return tokens.Claims{}, err
	}
	cache.Put(key, c, epoch)
	return c, nil
}

// introspectAccess answers for tok as an access token of a relying
// party's audience: nil unless it verifies and is not revoked.
func (s *Server) introspectAccess(ctx context.Context, tok string) (*latchv1.IntrospectResponse, error) {
	c, err := s.verifyAccess(ctx, tok)
	if err != nil {
		return nil, nil
	}
	revoked, err := s.TokenRevoked(ctx, c)
	if err != nil || revoked {
		return nil, err
	}
	return &latchv1.IntrospectResponse{
		Active: true, Sub: c.Subject, SessionId: c.SessionID, Roles: c.Roles,
		Exp: c.ExpiresAt.Unix(), Iat: c.IssuedAt.Unix(), Nbf: unixOrZero(c.NotBefore), Jti: c.ID,
		Iss: c.Issuer, Aud: c.Audience, TokenType: "access_token", ClientId: c.ClientID,
	}, nil
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
		Iss: s.cfg.Issuer, Aud: []string{sess.Audience}, TokenType: "refresh_token", ClientId: sess.Audience,
	}, nil
}

// GetJWKS implements latchv1.AuthServiceServer.
func (s *Server) GetJWKS(ctx context.Context, _ *latchv1.GetJWKSRequest) (*latchv1.GetJWKSResponse, error) {
	set := s.keys.jwks()
	resp := &latchv1.GetJWKSResponse{Keys: make([]*latchv1.JSONWebKey, 0, len(set.Keys))}
	for _, k := range set.Keys {
		resp.Keys = append(resp.Keys, jwkProto(k))
	}
	return resp, nil
}

// tryKinds tries tok as each kind of token, the hinted kind first;
// without a hint, a JWT shape (dots) is tried as an access token first.
// Both kinds are always tried (RFC 7009 §2.1, RFC 7662 §2.1): it returns
// the first answer that is not the zero value, or the first error.
func tryKinds[T comparable](tok string, hint latchv1.TokenTypeHint, access, refresh func(string) (T, error)) (T, error) {
	first, second := refresh, access
	if hint == latchv1.TokenTypeHint_TOKEN_TYPE_HINT_ACCESS_TOKEN ||
		(hint != latchv1.TokenTypeHint_TOKEN_TYPE_HINT_REFRESH_TOKEN && strings.Contains(tok, ".")) {
		first, second = access, refresh
	}
	var zero T
	if v, err := first(tok); err != nil || v != zero {
		return v, err
	}
	return second(tok)
}

// NormalizeEmail returns the form of an email that users are stored and
// looked up by: surrounding spaces trimmed, lower-cased.
func NormalizeEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
