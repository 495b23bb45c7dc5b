package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/internal/keyseal"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/storage"
	"github.com/latchauth/latch/storage/bolt"
	"github.com/latchauth/latch/tokens"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
)

// activeKey returns the one stored active key.
func activeKey(t testing.TB, store storage.KeyStore) storage.SigningKey {
	t.Helper()
	keys, err := store.ListSigningKeys(ctxT(t))
	if err != nil {
		t.Fatalf("ListSigningKeys: %v", err)
	}
	var out []storage.SigningKey
	for _, k := range keys {
		if k.State == storage.KeyActive {
			out = append(out, k)
		}
	}
	if len(out) != 1 {
		t.Fatalf("%d active keys stored, want 1", len(out))
	}
	return out[0]
}

// storedKeys returns the stored keys by id.
func storedKeys(t testing.TB, store storage.KeyStore) map[string]storage.SigningKey {
	t.Helper()
	keys, err := store.ListSigningKeys(ctxT(t))
	if err != nil {
		t.Fatalf("ListSigningKeys: %v", err)
	}
	out := map[string]storage.SigningKey{}
	for _, k := range keys {
		out[k.ID] = k
	}
	return out
}

// statesOf summarises a key set as kid → state.
func statesOf(keys map[string]storage.SigningKey) map[string]storage.KeyState {
	out := map[string]storage.KeyState{}
	for id, k := range keys {
		out[id] = k.State
	}
	return out
}

func jwksKids(set tokens.JWKS) []string {
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.Kid)
	}
	return out
}

func tokenKid(t *testing.T, tok string) string {
	t.Helper()
	hdr := decodeSegment(t, strings.Split(tok, ".")[0])
	i := strings.Index(hdr, `"kid":"`)
	if i < 0 {
		t.Fatalf("token header %s has no kid", hdr)
	}
	rest := hdr[i+len(`"kid":"`):]
	return rest[:strings.IndexByte(rest, '"')]
}

// keyConfig is a short life cycle: rotation every hour, keys published
// 25 minutes before they sign (covering a sidecar that refreshes every 20
// minutes whatever the Cache-Control says), access tokens of 15 minutes.
func keyConfig() server.Config {
	cfg := baseConfig()
	cfg.AccessTTL = 15 * time.Minute
	cfg.JWKSMaxAge = 5 * time.Minute
	cfg.KeyPublishLead = 25 * time.Minute
	cfg.KeyReloadInterval = 5 * time.Second
	cfg.KeyRotation = time.Hour
	cfg.ProbeBurst = 1 << 20
	return cfg
}

// sidecarCache is an HTTP transport in front of Latch's JWKS endpoint, in
// one of two modes, both on the test clock:
//
//   - fixed == 0: a caching proxy that honours the server's Cache-Control
//     max-age: it fetches over loopback when asked and its copy is stale,
//     and otherwise serves its copy, also to refetches for unknown kids;
//   - fixed > 0: a sidecar like Istio's, which refreshes on its own
//     schedule (every fixed, from its first fetch) whatever the server
//     says and whether or not anyone asks: only refresh, called by the
//     walk at every step, fetches; requests, including refetches for
//     unknown kids, always get the copy from the last scheduled refresh.
//     (A lazy cache would fetch exactly when an unknown kid shows up,
//     which is the behaviour this mode must not have.)
type sidecarCache struct {
	now   func() time.Time
	fixed time.Duration
	phase time.Duration // scheduled mode: the first refresh comes fixed - phase after the first fetch
	url   string        // the JWKS, for scheduled refreshes

	mu      sync.Mutex
	body    []byte
	expires time.Time
	fetches int
}

// fetch replaces the copy with the server's JWKS; c.mu is held.
func (c *sidecarCache) fetch(ctx context.Context, url string) error {
	up, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultTransport.RoundTrip(up)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("upstream JWKS: %d %v", resp.StatusCode, err)
	}
	now := c.now()
	switch {
	case c.fixed > 0 && c.expires.IsZero():
		c.expires = now.Add(c.fixed - c.phase)
	case c.fixed > 0:
		for !now.Before(c.expires) { // the schedule does not slip
			c.expires = c.expires.Add(c.fixed)
		}
	default:
		cc := resp.Header.Get("Cache-Control")
		_, after, ok := strings.Cut(cc, "max-age=")
		secs, err := strconv.Atoi(strings.TrimSpace(strings.Split(after, ",")[0]))
		if !ok || err != nil || secs <= 0 {
			return fmt.Errorf("upstream Cache-Control %q has no max-age", cc)
		}
		c.expires = now.Add(time.Duration(secs) * time.Second)
	}
	c.body = body
	c.fetches++
	return nil
}

// refresh makes a scheduled sidecar's refresh if one is due by the test
// clock (a no-op for the Cache-Control mode).
func (c *sidecarCache) refresh(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fixed == 0 || c.body == nil || c.now().Before(c.expires) {
		return nil
	}
	return c.fetch(ctx, c.url)
}

func (c *sidecarCache) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.body == nil || (c.fixed == 0 && !c.now().Before(c.expires)) {
		if err := c.fetch(req.Context(), req.URL.String()); err != nil {
			return nil, err
		}
	}
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(bytes.NewReader(c.body)), ContentLength: int64(len(c.body)), Request: req}, nil
}

// serveHTTP serves the server's real HTTP handler on a loopback port.
func serveHTTP(t *testing.T, srv *server.Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.HTTPHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(lis) }()
	t.Cleanup(func() { hs.Close() })
	return "http://" + lis.Addr().String() + server.JWKSPath
}

// fetchJWKS reads the JWKS straight from the server, no cache.
func fetchJWKS(t *testing.T, url string) []string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	set, err := tokens.ParseJWKS(body)
	if err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	return jwksKids(set.JWKS())
}

type mintedToken struct {
	tok      string
	kid      string
	mintedAt time.Time
	exp      time.Time
}

// TestRotationWalk walks several full rotations with the test clock, a
// minute at a time, minting tokens before and after every key-manager step.
// After every step each token minted so far is checked by Introspect and by
// local verifiers (interceptors.NewVerifier over the real HTTP JWKS handler
// on loopback): one behind a cache that honours the server's Cache-Control,
// and ten behind Istio-like sidecars that refresh every 20 minutes on their
// own schedule (one per 2-minute phase), whatever the server says and
// whatever kid a token carries. The second half adds on-demand rotations as
// often as they are granted. It proves that no valid token is ever
// rejected across next → active → retired → removed, that every key is in
// the JWKS the publication lead before its first token, that expired
// tokens are rejected (so the checks can fail), and that each retired key
// stays published through its window and is gone right after.
func TestRotationWalk(t *testing.T) {
	cfg := keyConfig()
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password")
	e.addUser("svc@example.com", "svc-password", server.RoleIntrospect)
	url := serveHTTP(t, e.srv)
	eff := e.srv.Config()
	window := eff.KeyReloadInterval + eff.AccessTTL + eff.Leeway

	verifier := func(cache *sidecarCache) *interceptors.Verifier {
		v, err := interceptors.NewVerifier(ctxT(t), interceptors.Config{Issuer: eff.Issuer, Audience: []string{"orders"},
			Keys: interceptors.JWKSURL(url)},
			interceptors.WithHTTPClient(&http.Client{Transport: cache}),
			interceptors.WithClock(e.clock.Now), interceptors.WithMinRefetchInterval(time.Second),
			// Background refreshes run on real timers, not on the test
			// clock, so the key set looks hours old; staleness (fail
			// closed after WithMaxKeyAge) is not what this walk checks.
			interceptors.WithMaxKeyAge(365*24*time.Hour))
		if err != nil {
			t.Fatalf("NewVerifier: %v", err)
		}
		t.Cleanup(v.Close)
		return v
	}
	honouring := verifier(&sidecarCache{now: e.clock.Now})
	// Istio-like sidecars refreshing every 20 minutes, one per 2-minute
	// phase of that schedule: whenever a key is created, one of them has
	// just refreshed and sees the key only 20 minutes later. So the walk
	// fails for any publication lead that, rounded up to the walk's
	// 1-minute steps, is 2 minutes or more short of the sidecar's period.
	const sidecarPeriod, sidecarPhases = 20 * time.Minute, 10
	var istioCaches []*sidecarCache
	var istio []*interceptors.Verifier
	for i := range sidecarPhases {
		c := &sidecarCache{now: e.clock.Now, fixed: sidecarPeriod, phase: time.Duration(i) * sidecarPeriod / sidecarPhases, url: url}
		istioCaches = append(istioCaches, c)
		istio = append(istio, verifier(c))
	}

	firstPublished := map[string]time.Time{} // kid → first time in the served JWKS
	removedAt := map[string]time.Time{}      // kid → removal seen
	retiredAt := map[string]time.Time{}      // kid → RetiredAt as stored
	var minted []mintedToken
	observe := func() {
		now := e.clock.Now()
		published := fetchJWKS(t, url)
		for _, kid := range published {
			if _, ok := firstPublished[kid]; !ok {
				firstPublished[kid] = now
			}
		}
		for kid, k := range storedKeys(t, e.store) {
			if k.State == storage.KeyRetired {
				retiredAt[kid] = k.RetiredAt
			}
		}
		for kid, ret := range retiredAt {
			in := slices.Contains(published, kid)
			deadline := ret.Add(window)
			switch {
			case !now.After(deadline) && !in:
				t.Fatalf("at %v retired key %s was removed before its window ended at %v", now, kid, deadline)
			case now.After(deadline.Add(time.Minute)) && in:
				t.Fatalf("at %v retired key %s still published; its window ended at %v", now, kid, deadline)
			case !in:
				if _, ok := removedAt[kid]; !ok {
					removedAt[kid] = now
				}
			}
		}
	}
	mint := func() {
		tp := e.login("alice@example.com", "alice-password")
		now := e.clock.Now()
		kid := tokenKid(t, tp.GetAccessToken())
		first, ok := firstPublished[kid]
		if !ok || now.Sub(first) < eff.KeyPublishLead {
			t.Fatalf("at %v a token was signed with key %s, first published at %v (ok=%v): less than the lead %v", now, kid, first, ok, eff.KeyPublishLead)
		}
		minted = append(minted, mintedToken{tok: tp.GetAccessToken(), kid: kid, mintedAt: now, exp: now.Add(eff.AccessTTL)})
	}
	check := func(step string) {
		now := e.clock.Now()
		caller := e.loginSelf("svc@example.com", "svc-password")
		ictx := metadataCtx(t, caller.GetAccessToken())
		for _, m := range minted {
			if now.After(m.exp.Add(time.Minute)) {
				continue // long expired; checked once below
			}
			valid := now.Before(m.exp)
			active := e.introspect(ictx, m.tok).GetActive()
			_, errH := honouring.Verify(ctxT(t), m.tok)
			var errI error
			for i, v := range istio {
				if _, err := v.Verify(ctxT(t), m.tok); err != nil && errI == nil {
					errI = fmt.Errorf("phase %v: %w", istioCaches[i].phase, err)
				}
			}
			if valid && (!active || errH != nil || errI != nil) {
				t.Fatalf("%s at %v: valid token (kid %s, minted %v) rejected: introspect active=%v, verifier=%v, istio-like verifier=%v",
					step, now, m.kid, m.mintedAt, active, errH, errI)
			}
			if !now.Before(m.exp.Add(30*time.Second)) && (active || errH == nil || errI == nil) {
				t.Fatalf("%s at %v: expired token (exp %v) accepted: introspect=%v verifier=%v istio-like=%v", step, now, m.exp, active, errH, errI)
			}
		}
	}

	observe()
	// The first key signs from the first start, before anyone could have
	// cached a key set: exempt it from the lead (and only it).
	first := activeKey(t, e.store).ID
	firstPublished[first] = firstPublished[first].Add(-eff.KeyPublishLead)
	start := e.clock.Now()
	// Two hours and a half on the schedule alone, then as long again with an
	// operator asking for an on-demand rotation every minute (granted each
	// time the next key has been published for the lead).
	var activatedAt []time.Time
	onDemand := 0
	for e.clock.Now().Sub(start) < 5*time.Hour {
		e.clock.Advance(time.Minute)
		// The sidecar refreshes first, so that a key created at this
		// step waits a whole period for its next refresh (the worst case).
		for _, c := range istioCaches {
			if err := c.refresh(ctxT(t)); err != nil {
				t.Fatal(err)
			}
		}
		observe()
		mint() // with the ring as it was: may be the key retired just below
		before := activeKey(t, e.store).ID
		if err := e.srv.SyncSigningKeys(ctxT(t)); err != nil {
			t.Fatalf("SyncSigningKeys: %v", err)
		}
		if e.clock.Now().Sub(start) > 2*time.Hour+30*time.Minute {
			_, err := e.srv.RotateSigningKey(ctxT(t), false)
			switch {
			case err == nil:
				onDemand++
			case !errors.Is(err, server.ErrKeyNotReady):
				t.Fatalf("RotateSigningKey: %v", err)
			}
		}
		if activeKey(t, e.store).ID != before {
			activatedAt = append(activatedAt, e.clock.Now())
		}
		observe()
		mint()
		check(fmt.Sprintf("step %v", e.clock.Now().Sub(start)))
	}
	if len(activatedAt) < 2+5 || onDemand < 5 {
		t.Errorf("%d rotations (%d on demand) in 5h, want the 2 scheduled ones and at least 5 on demand", len(activatedAt), onDemand)
	}
	for i := 1; i < len(activatedAt); i++ {
		if gap := activatedAt[i].Sub(activatedAt[i-1]); gap < eff.KeyReloadInterval+eff.KeyPublishLead {
			t.Errorf("rotations at %v and %v: the second key signed %v after it was created, less than reload + lead", activatedAt[i-1], activatedAt[i], gap)
		}
	}
	for _, c := range istioCaches {
		if want := int(5*time.Hour/sidecarPeriod) - 1; c.fetches < want {
			t.Errorf("the scheduled sidecar of phase %v fetched %d times in 5h, want at least %d", c.phase, c.fetches, want)
		}
	}
	if len(removedAt) < len(activatedAt)-1 {
		t.Errorf("only %d retired keys removed during the walk, want at least %d", len(removedAt), len(activatedAt)-1)
	}
	// Each rotation's key signed tokens, and only those keys did.
	kids := map[string]bool{}
	for _, m := range minted {
		kids[m.kid] = true
	}
	if len(kids) != len(activatedAt)+1 {
		t.Errorf("tokens were signed by %d keys, want %d (the first and one per rotation)", len(kids), len(activatedAt)+1)
	}
	for _, k := range storedKeys(t, e.store) {
		if k.State == storage.KeyRetired && e.clock.Now().After(k.RetiredAt.Add(window)) {
			t.Errorf("retired key %s outlived its window", k.ID)
		}
	}
	n := len(activatedAt)
	wantEvents(t, e.logs.String(), map[string]int{"key_activated": n + 1, "key_retired": n, "key_created": n + 2})
	if got := strings.Count(e.logs.String(), `"event":"key_removed"`); got != len(removedAt) {
		t.Errorf("%d key_removed events, want %d", got, len(removedAt))
	}
	checkNoPrivateKeys(t, e.logs.String())
}

// wantEvents checks how many log records carry each event.
func wantEvents(t *testing.T, logs string, want map[string]int) {
	t.Helper()
	for ev, n := range want {
		if got := strings.Count(logs, `"event":"`+ev+`"`); got != n {
			t.Errorf("%d %s events logged, want %d", got, ev, n)
		}
	}
}

// checkNoPrivateKeys fails if text holds any form of a private key that
// TestRotationWalk's server could have had (its records carry kids only).
func checkNoPrivateKeys(t *testing.T, text string) {
	t.Helper()
	for _, marker := range []string{"PRIVATE KEY", `"d":`, "private_key", "MIGHAgEAMBMGByqGSM49"} {
		if strings.Contains(text, marker) {
			t.Errorf("logs contain %q", marker)
		}
	}
}

func metadataCtx(t *testing.T, tok string) context.Context {
	t.Helper()
	return metadata.AppendToOutgoingContext(ctxT(t), "authorization", "Bearer "+tok)
}

// TestRetiredKeyRemovedExactlyAfterWindow pins the removal instant: a
// retired key is still published at RetiredAt + reload + access-ttl +
// leeway, and gone one nanosecond later.
func TestRetiredKeyRemovedExactlyAfterWindow(t *testing.T) {
	cfg := keyConfig()
	e := newEnv(t, cfg)
	eff := e.srv.Config()
	old := activeKey(t, e.store)
	e.clock.Advance(eff.KeyRotation)
	if err := e.srv.SyncSigningKeys(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	retired := storedKeys(t, e.store)[old.ID]
	if retired.State != storage.KeyRetired || !retired.RetiredAt.Equal(e.clock.Now()) {
		t.Fatalf("old key after rotation = %s retired at %v, want retired at %v", retired.State, retired.RetiredAt, e.clock.Now())
	}
	deadline := retired.RetiredAt.Add(eff.KeyReloadInterval + eff.AccessTTL + eff.Leeway)
	infos, err := e.srv.ListSigningKeys(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range infos {
		if in.ID == old.ID && !in.RemovedAt.Equal(deadline) {
			t.Errorf("ListSigningKeys RemovedAt = %v, want %v", in.RemovedAt, deadline)
		}
	}
	for _, at := range []time.Time{deadline.Add(-time.Minute), deadline} {
		e.clock.Advance(at.Sub(e.clock.Now()))
		if err := e.srv.SyncSigningKeys(ctxT(t)); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(jwksKids(e.srv.JWKS()), old.ID) {
			t.Fatalf("retired key removed at %v, before its window ended at %v", at, deadline)
		}
	}
	e.clock.Advance(time.Nanosecond)
	if err := e.srv.SyncSigningKeys(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(jwksKids(e.srv.JWKS()), old.ID) {
		t.Fatalf("retired key still published at %v, after its window ended at %v", e.clock.Now(), deadline)
	}
	if _, ok := storedKeys(t, e.store)[old.ID]; ok {
		t.Fatal("retired key still stored after its window")
	}
}

// TestOnDemandRotation covers RotateSigningKey(ctx, false): refused with
// ErrKeyNotReady (and nothing changed) until the next key has been
// published for the lead, then the same transition as the schedule's.
func TestOnDemandRotation(t *testing.T) {
	cfg := keyConfig()
	cfg.KeyRotation = -1 // on demand only
	e := newEnv(t, cfg)
	eff := e.srv.Config()
	old := activeKey(t, e.store)
	var next storage.SigningKey
	for _, k := range storedKeys(t, e.store) {
		if k.State == storage.KeyNext {
			next = k
		}
	}
	ready := next.CreatedAt.Add(eff.KeyReloadInterval + eff.KeyPublishLead)
	infos, err := e.srv.ListSigningKeys(ctxT(t))
	if err != nil || len(infos) != 2 || infos[0].State != storage.KeyActive || infos[1].ID != next.ID || !infos[1].ActivatesAt.IsZero() {
		t.Fatalf("ListSigningKeys = %+v, %v; want active then next, no scheduled activation", infos, err)
	}

	e.clock.Advance(ready.Sub(e.clock.Now()) - time.Nanosecond)
	before := statesOf(storedKeys(t, e.store))
	_, err = e.srv.RotateSigningKey(ctxT(t), false)
	var nr *server.KeyNotReadyError
	if !errors.Is(err, server.ErrKeyNotReady) || !errors.As(err, &nr) || !nr.ReadyAt.Equal(ready) || nr.KeyID != next.ID {
		t.Fatalf("RotateSigningKey before the lead = %v, want KeyNotReadyError{%s, %v}", err, next.ID, ready)
	}
	if after := statesOf(storedKeys(t, e.store)); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("refused rotation changed the keys: %v → %v", before, after)
	}

	// With the schedule off, time alone never rotates.
	e.clock.Advance(90 * 24 * time.Hour)
	if err := e.srv.SyncSigningKeys(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if activeKey(t, e.store).ID != old.ID {
		t.Fatal("scheduled rotation ran with --key-rotation disabled")
	}

	infos, err = e.srv.RotateSigningKey(ctxT(t), false)
	if err != nil {
		t.Fatalf("RotateSigningKey after the lead: %v", err)
	}
	got := statesOf(storedKeys(t, e.store))
	if got[next.ID] != storage.KeyActive || got[old.ID] != storage.KeyRetired || len(got) != 3 {
		t.Fatalf("keys after rotation = %v; want %s active, %s retired, one new next", got, next.ID, old.ID)
	}
	if infos[0].ID != next.ID || infos[0].State != storage.KeyActive || infos[1].State != storage.KeyNext || infos[2].ID != old.ID || infos[2].RemovedAt.IsZero() {
		t.Fatalf("RotateSigningKey returned %+v", infos)
	}
	if e.srv.JWKS().Keys[0].Kid != next.ID {
		t.Fatal("the server does not sign with the activated key")
	}
	// The fresh next key is not ready: a second on-demand rotation waits.
	if _, err := e.srv.RotateSigningKey(ctxT(t), false); !errors.Is(err, server.ErrKeyNotReady) {
		t.Fatalf("second RotateSigningKey = %v, want ErrKeyNotReady", err)
	}
}

// TestImmediateRotation covers the compromise case: a never-seen key signs
// at once, the old next key (maybe stolen with the active one) is deleted,
// the old active key stays published for its tokens, a fresh next key is
// published.
func TestImmediateRotation(t *testing.T) {
	e := newEnv(t, keyConfig())
	e.addUser("alice@example.com", "alice-password")
	caller := e.introspector()
	before := e.login("alice@example.com", "alice-password")
	keys := storedKeys(t, e.store)
	old := activeKey(t, e.store)

	if _, err := e.srv.RotateSigningKey(ctxT(t), true); err != nil {
		t.Fatalf("RotateSigningKey(immediate): %v", err)
	}
	after := storedKeys(t, e.store)
	fresh := activeKey(t, e.store)
	if _, existed := keys[fresh.ID]; existed || !fresh.ActivatedAt.Equal(e.clock.Now()) {
		t.Fatalf("immediate rotation activated %s (existed before: %v)", fresh.ID, existed)
	}
	if after[old.ID].State != storage.KeyRetired {
		t.Fatalf("old active key is %s, want retired", after[old.ID].State)
	}
	nexts := 0
	for id, k := range after {
		if k.State == storage.KeyNext {
			nexts++
			if _, existed := keys[id]; existed {
				t.Fatalf("the old next key %s survived an immediate rotation", id)
			}
		}
	}
	if nexts != 1 || len(after) != 3 {
		t.Fatalf("keys after immediate rotation = %v, want new active, new next, old retired", statesOf(after))
	}
	tp := e.login("alice@example.com", "alice-password")
	if tokenKid(t, tp.GetAccessToken()) != fresh.ID {
		t.Fatal("new tokens are not signed with the new key")
	}
	if !e.introspect(caller, before.GetAccessToken()).GetActive() || !e.introspect(caller, tp.GetAccessToken()).GetActive() {
		t.Fatal("a valid token was rejected after an immediate rotation")
	}
	wantEvents(t, e.logs.String(), map[string]int{"key_retired": 1, "key_removed": 1, "key_created": 4, "key_activated": 2})
}

// TestRotationBurstIsCapped: immediate rotations in a burst stop at
// MaxRetiredKeys published retired keys (so the JWKS stays acceptable to
// verifiers), refused with ErrTooManyRetiredKeys and no change, until the
// first of them has been removed.
func TestRotationBurstIsCapped(t *testing.T) {
	e := newEnv(t, keyConfig())
	for i := range server.MaxRetiredKeys {
		if _, err := e.srv.RotateSigningKey(ctxT(t), true); err != nil {
			t.Fatalf("immediate rotation %d: %v", i+1, err)
		}
	}
	before := statesOf(storedKeys(t, e.store))
	_, err := e.srv.RotateSigningKey(ctxT(t), true)
	var tm *server.TooManyRetiredKeysError
	if !errors.Is(err, server.ErrTooManyRetiredKeys) || !errors.As(err, &tm) {
		t.Fatalf("rotation %d = %v, want ErrTooManyRetiredKeys", server.MaxRetiredKeys+1, err)
	}
	if _, err := e.srv.RotateSigningKey(ctxT(t), false); !errors.Is(err, server.ErrTooManyRetiredKeys) {
		t.Fatalf("on-demand rotation at the cap = %v, want ErrTooManyRetiredKeys", err)
	}
	if after := statesOf(storedKeys(t, e.store)); fmt.Sprint(after) != fmt.Sprint(before) || len(e.srv.JWKS().Keys) != server.MaxRetiredKeys+2 {
		t.Fatalf("refused rotation changed the keys (%d published)", len(e.srv.JWKS().Keys))
	}
	e.clock.Advance(tm.RetryAt.Sub(e.clock.Now()) + time.Nanosecond)
	if _, err := e.srv.RotateSigningKey(ctxT(t), true); err != nil {
		t.Fatalf("rotation after the first retired key's window: %v", err)
	}
}

// TestReplicasShareOneStore runs two Server values on one bbolt store, as
// replicas on a shared backend would: their key managers, run concurrently
// round after round, never produce two active keys or a double rotation,
// and both publish the same JWKS after each round.
func TestReplicasShareOneStore(t *testing.T) {
	cfg := keyConfig()
	e := newEnv(t, cfg)
	logs2 := &logBuffer{}
	srv2, err := server.New(ctxT(t), e.store, e.hasher, cfg, server.WithClock(e.clock.Now),
		server.WithLogger(slog.New(slog.NewJSONHandler(logs2, nil))))
	if err != nil {
		t.Fatalf("second server.New: %v", err)
	}
	if fmt.Sprint(jwksKids(srv2.JWKS())) != fmt.Sprint(jwksKids(e.srv.JWKS())) {
		t.Fatalf("replicas start with different key sets: %v vs %v", jwksKids(e.srv.JWKS()), jwksKids(srv2.JWKS()))
	}
	replicas := []*server.Server{e.srv, srv2}
	activeSeen := map[string]bool{activeKey(t, e.store).ID: true}
	start := e.clock.Now()
	for round := 0; e.clock.Now().Sub(start) < 5*time.Hour; round++ {
		e.clock.Advance(7 * time.Minute)
		var wg sync.WaitGroup
		errs := make([]error, 2*len(replicas))
		for i, r := range replicas {
			wg.Go(func() { errs[i] = r.SyncSigningKeys(ctxT(t)) })
			// An operator's on-demand rotation races the schedule now and then.
			if round%5 == 0 {
				wg.Go(func() {
					if _, err := r.RotateSigningKey(ctxT(t), false); err != nil && !errors.Is(err, server.ErrKeyNotReady) {
						errs[len(replicas)+i] = err
					}
				})
			}
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		activeKey(t, e.store) // exactly one
		activeSeen[activeKey(t, e.store).ID] = true
		// After one more reload each, both publish and sign alike.
		for _, r := range replicas {
			if err := r.SyncSigningKeys(ctxT(t)); err != nil {
				t.Fatal(err)
			}
		}
		a, b := jwksKids(e.srv.JWKS()), jwksKids(srv2.JWKS())
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("round %d: replicas publish %v and %v", round, a, b)
		}
	}
	// Activations logged by both replicas together equal the distinct
	// active keys seen (the first was created at start): no transition was
	// made twice.
	all := e.logs.String() + logs2.String()
	if got := strings.Count(all, `"event":"key_activated"`); got != len(activeSeen) {
		t.Errorf("%d key_activated events across replicas, want %d (one per active key)", got, len(activeSeen))
	}
	if len(activeSeen) < 5 {
		t.Errorf("only %d keys became active in 5 hours with --key-rotation 1h", len(activeSeen))
	}
}

// TestReplicaVerifiesKeyActivatedElsewhere proves the reload on an unknown
// kid: right after one replica activates a brand-new key, the other
// (which has not run its key manager since) accepts its tokens.
func TestReplicaVerifiesKeyActivatedElsewhere(t *testing.T) {
	cfg := keyConfig()
	e := newEnv(t, cfg)
	srv2, err := server.New(ctxT(t), e.store, e.hasher, cfg, server.WithClock(e.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv2.RotateSigningKey(ctxT(t), true); err != nil {
		t.Fatal(err)
	}
	u := e.addUser("alice@example.com", "alice-password")
	sess := storage.Session{ID: "s1", UserID: u.ID, Audience: "orders", CurrentHash: storage.TokenHash{1},
		CreatedAt: e.clock.Now(), LastRotatedAt: e.clock.Now(), IdleExpiresAt: e.clock.Now().Add(time.Hour), AbsoluteExpiresAt: e.clock.Now().Add(time.Hour)}
	if err := e.store.CreateSession(ctxT(t), sess); err != nil {
		t.Fatal(err)
	}
	priv, err := tokens.ParsePrivateKey(activeKey(t, e.store).PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := tokens.NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	tok, err := signer.Sign(tokens.Claims{Issuer: cfg.Issuer, Subject: u.ID, Audience: []string{"orders"},
		ExpiresAt: now.Add(time.Minute), NotBefore: now, IssuedAt: now, ID: "jti-1", SessionID: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	caller := e.introspector()
	if !e.introspect(caller, tok).GetActive() {
		t.Fatal("replica rejects a token of the key another replica just activated")
	}
}

// TestRunKeyManager runs the real loop: it applies a due rotation on its
// own and stops when its context ends.
func TestRunKeyManager(t *testing.T) {
	cfg := keyConfig()
	cfg.KeyReloadInterval = 100 * time.Millisecond
	e := newEnv(t, cfg)
	old := activeKey(t, e.store)
	e.clock.Advance(cfg.KeyRotation)
	ctx, cancel := context.WithCancel(ctxT(t))
	done := make(chan struct{})
	go func() { e.srv.RunKeyManager(ctx); close(done) }()
	waitFor(t, "the key manager to rotate a due key", func() bool { return activeKey(t, e.store).ID != old.ID })
	cancel()
	<-done
	if e.srv.JWKS().Keys[0].Kid == old.ID {
		t.Error("the key manager rotated the store but not its own key ring")
	}
}

// waitFor polls cond until it holds, failing the test if it does not
// within the test context (a generous bound, not a performance threshold).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx := ctxT(t)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// TestReplicasRunningKeyManagers runs the real RunKeyManager loop of two
// Server values on one store while the test clock moves through four
// rotation periods: after each move both replicas converge on the stored
// key set, sign with the stored active key, and no key is activated twice.
func TestReplicasRunningKeyManagers(t *testing.T) {
	cfg := keyConfig()
	cfg.KeyReloadInterval = 100 * time.Millisecond
	e := newEnv(t, cfg)
	logs2 := &logBuffer{}
	srv2, err := server.New(ctxT(t), e.store, e.hasher, cfg, server.WithClock(e.clock.Now),
		server.WithLogger(slog.New(slog.NewJSONHandler(logs2, nil))))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctxT(t))
	var wg sync.WaitGroup
	for _, r := range []*server.Server{e.srv, srv2} {
		wg.Go(func() { r.RunKeyManager(ctx) })
	}
	defer func() { cancel(); wg.Wait() }()

	actives := map[string]bool{}
	for step := range 12 {
		e.clock.Advance(20 * time.Minute)
		waitFor(t, fmt.Sprintf("replicas to converge at step %d", step), func() bool {
			keys := storedKeys(t, e.store)
			var active string
			var ids []string
			for id, k := range keys {
				ids = append(ids, id)
				if k.State == storage.KeyActive {
					active = id
				}
			}
			slices.Sort(ids)
			for _, r := range []*server.Server{e.srv, srv2} {
				got := jwksKids(r.JWKS())
				if got[0] != active {
					return false
				}
				slices.Sort(got)
				if !slices.Equal(got, ids) {
					return false
				}
			}
			actives[active] = true
			// Converged on the set due at this time: nothing is overdue.
			return e.clock.Now().Before(keys[active].ActivatedAt.Add(cfg.KeyRotation))
		})
	}
	cancel()
	wg.Wait()
	all := e.logs.String() + logs2.String()
	if got := strings.Count(all, `"event":"key_activated"`); got != len(actives) || len(actives) < 4 {
		t.Errorf("%d key_activated events for %d distinct active keys, want equal and at least 4", got, len(actives))
	}
}

// TestKeysSurviveRestart rotates, restarts on the same file and finds the
// same keys in the same states, and the same JWKS.
func TestKeysSurviveRestart(t *testing.T) {
	cfg := keyConfig()
	e := newEnv(t, cfg)
	e.clock.Advance(cfg.KeyRotation)
	if err := e.srv.SyncSigningKeys(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	before, jwks := storedKeys(t, e.store), jwksKids(e.srv.JWKS())
	if len(before) != 3 {
		t.Fatalf("keys before restart = %v, want active, next, retired", statesOf(before))
	}
	e.close()
	e2 := newEnvAt(t, e.dbPath, cfg)
	e2.clock.Advance(cfg.KeyRotation + time.Minute) // the same instant as before the restart (plus a minute)
	if err := e2.srv.SyncSigningKeys(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	after := storedKeys(t, e2.store)
	for id, k := range before {
		a := after[id]
		if a.State != k.State || !a.CreatedAt.Equal(k.CreatedAt) || !a.ActivatedAt.Equal(k.ActivatedAt) || !a.RetiredAt.Equal(k.RetiredAt) || !bytes.Equal(a.PrivateKey, k.PrivateKey) {
			t.Errorf("key %s after restart = %+v, want %+v", id, a, k)
		}
	}
	if len(after) != len(before) || fmt.Sprint(jwksKids(e2.srv.JWKS())) != fmt.Sprint(jwks) {
		t.Fatalf("after restart: keys %v, JWKS %v; want %v, %v", statesOf(after), jwksKids(e2.srv.JWKS()), statesOf(before), jwks)
	}
}

// TestKeyConfigValidation checks that every key-timing problem is reported
// at once, each saying how to fix it.
func TestKeyConfigValidation(t *testing.T) {
	cfg := baseConfig()
	cfg.JWKSMaxAge = 10 * time.Minute
	cfg.KeyPublishLead = time.Minute
	cfg.KeyReloadInterval = time.Hour
	cfg.KeyRotation = 30 * time.Minute
	err := cfg.Defaults().Validate()
	if err == nil {
		t.Fatal("Validate accepted a publish lead shorter than the JWKS max-age")
	}
	for _, want := range []string{"KeyPublishLead 1m0s must be at least the JWKS max-age 10m0s", "KeyReloadInterval 1h0m0s must be in",
		"KeyRotation 30m0s must be at least", "raise KeyRotation"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error lacks %q:\n%v", want, err)
		}
	}
	def := baseConfig().Defaults()
	if def.KeyRotation != 30*24*time.Hour || def.KeyPublishLead != def.JWKSMaxAge+time.Hour || def.KeyReloadInterval != 5*time.Second {
		t.Errorf("defaults: rotation %v lead %v reload %v", def.KeyRotation, def.KeyPublishLead, def.KeyReloadInterval)
	}
	if err := def.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	off := baseConfig()
	off.KeyRotation = -1
	if err := off.Defaults().Validate(); err != nil {
		t.Errorf("disabled rotation does not validate: %v", err)
	}
}

// --- encryption at rest ---

func newKEK(t *testing.T) *keyseal.Sealer { return newKEKB(t) }

func newKEKB(t testing.TB) *keyseal.Sealer {
	t.Helper()
	kek := make([]byte, keyseal.KeySize)
	if _, err := io.ReadFull(rand.Reader, kek); err != nil {
		t.Fatal(err)
	}
	s, err := keyseal.New(kek)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// openServer starts a server on the database at path with the options.
func openServer(t *testing.T, path string, opts ...server.Option) (*server.Server, *bolt.Store, error) {
	t.Helper()
	st, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := password.NewHasher(fastParams(), 2)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(ctxT(t), st, hasher, keyConfig(), opts...)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return srv, st, nil
}

// privateForms returns byte strings that would betray a private key in a
// file: its PKCS #8 DER and its 32-byte scalar.
func privateForms(t *testing.T, der []byte) [][]byte {
	t.Helper()
	priv, err := tokens.ParsePrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	scalar, err := priv.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{der, scalar}
}

// base64Run matches runs of (standard or URL) base64 in a raw file: the
// record encoding may store bytes as base64 text.
var base64Run = regexp.MustCompile(`[A-Za-z0-9+/_-]{16,}={0,2}`)

// fileHolds reports whether raw holds any of forms, as bytes or inside any
// base64 text (decoded at every alignment).
func fileHolds(raw []byte, forms [][]byte) bool {
	has := func(b []byte) bool {
		for _, f := range forms {
			if bytes.Contains(b, f) {
				return true
			}
		}
		return false
	}
	if has(raw) {
		return true
	}
	for _, run := range base64Run.FindAll(raw, -1) {
		run = bytes.TrimRight(run, "=")
		for skip := 0; skip < 4 && skip < len(run); skip++ {
			for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
				s := run[skip:]
				s = s[:len(s)/4*4]
				if dec, err := enc.DecodeString(string(s)); err == nil && has(dec) {
					return true
				}
			}
		}
	}
	return false
}

// TestKeysSealedAtRest reads the raw bbolt file of a server started with a
// key-encryption key and finds no private key in it, in PKCS #8 or as a
// bare scalar; the same search finds them in a file written without one.
func TestKeysSealedAtRest(t *testing.T) {
	kek := newKEK(t)
	logs := &logBuffer{}
	path := filepath.Join(t.TempDir(), "sealed.db")
	srv, st, err := openServer(t, path, server.WithKeySealer(kek), server.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	if err != nil {
		t.Fatalf("New with a KEK: %v", err)
	}
	if _, err := srv.RotateSigningKey(ctxT(t), true); err != nil { // more keys, more chances to leak
		t.Fatal(err)
	}
	var forms [][]byte
	for _, k := range storedKeys(t, st) {
		if !keyseal.IsSealed(k.PrivateKey) {
			t.Fatalf("key %s stored unsealed", k.ID)
		}
		der, err := kek.Open(k.ID, k.PrivateKey)
		if err != nil {
			t.Fatalf("stored key %s does not open: %v", k.ID, err)
		}
		forms = append(forms, privateForms(t, der)...)
	}
	if len(forms) != 6 {
		t.Fatalf("%d private forms, want 6 (three keys)", len(forms)/2)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if fileHolds(raw, forms) {
		t.Fatal("the database file holds a private key in clear")
	}
	if strings.Contains(logs.String(), "key_encryption_disabled") {
		t.Error("warned about missing encryption with a KEK given")
	}

	// Control: without a KEK the same search finds the keys.
	plainPath := filepath.Join(t.TempDir(), "plain.db")
	_, st2, err := openServer(t, plainPath)
	if err != nil {
		t.Fatal(err)
	}
	der := activeKey(t, st2).PrivateKey
	st2.Close()
	raw, err = os.ReadFile(plainPath)
	if err != nil {
		t.Fatal(err)
	}
	if !fileHolds(raw, privateForms(t, der)) {
		t.Fatal("control: the search does not find a plaintext key in an unencrypted file")
	}
}

// TestKeyEncryptionRefusals: a sealed database refuses to start without
// the KEK and with a wrong one, saying which, and without detail.
func TestKeyEncryptionRefusals(t *testing.T) {
	kek := newKEK(t)
	path := filepath.Join(t.TempDir(), "latch.db")
	_, st, err := openServer(t, path, server.WithKeySealer(kek))
	if err != nil {
		t.Fatal(err)
	}
	sealed := activeKey(t, st).PrivateKey
	st.Close()

	_, _, err = openServer(t, path)
	if !errors.Is(err, server.ErrKeyEncryptionKeyRequired) {
		t.Fatalf("New without the KEK on a sealed db = %v, want ErrKeyEncryptionKeyRequired", err)
	}
	_, _, err = openServer(t, path, server.WithKeySealer(newKEK(t)))
	if !errors.Is(err, server.ErrKeyEncryptionKeyWrong) {
		t.Fatalf("New with a wrong KEK = %v, want ErrKeyEncryptionKeyWrong", err)
	}
	if strings.Contains(err.Error(), "cipher") || strings.Contains(err.Error(), hex.EncodeToString(sealed[4:16])) {
		t.Errorf("wrong-KEK error leaks detail: %v", err)
	}
	// Nothing was changed by the refusals: the right KEK still opens it.
	srv, st, err := openServer(t, path, server.WithKeySealer(kek))
	if err != nil {
		t.Fatalf("New with the right KEK after refusals: %v", err)
	}
	defer st.Close()
	if !bytes.Equal(activeKey(t, st).PrivateKey, sealed) || len(srv.JWKS().Keys) != 2 {
		t.Fatal("refused starts changed the stored keys")
	}
}

// TestKeyEncryptionMigration: a KEK given for the first time seals the
// existing plaintext keys in place; their tokens stay valid; the server
// warned without a KEK (once) and reports the migration.
func TestKeyEncryptionMigration(t *testing.T) {
	cfg := keyConfig()
	e := newEnv(t, cfg)
	e.addUser("alice@example.com", "alice-password")
	tp := e.login("alice@example.com", "alice-password")
	if got := strings.Count(e.logs.String(), `"event":"key_encryption_disabled"`); got != 1 {
		t.Fatalf("%d key_encryption_disabled warnings at start without a KEK, want 1", got)
	}
	plain := storedKeys(t, e.store)
	e.close()

	kek := newKEK(t)
	logs := &logBuffer{}
	st, err := bolt.Open(e.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv, err := server.New(ctxT(t), st, e.hasher, cfg, server.WithKeySealer(kek), server.WithClock(e.clock.Now),
		server.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	if err != nil {
		t.Fatalf("New with a first KEK: %v", err)
	}
	sealed := storedKeys(t, st)
	if len(sealed) != len(plain) {
		t.Fatalf("migration changed the key set: %v → %v", statesOf(plain), statesOf(sealed))
	}
	for id, k := range sealed {
		if !keyseal.IsSealed(k.PrivateKey) || k.State != plain[id].State {
			t.Fatalf("key %s after migration: sealed=%v state %s", id, keyseal.IsSealed(k.PrivateKey), k.State)
		}
		der, err := kek.Open(id, k.PrivateKey)
		if err != nil || !bytes.Equal(der, plain[id].PrivateKey) {
			t.Fatalf("sealed key %s does not open to the original: %v", id, err)
		}
	}
	if !strings.Contains(logs.String(), `"event":"key_encryption_migrated"`) || !strings.Contains(logs.String(), `"keys":2`) {
		t.Errorf("migration not logged: %s", logs.String())
	}
	checkNoPrivateKeys(t, logs.String())
	// The token signed before the migration verifies on the migrated server.
	if _, err := srv.Verifier().Verify(ctxT(t), tp.GetAccessToken()); err != nil {
		t.Fatalf("token from before the migration rejected: %v", err)
	}
}

// TestPrivateKeysNeverServed: neither JWKS form nor ListSigningKeys nor
// the logs carry private key material (invariant 6), across a rotation.
func TestPrivateKeysNeverServed(t *testing.T) {
	e := newEnv(t, keyConfig())
	url := serveHTTP(t, e.srv)
	if _, err := e.srv.RotateSigningKey(ctxT(t), true); err != nil {
		t.Fatal(err)
	}
	infos, err := e.srv.ListSigningKeys(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	grpcJWKS, err := e.client.GetJWKS(ctxT(t), &latchv1.GetJWKSRequest{})
	if err != nil {
		t.Fatal(err)
	}
	served := string(body) + grpcJWKS.String() + fmt.Sprintf("%+v", infos) + e.logs.String()
	for _, k := range storedKeys(t, e.store) {
		for _, f := range privateForms(t, k.PrivateKey) {
			for _, enc := range []string{base64.StdEncoding.EncodeToString(f), base64.RawURLEncoding.EncodeToString(f), hex.EncodeToString(f), fmt.Sprint(f)} {
				if strings.Contains(served, enc) {
					t.Fatalf("private key material of %s is served or logged", k.ID)
				}
			}
		}
	}
	if len(infos) != 3 {
		t.Fatalf("ListSigningKeys = %d keys, want 3", len(infos))
	}
}

// TestReplicaWhoseKeysDoNotLoadIsNotReady: a replica that cannot load the
// stored key set (here: another replica, given a key-encryption key this
// one lacks, sealed the keys and then rotated) keeps its old ring, so it
// would sign with a key the store has retired and not publish the new
// ones. It must say so on /readyz and grpc.health.v1, so that a balancer
// takes it out, and be ready again once the stored keys load.
func TestReplicaWhoseKeysDoNotLoadIsNotReady(t *testing.T) {
	cfg := keyConfig()
	e := newEnv(t, cfg) // replica A: no key-encryption key
	readyz := strings.TrimSuffix(serveHTTP(t, e.srv), server.JWKSPath) + "/readyz"
	kek := newKEK(t)
	b, err := server.New(ctxT(t), e.store, e.hasher, cfg, server.WithKeySealer(kek), server.WithClock(e.clock.Now))
	if err != nil {
		t.Fatalf("replica B with a KEK: %v", err)
	}
	if err := e.srv.SyncSigningKeys(ctxT(t)); err != nil {
		t.Fatalf("A's sync after B sealed the same keys: %v", err)
	}
	if err := e.srv.Ready(ctxT(t)); err != nil {
		t.Fatalf("A before any new key: %v, want ready", err)
	}
	if _, err := b.RotateSigningKey(ctxT(t), true); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.SyncSigningKeys(ctxT(t)); !errors.Is(err, server.ErrKeyEncryptionKeyRequired) {
		t.Fatalf("A's sync of keys sealed under a KEK it lacks = %v, want ErrKeyEncryptionKeyRequired", err)
	}
	if err := e.srv.Ready(ctxT(t)); !errors.Is(err, server.ErrSigningKeysStale) {
		t.Errorf("A.Ready with a key set it cannot load = %v, want ErrSigningKeysStale", err)
	}
	resp, err := http.Get(readyz)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), server.ErrSigningKeysStale.Error()) {
		t.Errorf("/readyz = %d %q, want 503 naming the stale keys", resp.StatusCode, body)
	}
	h, err := healthpb.NewHealthClient(e.conn).Check(ctxT(t), &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health Check = %v, %v; want NOT_SERVING", h, err)
	}

	// The operator fixes it (here: the keys are stored unsealed again):
	// the next reload loads them and A is ready, publishing B's new key.
	if _, err := e.store.UpdateSigningKeys(ctxT(t), func(cur []storage.SigningKey) ([]storage.SigningKey, error) {
		out := slices.Clone(cur)
		for i, k := range out {
			if out[i].PrivateKey, err = kek.Open(k.ID, k.PrivateKey); err != nil {
				return nil, err
			}
		}
		return out, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.UpdateRefreshKeys(ctxT(t), func(cur []storage.RefreshKey) ([]storage.RefreshKey, error) {
		for i, k := range cur {
			if cur[i].Secret, err = kek.Open("refresh-key:"+k.ID, k.Secret); err != nil {
				return nil, err
			}
		}
		return cur, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.srv.SyncSigningKeys(ctxT(t)); err != nil {
		t.Fatalf("A's sync after the fix: %v", err)
	}
	if err := e.srv.Ready(ctxT(t)); err != nil {
		t.Errorf("A.Ready after the keys load again: %v", err)
	}
	if got, want := jwksKids(e.srv.JWKS())[0], activeKey(t, e.store).ID; got != want {
		t.Errorf("A publishes %s first, want the active key %s", got, want)
	}
}

// TestStartRefusesMismatchedPrivateKey: a stored key (here the next one,
// which does not sign yet) whose private half is not the key its id names
// is refused at start, naming the key and nothing of the private key.
func TestStartRefusesMismatchedPrivateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latch.db")
	_, st, err := openServer(t, path)
	if err != nil {
		t.Fatal(err)
	}
	active := activeKey(t, st)
	var nextID string
	if _, err := st.UpdateSigningKeys(ctxT(t), func(cur []storage.SigningKey) ([]storage.SigningKey, error) {
		out := slices.Clone(cur)
		for i := range out {
			if out[i].State == storage.KeyNext {
				out[i].PrivateKey, nextID = active.PrivateKey, out[i].ID
			}
		}
		return out, nil
	}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if nextID == "" {
		t.Fatal("no next key stored")
	}

	_, _, err = openServer(t, path)
	if err == nil {
		t.Fatal("New accepted a next key whose private half belongs to another key")
	}
	if !strings.Contains(err.Error(), nextID) {
		t.Errorf("error %q does not name the key %s", err, nextID)
	}
	if strings.Contains(err.Error(), hex.EncodeToString(active.PrivateKey[len(active.PrivateKey)-16:])) {
		t.Errorf("error leaks private key bytes: %v", err)
	}
}
