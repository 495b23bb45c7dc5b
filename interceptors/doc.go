// Package interceptors lets a Go gRPC service accept Latch access tokens
// without calling Latch on every request: it verifies each token locally,
// with the tokens package's strict verifier, against the public keys Latch
// publishes, and (optionally) against the revocations Latch streams.
//
// A sibling service writes:
//
//	v, err := interceptors.NewVerifier(ctx, interceptors.Config{
//		Issuer:   "https://latch.example",
//		Audience: []string{"orders"},
//		Keys:     interceptors.JWKSFromGRPC(latchConn), // or JWKSURL, StaticJWKS
//	}, interceptors.WithRevocations(latchConn, creds)) // optional, see below
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
// A service that composes its own go-grpc-middleware chain (logging, then
// auth, then recovery) passes v.AuthFunc(policy) to auth.UnaryServerInterceptor
// and auth.StreamServerInterceptor instead. Client-side credentials that
// keep a Latch token fresh are in package clientcreds.
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
// Without WithRevocations, verification is stateless: a token stays valid
// until its exp even if Latch has revoked it (at most the access-token
// lifetime, 15 minutes by default). With it, the Verifier keeps a stream to
// Latch's WatchRevocations open, reconnecting with backoff, and rejects
// revoked jtis and sessions as soon as the event arrives. While the stream
// is down, revocations made in the meantime are not seen until it
// reconnects (each reconnect starts with a full snapshot). The stream needs
// credentials with role "introspect" for Latch's own audience, its issuer;
// given to WithRevocations (with clientcreds.WithRelogin), they are renewed
// at once when Latch refuses them, for example because the follower's own
// session was revoked.
//
// # Keys
//
// Keys are fetched at start (NewVerifier fails if none can be had before
// ctx ends, unless WithLazyStart is given), refreshed in the background (at
// the server's Cache-Control max-age when it sends one, otherwise at
// WithRefreshInterval), and refetched when a token names an unknown kid, at
// most once per WithMinRefetchInterval however many unknown kids arrive.
// When Latch is unreachable the last good key set keeps serving.
//
// # Health
//
// Verifier.Status reports the key set's age and the revocation stream's
// lag; UpdateHealth and ReportHealth publish them through a grpc.health.v1
// server under the service name "latch.verifier" (HealthService):
// NOT_SERVING once either exceeds its bound (WithMaxKeyAge, default 1 h;
// WithMaxRevocationLag, default 5 min), before the first key set, before
// the first revocation snapshot (which counts as stale), or while the
// revocation stream's credentials cannot get a token. While stale, every
// token is refused with ErrStale (UNAVAILABLE) unless WithFailOpen keeps
// verifying with what the Verifier has.
package interceptors
