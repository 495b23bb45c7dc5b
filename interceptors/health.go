package interceptors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// HealthService is the grpc.health.v1 service name under which
// UpdateHealth and ReportHealth publish the Verifier's freshness.
const HealthService = "latch.verifier"

// ErrStale reports that the key set or the revocation state is older than
// its bound (WithMaxKeyAge, WithMaxRevocationLag), or that no revocation
// snapshot has arrived yet (WithLazyStart), while the stale policy is
// FailClosed: the token is refused whatever it holds, until the state is
// fresh again. The interceptors answer UNAVAILABLE.
var ErrStale = errors.New("interceptors: verifier state is stale")

// StalePolicy says what Verify does while the Verifier is stale.
type StalePolicy int

const (
	// FailClosed refuses every token with ErrStale while stale: no
	// request is let through on keys or revocations that may be out of
	// date. The default.
	FailClosed StalePolicy = iota
	// FailOpen keeps verifying with the last key set and the revocations
	// received so far: a key withdrawn, or a token revoked, while the
	// Verifier is cut off from Latch is honoured until it reconnects.
	// Health still reports NOT_SERVING, so operators see it.
	FailOpen
)

// String returns "closed" or "open".
func (p StalePolicy) String() string {
	if p == FailOpen {
		return "open"
	}
	return "closed"
}

// WithMaxKeyAge bounds how old the key set may grow (time since the last
// successful fetch, 304 included) before the Verifier is stale. It does not
// apply to WithStaticJWKS and WithKeySource, which fetch nothing. Default
// 1 hour (a dozen failed refreshes at the default pace).
func WithMaxKeyAge(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return errors.New("WithMaxKeyAge: must be positive")
		}
		o.maxKeyAge = d
		return nil
	}
}

// WithMaxRevocationLag bounds how long the WatchRevocations stream may be
// out of sync (down, or reconnected but before its snapshot is complete)
// before the Verifier is stale: revocations made meanwhile are unknown to
// it. Default 5 minutes, a third of the default access-token lifetime.
// Before the first snapshot (WithLazyStart) the Verifier is stale at
// once: it has never known what Latch revoked.
func WithMaxRevocationLag(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return errors.New("WithMaxRevocationLag: must be positive")
		}
		o.maxRevLag = d
		return nil
	}
}

// WithStalePolicy sets what Verify does while stale. Default FailClosed.
func WithStalePolicy(p StalePolicy) Option {
	return func(o *options) error {
		if p != FailClosed && p != FailOpen {
			return fmt.Errorf("WithStalePolicy: unknown policy %d", p)
		}
		o.stalePolicy = p
		return nil
	}
}

// Health describes the freshness of what the Verifier depends on.
type Health struct {
	// KeyAge is the time since the last successful key fetch; 0 for
	// WithStaticJWKS and WithKeySource (nothing to fetch).
	KeyAge time.Duration
	// KeysMissing reports that no key set has been fetched yet
	// (WithLazyStart): every token is refused.
	KeysMissing bool
	// RevocationLag is how long the revocation stream has been out of
	// sync; 0 while in sync or when revocations are not followed.
	RevocationLag time.Duration
	// RevocationsMissing reports that revocations are followed but no
	// snapshot has arrived yet (WithLazyStart): nothing is known of what
	// Latch has revoked, so it counts as stale from the start.
	RevocationsMissing bool
	// RevocationCheckFailing reports that the last WithRevocationCheck
	// call failed (tokens are being refused with ErrRevocationUnavailable).
	RevocationCheckFailing bool
	// CredentialsFailing reports that the WithRevocationCredentials
	// credentials cannot get a token (ErrSessionEnded): the revocation
	// stream cannot reconnect until they recover.
	CredentialsFailing bool
	// Stale reports KeyAge or RevocationLag beyond its bound, or
	// RevocationsMissing.
	Stale bool
	// Policy is the stale policy in force.
	Policy StalePolicy
}

// Serving reports whether health checks should answer SERVING: keys are
// present, nothing is stale, the revocation check answers and the
// revocation stream's credentials can get tokens.
func (h Health) Serving() bool {
	return !h.KeysMissing && !h.Stale && !h.RevocationCheckFailing && !h.CredentialsFailing
}

// Problems lists what is wrong, in fixed words, for logs.
func (h Health) Problems() []string {
	var p []string
	if h.KeysMissing {
		p = append(p, "no key set yet")
	}
	if h.RevocationsMissing {
		p = append(p, "no revocation snapshot yet")
	}
	if h.Stale {
		p = append(p, fmt.Sprintf("stale (key age %v, revocation lag %v)", h.KeyAge.Round(time.Second), h.RevocationLag.Round(time.Second)))
	}
	if h.RevocationCheckFailing {
		p = append(p, "revocation check failing")
	}
	if h.CredentialsFailing {
		p = append(p, "revocation stream credentials: session ended")
	}
	return p
}

// Health returns the Verifier's freshness now.
func (v *Verifier) Health() Health { return v.healthAt(v.now()) }

// healthAt is Health at now.
func (v *Verifier) healthAt(now time.Time) Health {
	h := Health{Policy: v.stalePolicy, RevocationCheckFailing: v.revCheckFailing.Load()}
	if v.keys != nil && !v.keys.static {
		if ns := v.keys.fetchedAt.Load(); ns == 0 {
			h.KeysMissing = true
		} else {
			h.KeyAge = max(now.Sub(time.Unix(0, ns)), 0)
		}
	}
	if v.revs != nil {
		if ns := v.revs.staleSince.Load(); ns != 0 {
			h.RevocationLag = max(now.Sub(time.Unix(0, ns)), 0)
		}
		h.RevocationsMissing = !v.revs.everSynced.Load()
		h.CredentialsFailing = v.revs.creds != nil && v.revs.creds.Failure() != nil
	}
	h.Stale = h.KeyAge > v.maxKeyAge || h.RevocationLag > v.maxRevLag || h.RevocationsMissing
	return h
}

// stale reports whether Verify must refuse at now because of the stale
// policy. A missing key set is not "stale": verification fails on its own.
func (v *Verifier) stale(now time.Time) bool {
	return v.stalePolicy == FailClosed && v.healthAt(now).Stale
}

// UpdateHealth sets hs's status for HealthService, and for each of
// services, from Health: SERVING or NOT_SERVING.
func (v *Verifier) UpdateHealth(hs *health.Server, services ...string) Health {
	h := v.Health()
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if h.Serving() {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for _, name := range append([]string{HealthService}, services...) {
		hs.SetServingStatus(name, st)
	}
	return h
}

// ReportHealth calls UpdateHealth at once and then every interval until ctx
// ends, logging each change between serving and not serving (event
// verifier_unhealthy / verifier_healthy). Run it in its own goroutine.
//
// While the WithRevocationCheck function is failing, ReportHealth also
// calls it itself each interval (with the claims of a token that does not
// exist, jti and sid "latch-health-probe"), so that health recovers when
// the check does even if no request comes: a load balancer that stopped
// sending requests on NOT_SERVING would otherwise never see it recover.
func (v *Verifier) ReportHealth(ctx context.Context, hs *health.Server, every time.Duration, services ...string) {
	if every <= 0 {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	serving := true
	for {
		v.probeRevocationCheck(ctx, every)
		h := v.UpdateHealth(hs, services...)
		switch {
		case serving && !h.Serving():
			v.log.LogAttrs(ctx, slog.LevelWarn, "verifier unhealthy", slog.String("event", "verifier_unhealthy"),
				slog.Any("problems", h.Problems()), slog.String("stale_policy", h.Policy.String()))
		case !serving && h.Serving():
			v.log.LogAttrs(ctx, slog.LevelInfo, "verifier healthy again", slog.String("event", "verifier_healthy"))
		}
		serving = h.Serving()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probeRevocationCheck calls a failing revocation check once, bounded by
// timeout, and records whether it answers again.
func (v *Verifier) probeRevocationCheck(ctx context.Context, timeout time.Duration) {
	if v.revCheck == nil || !v.revCheckFailing.Load() {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The claims of no real token.
	_, err := v.revCheck(pctx, Claims{ID: "latch-health-probe", SessionID: "latch-health-probe", Subject: "latch-health-probe"})
	v.revCheckFailing.Store(err != nil)
}

// CredentialsHealthService is the grpc.health.v1 service name under which
// RefreshingCredentials.UpdateHealth publishes whether the credentials can
// still get tokens.
const CredentialsHealthService = "latch.credentials"

// UpdateHealth sets hs's status for CredentialsHealthService, and for each
// of services, from Failure: NOT_SERVING while the credentials cannot get
// a token by themselves (ErrSessionEnded), SERVING otherwise. It returns
// Failure. Call it from the loop that publishes the service's health, so
// that a readiness probe shows a session that has ended for good.
func (c *RefreshingCredentials) UpdateHealth(hs *health.Server, services ...string) error {
	err := c.Failure()
	st := healthpb.HealthCheckResponse_SERVING
	if err != nil {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	for _, name := range append([]string{CredentialsHealthService}, services...) {
		hs.SetServingStatus(name, st)
	}
	return err
}
