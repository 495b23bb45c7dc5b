package interceptors_test

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/internal/verifier"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc/codes"
	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// ownedKeys is a key source the caller owns and changes, counting lookups.
// With epoch set it implements verifier.EpochKeySource.
type ownedKeys struct {
	cur     atomic.Pointer[tokens.KeySet]
	lookups atomic.Int64
}

func (o *ownedKeys) PublicKey(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	o.lookups.Add(1)
	return o.cur.Load().PublicKey(ctx, kid)
}

func (o *ownedKeys) set(t *testing.T, keys ...*ecdsa.PrivateKey) {
	t.Helper()
	var pubs []*ecdsa.PublicKey
	for _, k := range keys {
		pubs = append(pubs, &k.PublicKey)
	}
	set, err := tokens.NewKeySet(pubs...)
	if err != nil {
		t.Fatal(err)
	}
	o.cur.Store(set)
}

type epochKeys struct{ *ownedKeys }

func (e epochKeys) KeyEpoch() any { return e.cur.Load() }

func ownedVerifier(t *testing.T, ks tokens.KeySource, opts ...interceptors.Option) *interceptors.Verifier {
	t.Helper()
	v, err := interceptors.NewVerifier(ctxT(t), interceptors.Config{Issuer: issuer, Audience: []string{"orders"}},
		append([]interceptors.Option{verifier.WithKeySource(ks)}, opts...)...)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

// TestKeySourceEpochInvalidatesCache: with an EpochKeySource, a hot token
// is served from the cache (no key lookup), and removing its key from the
// source rejects it at once, cached or not.
func TestKeySourceEpochInvalidatesCache(t *testing.T) {
	a, b := newKey(t), newKey(t)
	owned := &ownedKeys{}
	owned.set(t, a)
	v := ownedVerifier(t, epochKeys{owned})
	tok := mint(t, a, time.Now())
	ctx := context.Background()
	for range 3 {
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if got := owned.lookups.Load(); got != 1 {
		t.Fatalf("%d key lookups for three verifications of one token, want 1 (the cache is not used)", got)
	}
	owned.set(t, b) // a is withdrawn
	if _, err := v.Verify(ctx, tok); !errors.Is(err, tokens.ErrUnknownKey) {
		t.Fatalf("after its key left the source: %v, want ErrUnknownKey (a stale cache entry was honoured)", err)
	}
	if _, err := v.Verify(ctx, mint(t, b, time.Now())); err != nil {
		t.Fatalf("token of the new key: %v", err)
	}
	if st := v.Status(); st.KeyFetches != 0 || st.KeysMissing || !st.Serving() {
		t.Fatalf("Status = %+v, want no fetches, and serving", st)
	}
}

// TestKeySourceWithoutEpochIsNotCached: a source that cannot say when it
// changes gets no cache, so a withdrawn key is never honoured.
func TestKeySourceWithoutEpochIsNotCached(t *testing.T) {
	a, b := newKey(t), newKey(t)
	owned := &ownedKeys{}
	owned.set(t, a)
	v := ownedVerifier(t, owned)
	tok := mint(t, a, time.Now())
	for range 2 {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
	}
	if got := owned.lookups.Load(); got != 2 {
		t.Fatalf("%d key lookups for two verifications, want 2 (no cache without an epoch)", got)
	}
	owned.set(t, b)
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, tokens.ErrUnknownKey) {
		t.Fatalf("after its key left the source: %v, want ErrUnknownKey", err)
	}
}

func TestKeySourceImmutableKeySet(t *testing.T) {
	a := newKey(t)
	set, _ := tokens.NewKeySet(&a.PublicKey)
	v := ownedVerifier(t, set)
	if _, err := v.Verify(context.Background(), mint(t, a, time.Now())); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), mint(t, newKey(t), time.Now())); !errors.Is(err, tokens.ErrUnknownKey) {
		t.Fatalf("unknown key: %v", err)
	}
}

type badEpoch struct{ *ownedKeys }

func (badEpoch) KeyEpoch() any { return []int{1} }

func TestKeySourceConfigErrors(t *testing.T) {
	set, _ := tokens.NewKeySet(&newKey(t).PublicKey)
	doc, _ := json.Marshal(set.JWKS())
	for name, tc := range map[string]struct {
		keys interceptors.Keys
		ks   tokens.KeySource
		want string
	}{
		"with a JWKS URL":  {interceptors.JWKSURL("http://127.0.0.1:1/jwks"), set, "Config.Keys must be empty"},
		"with static JWKS": {interceptors.StaticJWKS(doc), set, "Config.Keys must be empty"},
		"nil":              {interceptors.Keys{}, nil, "Config.Keys is required"},
		"nil key set":      {interceptors.Keys{}, (*tokens.KeySet)(nil), "nil key source"},
		"uncomparable":     {interceptors.Keys{}, badEpoch{&ownedKeys{}}, "uncomparable"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := interceptors.NewVerifier(ctxT(t), interceptors.Config{Issuer: issuer, Audience: []string{"orders"}, Keys: tc.keys},
				verifier.WithKeySource(tc.ks))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewVerifier = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestRevocationCheck: the caller's check runs on every call, cache hits
// included; revoked is ErrRevoked; an error fails closed.
func TestRevocationCheck(t *testing.T) {
	a := newKey(t)
	owned := &ownedKeys{}
	owned.set(t, a)
	var revoked atomic.Bool
	var failing atomic.Bool
	var calls atomic.Int64
	var seenJTI atomic.Value
	check := func(_ context.Context, c interceptors.Claims) (bool, error) {
		calls.Add(1)
		seenJTI.Store(c.ID)
		if failing.Load() {
			return false, errors.New("storage: disk on fire at /var/lib/latch")
		}
		return revoked.Load(), nil
	}
	v := ownedVerifier(t, epochKeys{owned}, verifier.WithRevocationCheck(check))
	tok := mint(t, a, time.Now())
	ctx := context.Background()
	c, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if seenJTI.Load() != c.ID {
		t.Fatalf("check saw jti %v, want %q", seenJTI.Load(), c.ID)
	}
	if _, err := v.Verify(ctx, tok); err != nil { // cache hit
		t.Fatal(err)
	}
	if owned.lookups.Load() != 1 || calls.Load() != 2 {
		t.Fatalf("lookups %d, checks %d: want 1 lookup (cached) and 2 checks (never cached)", owned.lookups.Load(), calls.Load())
	}
	revoked.Store(true)
	if _, err := v.Verify(ctx, tok); !errors.Is(err, interceptors.ErrRevoked) {
		t.Fatalf("revoked after a cached allow: %v, want ErrRevoked", err)
	}
	revoked.Store(false)
	failing.Store(true)
	if _, err := v.Verify(ctx, tok); !errors.Is(err, verifier.ErrRevocationUnavailable) {
		t.Fatalf("failing check: %v, want ErrRevocationUnavailable (fail closed)", err)
	}

	// Through the interceptors: UNAVAILABLE, and nothing of the inner error.
	client := sibling(t, v, policy())
	_, err = client.UnaryCall(bearer(ctxT(t), tok), &testpb.SimpleRequest{})
	wantCode(t, "failing check", err, codes.Unavailable, "revocation state unavailable")
	if strings.Contains(err.Error(), "disk on fire") || strings.Contains(err.Error(), "/var/lib") {
		t.Fatalf("client saw the inner error: %v", err)
	}
	failing.Store(false)
	revoked.Store(true)
	_, err = client.UnaryCall(bearer(ctxT(t), tok), &testpb.SimpleRequest{})
	wantCode(t, "revoked", err, codes.Unauthenticated, "revoked")
}

// TestInsideLatch: the interceptors over Latch's own key ring and store
// (what Latch's ext_authz server and admin service use) see a revocation
// as soon as Revoke returns, with no stream to wait for.
func TestInsideLatch(t *testing.T) {
	e := newLatch(t)
	e.AddUser("alice@example.com", "alice-password", "orders:read")
	v := ownedVerifier(t, e.Server.KeySource(), verifier.WithRevocationCheck(e.Server.TokenRevoked), interceptors.WithClock(e.Clock.Now))
	if _, ok := e.Server.KeySource().(verifier.EpochKeySource); !ok {
		t.Fatal("server.KeySource does not implement EpochKeySource: the verified-token cache would be off")
	}
	ctx := ctxT(t)
	for _, rt := range []func(p *latchv1.TokenPair) string{
		func(p *latchv1.TokenPair) string { return p.GetAccessToken() },  // jti denied
		func(p *latchv1.TokenPair) string { return p.GetRefreshToken() }, // session revoked
	} {
		pair := e.Login("alice@example.com", "alice-password", "")
		if _, err := v.Verify(ctx, pair.GetAccessToken()); err != nil {
			t.Fatal(err)
		}
		if _, err := e.client.Revoke(ctx, &latchv1.RevokeRequest{Token: rt(pair)}); err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(ctx, pair.GetAccessToken()); !errors.Is(err, interceptors.ErrRevoked) {
			t.Fatalf("right after Revoke: %v, want ErrRevoked", err)
		}
	}
	if _, err := v.Verify(ctx, mint(t, newKey(t), e.Clock.Now())); !errors.Is(err, tokens.ErrUnknownKey) {
		t.Fatalf("foreign key: %v", err)
	}
}

// withdrawing returns the key asked for, but withdraws it from the set at
// that moment: a rotation racing with a verification.
type withdrawing struct {
	epochKeys
	after *tokens.KeySet
	once  atomic.Bool
}

func (w *withdrawing) PublicKey(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	k, err := w.epochKeys.PublicKey(ctx, kid)
	if w.once.CompareAndSwap(false, true) {
		w.cur.Store(w.after)
	}
	return k, err
}

// TestKeyWithdrawnDuringVerification: a token verified just as its key
// was withdrawn is not cached under the new key set.
func TestKeyWithdrawnDuringVerification(t *testing.T) {
	a, b := newKey(t), newKey(t)
	owned := &ownedKeys{}
	owned.set(t, a)
	onlyB, _ := tokens.NewKeySet(&b.PublicKey)
	v := ownedVerifier(t, &withdrawing{epochKeys: epochKeys{owned}, after: onlyB})
	tok := mint(t, a, time.Now())
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("first verification (key present at lookup): %v", err)
	}
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, tokens.ErrUnknownKey) {
		t.Fatalf("after the key was withdrawn: %v, want ErrUnknownKey (cached under the new set)", err)
	}
}

// brokenKeys is a key source whose lookups fail (its store is down).
type brokenKeys struct{}

func (brokenKeys) PublicKey(context.Context, string) (*ecdsa.PublicKey, error) {
	return nil, errors.New("keyring: read /var/lib/latch/keys: input/output error")
}

// TestKeySourceFailureIsUnavailable: a key source that fails (not "unknown
// kid") is Latch's fault, not the client's: the interceptors answer
// UNAVAILABLE, never UNAUTHENTICATED (which tells a client to drop its
// token), and nothing of the inner error.
func TestKeySourceFailureIsUnavailable(t *testing.T) {
	a := newKey(t)
	v := ownedVerifier(t, brokenKeys{})
	client := sibling(t, v, policy())
	_, err := client.UnaryCall(bearer(ctxT(t), mint(t, a, time.Now())), &testpb.SimpleRequest{})
	wantCode(t, "failing key source", err, codes.Unavailable, "signing keys unavailable")
	if strings.Contains(err.Error(), "/var/lib") || strings.Contains(err.Error(), "input/output") {
		t.Fatalf("client saw the inner error: %v", err)
	}
	// A kid the source does not know is still the client's token's fault.
	owned := &ownedKeys{}
	owned.set(t, newKey(t))
	client = sibling(t, ownedVerifier(t, epochKeys{owned}), policy())
	_, err = client.UnaryCall(bearer(ctxT(t), mint(t, a, time.Now())), &testpb.SimpleRequest{})
	wantCode(t, "unknown kid", err, codes.Unauthenticated, "unknown signing key")
}
