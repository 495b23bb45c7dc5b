package server

import (
	"net/http"
	"net/url"
	"path"
	"strings"

	latchv1 "github.com/latchauth/latch/gen/latch/v1"
	"github.com/latchauth/latch/tokens"
)

// DiscoveryPath is where the HTTP handler serves the discovery document.
const DiscoveryPath = "/.well-known/openid-configuration"

// Discovery is Latch's discovery document (OpenID Connect Discovery 1.0
// and RFC 8414 member names). It states only what Latch has: where its
// keys are, how its tokens are signed and what they hold. Latch has no
// browser flow and no HTTP token, introspection or revocation endpoint
// (those are gRPC methods, listed under latch_grpc_methods), so
// authorization_endpoint, token_endpoint, introspection_endpoint,
// revocation_endpoint, response_types_supported and grant_types_supported
// are omitted rather than filled with endpoints that do not exist;
// RFC 8414 §2 allows omitting authorization_endpoint when no grant uses it.
type Discovery struct {
	Issuer                           string            `json:"issuer"`
	JWKSURI                          string            `json:"jwks_uri"`
	IDTokenSigningAlgValuesSupported []string          `json:"id_token_signing_alg_values_supported"`
	SubjectTypesSupported            []string          `json:"subject_types_supported"`
	ClaimsSupported                  []string          `json:"claims_supported"`
	GRPCMethods                      map[string]string `json:"latch_grpc_methods"`
}

// DiscoveryDocument returns the discovery document, or ok false when the
// issuer is not an absolute http(s) URL: then no jwks_uri can be derived
// from it, and inventing one from the request's Host header would let a
// client poison caches with a key URL of its choosing.
func (s *Server) DiscoveryDocument() (Discovery, bool) {
	u, err := url.Parse(s.cfg.Issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return Discovery{}, false
	}
	return Discovery{
		Issuer:                           s.cfg.Issuer,
		JWKSURI:                          strings.TrimSuffix(s.cfg.Issuer, "/") + JWKSPath,
		IDTokenSigningAlgValuesSupported: []string{tokens.Algorithm},
		SubjectTypesSupported:            []string{"public"},
		ClaimsSupported:                  []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "roles"},
		GRPCMethods: map[string]string{
			"login":             latchv1.AuthService_Login_FullMethodName,
			"refresh":           latchv1.AuthService_Refresh_FullMethodName,
			"revoke":            latchv1.AuthService_Revoke_FullMethodName,
			"introspect":        latchv1.AuthService_Introspect_FullMethodName,
			"jwks":              latchv1.AuthService_GetJWKS_FullMethodName,
			"watch_revocations": latchv1.AuthService_WatchRevocations_FullMethodName,
		},
	}, true
}

// issuerPath is the path of an http(s) issuer without its final "/" ("" for
// none, or for a path that does not make a literal route: only clean paths
// of letters, digits and "-._~/" are taken).
func (s *Server) issuerPath() string {
	if _, ok := s.DiscoveryDocument(); !ok {
		return ""
	}
	u, err := url.Parse(s.cfg.Issuer)
	if err != nil || u.RawPath != "" {
		return ""
	}
	p := strings.TrimSuffix(u.Path, "/")
	if p == "" || !strings.HasPrefix(p, "/") || path.Clean(p) != p { // ServeMux refuses unclean patterns
		return ""
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-._~/", c)) {
			return ""
		}
	}
	return p
}

func (s *Server) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	doc, ok := s.DiscoveryDocument()
	if !ok {
		http.Error(w, "no discovery document: the issuer is not an http(s) URL", http.StatusNotFound)
		return
	}
	s.serveJSON(w, r, "discovery document", doc)
}
