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
// UpdateHealth and ReportHealth publish whether the Verifier is serving.
const HealthService = "latch.verifier"

// ErrStale reports that the key set or the revocation state is older than
// its bound (WithMaxKeyAge, WithMaxRevocationLag), or that no revocation
// snapshot has arrived yet (WithLazyStart), and WithFailOpen is not given:
// the token is refused whatever it holds, until the state is fresh again.
// The interceptors answer UNAVAILABLE.
var ErrStale = errors.New("interceptors: verifier state is stale")

// Status describes what the Verifier depends on and how fresh it is, for
// health checks, metrics and logs.
type Status struct {
	// Keys is the number of keys in the current set; 0 before the first
	// fetch, and inside Latch, where the Verifier fetches nothing.
	Keys int
	// KeysFetchedAt is the time of the last successful key fetch.
	KeysFetchedAt time.Time
	// KeyFetches counts fetch attempts (background, start-up and unknown
	// kid).
	KeyFetches int64
	// KeyAge is the time since the last successful key fetch; 0 for
	// StaticJWKS (nothing to fetch).
	KeyAge time.Duration
	// KeysMissing reports that no key set has been fetched yet
	// (WithLazyStart): every token is refused.
	KeysMissing bool
	// RevocationsFollowed reports whether WithRevocations is on;
	// RevocationsConnected whether its stream is up now.
	RevocationsFollowed  bool
	RevocationsConnected bool
	// RevocationLag is how long the revocation stream has been out of
	// sync; 0 while in sync or when revocations are not followed.
	RevocationLag time.Duration
	// RevocationsMissing reports that revocations are followed but no
	// snapshot has arrived yet (WithLazyStart): nothing is known of what
	// Latch has revoked, so it counts as stale from the start.
	RevocationsMissing bool
	// RevocationCheckFailing reports, inside Latch, that the last check of
	// Latch's store failed: tokens are being refused with UNAVAILABLE.
	RevocationCheckFailing bool
	// CredentialsFailing reports that the WithRevocations credentials
	// cannot get a token (clientcreds.ErrSessionEnded): the revocation
	// stream cannot reconnect until they recover.
	CredentialsFailing bool
	// Stale reports KeyAge or RevocationLag beyond its bound, or
	// RevocationsMissing.
	Stale bool
	// FailOpen reports WithFailOpen: tokens are verified even while stale.
	FailOpen bool
}

// Serving reports whether health checks should answer SERVING: keys are
// present, nothing is stale, the revocation check answers and the
// revocation stream's credentials can get tokens.
func (s Status) Serving() bool {
	return !s.KeysMissing && !s.Stale && !s.RevocationCheckFailing && !s.CredentialsFailing
}

// Problems lists what is wrong, in fixed words, for logs.
func (s Status) Problems() []string {
	var p []string
	if s.KeysMissing {
		p = append(p, "no key set yet")
	}
	if s.RevocationsMissing {
		p = append(p, "no revocation snapshot yet")
	}
	if s.Stale {
		p = append(p, fmt.Sprintf("stale (key age %v, revocation lag %v)", s.KeyAge.Round(time.Second), s.RevocationLag.Round(time.Second)))
	}
	if s.RevocationCheckFailing {
		p = append(p, "revocation check failing")
	}
	if s.CredentialsFailing {
		p = append(p, "revocation stream credentials: session ended")
	}
	return p
}

// Status returns the Verifier's state now.
func (v *Verifier) Status() Status { return v.statusAt(v.now()) }

// statusAt is Status at now.
func (v *Verifier) statusAt(now time.Time) Status {
	s := Status{FailOpen: v.failOpen, RevocationCheckFailing: v.revCheckFailing.Load(), RevocationsFollowed: v.revs != nil}
	s.KeyAge, s.RevocationLag, s.RevocationsMissing = v.ages(now)
	if v.keys != nil {
		s.KeyFetches = v.keys.fetches.Load()
		if set := v.keys.cur.Load(); set != nil {
			s.Keys = set.Len()
		}
		if ns := v.keys.fetchedAt.Load(); ns != 0 {
			s.KeysFetchedAt = time.Unix(0, ns)
		}
		s.KeysMissing = !v.keys.static && s.KeysFetchedAt.IsZero()
	}
	if v.revs != nil {
		s.RevocationsConnected = v.revs.connected.Load()
		s.CredentialsFailing = v.revs.creds != nil && v.revs.creds.Failure() != nil
	}
	s.Stale = v.staleAges(s.KeyAge, s.RevocationLag, s.RevocationsMissing)
	return s
}

// ages returns, at now, how old the fetched key set is (zero for static or
// missing keys), how far the revocation stream lags, and whether it has
// never synced. They are three atomic loads: Verify asks on every call.
func (v *Verifier) ages(now time.Time) (keyAge, revLag time.Duration, revMissing bool) {
	if v.keys != nil && !v.keys.static {
		if ns := v.keys.fetchedAt.Load(); ns != 0 {
			keyAge = max(now.Sub(time.Unix(0, ns)), 0)
		}
	}
	if v.revs != nil {
		if ns := v.revs.staleSince.Load(); ns != 0 {
			revLag = max(now.Sub(time.Unix(0, ns)), 0)
		}
		revMissing = !v.revs.everSynced.Load()
	}
	return keyAge, revLag, revMissing
}

func (v *Verifier) staleAges(keyAge, revLag time.Duration, revMissing bool) bool {
	return keyAge > v.maxKeyAge || revLag > v.maxRevLag || revMissing
}

// stale reports whether Verify must refuse at now: stale and not
// WithFailOpen. A missing key set is not "stale": verification fails on its
// own.
func (v *Verifier) stale(now time.Time) bool {
	return !v.failOpen && v.staleAges(v.ages(now))
}

// UpdateHealth sets hs's status for HealthService, and for each of
// services, from Status: SERVING or NOT_SERVING.
func (v *Verifier) UpdateHealth(hs *health.Server, services ...string) Status {
	h := v.Status()
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
// While the revocation check inside Latch is failing, ReportHealth also
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
			policy := "closed"
			if h.FailOpen {
				policy = "open"
			}
			v.log.LogAttrs(ctx, slog.LevelWarn, "verifier unhealthy", slog.String("event", "verifier_unhealthy"),
				slog.Any("problems", h.Problems()), slog.String("stale_policy", policy))
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
