package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	latchauth "github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/server/keyseal"
	"github.com/latchauth/latch/server/password"
	"github.com/latchauth/latch/server/ratelimit"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/tokens"
)

// RoleIntrospect is the role a caller's access token needs to call
// Introspect.
const RoleIntrospect = "introspect"

// Config is what a Server needs to know. Validate reports every problem at
// once.
type Config struct {
	// Issuer is the iss claim of every token, e.g. "https://latch.example".
	Issuer string
	// Audiences a Login may ask for; the first is the default. Access
	// tokens of any of them are accepted by Introspect.
	Audiences []string
	// AccessTTL is the access-token lifetime (default 15m).
	AccessTTL time.Duration
	// RefreshIdleTTL is how long a refresh token stays usable without being
	// exchanged (default 7 days); each exchange renews it.
	RefreshIdleTTL time.Duration
	// RefreshMaxAge is the absolute lifetime of a session (default 30 days).
	RefreshMaxAge time.Duration
	// RefreshReuseGrace, when positive, lets a client retry its last
	// Refresh with the same token within this window (see storage.Rotation).
	// Zero (the default) treats every second use as reuse.
	RefreshReuseGrace time.Duration
	// Leeway is the clock-skew allowance for exp, nbf and iat (default and
	// maximum 30s).
	Leeway time.Duration
	// IntrospectOpen lets anyone call Introspect without a credential. For
	// development only: Introspect is an oracle for token validity.
	IntrospectOpen bool
	// Login limits: failed attempts allowed per account and per client
	// address before RESOURCE_EXHAUSTED, refilled at one per refill period.
	AccountBurst, AddressBurst   int
	AccountRefill, AddressRefill time.Duration
	// Probe limits: invalid refresh tokens per client address and inactive
	// Introspect answers per caller allowed before RESOURCE_EXHAUSTED, so
	// neither RPC can be used to scan for valid tokens. Refilled at one per
	// ProbeRefill (default burst 30, refill 1s).
	ProbeBurst  int
	ProbeRefill time.Duration
	// VerifyCacheSize bounds the cache of access tokens that verified
	// (default 50,000, about 300 bytes each); negative disables it, so that
	// every check runs ECDSA. Revocation is never cached.
	VerifyCacheSize int
	// JWKSMaxAge is the Cache-Control max-age of the HTTP JWKS (default 5m).
	JWKSMaxAge time.Duration
	// Signing-key life cycle (see keyadmin.go and keyconfig.go):
	// KeyRotation is how long a key signs before the next one takes over
	// (default 30 days; negative disables scheduled rotation);
	// KeyPublishLead is how long a new key is published before it may sign
	// (default JWKSMaxAge + 1h, never less than JWKSMaxAge);
	// KeyReloadInterval is how often the key ring is reloaded from storage
	// and due transitions applied (default 5s).
	KeyRotation, KeyPublishLead, KeyReloadInterval time.Duration
}

// Defaults fills zero fields with their defaults.
func (c Config) Defaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.AccessTTL, 15*time.Minute)
	def(&c.RefreshIdleTTL, 7*24*time.Hour)
	def(&c.RefreshMaxAge, 30*24*time.Hour)
	def(&c.Leeway, tokens.MaxLeeway)
	def(&c.AccountRefill, 30*time.Second)
	def(&c.AddressRefill, time.Second)
	def(&c.JWKSMaxAge, 5*time.Minute)
	def(&c.ProbeRefill, time.Second)
	if c.VerifyCacheSize == 0 {
		c.VerifyCacheSize = 50_000
	}
	if c.ProbeBurst == 0 {
		c.ProbeBurst = 30
	}
	if c.AccountBurst == 0 {
		c.AccountBurst = 10
	}
	if c.AddressBurst == 0 {
		c.AddressBurst = 100
	}
	return c.keyDefaults()
}

// MaxSessionLifetime bounds --refresh-max-age (and so --refresh-ttl): 100
// years. Storage keeps session times as Unix nanoseconds (up to the year
// 2262), so a far longer lifetime would make every login and rotation fail
// with an invalid argument instead of being refused at start-up.
const MaxSessionLifetime = 100 * 365 * 24 * time.Hour

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Issuer == "" {
		errs = append(errs, errors.New("issuer is required (--issuer)"))
	}
	if len(c.Audiences) == 0 {
		errs = append(errs, errors.New("at least one audience is required (--audience)"))
	}
	for i, a := range c.Audiences {
		if a == "" {
			errs = append(errs, fmt.Errorf("audience %d is empty", i+1))
		}
		if slices.Index(c.Audiences, a) != i {
			errs = append(errs, fmt.Errorf("audience %q listed twice", a))
		}
	}
	if c.AccessTTL <= 0 || c.AccessTTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("access-ttl %v must be in (0, 24h]", c.AccessTTL))
	}
	// Storage's access-token check reads a session's revocation and absolute
	// expiry, not its idle expiry (a rotation does not rewrite the summary it
	// reads): an access token is minted when its session's idle expiry is set
	// to now + refresh-ttl, so while the token verifies (exp + leeway) its
	// session cannot have idled out — provided refresh-ttl ≥ access-ttl + leeway.
	if c.RefreshIdleTTL < c.AccessTTL+max(c.Leeway, 0) {
		errs = append(errs, fmt.Errorf("refresh-ttl %v must be at least access-ttl %v plus leeway %v", c.RefreshIdleTTL, c.AccessTTL, c.Leeway))
	}
	if c.RefreshIdleTTL <= 0 {
		errs = append(errs, fmt.Errorf("refresh-ttl %v must be positive", c.RefreshIdleTTL))
	}
	if c.RefreshMaxAge < c.RefreshIdleTTL {
		errs = append(errs, fmt.Errorf("refresh-max-age %v must be at least refresh-ttl %v", c.RefreshMaxAge, c.RefreshIdleTTL))
	}
	if c.RefreshMaxAge > MaxSessionLifetime {
		errs = append(errs, fmt.Errorf("refresh-max-age %v must be at most %v (100 years)", c.RefreshMaxAge, MaxSessionLifetime))
	}
	if c.RefreshReuseGrace < 0 || c.RefreshReuseGrace > time.Minute {
		errs = append(errs, fmt.Errorf("refresh-reuse-grace %v must be in [0, 1m]", c.RefreshReuseGrace))
	}
	if c.Leeway < 0 || c.Leeway > tokens.MaxLeeway {
		errs = append(errs, fmt.Errorf("leeway %v must be in [0, %v]", c.Leeway, tokens.MaxLeeway))
	}
	if c.AccountBurst < 1 || c.AddressBurst < 1 || c.AccountRefill <= 0 || c.AddressRefill <= 0 {
		errs = append(errs, errors.New("login limits must be positive"))
	}
	if c.ProbeBurst < 1 || c.ProbeRefill <= 0 {
		errs = append(errs, errors.New("probe limits must be positive"))
	}
	if c.JWKSMaxAge < 0 {
		errs = append(errs, errors.New("jwks max-age must not be negative"))
	}
	errs = append(errs, c.validateKeys()...)
	return errors.Join(errs...)
}

// Server implements latchv1.AuthServiceServer over a storage.Store.
type Server struct {
	latchv1.UnimplementedAuthServiceServer

	cfg      Config
	store    storage.Store
	hasher   *password.Hasher
	keys     *keyRing
	verifier *tokens.Verifier
	verified *tokens.VerifyCache // access tokens that verified, for hot tokens
	accounts *ratelimit.Limiter
	addrs    *ratelimit.Limiter
	probes   *ratelimit.Limiter
	revs     *broadcaster
	log      *slog.Logger
	now      func() time.Time
	rand     io.Reader
	metrics  *Metrics  // nil: no metrics
	ready    readiness // draining flag and shared store check

	keyPolicy  keyPolicy
	keyMu      sync.Mutex // serialises key-set changes and ring reloads
	missReload missReloader

	refreshKeys *refreshRing // refresh-token MAC secrets (refreshkeys.go)
	refreshMiss missReloader

	// adminAuth guards AdminService (admin_auth.go).
	adminAuth *latchauth.Verifier
}

var _ latchv1.AuthServiceServer = (*Server)(nil)

// Option configures a Server.
type Option func(*options)

type options struct {
	log     *slog.Logger
	now     func() time.Time
	rand    io.Reader
	sealer  *keyseal.Sealer
	metrics *Metrics
}

// WithLogger sets the logger. Default: a logger that discards everything.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithClock sets the clock used for token times, expiry and rate limits.
// Default time.Now. A wrong clock mints tokens with wrong lifetimes.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithRand sets the randomness for keys, ids and refresh tokens. Default
// crypto/rand.Reader; anything predictable makes every token guessable.
func WithRand(r io.Reader) Option { return func(o *options) { o.rand = r } }

// WithMetrics records RPC and domain metrics in m (see Metrics). Default:
// none, and no /metrics endpoint. One Metrics serves one Server.
func WithMetrics(m *Metrics) Option { return func(o *options) { o.metrics = m } }

// New returns a Server. It checks the stored signing keys (refusing sealed
// keys without the right key-encryption key, see WithKeySealer), makes sure
// an active and a next key exist (generating them on first start) and loads
// the published key set. Run RunKeyManager to keep the keys rotating.
func New(ctx context.Context, store storage.Store, hasher *password.Hasher, cfg Config, opts ...Option) (*Server, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("server: invalid config: %w", err)
	}
	if store == nil || hasher == nil {
		return nil, errors.New("server: store and hasher are required")
	}
	o := options{log: slog.New(slog.DiscardHandler), now: time.Now, rand: rand.Reader}
	for _, opt := range opts {
		opt(&o)
	}
	keys := &keyRing{sealer: o.sealer}
	v, err := tokens.NewVerifier(keys, cfg.Issuer, cfg.Audiences,
		tokens.WithLeeway(cfg.Leeway), tokens.WithClock(o.now))
	if err != nil {
		return nil, fmt.Errorf("server: verifier: %w", err)
	}
	const maxLimiterKeys = 100_000
	s := &Server{
		cfg:      cfg,
		store:    store,
		hasher:   hasher,
		keys:     keys,
		verifier: v,
		verified: newVerifyCache(cfg.VerifyCacheSize),
		accounts: ratelimit.New(cfg.AccountBurst, cfg.AccountRefill, maxLimiterKeys, ratelimit.WithClock(o.now)),
		addrs:    ratelimit.New(cfg.AddressBurst, cfg.AddressRefill, maxLimiterKeys, ratelimit.WithClock(o.now)),
		probes:   ratelimit.New(cfg.ProbeBurst, cfg.ProbeRefill, maxLimiterKeys, ratelimit.WithClock(o.now)),
		revs:     newBroadcaster(),
		log:      o.log,
		now:      o.now,
		rand:     o.rand,
		metrics:  o.metrics,

		keyPolicy:  newKeyPolicy(cfg),
		missReload: missReloader{interval: time.Second},

		refreshKeys: &refreshRing{sealer: o.sealer},
		refreshMiss: missReloader{interval: time.Second},
	}
	if err := s.initKeys(ctx); err != nil {
		return nil, err
	}
	keys.onMiss = s.reloadOnMiss
	if o.metrics != nil {
		if err := o.metrics.bind(s); err != nil {
			return nil, err
		}
	}
	if s.adminAuth, err = s.newAdminVerifier(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Config returns the server's effective configuration (defaults filled).
func (s *Server) Config() Config { return s.cfg }

// Verifier returns the strict verifier the server uses for access tokens,
// over its own published key set.
func (s *Server) Verifier() *tokens.Verifier { return s.verifier }

// JWKS returns the published public keys.
func (s *Server) JWKS() tokens.JWKS { return s.keys.jwks() }

// newVerifyCache returns the cache, or nil when size is negative.
func newVerifyCache(size int) *tokens.VerifyCache {
	if size < 0 {
		return nil
	}
	return tokens.NewVerifyCache(size)
}
