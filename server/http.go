package server

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// JWKSPath is where the HTTP handler serves the JSON Web Key Set.
const JWKSPath = "/.well-known/jwks.json"

// HTTPHandler serves, for sidecars and probes:
//
//   - GET /.well-known/jwks.json: the published keys (same as GetJWKS), with
//     Cache-Control max-age, an ETag and 304 answers to If-None-Match;
//   - GET /.well-known/openid-configuration: the discovery document (see
//     Discovery), when the issuer is an http(s) URL, cached like the JWKS;
//   - both also under the issuer's path, when it has one (issuer
//     https://h/tenant: /tenant/.well-known/jwks.json, the jwks_uri, and
//     /tenant/.well-known/openid-configuration, where OpenID Connect
//     Discovery looks), so that Latch serves what its document names
//     without a path-rewriting proxy;
//   - GET /healthz: 200 while the process runs (liveness);
//   - GET /readyz: 200 when Ready, else 503 with the reason (readiness;
//     503 from the start of a drain);
//   - GET /metrics: Prometheus metrics, when the server has a Metrics.
//
// Anything else is 404; other methods on these paths are 405. With
// WithClientCertRequired, everything but the public documents and probes
// needs a verified client certificate.
func (s *Server) HTTPHandler(opts ...HTTPOption) http.Handler {
	var o httpOptions
	for _, opt := range opts {
		opt(&o)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+JWKSPath, s.serveJWKS)
	mux.HandleFunc("GET "+DiscoveryPath, s.serveDiscovery)
	if p := s.issuerPath(); p != "" { // where the discovery document points, too
		mux.HandleFunc("GET "+p+JWKSPath, s.serveJWKS)
		mux.HandleFunc("GET "+p+DiscoveryPath, s.serveDiscovery)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.serveReadyz)
	if s.metrics != nil {
		mux.Handle("GET "+MetricsPath, s.metrics.Handler(s.log))
	}
	var h http.Handler = mux
	if o.clientCertRequired {
		h = s.requireClientCert(mux)
	}
	return s.metrics.instrumentHTTP(h)
}

// HTTPOption configures HTTPHandler.
type HTTPOption func(*httpOptions)

type httpOptions struct {
	clientCertRequired bool
}

// WithClientCertRequired admits a request to any route but the public ones
// (the JWKS and discovery documents, under the root and the issuer's path,
// /healthz and /readyz) only when its connection presented a client
// certificate that TLS verified; others get 403. Use it when the listener
// verifies client certificates only if given (certs.Reloader's
// VerifyIfGivenConfig), so that JWT libraries, meshes and platform probes,
// which cannot present a certificate, still reach the public documents
// and probes while /metrics stays protected. Default off: every route is
// served to every connection the listener accepted.
func WithClientCertRequired() HTTPOption {
	return func(o *httpOptions) { o.clientCertRequired = true }
}

// requireClientCert serves the public routes to everyone and every other
// path only to a connection with a verified client certificate.
func (s *Server) requireClientCert(next http.Handler) http.Handler {
	public := map[string]bool{JWKSPath: true, DiscoveryPath: true, "/healthz": true, "/readyz": true}
	if p := s.issuerPath(); p != "" {
		public[p+JWKSPath], public[p+DiscoveryPath] = true, true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if public[r.URL.Path] || (r.TLS != nil && len(r.TLS.VerifiedChains) > 0) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "client certificate required", http.StatusForbidden) // sets Content-Type text/plain
	})
}

func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	s.serveJSON(w, r, "jwks", s.keys.jwks())
}

// serveJSON writes v as a public JSON document, cacheable for the JWKS
// max-age, with a strong ETag and 304 answers to a matching If-None-Match.
func (s *Server) serveJSON(w http.ResponseWriter, r *http.Request, what string, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		s.log.Error("encode "+what, "event", "internal_error", "error", err.Error())
		http.Error(w, msgInternal, http.StatusInternalServerError)
		return
	}
	sum := sha256.Sum256(body)
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(s.cfg.JWKSMaxAge.Seconds())))
	h.Set("ETag", etag)
	h.Set("X-Content-Type-Options", "nosniff")
	if matchesETag(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	_, _ = w.Write(body)
}

// matchesETag implements the weak comparison of If-None-Match (RFC 9110
// §13.1.2) for a list of entity tags or "*".
func matchesETag(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}
