package interceptors

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/tokens"
	"google.golang.org/grpc"
)

// keyFetcher gets the current key set from somewhere. maxAge is the
// server's Cache-Control max-age, or 0 when it sent none.
type keyFetcher interface {
	fetch(ctx context.Context) (set *tokens.KeySet, maxAge time.Duration, err error)
}

// grpcFetcher calls AuthService.GetJWKS.
type grpcFetcher struct{ conn grpc.ClientConnInterface }

func (f *grpcFetcher) fetch(ctx context.Context) (*tokens.KeySet, time.Duration, error) {
	resp, err := latchv1.NewAuthServiceClient(f.conn).GetJWKS(ctx, &latchv1.GetJWKSRequest{})
	if err != nil {
		return nil, 0, fmt.Errorf("GetJWKS: %w", err)
	}
	set := tokens.JWKS{Keys: make([]tokens.JWK, 0, len(resp.GetKeys()))}
	for _, k := range resp.GetKeys() {
		set.Keys = append(set.Keys, tokens.JWK{Kty: k.GetKty(), Crv: k.GetCrv(), X: k.GetX(), Y: k.GetY(),
			Kid: k.GetKid(), Alg: k.GetAlg(), Use: k.GetUse()})
	}
	ks, err := tokens.NewKeySetFromJWKS(set)
	if err != nil {
		return nil, 0, fmt.Errorf("GetJWKS: %w", err)
	}
	return ks, 0, nil
}

// parseJWKSURL checks a JWKS URL: absolute, http or https with a host, no
// credentials, and https unless the host is loopback or insecure is set.
// Its errors do not repeat the URL, which may hold a password.
func parseJWKSURL(raw string, insecure bool) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("empty URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("malformed URL")
	}
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, errors.New("the URL must be https (http only to a loopback host)")
	case u.Host == "" || u.Hostname() == "":
		return nil, errors.New("the URL has no host")
	case u.User != nil:
		return nil, errors.New("the URL must not hold credentials")
	case u.Scheme == "http" && !insecure && !loopbackHost(u.Hostname()):
		return nil, fmt.Errorf("plain http to %s: the URL must be https except to a loopback host "+
			"(127.0.0.0/8, ::1, localhost); WithInsecureJWKSURL accepts it where the network is otherwise protected", u.Hostname())
	}
	return u, nil
}

// loopbackHost reports whether host is localhost or a loopback address.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// jwksClient returns a copy of c (nil: a client with a 10 s timeout) that
// follows a redirect only to the scheme and host of origin, and then only
// if c's own CheckRedirect allows it. c is not changed.
func jwksClient(c *http.Client, origin *url.URL) *http.Client {
	var cp http.Client
	if c != nil {
		cp = *c
	} else {
		cp.Timeout = 10 * time.Second
	}
	next := cp.CheckRedirect
	cp.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if !sameOrigin(req.URL, origin) {
			return fmt.Errorf("refusing a JWKS redirect to %s://%s: redirects must stay on %s://%s",
				req.URL.Scheme, req.URL.Host, origin.Scheme, origin.Host)
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &cp
}

// sameOrigin compares scheme, host (case-insensitively) and port (the
// scheme's default when absent).
func sameOrigin(a, b *url.URL) bool {
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		if u.Scheme == "https" {
			return "443"
		}
		return "80"
	}
	return a.Scheme == b.Scheme && strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

// httpFetcher GETs a JWKS URL, with ETag revalidation.
type httpFetcher struct {
	url    string
	client *http.Client

	mu   sync.Mutex
	etag string
	last *tokens.KeySet
}

func (f *httpFetcher) fetch(ctx context.Context) (*tokens.KeySet, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("jwks request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	f.mu.Lock()
	if f.etag != "" && f.last != nil {
		req.Header.Set("If-None-Match", f.etag)
	}
	f.mu.Unlock()
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s: %w", f.url, err)
	}
	defer resp.Body.Close()
	maxAge := parseMaxAge(resp.Header.Get("Cache-Control"))
	f.mu.Lock()
	defer f.mu.Unlock()
	switch resp.StatusCode {
	case http.StatusNotModified:
		if f.last == nil {
			return nil, 0, fmt.Errorf("GET %s: 304 without a cached set", f.url)
		}
		return f.last, maxAge, nil
	case http.StatusOK:
	default:
		return nil, 0, fmt.Errorf("GET %s: HTTP %d", f.url, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, tokens.MaxJWKSSize+1))
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s: %w", f.url, err)
	}
	set, err := tokens.ParseJWKS(data)
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s: %w", f.url, err)
	}
	f.etag, f.last = resp.Header.Get("ETag"), set
	return set, maxAge, nil
}

// parseMaxAge reads max-age from a Cache-Control header; 0 if absent.
func parseMaxAge(cc string) time.Duration {
	for _, d := range strings.Split(cc, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(d), "=")
		if ok && strings.EqualFold(name, "max-age") {
			if n, err := strconv.Atoi(strings.Trim(val, `"`)); err == nil && n > 0 {
				return time.Duration(n) * time.Second
			}
		}
	}
	return 0
}

// staticFetcher serves a fixed set.
type staticFetcher struct{ set *tokens.KeySet }

func (f staticFetcher) fetch(context.Context) (*tokens.KeySet, time.Duration, error) {
	return f.set, 0, nil
}

// keyCache is the tokens.KeySource of a Verifier: the last good key set,
// refreshed in the background and, for an unknown kid, on demand at most
// once per minRefetch.
type keyCache struct {
	fetcher    keyFetcher
	static     bool
	interval   time.Duration
	minRefetch time.Duration
	now        func() time.Time
	log        *slog.Logger

	cur       atomic.Pointer[tokens.KeySet]
	fetchedAt atomic.Int64 // unix nanos of the last successful fetch
	fetches   atomic.Int64 // fetch attempts, for Status
	maxAge    atomic.Int64 // last server max-age, nanos

	mu          sync.Mutex
	lastAttempt time.Time
	inflight    chan struct{}
}

var _ tokens.KeySource = (*keyCache)(nil)

// PublicKey implements tokens.KeySource.
func (k *keyCache) PublicKey(ctx context.Context, kid string) (*ecdsa.PublicKey, error) {
	if set := k.cur.Load(); set != nil {
		if key, err := set.PublicKey(ctx, kid); err == nil {
			return key, nil
		}
	}
	if k.static || !k.refetch(ctx) {
		return nil, tokens.ErrUnknownKey
	}
	set := k.cur.Load()
	if set == nil {
		return nil, tokens.ErrUnknownKey
	}
	return set.PublicKey(ctx, kid)
}

// refetch fetches now unless a fetch ran less than minRefetch ago; callers
// arriving during a fetch wait for it. It reports whether a fetch ran.
func (k *keyCache) refetch(ctx context.Context) bool {
	k.mu.Lock()
	if ch := k.inflight; ch != nil {
		k.mu.Unlock()
		select {
		case <-ch:
			return true
		case <-ctx.Done():
			return false
		}
	}
	now := k.now()
	if !k.lastAttempt.IsZero() && now.Sub(k.lastAttempt) < k.minRefetch {
		k.mu.Unlock()
		return false
	}
	k.lastAttempt = now
	ch := make(chan struct{})
	k.inflight = ch
	k.mu.Unlock()

	// The fetch is shared: it must not die with the request that started it.
	if err := k.fetchNow(context.WithoutCancel(ctx)); err != nil {
		k.log.LogAttrs(ctx, slog.LevelWarn, "key refetch for an unknown kid failed; keeping the last key set",
			slog.String("event", "jwks_refetch_failed"), slog.String("error", err.Error()))
	}
	k.mu.Lock()
	k.inflight = nil
	k.mu.Unlock()
	close(ch)
	return true
}

// fetchNow fetches, within 10 s, and installs a key set. An unchanged set
// keeps its pointer, so the verified-token cache survives routine
// refreshes.
func (k *keyCache) fetchNow(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	k.fetches.Add(1)
	set, maxAge, err := k.fetcher.fetch(ctx)
	if err != nil {
		return err
	}
	if old := k.cur.Load(); old == nil || !slices.Equal(old.JWKS().Keys, set.JWKS().Keys) {
		k.cur.Store(set)
	}
	k.fetchedAt.Store(k.now().UnixNano())
	k.maxAge.Store(int64(maxAge))
	return nil
}

// nextRefresh is the delay before the next background refresh: the
// server's max-age when it gave one (but not more often than minRefetch),
// else the configured interval.
func (k *keyCache) nextRefresh() time.Duration {
	if ma := time.Duration(k.maxAge.Load()); ma > 0 {
		return min(max(ma, k.minRefetch), 24*time.Hour)
	}
	return k.interval
}

// run refreshes in the background until ctx ends, backing off on failure.
// If no set has been fetched yet it starts at once.
func (k *keyCache) run(ctx context.Context) {
	if k.static {
		return
	}
	delay := k.nextRefresh()
	if k.cur.Load() == nil {
		delay = 0
	}
	backoff := time.Second
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := k.fetchNow(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			k.log.LogAttrs(ctx, slog.LevelWarn, "key refresh failed; keeping the last key set",
				slog.String("event", "jwks_refresh_failed"), slog.String("error", err.Error()),
				slog.Duration("retry_in", backoff))
			t.Reset(backoff)
			backoff = min(backoff*2, k.interval)
			continue
		}
		backoff = time.Second
		t.Reset(k.nextRefresh())
	}
}

// waitFirst fetches until a set is installed or ctx ends.
func (k *keyCache) waitFirst(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	var last error
	for {
		err := k.fetchNow(ctx)
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("no key set within the start-up timeout: %w", errors.Join(last, ctx.Err()))
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}
