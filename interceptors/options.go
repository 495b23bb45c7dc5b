package interceptors

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"google.golang.org/grpc"

	"github.com/latchauth/latch/interceptors/clientcreds"
	"github.com/latchauth/latch/internal/verifier"
	"github.com/latchauth/latch/tokens"
)

// Config holds what a Verifier cannot do without.
type Config struct {
	// Issuer is the iss tokens must carry: Latch's --issuer.
	Issuer string
	// Audience lists the audiences this service answers to; a token must
	// name at least one.
	Audience []string
	// Keys says where Latch's public keys come from: JWKSFromGRPC,
	// JWKSURL, InsecureJWKSURL or StaticJWKS.
	Keys Keys
}

// Keys is where a Verifier gets Latch's public keys. The zero value names
// no source.
type Keys struct {
	name    string     // the constructor, for messages
	fetcher keyFetcher // nil for a URL, which needs the HTTP client
	url     *url.URL
	err     error
}

// JWKSFromGRPC fetches Latch's keys with AuthService.GetJWKS over conn.
func JWKSFromGRPC(conn grpc.ClientConnInterface) Keys {
	k := Keys{name: "JWKSFromGRPC", fetcher: &grpcFetcher{conn: conn}}
	if conn == nil {
		k.err = errors.New("nil connection")
	}
	return k
}

// JWKSURL fetches Latch's keys from its HTTP JWKS endpoint, for example
// "https://latch.example/.well-known/jwks.json", honouring Cache-Control
// max-age and ETag. WithHTTPClient sets TLS or timeouts.
//
// The URL must be https, except on a loopback host (127.0.0.0/8, ::1,
// localhost), where plain http is accepted for local development: keys
// fetched over plain http could be replaced by anyone on the path, who
// could then mint tokens this service accepts. A redirect is followed only
// within the same scheme and host (and port); one to another host, or from
// https to http, fails the fetch, so that the endpoint's origin cannot hand
// the choice of keys to another. The URL must not hold credentials.
func JWKSURL(url string) Keys {
	u, err := parseJWKSURL(url, false)
	return Keys{name: "JWKSURL", url: u, err: err}
}

// InsecureJWKSURL is JWKSURL without the https requirement: it also accepts
// plain http to any host. Anyone who can alter traffic between this service
// and that host can then substitute their own keys and mint tokens this
// service accepts, so use it only where the network path is otherwise
// protected (a service mesh that adds mTLS, for example). Redirects are
// still followed only within the same scheme and host.
func InsecureJWKSURL(url string) Keys {
	u, err := parseJWKSURL(url, true)
	return Keys{name: "InsecureJWKSURL", url: u, err: err}
}

// StaticJWKS uses a fixed JSON Web Key Set (a file shipped with the
// service, for example). Nothing is ever refetched.
func StaticJWKS(jwks []byte) Keys {
	k := Keys{name: "StaticJWKS"}
	set, err := tokens.ParseJWKS(jwks)
	if err != nil {
		k.err = err
		return k
	}
	k.fetcher = staticFetcher{set: set}
	return k
}

// Option tunes a Verifier. The defaults suit a service that fetches keys
// from Latch and, with WithRevocations, follows its revocations.
type Option func(*verifier.Settings)

// WithLeeway allows for clock skew on exp, nbf and iat. Default 5 s, at
// most tokens.MaxLeeway.
func WithLeeway(d time.Duration) Option { return func(s *verifier.Settings) { s.Leeway = d } }

// WithRefreshInterval sets how often keys are refreshed in the background
// when the server sends no Cache-Control max-age. Default 5 minutes.
func WithRefreshInterval(d time.Duration) Option {
	return func(s *verifier.Settings) { s.RefreshInterval = d }
}

// WithMinRefetchInterval bounds refetches caused by tokens with an unknown
// kid: at most one per interval, however many such tokens arrive (a flood
// of random kids must not become a flood of fetches). Default 30 s.
func WithMinRefetchInterval(d time.Duration) Option {
	return func(s *verifier.Settings) { s.MinRefetch = d }
}

// WithLazyStart lets NewVerifier return before any key set has been
// fetched (and, with WithRevocations, before the first revocation
// snapshot): until keys arrive every token is rejected (UNAUTHENTICATED)
// and fetching keeps retrying in the background; until the first snapshot
// arrives the Verifier is stale (Status.RevocationsMissing), so every token
// is refused with ErrStale (UNAVAILABLE) unless WithFailOpen, never
// accepted unchecked. Default: NewVerifier waits, and fails if it cannot
// get them.
func WithLazyStart() Option { return func(s *verifier.Settings) { s.Lazy = true } }

// WithRevocations follows Latch's WatchRevocations stream over conn and
// rejects revoked tokens and sessions locally. Without it verification is
// stateless: a token is valid until it expires.
//
// The stream needs a credential with role "introspect" for Latch's own
// audience, its issuer (unless Latch leaves Introspect open): either
// creds, logged in for that audience and given clientcreds.WithRelogin, or
// nil when conn carries its own per-RPC credentials. With creds, when
// Latch ends the stream with UNAUTHENTICATED (the follower's session was
// revoked, or its token refused), the follower invalidates the token it
// sent and reconnects at once with a new one, so that a revoked follower
// session costs one reconnect, not the rest of the access token's
// lifetime; while creds report clientcreds.ErrSessionEnded the Verifier
// is not serving (Status.CredentialsFailing).
func WithRevocations(conn grpc.ClientConnInterface, creds *clientcreds.Credentials) Option {
	return func(s *verifier.Settings) { s.Revocations, s.RevocationCreds = conn, creds }
}

// WithCacheSize bounds the verified-token cache (entries). A hit skips the
// ECDSA verification but never the revocation check. 0 disables it.
// Default 10,000.
func WithCacheSize(n int) Option { return func(s *verifier.Settings) { s.CacheSize = n } }

// WithClock sets the clock for token times and freshness. Default
// time.Now.
func WithClock(now func() time.Time) Option { return func(s *verifier.Settings) { s.Now = now } }

// WithLogger sets the logger for key refreshes, the revocation stream and
// health changes. Tokens are never logged. Default: discard.
func WithLogger(l *slog.Logger) Option { return func(s *verifier.Settings) { s.Log = l } }

// WithHTTPClient sets the client a JWKSURL or InsecureJWKSURL is fetched
// with. Default: a client with a 10 s timeout. The Verifier uses a copy of
// c whose redirect policy first refuses any redirect off the URL's scheme
// and host, then applies c.CheckRedirect; c itself is not changed.
func WithHTTPClient(c *http.Client) Option { return func(s *verifier.Settings) { s.HTTPClient = c } }

// WithMaxKeyAge bounds how old the key set may grow (time since the last
// successful fetch, 304 included) before the Verifier is stale. It does not
// apply to StaticJWKS, which fetches nothing. Default 1 hour (a dozen
// failed refreshes at the default pace).
func WithMaxKeyAge(d time.Duration) Option { return func(s *verifier.Settings) { s.MaxKeyAge = d } }

// WithMaxRevocationLag bounds how long the revocation stream may be out of
// sync (down, or reconnected but before its snapshot is complete) before
// the Verifier is stale: revocations made meanwhile are unknown to it.
// Default 5 minutes, a third of the default access-token lifetime. Before
// the first snapshot (WithLazyStart) the Verifier is stale at once: it has
// never known what Latch revoked.
func WithMaxRevocationLag(d time.Duration) Option {
	return func(s *verifier.Settings) { s.MaxRevocationLag = d }
}

// WithFailOpen keeps verifying while the Verifier is stale, with the last
// key set and the revocations received so far: a key withdrawn, or a token
// revoked, while the Verifier is cut off from Latch is honoured until it
// reconnects. Health still reports NOT_SERVING, so operators see it.
// Default: fail closed, refusing every token with ErrStale (UNAVAILABLE)
// while stale, so that no request is let through on keys or revocations
// that may be out of date.
func WithFailOpen() Option { return func(s *verifier.Settings) { s.FailOpen = true } }

// validate reports every problem with cfg and s at once, each named as the
// caller wrote it.
func validate(cfg Config, s verifier.Settings) error {
	var errs []error
	if cfg.Issuer == "" {
		errs = append(errs, errors.New("Config.Issuer is required: Latch's --issuer"))
	}
	if len(cfg.Audience) == 0 {
		errs = append(errs, errors.New("Config.Audience is required: the audiences this service answers to"))
	}
	switch {
	case cfg.Keys.err != nil:
		errs = append(errs, fmt.Errorf("Config.Keys: %s: %w", cfg.Keys.name, cfg.Keys.err))
	case cfg.Keys.name != "" && s.KeySource != nil:
		errs = append(errs, errors.New("Config.Keys must be empty with Latch's own key source"))
	case cfg.Keys.name == "" && s.KeySource == nil:
		errs = append(errs, errors.New("Config.Keys is required: JWKSFromGRPC, JWKSURL, InsecureJWKSURL or StaticJWKS"))
	}
	if set, isSet := s.KeySource.(*tokens.KeySet); isSet && set == nil {
		errs = append(errs, errors.New("nil key source"))
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"WithRefreshInterval", s.RefreshInterval}, {"WithMinRefetchInterval", s.MinRefetch},
		{"WithMaxKeyAge", s.MaxKeyAge}, {"WithMaxRevocationLag", s.MaxRevocationLag}} {
		if d.d <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive", d.name))
		}
	}
	if s.CacheSize < 0 {
		errs = append(errs, errors.New("WithCacheSize: must not be negative"))
	}
	if s.Now == nil || s.Log == nil {
		errs = append(errs, errors.New("WithClock and WithLogger: must not be nil"))
	}
	if s.Revocations == nil && s.RevocationCreds != nil {
		errs = append(errs, errors.New("WithRevocations: nil connection"))
	}
	return errors.Join(errs...)
}
