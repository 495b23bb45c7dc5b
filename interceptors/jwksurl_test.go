package interceptors_test

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/latchauth/latch/interceptors"
	"github.com/latchauth/latch/tokens"
)

// TestJWKSURLSchemes: JWKSURL takes https anywhere and plain http only
// on loopback; InsecureJWKSURL is the explicit way to use plain http
// elsewhere. Malformed URLs are refused at construction.
func TestJWKSURLSchemes(t *testing.T) {
	for _, c := range []struct {
		url     string
		ok      bool
		errPart string
	}{
		{"https://latch.example/.well-known/jwks.json", true, ""},
		{"http://127.0.0.1:1/.well-known/jwks.json", true, ""},
		{"http://127.9.9.9:1/jwks", true, ""},
		{"http://localhost:1/jwks", true, ""},
		{"http://[::1]:1/jwks", true, ""},
		{"http://latch.example/.well-known/jwks.json", false, "https"},
		{"http://10.0.0.1/jwks", false, "https"},
		{"http://localhost.evil.example/jwks", false, "https"},
		{"ftp://latch.example/jwks", false, "https"},
		{"https:///jwks", false, "host"},
		{"latch.example/jwks", false, "https"},
		{"https://user:secret@latch.example/jwks", false, "credentials"},
		{"https://latch.example/%zz", false, "URL"},
	} {
		t.Run(c.url, func(t *testing.T) {
			v, err := interceptors.NewVerifier(ctxT(t), interceptors.Config{Issuer: issuer, Audience: []string{"orders"},
				Keys: interceptors.JWKSURL(c.url)}, interceptors.WithLazyStart())
			if err == nil {
				v.Close()
			}
			if c.ok != (err == nil) {
				t.Fatalf("NewVerifier(JWKSURL(%q)) = %v, want ok=%v", c.url, err, c.ok)
			}
			if err != nil && (!strings.Contains(err.Error(), c.errPart) || strings.Contains(err.Error(), "secret")) {
				t.Fatalf("error %q does not name %q, or shows the URL's password", err, c.errPart)
			}
		})
	}
	v, err := interceptors.NewVerifier(ctxT(t), interceptors.Config{Issuer: issuer, Audience: []string{"orders"},
		Keys: interceptors.InsecureJWKSURL("http://latch.example/jwks")}, interceptors.WithLazyStart())
	if err != nil {
		t.Fatalf("InsecureJWKSURL: %v", err)
	}
	v.Close()
}

// jwksHandler serves a real key set and counts requests.
func jwksHandler(t *testing.T, hits *atomic.Int64) http.Handler {
	set, err := tokens.NewKeySet(&newKey(t).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(set.JWKS())
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
}

// redirector answers every request with a redirect to target.
func redirector(target string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target, http.StatusFound)
	})
}

// TestJWKSURLRedirects: a redirect within the same https origin is
// followed; one to another host or from https to http is not (the other
// server is never asked), with the default client and with the caller's,
// which is left as it was.
func TestJWKSURLRedirects(t *testing.T) {
	var otherHits, plainHits, sameHits atomic.Int64
	other := httptest.NewTLSServer(jwksHandler(t, &otherHits))
	t.Cleanup(other.Close)
	plain := httptest.NewServer(jwksHandler(t, &plainHits))
	t.Cleanup(plain.Close)

	mux := http.NewServeMux()
	mux.Handle("/keys", jwksHandler(t, &sameHits))
	mux.Handle("/same", redirector("/keys"))
	mux.Handle("/other-host", redirector(other.URL+"/keys"))
	mux.Handle("/to-http", redirector(plain.URL+"/keys"))
	// The same host name and port under the http scheme: a downgrade.
	mux.Handle("/to-http-same-host", redirector(strings.Replace(other.URL, "https://", "http://", 1)+"/keys"))
	latch := httptest.NewTLSServer(mux)
	t.Cleanup(latch.Close)
	// Both TLS servers share httptest's certificate, so one client trusts both.
	mkClient := func() *http.Client { c := latch.Client(); c.Timeout = 5 * time.Second; return c }

	// start starts a Verifier lazily on path and returns nil once it has
	// keys, or the first fetch failure it logs.
	start := func(path string, client *http.Client) error {
		var logs syncBuffer
		opts := []interceptors.Option{interceptors.WithLazyStart(),
			interceptors.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil)))}
		if client != nil {
			opts = append(opts, interceptors.WithHTTPClient(client))
		}
		v, err := interceptors.NewVerifier(ctxT(t), interceptors.Config{Issuer: issuer, Audience: []string{"orders"},
			Keys: interceptors.JWKSURL(latch.URL + path)}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		var failure string
		eventually(t, "keys or a failed fetch", func() bool {
			failure = logs.String()
			return !v.Status().KeysMissing || strings.Contains(failure, `"event":"jwks_refresh_failed"`)
		})
		if !v.Status().KeysMissing {
			return nil
		}
		return errors.New(failure)
	}

	caller := mkClient()
	if err := start("/same", caller); err != nil || sameHits.Load() == 0 {
		t.Fatalf("redirect within the origin: %v (hits %d)", err, sameHits.Load())
	}
	for _, path := range []string{"/other-host", "/to-http", "/to-http-same-host"} {
		t.Run(path, func(t *testing.T) {
			caller := mkClient()
			err := start(path, caller)
			if err == nil || !strings.Contains(err.Error(), "redirect") {
				t.Fatalf("NewVerifier = %v, want a refused redirect", err)
			}
			if caller.CheckRedirect != nil {
				t.Fatal("the caller's http.Client was changed")
			}
		})
	}
	if n, m := otherHits.Load(), plainHits.Load(); n != 0 || m != 0 {
		t.Fatalf("redirect targets were asked %d (other host) and %d (plain http) times, want 0", n, m)
	}

	// The default client (no WithHTTPClient) refuses the same redirects;
	// it cannot verify httptest's certificate, so point it at a plain
	// loopback origin instead.
	var plainSame atomic.Int64
	pmux := http.NewServeMux()
	pmux.Handle("/keys", jwksHandler(t, &plainSame))
	pmux.Handle("/same", redirector("/keys"))
	pmux.Handle("/other-host", redirector(plain.URL+"/keys"))
	plainLatch := httptest.NewServer(pmux)
	t.Cleanup(plainLatch.Close)
	latch = plainLatch // start fetches from it
	for path, wantOK := range map[string]bool{"/same": true, "/other-host": false} {
		if err := start(path, nil); wantOK != (err == nil) {
			t.Fatalf("default client, %s: %v", path, err)
		}
	}
	if plainHits.Load() != 0 {
		t.Fatal("the default client followed a redirect to another host")
	}

	// A caller's own redirect policy still applies within the origin.
	refusing := mkClient()
	refusing.CheckRedirect = func(*http.Request, []*http.Request) error { return errors.New("caller says no") }
	if err := start("/same", refusing); err == nil || !strings.Contains(err.Error(), "caller says no") {
		t.Fatalf("caller's CheckRedirect ignored: %v", err)
	}
}
