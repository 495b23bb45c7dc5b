package interceptors_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/tokens"
)

// jwksServer serves a JWKS the test can change, over real HTTP on
// loopback, counting requests.
type jwksServer struct {
	mu     sync.Mutex
	keys   []*ecdsa.PrivateKey
	maxAge int
	hits   atomic.Int64
	down   atomic.Bool
	srv    *httptest.Server
}

func newJWKSServer(t *testing.T, keys ...*ecdsa.PrivateKey) *jwksServer {
	t.Helper()
	j := &jwksServer{keys: keys}
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		j.hits.Add(1)
		if j.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		j.mu.Lock()
		var pubs []*ecdsa.PublicKey
		for _, k := range j.keys {
			pubs = append(pubs, &k.PublicKey)
		}
		if j.maxAge > 0 {
			w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", j.maxAge))
		}
		j.mu.Unlock()
		set, err := tokens.NewKeySet(pubs...)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		body, _ := json.Marshal(set.JWKS())
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	t.Cleanup(j.srv.Close)
	return j
}

func (j *jwksServer) setKeys(keys ...*ecdsa.PrivateKey) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.keys = keys
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := tokens.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mint(t testing.TB, k *ecdsa.PrivateKey, now time.Time) string {
	t.Helper()
	s, err := tokens.NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(tokens.Claims{Issuer: issuer, Subject: "u1", Audience: []string{"orders"}, IssuedAt: now,
		ExpiresAt: now.Add(15 * time.Minute), ID: fmt.Sprintf("j%d", now.UnixNano()), SessionID: "s1", Roles: []string{"orders:read"}})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func urlVerifier(t *testing.T, j *jwksServer, opts ...interceptors.Option) *interceptors.Verifier {
	t.Helper()
	v, err := interceptors.NewVerifier(ctxT(t), interceptors.Config{Issuer: issuer, Audience: []string{"orders"},
		Keys: interceptors.JWKSURL(j.srv.URL + "/.well-known/jwks.json")}, opts...)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

// TestKeyRotationNeedsOneRefetch: a token signed by a key published after
// start-up is accepted after exactly one refetch.
func TestKeyRotationNeedsOneRefetch(t *testing.T) {
	a, b := newKey(t), newKey(t)
	j := newJWKSServer(t, a)
	v := urlVerifier(t, j, interceptors.WithRefreshInterval(time.Hour), interceptors.WithMinRefetchInterval(time.Hour))
	ctx := context.Background()
	if _, err := v.Verify(ctx, mint(t, a, time.Now())); err != nil {
		t.Fatal(err)
	}
	before := j.hits.Load()
	j.setKeys(a, b)
	if _, err := v.Verify(ctx, mint(t, b, time.Now())); err != nil {
		t.Fatalf("token of the new key: %v", err)
	}
	if got := j.hits.Load() - before; got != 1 {
		t.Fatalf("%d fetches for the new key, want 1", got)
	}
	// The old key still verifies, with no further fetch.
	if _, err := v.Verify(ctx, mint(t, a, time.Now())); err != nil {
		t.Fatal(err)
	}
	if got := j.hits.Load() - before; got != 1 {
		t.Fatalf("%d fetches after verifying the old key, want 1", got)
	}
}

// TestRandomKidFloodIsRateLimited: a flood of tokens with random kids causes
// at most one fetch per minimum refetch interval.
func TestRandomKidFloodIsRateLimited(t *testing.T) {
	j := newJWKSServer(t, newKey(t))
	v := urlVerifier(t, j, interceptors.WithRefreshInterval(time.Hour), interceptors.WithMinRefetchInterval(time.Hour))
	before := j.hits.Load()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for n := range 250 {
				kid := fmt.Sprintf("random-%d-%d", i, n)
				h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"ES256","typ":"at+jwt","kid":"` + kid + `"}`))
				tok := h + ".e30." + base64.RawURLEncoding.EncodeToString(make([]byte, 64))
				if _, err := v.Verify(context.Background(), tok); !errors.Is(err, tokens.ErrInvalidToken) {
					t.Errorf("random kid: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if got := j.hits.Load() - before; got > 1 {
		t.Fatalf("2,000 random kids caused %d fetches, want at most 1", got)
	}
}

// TestLatchDownKeepsLastKeys: after start-up, an unreachable key source
// does not stop verification with the keys already held.
func TestLatchDownKeepsLastKeys(t *testing.T) {
	a := newKey(t)
	j := newJWKSServer(t, a)
	v := urlVerifier(t, j, interceptors.WithRefreshInterval(10*time.Millisecond), interceptors.WithCacheSize(0))
	j.down.Store(true)
	deadline := time.Now().Add(5 * time.Second)
	for j.hits.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // let background refreshes fail
	}
	if j.hits.Load() < 3 {
		t.Fatal("background refresh never ran")
	}
	if _, err := v.Verify(context.Background(), mint(t, a, time.Now())); err != nil {
		t.Fatalf("with the key source down: %v", err)
	}
	if st := v.Status(); st.Keys != 1 || st.KeysFetchedAt.IsZero() {
		t.Fatalf("Status = %+v", st)
	}
}

func TestStartupFailsClearlyWithoutKeys(t *testing.T) {
	j := newJWKSServer(t, newKey(t))
	j.down.Store(true)
	ctx, cancel := context.WithTimeout(ctxT(t), 2*time.Second)
	defer cancel()
	_, err := interceptors.NewVerifier(ctx, interceptors.Config{Issuer: issuer, Audience: []string{"orders"},
		Keys: interceptors.JWKSURL(j.srv.URL)})
	if err == nil || !strings.Contains(err.Error(), "no key set within the start-up timeout") || !strings.Contains(err.Error(), "503") {
		t.Fatalf("NewVerifier = %v, want a clear start-up error naming the cause", err)
	}
}

func TestLazyStartRejectsUntilKeysArrive(t *testing.T) {
	a := newKey(t)
	j := newJWKSServer(t, a)
	j.down.Store(true)
	v := urlVerifier(t, j, interceptors.WithLazyStart(), interceptors.WithMinRefetchInterval(time.Hour),
		interceptors.WithRefreshInterval(20*time.Millisecond))
	tok := mint(t, a, time.Now())
	if _, err := v.Verify(context.Background(), tok); !errors.Is(err, tokens.ErrUnknownKey) {
		t.Fatalf("before keys: %v, want ErrUnknownKey", err)
	}
	j.down.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := v.Verify(context.Background(), tok); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("keys never arrived")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNewVerifierConfigErrors(t *testing.T) {
	for name, cfg := range map[string]interceptors.Config{
		"no source":  {Issuer: issuer, Audience: []string{"orders"}},
		"no issuer":  {Keys: interceptors.StaticJWKS([]byte(`{"keys":[]}`)), Audience: []string{"orders"}},
		"bad static": {Keys: interceptors.StaticJWKS([]byte(`nope`)), Issuer: issuer, Audience: []string{"o"}},
		"nil conn":   {Keys: interceptors.JWKSFromGRPC(nil), Issuer: issuer, Audience: []string{"o"}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := interceptors.NewVerifier(ctxT(t), cfg); err == nil {
				t.Fatal("NewVerifier succeeded")
			}
		})
	}
}

func TestStaticJWKS(t *testing.T) {
	a := newKey(t)
	set, _ := tokens.NewKeySet(&a.PublicKey)
	doc, _ := json.Marshal(set.JWKS())
	v, err := interceptors.NewVerifier(ctxT(t), interceptors.Config{Issuer: issuer, Audience: []string{"orders"},
		Keys: interceptors.StaticJWKS(doc)})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.Verify(context.Background(), mint(t, a, time.Now())); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), mint(t, newKey(t), time.Now())); !errors.Is(err, tokens.ErrUnknownKey) {
		t.Fatalf("unknown key with a static set: %v", err)
	}
}

// TestCacheControlMaxAgeDrivesRefresh: the server's max-age, not the
// configured interval, sets the background refresh pace.
func TestCacheControlMaxAgeDrivesRefresh(t *testing.T) {
	j := newJWKSServer(t, newKey(t))
	j.maxAge = 1
	urlVerifier(t, j, interceptors.WithRefreshInterval(time.Hour), interceptors.WithMinRefetchInterval(100*time.Millisecond))
	deadline := time.Now().Add(10 * time.Second)
	for j.hits.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d fetches in 10 s with max-age=1 and a 1 h interval; want refreshes at max-age", j.hits.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
