package interceptors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/latchauth/latch/tokens"
)

// ErrRevoked reports a token that verifies but that Latch has revoked (its
// jti or its session), as learnt from the WatchRevocations stream.
var ErrRevoked = errors.New("interceptors: token revoked")

// ErrRevocationUnavailable reports that whether a token is revoked could
// not be established (the WithRevocationCheck function failed): the token
// is refused, never accepted, until the check answers again.
var ErrRevocationUnavailable = errors.New("interceptors: revocation state unavailable")

// Claims are a verified token's claims: sub, sid, roles, jti, exp, ...
type Claims = tokens.Claims

// Verifier verifies Latch access tokens locally. It is safe for concurrent
// use; Close stops its background work.
type Verifier struct {
	tv       *tokens.Verifier
	keys     *keyCache // nil with WithKeySource
	epoch    func() any
	revs     *revocations        // nil: stateless
	revCheck RevocationCheck     // nil: none
	cache    *tokens.VerifyCache // nil: disabled

	maxKeyAge, maxRevLag time.Duration
	stalePolicy          StalePolicy
	revCheckFailing      atomic.Bool
	log                  *slog.Logger
	now                  func() time.Time
	cancel               context.CancelFunc
	done                 chan struct{}
}

// NewVerifier returns a Verifier. One key source (WithJWKSFromGRPC,
// WithJWKSURL, WithStaticJWKS or WithKeySource), WithIssuer and
// WithAudience are required. Unless WithLazyStart is given it fetches the
// key set (and, with WithRevocationsFromGRPC, the revocation snapshot)
// before returning, and fails if that takes longer than the start-up
// timeout. Background work runs until Close; ctx bounds only the start-up.
func NewVerifier(ctx context.Context, opts ...Option) (*Verifier, error) {
	o := defaultOptions()
	var errs []error
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			errs = append(errs, err)
		}
	}
	switch {
	case o.sources > 1:
		errs = append(errs, errors.New("give exactly one key source: WithJWKSFromGRPC, WithJWKSURL, WithStaticJWKS or WithKeySource"))
	case o.sources == 0:
		errs = append(errs, errors.New("a key source is required: WithJWKSFromGRPC, WithJWKSURL, WithStaticJWKS or WithKeySource"))
	}
	if o.revCreds != nil && o.revocations == nil {
		errs = append(errs, errors.New("WithRevocationCredentials needs WithRevocationsFromGRPC"))
	}
	if o.now == nil || o.log == nil {
		errs = append(errs, errors.New("clock and logger must not be nil"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("interceptors: %w", err)
	}
	if o.jwksURL != nil {
		o.source = &httpFetcher{url: o.jwksURL.String(), client: jwksClient(o.httpClient, o.jwksURL)}
	}

	var (
		ks    tokens.KeySource
		kc    *keyCache
		epoch func() any // nil: the key set's changes cannot be seen, no cache
	)
	if o.keySource != nil {
		ks = o.keySource
		switch s := o.keySource.(type) {
		case EpochKeySource:
			if e := s.KeyEpoch(); e != nil && !reflect.TypeOf(e).Comparable() {
				return nil, fmt.Errorf("interceptors: WithKeySource: KeyEpoch returned an uncomparable %T", e)
			}
			epoch = s.KeyEpoch
		case *tokens.KeySet: // immutable
			epoch = func() any { return s }
		}
	} else {
		_, static := o.source.(staticFetcher)
		kc = &keyCache{fetcher: o.source, static: static, interval: o.refreshInterval, minRefetch: o.minRefetch, now: o.now, log: o.log}
		ks = kc
		epoch = func() any { return kc.cur.Load() }
	}
	tv, err := tokens.NewVerifier(ks, o.issuer, o.audiences, tokens.WithLeeway(o.leeway), tokens.WithClock(o.now))
	if err != nil {
		return nil, fmt.Errorf("interceptors: %w", err)
	}
	v := &Verifier{tv: tv, keys: kc, epoch: epoch, revCheck: o.revCheck, now: o.now, done: make(chan struct{}),
		maxKeyAge: o.maxKeyAge, maxRevLag: o.maxRevLag, stalePolicy: o.stalePolicy, log: o.log}
	if o.cacheSize > 0 && epoch != nil {
		v.cache = tokens.NewVerifyCache(o.cacheSize)
	}
	if o.revocations != nil {
		v.revs = newRevocations(o.revocations, o.revCreds, o.now, o.log)
	}

	if kc != nil && !o.lazy {
		sctx, cancel := context.WithTimeout(ctx, o.startTimeout)
		defer cancel()
		if err := kc.waitFirst(sctx); err != nil {
			return nil, fmt.Errorf("interceptors: %w", err)
		}
	}
	bg, cancel := context.WithCancel(context.Background())
	v.cancel = cancel
	go func() {
		defer close(v.done)
		if v.revs != nil {
			go v.revs.run(bg)
		}
		if kc != nil {
			kc.run(bg)
		}
		<-bg.Done()
	}()
	if v.revs != nil && !o.lazy {
		sctx, cancel := context.WithTimeout(ctx, o.startTimeout)
		defer cancel()
		select {
		case <-v.revs.firstSync:
		case <-sctx.Done():
			v.Close()
			return nil, errors.New("interceptors: no revocation snapshot from Latch within the start-up timeout " +
				"(does the connection carry a credential with role \"introspect\"?)")
		}
	}
	return v, nil
}

// Close stops background refreshes and the revocation stream.
func (v *Verifier) Close() {
	v.cancel()
	<-v.done
}

// Verify checks tok strictly (tokens.Verifier), then against the
// revocations received so far and the WithRevocationCheck function. Errors
// wrap tokens.ErrInvalidToken (with its reason), ErrRevoked,
// ErrRevocationUnavailable or ErrStale (see WithStalePolicy); none contains
// the token.
func (v *Verifier) Verify(ctx context.Context, tok string) (Claims, error) {
	if len(tok) > tokens.MaxTokenLength {
		return v.tv.Verify(ctx, tok) // refuses it without hashing 8 KiB+
	}
	now := v.now() // one clock read for the stale check and the cache
	if v.stale(now) {
		return Claims{}, ErrStale
	}
	var key [32]byte
	var claims Claims
	var epoch any
	hit := false
	if v.cache != nil {
		key, epoch = tokens.CacheKey(tok), v.epoch()
		claims, hit = v.cache.Get(key, now, epoch)
	}
	if !hit {
		var err error
		if claims, err = v.tv.Verify(ctx, tok); err != nil {
			return Claims{}, err
		}
		// Cached only if the key set did not change while verifying: a
		// key withdrawn meanwhile must not live on in the cache under the
		// new set (a refetch for the token's kid also changes it; the
		// next call then caches).
		if v.cache != nil && v.epoch() == epoch {
			v.cache.Put(key, claims, epoch)
		}
	}
	if err := v.checkRevoked(ctx, claims); err != nil {
		if v.cache != nil {
			v.cache.Drop(key)
		}
		return Claims{}, err
	}
	return claims, nil
}

// checkRevoked consults the revocation stream's copy and the caller's
// check; an error from the check fails closed.
func (v *Verifier) checkRevoked(ctx context.Context, c Claims) error {
	if v.revs != nil && v.revs.revoked(c.ID, c.SessionID) {
		return ErrRevoked
	}
	if v.revCheck == nil {
		return nil
	}
	revoked, err := v.revCheck(ctx, c)
	// A check cut short because the caller hung up (its context cancelled)
	// says nothing about the check's health: one client going away must
	// not turn the Verifier NOT_SERVING. A passed deadline still counts: a
	// hung store shows only as deadlines.
	if failing := err != nil; v.revCheckFailing.Load() != failing && (!failing || !errors.Is(ctx.Err(), context.Canceled)) {
		v.revCheckFailing.Store(failing) // no shared write per call
	}
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w", ErrRevocationUnavailable, err)
	case revoked:
		return ErrRevoked
	}
	return nil
}

// Status describes what the Verifier depends on, for health checks.
type Status struct {
	// Keys is the number of keys in the current set; 0 before the first
	// fetch, and with WithKeySource.
	Keys int
	// KeysOwnedByCaller reports WithKeySource: the Verifier fetches
	// nothing, and the fields about fetches stay zero.
	KeysOwnedByCaller bool
	// KeysFetchedAt is the time of the last successful key fetch.
	KeysFetchedAt time.Time
	// KeyFetches counts fetch attempts (background, start-up and unknown
	// kid).
	KeyFetches int64
	// RevocationsFollowed reports whether WithRevocationsFromGRPC is on;
	// RevocationsConnected whether its stream is up now.
	RevocationsFollowed  bool
	RevocationsConnected bool
}

// Status returns the Verifier's current state.
func (v *Verifier) Status() Status {
	s := Status{RevocationsFollowed: v.revs != nil, KeysOwnedByCaller: v.keys == nil}
	if v.keys != nil {
		s.KeyFetches = v.keys.fetches.Load()
		if set := v.keys.cur.Load(); set != nil {
			s.Keys = set.Len()
		}
		if ns := v.keys.fetchedAt.Load(); ns != 0 {
			s.KeysFetchedAt = time.Unix(0, ns)
		}
	}
	if v.revs != nil {
		s.RevocationsConnected = v.revs.connected.Load()
	}
	return s
}
