package interceptors

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// RefreshingCredentials is a credentials.PerRPCCredentials that attaches
// "authorization: Bearer <access token>" to every call and, before the
// access token expires, exchanges the refresh token with Latch for a new
// pair. However many calls need a token at once, one Refresh runs (single
// flight) and the others wait for it. Use it with grpc.WithPerRPCCredentials.
//
// It requires transport security (TLS) unless AllowInsecure is given: a
// bearer token on a plaintext connection can be stolen by anyone on the
// path.
type RefreshingCredentials struct {
	latch    latchv1.AuthServiceClient
	now      func() time.Time
	early    time.Duration
	insecure bool

	mu       sync.Mutex
	access   string
	refresh  string
	exp      time.Time
	lifetime time.Duration
	inflight chan struct{}
	lastErr  error
	retryAt  time.Time // after a failed refresh, the old token is used until then
}

var _ credentials.PerRPCCredentials = (*RefreshingCredentials)(nil)

// CredentialsOption configures RefreshingCredentials.
type CredentialsOption func(*RefreshingCredentials)

// AllowInsecure lets the credentials travel on plaintext connections. Only
// for loopback tests and local development.
func AllowInsecure() CredentialsOption { return func(c *RefreshingCredentials) { c.insecure = true } }

// RefreshEarly sets how long before expiry the token is refreshed. Default
// 60 s (or a fifth of the lifetime, if shorter).
func RefreshEarly(d time.Duration) CredentialsOption {
	return func(c *RefreshingCredentials) { c.early = d }
}

// CredentialsClock sets the clock. Default time.Now.
func CredentialsClock(now func() time.Time) CredentialsOption {
	return func(c *RefreshingCredentials) { c.now = now }
}

// NewRefreshingCredentials starts from pair (from Login or Refresh) and
// refreshes through latch, a connection to Latch. The connection may itself
// carry these credentials: the Refresh calls they make are sent without
// them.
func NewRefreshingCredentials(latch grpc.ClientConnInterface, pair *latchv1.TokenPair, opts ...CredentialsOption) (*RefreshingCredentials, error) {
	if latch == nil || pair.GetAccessToken() == "" || pair.GetRefreshToken() == "" {
		return nil, errors.New("interceptors: a Latch connection and a token pair are required")
	}
	c := &RefreshingCredentials{latch: latchv1.NewAuthServiceClient(latch), now: time.Now, early: time.Minute}
	for _, opt := range opts {
		opt(c)
	}
	c.install(pair, c.now())
	return c, nil
}

// Login logs in to Latch and returns credentials that keep the session's
// tokens fresh. The password is used once and not kept.
func Login(ctx context.Context, latch grpc.ClientConnInterface, email, password, audience string, opts ...CredentialsOption) (*RefreshingCredentials, error) {
	resp, err := latchv1.NewAuthServiceClient(latch).Login(withoutCredentials(ctx),
		&latchv1.LoginRequest{Email: email, Password: password, Audience: audience})
	if err != nil {
		return nil, fmt.Errorf("interceptors: login: %w", err)
	}
	return NewRefreshingCredentials(latch, resp.GetTokens(), opts...)
}

func (c *RefreshingCredentials) install(pair *latchv1.TokenPair, now time.Time) {
	c.access, c.refresh = pair.GetAccessToken(), pair.GetRefreshToken()
	c.lifetime = time.Duration(pair.GetExpiresIn()) * time.Second
	c.exp = now.Add(c.lifetime)
}

type skipCredentialsKey struct{}

// withoutCredentials marks a call that must not carry these credentials
// (the Refresh call itself, which would otherwise wait for itself).
func withoutCredentials(ctx context.Context) context.Context {
	return context.WithValue(ctx, skipCredentialsKey{}, true)
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (c *RefreshingCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
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
func (c *RefreshingCredentials) RequireTransportSecurity() bool { return !c.insecure }

// Token returns a current access token, refreshing first if it is about to
// expire. If a refresh fails while the old token is still valid, the old
// token is returned and the refresh retried on the next call.
func (c *RefreshingCredentials) Token(ctx context.Context) (string, error) {
	for {
		c.mu.Lock()
		now := c.now()
		early := min(c.early, c.lifetime/5)
		fresh := now.Before(c.exp.Add(-max(early, 0))) || (now.Before(c.exp) && now.Before(c.retryAt))
		if fresh && c.inflight == nil {
			tok := c.access
			c.mu.Unlock()
			return tok, nil
		}
		if ch := c.inflight; ch != nil {
			tok, valid := c.access, now.Before(c.exp)
			c.mu.Unlock()
			if valid {
				return tok, nil // still usable while the refresh runs
			}
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		ch := make(chan struct{})
		c.inflight = ch
		refresh := c.refresh
		c.mu.Unlock()

		rctx, cancel := context.WithTimeout(withoutCredentials(context.WithoutCancel(ctx)), 10*time.Second)
		resp, err := c.latch.Refresh(rctx, &latchv1.RefreshRequest{RefreshToken: refresh})
		cancel()

		c.mu.Lock()
		c.inflight = nil
		close(ch)
		if err == nil {
			c.install(resp.GetTokens(), c.now())
			c.lastErr = nil
			tok := c.access
			c.mu.Unlock()
			return tok, nil
		}
		c.lastErr = err
		c.retryAt = c.now().Add(5 * time.Second)
		tok, valid := c.access, c.now().Before(c.exp)
		c.mu.Unlock()
		if valid {
			return tok, nil
		}
		return "", fmt.Errorf("interceptors: refresh access token: %w", err)
	}
}
