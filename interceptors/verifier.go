package interceptors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/latchauth/latch/internal/verifier"
	"github.com/latchauth/latch/tokens"
)

// ErrRevoked reports a token that verifies but that Latch has revoked (its
// jti or its session).
var ErrRevoked = errors.New("interceptors: token revoked")

// Claims are a verified token's claims: sub, sid, roles, jti, exp, ...
type Claims = tokens.Claims

// Verifier verifies Latch access tokens locally. It is safe for concurrent
// use; Close stops its background work.
type Verifier struct {
	tv       *tokens.Verifier
	keys     *keyCache // nil with Latch's own key source
	epoch    func() any
	revs     *revocations             // nil: stateless
	revCheck verifier.RevocationCheck // nil: none
	cache    *tokens.VerifyCache      // nil: disabled

	maxKeyAge, maxRevLag time.Duration
	failOpen             bool
	revCheckFailing      atomic.Bool
	log                  *slog.Logger
	now                  func() time.Time
	cancel               context.CancelFunc
	done                 chan struct{}
}

// NewVerifier returns a Verifier for cfg. Unless WithLazyStart is given it
// fetches the key set (and, with WithRevocations, the revocation snapshot)
// before returning, and fails if that takes longer than ctx allows (10 s
// when ctx has no deadline). Background work runs until Close; ctx bounds
// only the start-up. A configuration error names every problem at once.
func NewVerifier(ctx context.Context, cfg Config, opts ...Option) (*Verifier, error) {
	s := verifier.Defaults()
	for _, opt := range opts {
		opt(&s)
	}
	if err := validate(cfg, s); err != nil {
		return nil, fmt.Errorf("interceptors: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}

	var (
		ks    tokens.KeySource
		kc    *keyCache
		epoch func() any // nil: the key set's changes cannot be seen, no cache
	)
	if s.KeySource != nil {
		ks = s.KeySource
		switch src := s.KeySource.(type) {
		case verifier.EpochKeySource:
			if e := src.KeyEpoch(); e != nil && !reflect.TypeOf(e).Comparable() {
				return nil, fmt.Errorf("interceptors: key source: KeyEpoch returned an uncomparable %T", e)
			}
			epoch = src.KeyEpoch
		case *tokens.KeySet: // immutable
			epoch = func() any { return src }
		}
	} else {
		f := cfg.Keys.fetcher
		if cfg.Keys.url != nil {
			f = &httpFetcher{url: cfg.Keys.url.String(), client: jwksClient(s.HTTPClient, cfg.Keys.url)}
		}
		_, static := f.(staticFetcher)
		kc = &keyCache{fetcher: f, static: static, interval: s.RefreshInterval, minRefetch: s.MinRefetch, now: s.Now, log: s.Log}
		ks = kc
		epoch = func() any { return kc.cur.Load() }
	}
	tv, err := tokens.NewVerifier(ks, cfg.Issuer, cfg.Audience, tokens.WithLeeway(s.Leeway), tokens.WithClock(s.Now))
	if err != nil {
		return nil, fmt.Errorf("interceptors: %w", err)
	}
	v := &Verifier{tv: tv, keys: kc, epoch: epoch, revCheck: s.RevocationCheck, now: s.Now, done: make(chan struct{}),
		maxKeyAge: s.MaxKeyAge, maxRevLag: s.MaxRevocationLag, failOpen: s.FailOpen, log: s.Log}
	if s.CacheSize > 0 && epoch != nil {
		v.cache = tokens.NewVerifyCache(s.CacheSize)
	}
	if s.Revocations != nil {
		v.revs = newRevocations(s.Revocations, s.RevocationCreds, s.Now, s.Log)
	}

	if kc != nil && !s.Lazy {
		if err := kc.waitFirst(ctx); err != nil {
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
	if v.revs != nil && !s.Lazy {
		select {
		case <-v.revs.firstSync:
		case <-ctx.Done():
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
// revocations received so far. Errors wrap tokens.ErrInvalidToken (with its
// reason), ErrRevoked or ErrStale (see WithFailOpen); none contains the
// token.
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
		return fmt.Errorf("%w: %w", verifier.ErrRevocationUnavailable, err)
	case revoked:
		return ErrRevoked
	}
	return nil
}
