// Package extauthz serves Envoy's external authorization API
// (envoy.service.auth.v3.Authorization/Check) so that an Envoy sidecar, an
// Istio mesh or Envoy Gateway can ask Latch to authorize each HTTP or gRPC
// request before it reaches the service behind it.
//
// Check reads the bearer token from the request's authorization header,
// verifies it with an interceptors.Verifier (the same strict verifier, the
// same verified-token cache and the same revocation check that sibling
// services use), applies a route Policy loaded from a file (deny by
// default), and answers:
//
//   - allowed: OK, with the token's subject, session and roles injected for
//     the upstream (x-latch-sub, x-latch-sid, x-latch-roles by default;
//     client-sent copies are overwritten or removed) and the authorization
//     header removed unless WithKeepAuthorization;
//   - no or invalid token: 401 with an RFC 6750 WWW-Authenticate challenge
//     (error="invalid_token" for a token that fails), gRPC UNAUTHENTICATED;
//     a token that names Latch's own audience (its issuer URL) is invalid
//     here whatever else it names, so that no upstream receives a token
//     that can act on Latch (a policy may not name that audience either);
//   - a valid token lacking a role: 403 (error="insufficient_scope"),
//     PERMISSION_DENIED; a path no rule admits: 403;
//   - a non-canonical path: 400, INVALID_ARGUMENT;
//   - revocation state unavailable or stale (fail closed): 503, UNAVAILABLE.
//
// Denials never carry the reason's detail; it goes to the log (event
// ext_authz_denied), without the token.
package extauthz
