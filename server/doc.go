// Package server implements Latch's gRPC AuthService (latch.v1) over the
// tokens and storage packages, plus the HTTP endpoints sidecars use
// (/.well-known/jwks.json, /.well-known/openid-configuration, /healthz).
// Envoy's external authorization API lives in the extauthz sub-package.
//
// Every handler validates its input before doing any work, answers a
// client's mistake with a fixed message and the status design.md names,
// and turns every other failure into INTERNAL through one function
// (toStatus) that logs the detail and returns nothing of it. Logs carry user
// ids, session ids, jtis, methods and peers with an "event" field; they never
// carry a password, token, refresh-token digest or key.
package server
