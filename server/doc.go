// Package server implements Latch's gRPC AuthService and AdminService
// (latch.v1) over the tokens and storage packages, plus the HTTP endpoints
// sidecars, probes and Prometheus use (/.well-known/jwks.json,
// /.well-known/openid-configuration, /healthz, /readyz, /metrics).
// GRPCServer adds grpc.health.v1 (answering from Server.Ready), optional
// reflection, connection limits (Transport), optional TLS (WithTLS; the
// verified client certificate is PeerIdentityFromContext) and a graceful
// drain; Metrics is the server's own Prometheus registry. Envoy's external
// authorization API lives in the extauthz sub-package.
//
// Who may call each RPC is one deny-by-default table (authz.go), enforced by
// one unary and one stream interceptor before any handler runs; handlers
// of protected RPCs take the verified caller from the context.
//
// Every handler validates its input before doing any work, answers a
// client's mistake with a fixed message and the status docs/api.md names,
// and turns every other failure into INTERNAL through one function
// (toStatus) that logs the detail and returns nothing of it. Logs carry user
// ids, session ids, jtis, methods and peers with an "event" field; they never
// carry a password, token, refresh-token digest or key.
//
// Signing keys follow next → active → retired → removed (keyadmin.go):
// RunKeyManager applies the schedule from timestamps stored with the keys,
// one storage transaction per transition, so that replicas on a shared store
// agree; RotateSigningKey rotates on demand. Private keys are sealed at rest
// with a key-encryption key when one is given (WithKeySealer, package
// keyseal).
package server
