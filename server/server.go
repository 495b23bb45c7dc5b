package server

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/internal/keyseal"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/internal/ratelimit"
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
	// Audiences are the relying parties' audiences a Login may ask for; the
	// first is the default. Introspect describes access tokens of any of
	// them. None may be the issuer: the issuer is Latch's own audience, the
	// only one its own APIs (AdminService, Introspect's and
	// WatchRevocations' callers) accept, minted only when a Login or Refresh
	// asks for it.
	Audiences []string
	// AccessTTL is the access-token lifetime (default 15m).
	AccessTTL time.Duration
	// RefreshIdleTTL is how long a refresh token stays usable without being
	// exchanged (default 7 days); each exchange renews it.
	RefreshIdleTTL time.Duration
	// RefreshMaxAge is the absolute lifetime of a session (default 30 days).
	RefreshMaxAge time.Duration
	// RefreshReuseGrace lets a client retry its last Refresh with the same
	// token within this window after a lost reply (see storage.Rotation):
	// the retry gets a new successor and the one it replaces is dead, so a
	// session never has more than one live successor. Default
	// DefaultRefreshReuseGrace; negative disables it (every second use is
	// reuse).
	RefreshReuseGrace time.Duration
	// Leeway is the clock-skew allowance for exp, nbf and iat (default and
	// maximum 30s).
	Leeway time.Duration
	// IntrospectOpen lets anyone call Introspect without a credential. For
	// development only: Introspect is an oracle for token validity.
	IntrospectOpen bool
	// TrustedProxies are the networks of the proxies in front of Latch (TLS
	// terminators, load balancers, mesh sidecars) whose x-forwarded-for is
	// believed; see clientAddr. Empty: the transport peer is the client.
	TrustedProxies []netip.Prefix
	// Login limits (see docs/security.md). Each login attempt takes a token,
	// before its password is hashed, from:
	//   - its client address's bucket (AddressBurst, AddressRefill; default
	//     300 and 1s, sized for many clients behind one NAT), never given
	//     back;
	//   - the account's failure bucket shared by every client without a
	//     device proof for it (the class's FailureBurst, FailureRefill), or,
	//     with a valid device proof, that device's own bucket (DeviceBurst,
	//     DeviceRefill; default 10 and 30s); a right password gives this
	//     token back;
	//   - the account's login-rate bucket (the class's LoginBurst,
	//     LoginRefill), never given back, so that one valid credential
	//     cannot monopolise the hasher.
	AddressBurst, DeviceBurst   int
	AddressRefill, DeviceRefill time.Duration
	// DeviceProofTTL is how long a device proof handed out at login stays
	// valid (default 180 days); each successful login hands out a fresh one.
	DeviceProofTTL time.Duration
	// PersonLimits apply to accounts holding none of ServiceRoles (and to
	// unknown emails); ServiceLimits to accounts holding one, which fleets
	// of pods share, logging in together through rolling restarts.
	// Defaults: persons 20 logins then one per 6s, 10 failures then one per
	// 5m, 50 live sessions; services 600 logins then one per 100ms, 100
	// failures then one per 30s, 10,000 live sessions.
	PersonLimits, ServiceLimits AccountLimits
	// ServiceRoles mark service accounts (default: "service" and
	// "introspect").
	ServiceRoles []string
	// Probe limits: failed refresh tokens and caller credentials per client
	// address, and (with IntrospectOpen only) inactive Introspect answers
	// per client address. A budget is charged by failing requests only, and
	// only failing requests are refused (RESOURCE_EXHAUSTED instead of
	// UNAUTHENTICATED) once it is spent: a valid token is always served.
	// Default burst 30, refill 1s.
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
	c.AccessTTL = cmp.Or(c.AccessTTL, 15*time.Minute)
	c.RefreshIdleTTL = cmp.Or(c.RefreshIdleTTL, 7*24*time.Hour)
	c.RefreshMaxAge = cmp.Or(c.RefreshMaxAge, 30*24*time.Hour)
	c.RefreshReuseGrace = cmp.Or(c.RefreshReuseGrace, DefaultRefreshReuseGrace)
	c.Leeway = cmp.Or(c.Leeway, tokens.MaxLeeway)
	c.AddressBurst, c.AddressRefill = cmp.Or(c.AddressBurst, 300), cmp.Or(c.AddressRefill, time.Second)
	c.DeviceBurst, c.DeviceRefill = cmp.Or(c.DeviceBurst, 10), cmp.Or(c.DeviceRefill, 30*time.Second)
	c.DeviceProofTTL = cmp.Or(c.DeviceProofTTL, 180*24*time.Hour)
	c.ProbeBurst, c.ProbeRefill = cmp.Or(c.ProbeBurst, 30), cmp.Or(c.ProbeRefill, time.Second)
	c.VerifyCacheSize = cmp.Or(c.VerifyCacheSize, 50_000)
	c.JWKSMaxAge = cmp.Or(c.JWKSMaxAge, 5*time.Minute)
	c.PersonLimits = c.PersonLimits.orDefault(AccountLimits{LoginBurst: 20, LoginRefill: 6 * time.Second,
		FailureBurst: 10, FailureRefill: 5 * time.Minute, MaxSessions: 50})
	c.ServiceLimits = c.ServiceLimits.orDefault(AccountLimits{LoginBurst: 600, LoginRefill: 100 * time.Millisecond,
		FailureBurst: 100, FailureRefill: 30 * time.Second, MaxSessions: 10_000})
	if c.ServiceRoles == nil {
		c.ServiceRoles = []string{"service", RoleIntrospect}
	}
	return c.keyDefaults()
}

// RevokedSessionRetention is how long the store must keep a revoked
// session for the tokens this configuration mints: AccessTTL + Leeway
// (after Defaults), the longest an access token carrying its sid can still
// be accepted after the revocation. Pass it (or, after lowering AccessTTL,
// the longer value of before, until tokens minted under that have expired)
// to the store's revoked-session retention (bolt.WithRevokedSessionRetention,
// etcd.WithRevokedSessionRetention), so that what one account's logins
// leave stored is bounded by its login rate times this, not times the
// session lifetime; see "Revoked sessions" in package storage.
func (c Config) RevokedSessionRetention() time.Duration {
	d := c.Defaults()
	return d.AccessTTL + max(d.Leeway, 0)
}

// DefaultRefreshReuseGrace is the default retry window for the immediately
// previous refresh token (Config.RefreshReuseGrace), counted from when the
// exchange was asked for. A client whose Refresh failed with UNAVAILABLE or
// a missed deadline cannot know whether it committed, and retries the same
// token until the service answers, which on etcd can take as long as the
// store's clients need to leave a frozen member (up to about 25 s) or a
// leader election; the window covers that, so such a client keeps its
// session. A token older than the previous one, or the previous one after
// the window, is still reuse.
const DefaultRefreshReuseGrace = 30 * time.Second

// AccountLimits bound what one account can do with valid credentials.
type AccountLimits struct {
	// LoginBurst logins (right or wrong password) are allowed at once, then
	// one more every LoginRefill; past that Login answers RESOURCE_EXHAUSTED
	// before any hashing, as for any other limit.
	LoginBurst  int
	LoginRefill time.Duration
	// FailureBurst attempts without a device proof may be in flight or
	// have failed at once, then one more every FailureRefill; a right
	// password gives its attempt's token back. Every client without a
	// device proof for the account shares this budget, so it is what a
	// distributed guesser faces.
	FailureBurst  int
	FailureRefill time.Duration
	// MaxSessions is how many live sessions the account may hold; a login
	// past it revokes the oldest (with a revocation event).
	MaxSessions int
}

// orDefault fills l's zero fields from d.
func (l AccountLimits) orDefault(d AccountLimits) AccountLimits {
	return AccountLimits{LoginBurst: cmp.Or(l.LoginBurst, d.LoginBurst), LoginRefill: cmp.Or(l.LoginRefill, d.LoginRefill),
		FailureBurst: cmp.Or(l.FailureBurst, d.FailureBurst), FailureRefill: cmp.Or(l.FailureRefill, d.FailureRefill),
		MaxSessions: cmp.Or(l.MaxSessions, d.MaxSessions)}
}

// MaxSessionLifetime bounds RefreshMaxAge (and so RefreshIdleTTL): 100
// years. Storage keeps session times as Unix nanoseconds (up to the year
// 2262), so a far longer lifetime would make every login and rotation fail
// with an invalid argument instead of being refused at start-up.
const MaxSessionLifetime = 100 * 365 * 24 * time.Hour

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Issuer == "" {
		errs = append(errs, errors.New("config: Issuer is required"))
	}
	if len(c.Audiences) == 0 {
		errs = append(errs, errors.New("config: Audiences: at least one audience is required"))
	}
	for i, a := range c.Audiences {
		if a == "" {
			errs = append(errs, fmt.Errorf("config: Audiences: audience %d is empty", i+1))
		}
		if slices.Index(c.Audiences, a) != i {
			errs = append(errs, fmt.Errorf("config: Audiences: audience %q listed twice", a))
		}
		if a != "" && a == c.Issuer {
			errs = append(errs, fmt.Errorf("config: Audiences: audience %q is the Issuer, which is Latch's own audience: a relying party given it could call Latch's own APIs; choose another audience", a))
		}
	}
	if c.AccessTTL <= 0 || c.AccessTTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("config: AccessTTL %v must be in (0, 24h]", c.AccessTTL))
	}
	// Storage's access-token check reads a session's revocation and absolute
	// expiry, not its idle expiry (a rotation does not rewrite the summary it
	// reads): an access token is minted when its session's idle expiry is set
	// to now + refresh-ttl, so while the token verifies (exp + leeway) its
	// session cannot have idled out — provided refresh-ttl ≥ access-ttl + leeway.
	if c.RefreshIdleTTL < c.AccessTTL+max(c.Leeway, 0) {
		errs = append(errs, fmt.Errorf("config: RefreshIdleTTL %v must be at least AccessTTL %v plus Leeway %v", c.RefreshIdleTTL, c.AccessTTL, c.Leeway))
	}
	if c.RefreshIdleTTL <= 0 {
		errs = append(errs, fmt.Errorf("config: RefreshIdleTTL %v must be positive", c.RefreshIdleTTL))
	}
	if c.RefreshMaxAge < c.RefreshIdleTTL {
		errs = append(errs, fmt.Errorf("config: RefreshMaxAge %v must be at least RefreshIdleTTL %v", c.RefreshMaxAge, c.RefreshIdleTTL))
	}
	if c.RefreshMaxAge > MaxSessionLifetime {
		errs = append(errs, fmt.Errorf("config: RefreshMaxAge %v must be at most %v (100 years)", c.RefreshMaxAge, MaxSessionLifetime))
	}
	if c.RefreshReuseGrace > time.Minute {
		errs = append(errs, fmt.Errorf("config: RefreshReuseGrace %v must be at most 1m", c.RefreshReuseGrace))
	}
	if c.Leeway < 0 || c.Leeway > tokens.MaxLeeway {
		errs = append(errs, fmt.Errorf("config: Leeway %v must be in [0, %v]", c.Leeway, tokens.MaxLeeway))
	}
	if c.AddressBurst < 1 || c.DeviceBurst < 1 || c.AddressRefill <= 0 || c.DeviceRefill <= 0 || c.DeviceProofTTL <= 0 {
		errs = append(errs, errors.New("login limits must be positive"))
	}
	for name, l := range map[string]AccountLimits{"person": c.PersonLimits, "service": c.ServiceLimits} {
		if l.LoginBurst < 1 || l.LoginRefill <= 0 || l.FailureBurst < 1 || l.FailureRefill <= 0 || l.MaxSessions < 1 {
			errs = append(errs, fmt.Errorf("%s account limits must be positive (%+v)", name, l))
		}
	}
	for _, p := range c.TrustedProxies {
		if !p.IsValid() {
			errs = append(errs, errors.New("trusted proxy network is not a valid CIDR prefix"))
		}
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
	verifier *tokens.Verifier    // access tokens for the relying parties' audiences
	verified *tokens.VerifyCache // tokens verifier accepted, for hot tokens
	// selfVerifier accepts access tokens for Latch's own audience (the
	// issuer) only: the callers of Latch's own APIs. verifiedSelf is its
	// cache.
	selfVerifier *tokens.Verifier
	verifiedSelf *tokens.VerifyCache
	limits       *ratelimit.Limiter // every login and probe bucket kept in this process (limits.go)
	// sharedLimits keeps the per-account login buckets when the store is
	// shared by several replicas; nil otherwise (limits.go).
	sharedLimits storage.SharedLimits
	revs         *broadcaster
	log          *slog.Logger
	now          func() time.Time
	rand         io.Reader
	metrics      *Metrics  // nil: no metrics
	ready        readiness // draining flag and shared store check

	keyPolicy  keyPolicy
	keyMu      sync.Mutex // serialises key-set changes and ring reloads
	missReload missReloader

	refreshKeys *refreshRing // refresh-token MAC secrets (refreshkeys.go)
	refreshMiss missReloader

	// access is who may call each RPC (authz.go).
	access map[string]access
}

var _ latchv1.AuthServiceServer = (*Server)(nil)

// Option configures a Server.
type Option func(*options)

type options struct {
	log     *slog.Logger
	now     func() time.Time
	sealer  *keyseal.Sealer
	metrics *Metrics
}

// WithLogger sets the logger. Default: a logger that discards everything.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithClock sets the clock used for token times, expiry and rate limits.
// Default time.Now. A wrong clock mints tokens with wrong lifetimes.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

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
	o := options{log: slog.New(slog.DiscardHandler), now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	keys := &keyRing{sealer: o.sealer}
	v, err := tokens.NewVerifier(keys, cfg.Issuer, cfg.Audiences,
		tokens.WithLeeway(cfg.Leeway), tokens.WithClock(o.now))
	if err != nil {
		return nil, fmt.Errorf("server: verifier: %w", err)
	}
	self, err := tokens.NewVerifier(keys, cfg.Issuer, []string{cfg.Issuer},
		tokens.WithLeeway(cfg.Leeway), tokens.WithClock(o.now))
	if err != nil {
		return nil, fmt.Errorf("server: verifier for Latch's own audience: %w", err)
	}
	const maxLimiterKeys = 200_000
	s := &Server{
		cfg:      cfg,
		store:    store,
		hasher:   hasher,
		keys:     keys,
		verifier: v,
		verified: newVerifyCache(cfg.VerifyCacheSize),

		selfVerifier: self,
		verifiedSelf: newVerifyCache(cfg.VerifyCacheSize),
		limits:       ratelimit.New(maxLimiterKeys, ratelimit.WithClock(o.now)),
		revs:         newBroadcaster(),
		log:          o.log,
		now:          o.now,
		rand:         rand.Reader,
		metrics:      o.metrics,

		keyPolicy:  newKeyPolicy(cfg),
		missReload: missReloader{interval: time.Second},

		refreshKeys: &refreshRing{sealer: o.sealer},
		refreshMiss: missReloader{interval: time.Second},

		access: accessTable(cfg.IntrospectOpen),
	}
	s.sharedLimits, _ = store.(storage.SharedLimits)
	if err := s.initKeys(ctx); err != nil {
		return nil, err
	}

	keys.onMiss = func(ctx context.Context) bool {
		return reloadOnMiss(ctx, s, &s.missReload, s.store.ListSigningKeys, s.keys.install)
	}
	if o.metrics != nil {
		if err := o.metrics.bind(s); err != nil {
			return nil, err
		}
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
