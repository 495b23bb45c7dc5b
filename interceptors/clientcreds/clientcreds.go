// Package clientcreds gives a gRPC client Latch access tokens that stay
// fresh: Credentials attach "authorization: Bearer <access token>" to every
// call and exchange the refresh token with Latch before the access token
// expires, logging in again (WithRelogin) when Latch ends the session.
package clientcreds

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// ErrSessionEnded reports credentials that cannot get a token: Latch
// refused the refresh token (the session was revoked, reused or expired)
// and no WithRelogin is configured, or the WithRelogin function was itself
// refused with UNAUTHENTICATED (wrong password, account disabled). Token and the
// calls that carry the credentials fail with it (UNAUTHENTICATED), and
// Credentials.Failure reports it for health checks.
var ErrSessionEnded = errors.New("clientcreds: Latch session ended and could not be renewed")

// Credentials is a credentials.PerRPCCredentials that attaches
// "authorization: Bearer <access token>" to every call and, before the
// access token expires, exchanges the refresh token with Latch for a new
// pair. However many calls need a token at once, one exchange runs (single
// flight) and the others wait for it. Use it with grpc.WithPerRPCCredentials.
//
// A failed exchange is retried with jittered exponential backoff (1 s
// doubling to 1 min by default, see WithRetryBackoff), driven by the calls
// that need a token: meanwhile a still-valid access token keeps being
// used, and an expired one fails fast with the last error. A transient
// failure (UNAVAILABLE, a deadline, ...) keeps the refresh token for the
// next try. When Latch refuses the refresh token (UNAUTHENTICATED: the
// session was revoked or has expired), the session is over: with WithRelogin
// the credentials log in again, otherwise they fail with ErrSessionEnded
// from then on.
//
// It requires transport security (TLS) unless WithInsecure is given: a
// bearer token on a plaintext connection can be stolen by anyone on the
// path.
type Credentials struct {
	latch       latchv1.AuthServiceClient
	now         func() time.Time
	early       time.Duration
	insecure    bool
	relogin     LoginFunc
	backoffBase time.Duration
	backoffMax  time.Duration

	mu       sync.Mutex
	access   string // "" once the session has ended
	refresh  string // "" once Latch has refused it
	exp      time.Time
	lifetime time.Duration
	rejected bool // Invalidate named the current access token
	inflight chan struct{}
	lastErr  error
	failures int       // consecutive failed exchanges, for backoff
	retryAt  time.Time // no exchange before then after a failure
	fatal    error     // wraps ErrSessionEnded while the credentials cannot recover by themselves
}

var _ credentials.PerRPCCredentials = (*Credentials)(nil)

// Option configures Credentials.
type Option func(*Credentials)

// LoginFunc logs in to Latch afresh and returns the new session's token
// pair. PasswordLogin makes one.
type LoginFunc func(ctx context.Context) (*latchv1.TokenPair, error)

// WithInsecure lets the credentials travel on plaintext connections. Only
// for loopback tests and local development.
func WithInsecure() Option { return func(c *Credentials) { c.insecure = true } }

// WithRefreshEarly sets how long before expiry the token is refreshed. Default
// 60 s (or a fifth of the lifetime, if shorter).
func WithRefreshEarly(d time.Duration) Option {
	return func(c *Credentials) { c.early = d }
}

// WithClock sets the clock. Default time.Now.
func WithClock(now func() time.Time) Option {
	return func(c *Credentials) { c.now = now }
}

// WithRelogin lets the credentials start a new session with login when Latch
// refuses the refresh token (the session was revoked, reused after a lost
// reply, or expired), instead of failing for good. A login that fails is
// retried with the same backoff as a refresh; one refused with
// UNAUTHENTICATED also reports ErrSessionEnded through Failure until a
// later attempt succeeds. Default: none, and a refused refresh token ends
// the credentials.
func WithRelogin(login LoginFunc) Option {
	return func(c *Credentials) { c.relogin = login }
}

// WithRetryBackoff sets the backoff between failed exchanges: base after the
// first failure, doubling up to max, each wait drawn at random from its
// upper half. Default 1 s and 1 minute; values other than 0 < base ≤ max
// are ignored.
func WithRetryBackoff(base, max time.Duration) Option {
	return func(c *Credentials) {
		if base > 0 && max >= base {
			c.backoffBase, c.backoffMax = base, max
		}
	}
}

// PasswordLogin returns a LoginFunc that logs in to latch as email for
// audience, asking password for the password on every login (so it can be
// read from a file or secret store that rotates, and need not stay in
// memory). For credentials that call Latch's own APIs (WatchRevocations,
// Introspect, AdminService) the audience is Latch's issuer, the iss of its
// tokens.
func PasswordLogin(latch grpc.ClientConnInterface, email, audience string, password func(ctx context.Context) (string, error)) LoginFunc {
	client := latchv1.NewAuthServiceClient(latch)
	return func(ctx context.Context) (*latchv1.TokenPair, error) {
		pw, err := password(ctx)
		if err != nil {
			return nil, fmt.Errorf("password for %s: %w", email, err)
		}
		resp, err := client.Login(withoutCredentials(ctx), &latchv1.LoginRequest{Email: email, Password: pw, Audience: audience})
		if err != nil {
			return nil, fmt.Errorf("log in as %s: %w", email, err)
		}
		return resp.GetTokens(), nil
	}
}

// New starts from pair (from Login or Refresh) and refreshes through
// latch, a connection to Latch. The connection may itself carry these
// credentials: the Refresh calls they make are sent without them.
func New(latch grpc.ClientConnInterface, pair *latchv1.TokenPair, opts ...Option) (*Credentials, error) {
	if latch == nil || pair.GetAccessToken() == "" || pair.GetRefreshToken() == "" {
		return nil, errors.New("clientcreds: a Latch connection and a token pair are required")
	}
	c := &Credentials{latch: latchv1.NewAuthServiceClient(latch), now: time.Now, early: time.Minute,
		backoffBase: time.Second, backoffMax: time.Minute}
	for _, opt := range opts {
		opt(c)
	}
	c.install(pair, c.now())
	return c, nil
}

// Login logs in to Latch and returns credentials that keep the session's
// tokens fresh. The password is used once and not kept: to let the
// credentials log in again when the session ends, give WithRelogin
// (with PasswordLogin). For Latch's own APIs, audience is Latch's issuer.
func Login(ctx context.Context, latch grpc.ClientConnInterface, email, password, audience string, opts ...Option) (*Credentials, error) {
	pair, err := PasswordLogin(latch, email, audience, func(context.Context) (string, error) { return password, nil })(ctx)
	if err != nil {
		return nil, fmt.Errorf("clientcreds: %w", err)
	}
	return New(latch, pair, opts...)
}

func (c *Credentials) install(pair *latchv1.TokenPair, now time.Time) {
	c.access, c.refresh = pair.GetAccessToken(), pair.GetRefreshToken()
	c.lifetime = time.Duration(pair.GetExpiresIn()) * time.Second
	c.exp = now.Add(c.lifetime)
	c.rejected = false
}

type skipCredentialsKey struct{}

// withoutCredentials marks a call that must not carry these credentials
// (the Refresh call itself, which would otherwise wait for itself).
func withoutCredentials(ctx context.Context) context.Context {
	return context.WithValue(ctx, skipCredentialsKey{}, true)
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (c *Credentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	if ctx.Value(skipCredentialsKey{}) != nil {
		return nil, nil
	}
	tok, err := c.Token(ctx)
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (c *Credentials) RequireTransportSecurity() bool { return !c.insecure }

// Invalidate tells the credentials that Latch refused tok (a call or a
// stream ended with UNAUTHENTICATED, for example because the session was
// revoked): if tok is still the current access token, the next Token call
// gets a new one (refresh, or a new login when the refresh token is refused
// too) instead of returning it. A token already replaced is ignored, so
// that callers racing on one rejection cause one exchange.
func (c *Credentials) Invalidate(tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if tok != "" && tok == c.access {
		c.rejected = true
	}
}

// Failure returns an error wrapping ErrSessionEnded while the credentials
// cannot get a token by themselves (see ErrSessionEnded), and nil
// otherwise, transient failures included: for a readiness check, so that
// a session that has ended for good shows.
func (c *Credentials) Failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fatal
}

// Token returns a current access token, getting a new one first if it is
// about to expire or was invalidated. While an exchange is failing, a
// still-valid token is returned and the exchange retried after the
// backoff; an unusable one fails with the last error.
func (c *Credentials) Token(ctx context.Context) (string, error) {
	for {
		c.mu.Lock()
		now := c.now()
		early := max(min(c.early, c.lifetime/5), 0)
		usable := c.access != "" && !c.rejected && now.Before(c.exp)
		due := !usable || !now.Before(c.exp.Add(-early))
		if usable && (!due || c.inflight != nil || now.Before(c.retryAt)) {
			tok := c.access
			c.mu.Unlock()
			return tok, nil // fresh, or still usable while an exchange runs or backs off
		}
		if ch := c.inflight; ch != nil {
			c.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		if c.refresh == "" && c.relogin == nil {
			err := c.fatal
			c.mu.Unlock()
			if err == nil {
				err = sessionEnded(errors.New("no refresh token"))
			}
			return "", err
		}
		if now.Before(c.retryAt) {
			err := c.lastErr
			c.mu.Unlock()
			return "", fmt.Errorf("clientcreds: get an access token (retrying in %v): %w", c.retryAt.Sub(now).Round(time.Millisecond), err)
		}
		ch := make(chan struct{})
		c.inflight = ch
		refresh := c.refresh
		c.mu.Unlock()

		// The exchange is shared: it must not die with the call that
		// started it.
		xctx, cancel := context.WithTimeout(withoutCredentials(context.WithoutCancel(ctx)), 10*time.Second)
		pair, refreshRefused, err := c.exchange(xctx, refresh)
		cancel()

		c.mu.Lock()
		c.inflight = nil
		close(ch)
		if err == nil {
			c.install(pair, c.now())
			c.lastErr, c.fatal, c.failures, c.retryAt = nil, nil, 0, time.Time{}
			tok := c.access
			c.mu.Unlock()
			return tok, nil
		}
		if refreshRefused {
			// The session is over: its refresh token and its access
			// token (revoked with it) are of no more use.
			c.refresh, c.access = "", ""
		}
		c.lastErr = err
		if errors.Is(err, ErrSessionEnded) {
			c.fatal = err
		}
		c.failures++
		c.retryAt = c.now().Add(c.backoff(c.failures))
		tok, usable := c.access, c.access != "" && !c.rejected && c.now().Before(c.exp)
		c.mu.Unlock()
		if usable {
			return tok, nil
		}
		return "", err
	}
}

// exchange gets a new pair: Refresh with refresh (if any), then, when
// Latch refuses it, the WithRelogin function. refreshRefused reports that
// refresh is dead.
func (c *Credentials) exchange(ctx context.Context, refresh string) (pair *latchv1.TokenPair, refreshRefused bool, err error) {
	if refresh != "" {
		resp, err := c.latch.Refresh(ctx, &latchv1.RefreshRequest{RefreshToken: refresh})
		switch {
		case err == nil:
			return resp.GetTokens(), false, nil
		case status.Code(err) != codes.Unauthenticated:
			return nil, false, fmt.Errorf("clientcreds: refresh access token: %w", err)
		case c.relogin == nil:
			return nil, true, sessionEnded(fmt.Errorf("the refresh token was refused and no re-login is configured (WithRelogin): %w", err))
		}
		refreshRefused = true
	}
	pair, err = c.relogin(ctx)
	switch {
	case err == nil && (pair.GetAccessToken() == "" || pair.GetRefreshToken() == ""):
		return nil, refreshRefused, errors.New("clientcreds: log in again: no token pair returned")
	case status.Code(err) == codes.Unauthenticated:
		return nil, refreshRefused, sessionEnded(fmt.Errorf("the new login was refused: %w", err))
	case err != nil:
		return nil, refreshRefused, fmt.Errorf("clientcreds: log in again: %w", err)
	}
	return pair, refreshRefused, nil
}

// sessionEnded wraps err in ErrSessionEnded and gives it the status
// UNAUTHENTICATED, which gRPC calls carrying the credentials fail with.
func sessionEnded(err error) error {
	return &sessionEndedError{err: fmt.Errorf("%w: %w", ErrSessionEnded, err)}
}

type sessionEndedError struct{ err error }

func (e *sessionEndedError) Error() string { return e.err.Error() }
func (e *sessionEndedError) Unwrap() error { return e.err }

// GRPCStatus makes the error UNAUTHENTICATED, whatever the inner cause.
func (e *sessionEndedError) GRPCStatus() *status.Status {
	return status.New(codes.Unauthenticated, e.err.Error())
}

// backoff is the wait after n consecutive failures: base·2ⁿ⁻¹ capped at
// max, drawn from its upper half.
func (c *Credentials) backoff(n int) time.Duration {
	d := c.backoffBase
	for i := 1; i < n && d < c.backoffMax; i++ {
		d *= 2
	}
	d = min(d, c.backoffMax)
	return d/2 + rand.N(d/2+1)
}
