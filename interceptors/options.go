package interceptors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"google.golang.org/grpc"

	"github.com/latchauth/latch/tokens"
)

// Option configures NewVerifier.
type Option func(*options) error

type options struct {
	source          keyFetcher
	issuer          string
	audiences       []string
	leeway          time.Duration
	refreshInterval time.Duration
	minRefetch      time.Duration
	startTimeout    time.Duration
	lazy            bool
	revocations     grpc.ClientConnInterface
	revCreds        *RefreshingCredentials
	cacheSize       int
	now             func() time.Time
	log             *slog.Logger
	httpClient      *http.Client
	jwksURL         *url.URL
	sources         int              // key-source options given
	keySource       tokens.KeySource // WithKeySource
	revCheck        RevocationCheck
	maxKeyAge       time.Duration
	maxRevLag       time.Duration
	stalePolicy     StalePolicy
}

func defaultOptions() options {
	return options{
		leeway:          5 * time.Second,
		refreshInterval: 5 * time.Minute,
		minRefetch:      30 * time.Second,
		startTimeout:    10 * time.Second,
		cacheSize:       10_000,
		maxKeyAge:       time.Hour,
		maxRevLag:       5 * time.Minute,
		now:             time.Now,
		log:             slog.New(slog.DiscardHandler),
	}
}

// WithJWKSFromGRPC fetches Latch's keys with AuthService.GetJWKS over conn.
func WithJWKSFromGRPC(conn grpc.ClientConnInterface) Option {
	return func(o *options) error {
		if conn == nil {
			return errors.New("WithJWKSFromGRPC: nil connection")
		}
		o.source = &grpcFetcher{conn: conn}
		o.sources++
		return nil
	}
}

// WithJWKSURL fetches Latch's keys from its HTTP JWKS endpoint, for example
// "https://latch.example/.well-known/jwks.json", honouring Cache-Control
// max-age and ETag. Use WithHTTPClient to set TLS or timeouts.
//
// The URL must be https, except on a loopback host (127.0.0.0/8, ::1,
// localhost), where plain http is accepted for local development: keys
// fetched over plain http could be replaced by anyone on the path, who
// could then mint tokens this service accepts. A redirect is followed only
// within the same scheme and host (and port); one to another host, or from
// https to http, fails the fetch, so that the endpoint's origin cannot hand
// the choice of keys to another. The URL must not hold credentials.
func WithJWKSURL(url string) Option {
	return func(o *options) error { return o.setJWKSURL("WithJWKSURL", url, false) }
}

// WithInsecureJWKSURL is WithJWKSURL without the https requirement: it also
// accepts plain http to any host. Anyone who can alter traffic between this
// service and that host can then substitute their own keys and mint tokens
// this service accepts, so use it only where the network path is otherwise
// protected (a service mesh that adds mTLS, for example). Redirects are
// still followed only within the same scheme and host.
func WithInsecureJWKSURL(url string) Option {
	return func(o *options) error { return o.setJWKSURL("WithInsecureJWKSURL", url, true) }
}

func (o *options) setJWKSURL(name, raw string, insecure bool) error {
	u, err := parseJWKSURL(raw, insecure)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	o.jwksURL = u
	o.sources++
	return nil
}

// WithHTTPClient sets the client WithJWKSURL uses. Default: a client with a
// 10 s timeout. The Verifier uses a copy of c whose redirect policy first
// refuses any redirect off the JWKS URL's scheme and host, then applies
// c.CheckRedirect; c itself is not changed.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) error {
		if c == nil {
			return errors.New("WithHTTPClient: nil client")
		}
		o.httpClient = c
		return nil
	}
}

// WithStaticJWKS uses a fixed JSON Web Key Set read from r (a file shipped
// with the service, for example). Nothing is ever refetched.
func WithStaticJWKS(r io.Reader) Option {
	return func(o *options) error {
		data, err := io.ReadAll(io.LimitReader(r, tokens.MaxJWKSSize+1))
		if err != nil {
			return fmt.Errorf("WithStaticJWKS: %w", err)
		}
		set, err := tokens.ParseJWKS(data)
		if err != nil {
			return fmt.Errorf("WithStaticJWKS: %w", err)
		}
		o.source = staticFetcher{set: set}
		o.sources++
		return nil
	}
}

// EpochKeySource is a tokens.KeySource that tells when its key set
// changes. WithKeySource uses KeyEpoch to keep the verified-token cache
// honest: a cached verification is used only while KeyEpoch returns the
// value it had when the token was verified.
type EpochKeySource interface {
	tokens.KeySource
	// KeyEpoch returns a comparable value that changes whenever the set of
	// keys changes, for example a pointer to an immutable snapshot of the
	// set. It is called on every verification and must be cheap.
	KeyEpoch() any
}

// WithKeySource verifies against keys the caller owns, with no fetching:
// for example Latch's own key ring when the interceptors run inside Latch,
// or a key set the service manages itself. Each kid is looked up in ks on
// every uncached verification. A lookup error other than
// tokens.ErrUnknownKey refuses the token; the interceptors answer
// UNAVAILABLE (the token may be fine), never UNAUTHENTICATED.
//
// The verified-token cache stays valid across key changes only if the
// Verifier can tell when the set changes: when ks implements
// EpochKeySource (or is an immutable *tokens.KeySet) the cache is keyed to
// its epoch; otherwise the cache is off and every call runs ECDSA, so that
// a key removed from ks is never honoured from the cache.
//
// Exclusive with WithJWKSFromGRPC, WithJWKSURL and WithStaticJWKS. Key-age
// health (WithMaxKeyAge) does not apply: ks is as fresh as its owner keeps
// it.
func WithKeySource(ks tokens.KeySource) Option {
	return func(o *options) error {
		if set, isSet := ks.(*tokens.KeySet); ks == nil || isSet && set == nil {
			return errors.New("WithKeySource: nil key source")
		}
		if o.keySource != nil {
			return errors.New("WithKeySource: given twice")
		}
		o.keySource = ks
		o.sources++
		return nil
	}
}

// RevocationCheck reports whether the token with claims c has been revoked
// (its jti or its session). An error means the answer is unknown.
type RevocationCheck func(ctx context.Context, c Claims) (revoked bool, err error)

// WithRevocationCheck runs check on every verification, after the
// signature and claims checks and on cache hits too (revocation is never
// cached): for example Latch's own storage when the interceptors run
// inside Latch. A revoked token fails with ErrRevoked; an error fails
// closed with ErrRevocationUnavailable (UNAVAILABLE from the interceptors),
// never as a valid token. It may be combined with WithRevocationsFromGRPC:
// a token either one reports revoked is rejected.
func WithRevocationCheck(check RevocationCheck) Option {
	return func(o *options) error {
		if check == nil {
			return errors.New("WithRevocationCheck: nil check")
		}
		if o.revCheck != nil {
			return errors.New("WithRevocationCheck: given twice")
		}
		o.revCheck = check
		return nil
	}
}

// WithIssuer sets the issuer (iss) tokens must carry: Latch's --issuer.
// Required.
func WithIssuer(iss string) Option {
	return func(o *options) error { o.issuer = iss; return nil }
}

// WithAudience sets the audiences this service answers to; a token must
// name at least one. Required.
func WithAudience(aud ...string) Option {
	return func(o *options) error { o.audiences = append(o.audiences, aud...); return nil }
}

// WithLeeway allows for clock skew on exp, nbf and iat. Default 5 s, at
// most tokens.MaxLeeway.
func WithLeeway(d time.Duration) Option {
	return func(o *options) error { o.leeway = d; return nil }
}

// WithRefreshInterval sets how often keys are refreshed in the background
// when the server sends no Cache-Control max-age. Default 5 minutes.
func WithRefreshInterval(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return errors.New("WithRefreshInterval: must be positive")
		}
		o.refreshInterval = d
		return nil
	}
}

// WithMinRefetchInterval bounds refetches caused by tokens with an unknown
// kid: at most one per interval, however many such tokens arrive (a flood
// of random kids must not become a flood of fetches). Default 30 s.
func WithMinRefetchInterval(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return errors.New("WithMinRefetchInterval: must be positive")
		}
		o.minRefetch = d
		return nil
	}
}

// WithStartupTimeout bounds how long NewVerifier waits for the first key
// set. Default 10 s.
func WithStartupTimeout(d time.Duration) Option {
	return func(o *options) error { o.startTimeout = d; return nil }
}

// WithLazyStart lets NewVerifier return before any key set has been
// fetched (and, with WithRevocationsFromGRPC, before the first revocation
// snapshot): until keys arrive every token is rejected (UNAUTHENTICATED)
// and fetching keeps retrying in the background; until the first snapshot
// arrives the Verifier is stale (Health.RevocationsMissing), so under the
// default FailClosed policy every token is refused with ErrStale
// (UNAVAILABLE), never accepted unchecked. Default: NewVerifier fails.
func WithLazyStart() Option {
	return func(o *options) error { o.lazy = true; return nil }
}

// WithRevocationsFromGRPC follows Latch's WatchRevocations stream over conn
// and rejects revoked tokens and sessions locally. conn must carry a
// credential with role "introspect" (see NewRefreshingCredentials), unless
// Latch runs with --introspect-open. Without this option verification is
// stateless: tokens are valid until they expire.
func WithRevocationsFromGRPC(conn grpc.ClientConnInterface) Option {
	return func(o *options) error {
		if conn == nil {
			return errors.New("WithRevocationsFromGRPC: nil connection")
		}
		o.revocations = conn
		return nil
	}
}

// WithRevocationCredentials sends creds on the WatchRevocations stream of
// WithRevocationsFromGRPC, whose connection must then carry no per-RPC
// credentials of its own (the call would hold two). Log them in for
// Latch's own audience, its issuer (the one WithIssuer names), and give
// them Relogin: when Latch ends the stream with UNAUTHENTICATED (the
// follower's session was revoked, or its token refused), the follower
// invalidates the token it sent and reconnects at once with a new one
// (refreshed, or from a new login), so that a revoked follower session
// costs one reconnect, not the rest of the access token's lifetime. While
// creds report ErrSessionEnded (Failure), Health reports
// CredentialsFailing and the Verifier is not serving.
func WithRevocationCredentials(creds *RefreshingCredentials) Option {
	return func(o *options) error {
		if creds == nil {
			return errors.New("WithRevocationCredentials: nil credentials")
		}
		o.revCreds = creds
		return nil
	}
}

// WithCacheSize bounds the verified-token cache (entries). A hit skips the
// ECDSA verification but never the revocation check. 0 disables it.
// Default 10,000.
func WithCacheSize(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return errors.New("WithCacheSize: must not be negative")
		}
		o.cacheSize = n
		return nil
	}
}

// WithClock sets the clock for token times. Default time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) error { o.now = now; return nil }
}

// WithLogger sets the logger for key refreshes and the revocation stream.
// Tokens are never logged. Default: discard.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { o.log = l; return nil }
}
