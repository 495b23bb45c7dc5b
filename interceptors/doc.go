// Package interceptors lets a Go gRPC service accept Latch access tokens
// without calling Latch on every request: it verifies each token locally,
// with the tokens package's strict verifier, against the public keys Latch
// publishes, and (optionally) against the revocations Latch streams.
//
// A sibling service writes:
//
//	v, err := interceptors.NewVerifier(ctx,
//		interceptors.WithJWKSFromGRPC(latchConn), // or WithJWKSURL, WithStaticJWKS
//		interceptors.WithIssuer("https://latch.example"),
//		interceptors.WithAudience("orders"),
//		interceptors.WithRevocationsFromGRPC(latchConn), // optional, see below
//		interceptors.WithRevocationCredentials(creds))
//	defer v.Close()
//	policy := interceptors.NewPolicy().
//		Require("/orders.v1.Orders/", "orders:read").
//		Require("/orders.v1.Orders/CancelOrder", "orders:write")
//	srv := grpc.NewServer(
//		grpc.ChainUnaryInterceptor(v.UnaryServerInterceptor(policy)),
//		grpc.ChainStreamInterceptor(v.StreamServerInterceptor(policy)))
//
// and in a handler:
//
//	claims, ok := interceptors.ClaimsFromContext(ctx)
//
// # What is checked
//
// The token comes only from "authorization: Bearer <token>" metadata.
// Missing, repeated, non-Bearer or oversized credentials are
// UNAUTHENTICATED with a message that says which (never the token); an
// invalid token is UNAUTHENTICATED; a valid token without a role the policy
// requires is PERMISSION_DENIED. Methods the policy does not name are denied
// (fail closed) unless Policy.AllowAuthenticated flips the default.
// grpc.health.v1 and server reflection are public by default.
//
// # Revocation
//
// Without WithRevocationsFromGRPC, verification is stateless: a token stays
// valid until its exp even if Latch has revoked it (at most the access-token
// lifetime, 15 minutes by default). With it, the Verifier keeps a stream to
// Latch's WatchRevocations open, reconnecting with backoff, and rejects
// revoked jtis and sessions as soon as the event arrives. While the stream
// is down, revocations made in the meantime are not seen until it
// reconnects (each reconnect starts with a full snapshot). The stream
// needs credentials with role "introspect" for Latch's own audience, its
// issuer; given with WithRevocationCredentials (and Relogin), they are
// renewed at once when Latch refuses them, for example because the
// follower's own session was revoked.
//
// # Keys
//
// Keys are fetched at start (NewVerifier fails if none can be had within
// the start-up timeout, unless WithLazyStart is given), refreshed in the
// background (at the server's Cache-Control max-age when it sends one,
// otherwise at WithRefreshInterval), and refetched when a token names an
// unknown kid, at most once per WithMinRefetchInterval however many unknown
// kids arrive. When Latch is unreachable the last good key set keeps
// serving.
//
// # Health
//
// Verifier.Health reports the key set's age and the revocation stream's
// lag; UpdateHealth and ReportHealth publish them through a grpc.health.v1
// server under the service name "latch.verifier" (HealthService):
// NOT_SERVING once either exceeds its bound (WithMaxKeyAge, default 1 h;
// WithMaxRevocationLag, default 5 min), before the first key set, before
// the first revocation snapshot (which counts as stale), or while a
// WithRevocationCheck function fails. While stale, the default
// WithStalePolicy(FailClosed) refuses every token with ErrStale
// (UNAVAILABLE); FailOpen keeps verifying with what it has.
//
// # Inside Latch
//
// Code that runs in the same process as the keys and the revocation state
// (Latch's own ext_authz server and administration service) verifies with
// WithKeySource over Latch's key ring (no fetching; the verified-token
// cache follows the ring's KeyEpoch) and WithRevocationCheck over its
// storage (read on every call, so a Revoke that has returned is seen at
// once; a failing read refuses the token with UNAVAILABLE).
package interceptors
