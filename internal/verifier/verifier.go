// Package verifier holds the settings of an interceptors.Verifier and the
// options only Latch itself gives one: verifying against Latch's own key
// ring, and checking revocation in Latch's own store on every call. They
// are internal so that a sibling service's verifier trusts the keys and
// revocations Latch publishes and nothing else.
package verifier

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/grpc"

	"github.com/latchauth/latch/interceptors/clientcreds"
	"github.com/latchauth/latch/tokens"
)

// Settings are a Verifier's optional settings; the interceptors' With…
// options and this package's options set them.
type Settings struct {
	Leeway           time.Duration
	RefreshInterval  time.Duration
	MinRefetch       time.Duration
	Lazy             bool
	Revocations      grpc.ClientConnInterface
	RevocationCreds  *clientcreds.Credentials
	CacheSize        int
	Now              func() time.Time
	Log              *slog.Logger
	HTTPClient       *http.Client
	MaxKeyAge        time.Duration
	MaxRevocationLag time.Duration
	FailOpen         bool
	KeySource        tokens.KeySource // WithKeySource
	RevocationCheck  RevocationCheck  // WithRevocationCheck
}

// Defaults returns the settings a Verifier starts from.
func Defaults() Settings {
	return Settings{
		Leeway:           5 * time.Second,
		RefreshInterval:  5 * time.Minute,
		MinRefetch:       30 * time.Second,
		CacheSize:        10_000,
		MaxKeyAge:        time.Hour,
		MaxRevocationLag: 5 * time.Minute,
		Now:              time.Now,
		Log:              slog.New(slog.DiscardHandler),
	}
}

// ErrRevocationUnavailable reports that whether a token is revoked could
// not be established (the WithRevocationCheck function failed): the token
// is refused, never accepted, until the check answers again.
var ErrRevocationUnavailable = errors.New("interceptors: revocation state unavailable")

// EpochKeySource is a tokens.KeySource that tells when its key set
// changes. A Verifier given one with WithKeySource uses a cached
// verification only while KeyEpoch returns the value it had when the token
// was verified.
type EpochKeySource interface {
	tokens.KeySource
	// KeyEpoch returns a comparable value that changes whenever the set of
	// keys changes, for example a pointer to an immutable snapshot of the
	// set. It is called on every verification and must be cheap.
	KeyEpoch() any
}

// WithKeySource verifies against keys the caller owns, with no fetching:
// Latch's own key ring. It takes the place of interceptors.Config.Keys,
// which must then be empty. Each kid is looked up in ks on every uncached
// verification; a lookup error other than tokens.ErrUnknownKey refuses the
// token with UNAVAILABLE (the token may be fine), never UNAUTHENTICATED.
//
// The verified-token cache stays valid across key changes only if the
// Verifier can tell when the set changes: when ks is an EpochKeySource (or
// an immutable *tokens.KeySet) the cache is keyed to its epoch; otherwise
// the cache is off, so that a key removed from ks is never honoured from
// it. Key-age health does not apply: ks is as fresh as its owner keeps it.
func WithKeySource(ks tokens.KeySource) func(*Settings) {
	return func(s *Settings) { s.KeySource = ks }
}

// RevocationCheck reports whether the token with claims c has been revoked
// (its jti or its session). An error means the answer is unknown.
type RevocationCheck func(ctx context.Context, c tokens.Claims) (revoked bool, err error)

// WithRevocationCheck runs check on every verification, after the signature
// and claims checks and on cache hits too (revocation is never cached):
// Latch's own store, so that a Revoke that has returned is seen at once. A
// revoked token fails with interceptors.ErrRevoked; an error fails closed
// with ErrRevocationUnavailable (UNAVAILABLE), never as a valid token, and
// makes the Verifier unhealthy until the check answers again.
func WithRevocationCheck(check RevocationCheck) func(*Settings) {
	return func(s *Settings) { s.RevocationCheck = check }
}
